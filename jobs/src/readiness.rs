//! What `/readyz` probes besides Postgres and Redis: MongoDB, every configured object store
//! and the SMTP server — each by name, each within a short timeout, answered without the
//! error's internals (those go to the log).

use std::{collections::BTreeMap, time::Duration};

use ferry_config::Config;
use futures::{FutureExt, StreamExt, future::BoxFuture};

use crate::{notify::Mailer, store::Store};

/// The configured dependencies, with their clients built once (none connects until probed).
pub struct Dependencies {
    mongo: Option<Result<mongodb::Client, String>>,
    stores: Vec<(String, Result<Store, String>)>,
    smtp: Option<Result<Mailer, String>>,
}

impl Dependencies {
    /// MongoDB when `MONGODB_URI` is set, every `[stores]` entry and an `s3://` backup
    /// target given by URL, and SMTP when `SMTP_URL` (or `SMTP_HOST`) is set.
    pub async fn from_config(config: &Config) -> Self {
        let mongo = match &config.mongodb.uri {
            Some(uri) => Some(mongo_client(uri).await),
            None => None,
        };
        let mut stores: Vec<(String, Result<Store, String>)> = config
            .stores
            .keys()
            .map(|name| (format!("store {name}"), open(config, name)))
            .collect();
        let target = &config.backup.target;
        if !config.stores.contains_key(target) && target.starts_with("s3://") {
            stores.push(("store backup.target".into(), open(config, target)));
        }
        let n = &config.notify;
        let smtp = n.smtp_url.as_ref().map(|url| {
            // One connection is enough to tell whether the server answers.
            Mailer::new(url, n.from.as_deref(), 1, n.smtp_timeout)
        });
        Self {
            mongo,
            stores,
            smtp,
        }
    }

    /// Each dependency's name and `ok`, or why it is not ready, probed at once.
    pub async fn check(&self, limit: Duration) -> BTreeMap<String, Result<(), String>> {
        let mut probes: Vec<(String, BoxFuture<'_, Result<(), String>>)> = Vec::new();
        if let Some(mongo) = &self.mongo {
            probes.push(("mongodb".into(), ping_mongo(mongo).boxed()));
        }
        for (name, store) in &self.stores {
            probes.push((name.clone(), ping_store(store).boxed()));
        }
        if let Some(smtp) = &self.smtp {
            probes.push(("smtp".into(), ping_smtp(smtp).boxed()));
        }
        let answers =
            futures::future::join_all(probes.into_iter().map(|(name, probe)| async move {
                let answer = match tokio::time::timeout(limit, probe).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(detail)) => {
                        tracing::warn!(dependency = %name, error = %detail, "not ready");
                        Err("unavailable".to_owned())
                    }
                    Err(_) => Err(format!(
                        "no answer within {}",
                        humantime::format_duration(limit)
                    )),
                };
                (name, answer)
            }))
            .await;
        answers.into_iter().collect()
    }
}

fn open(config: &Config, spec: &str) -> Result<Store, String> {
    let store = config.store("stores", spec).map_err(|e| e.to_string())?;
    Store::open(&store).map_err(|e| e.to_string())
}

async fn mongo_client(uri: &str) -> Result<mongodb::Client, String> {
    let mut options = mongodb::options::ClientOptions::parse(uri)
        .await
        .map_err(|e| format!("MONGODB_URI is not usable: {e}"))?;
    options.app_name = Some("ferry-readyz".into());
    // Fail fast: the probe's own limit is short, and a pending selection would outlive it.
    options.server_selection_timeout = Some(Duration::from_secs(2));
    options.connect_timeout = Some(Duration::from_secs(2));
    mongodb::Client::with_options(options).map_err(|e| format!("MONGODB_URI: {e}"))
}

async fn ping_mongo(client: &Result<mongodb::Client, String>) -> Result<(), String> {
    let client = client.as_ref().map_err(Clone::clone)?;
    client
        .database("admin")
        .run_command(bson::doc! { "ping": 1 })
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// One listing page of the store's prefix: it proves the endpoint, the credentials and the
/// bucket.
async fn ping_store(store: &Result<Store, String>) -> Result<(), String> {
    let store = store.as_ref().map_err(Clone::clone)?;
    match store.list_after("", None).next().await {
        Some(Err(e)) => Err(e.to_string()),
        None | Some(Ok(_)) => Ok(()),
    }
}

async fn ping_smtp(mailer: &Result<Mailer, String>) -> Result<(), String> {
    let mailer = mailer.as_ref().map_err(Clone::clone)?;
    mailer.ping().await.map_err(|e| e.to_string())
}

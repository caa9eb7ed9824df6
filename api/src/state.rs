//! What every handler shares: config, kinds, connections, and the last figures the dashboard
//! computed rates from.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc, time::Instant};

use ferry_config::{Config, ConfigError};
use ferry_jobs::{Registry, sync::Target};
use ferry_queue::Queue;
use ferry_record::Record;
use tokio::{
    sync::{Mutex, OnceCell},
    task::JoinHandle,
};

use crate::{
    ApiError, ServeError, audit::AuditSink, auth::Tokens, quota::Quota, throttle::Throttle,
};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    config: Arc<Config>,
    registry: Registry,
    queue: Queue,
    record: Record,
    tokens: Tokens,
    throttle: Throttle,
    quota: Quota,
    audit: AuditSink,
    /// MongoDB, stores and SMTP, for `/readyz`.
    dependencies: ferry_jobs::readiness::Dependencies,
    /// Opened on first use: the API runs without sync configured.
    sync: OnceCell<Target>,
    /// The previous sample of finished jobs per kind, for rates.
    finished: Mutex<Option<(Instant, BTreeMap<String, i64>)>>,
}

impl AppState {
    /// Refuses to start without an admin token (the API would be unusable, the dashboard
    /// shut), with a named token whose variable is unset, or with a token allowed a kind that
    /// does not exist. Also returns the audit writer, to be awaited once the server stops.
    pub async fn connect(config: Arc<Config>) -> Result<(Self, JoinHandle<()>), ServeError> {
        if config.api.admin_token.is_none() {
            return Err(ConfigError::new(
                "api.admin_token (FERRY_ADMIN_TOKEN)",
                "is not set",
                "set FERRY_ADMIN_TOKEN to a random token (e.g. `openssl rand -hex 32`); FERRY_API_TOKEN gives API servers the enqueue scope",
            )
            .into());
        }
        let registry = ferry_jobs::registry(&config)?;
        check_tokens(&config, &registry)?;
        let record = Record::connect(&config.postgres).await?;
        record.check_migrated().await?;
        let (audit, writer) = AuditSink::start(record.clone());
        let queue = Queue::for_config(&config).await?;
        let tokens = Tokens::new(&config.api);
        let throttle = Throttle::new(config.api.max_auth_failures);
        let dependencies = ferry_jobs::readiness::Dependencies::from_config(&config).await;
        let state = Self(Arc::new(Inner {
            dependencies,
            config,
            registry,
            queue,
            record,
            tokens,
            throttle,
            quota: Quota::default(),
            audit,
            sync: OnceCell::new(),
            finished: Mutex::new(None),
        }));
        Ok((state, writer))
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }

    pub fn registry(&self) -> &Registry {
        &self.0.registry
    }

    pub fn queue(&self) -> &Queue {
        &self.0.queue
    }

    pub fn record(&self) -> &Record {
        &self.0.record
    }

    pub(crate) fn tokens(&self) -> &Tokens {
        &self.0.tokens
    }

    pub(crate) fn throttle(&self) -> &Throttle {
        &self.0.throttle
    }

    pub(crate) fn quota(&self) -> &Quota {
        &self.0.quota
    }

    pub(crate) fn audit(&self) -> &AuditSink {
        &self.0.audit
    }

    /// Records a refusal without waiting for Postgres.
    pub(crate) fn audit_later(
        &self,
        actor: &str,
        action: &str,
        target: Option<String>,
        details: serde_json::Value,
    ) {
        self.0.audit.try_send(actor, action, target, details);
    }

    /// A failed sign-in or bearer token from `ip`: counted, and audited up to the limit
    /// (then once more when the address is blocked), so a flood cannot fill the audit log.
    pub(crate) fn refused(&self, ip: IpAddr, action: &str, route: &str) {
        let blocked = self.0.throttle.fail(ip);
        let actor = format!("client:{ip}");
        self.audit_later(&actor, action, None, serde_json::json!({ "route": route }));
        if blocked {
            self.audit_later(
                &actor,
                "auth.client_blocked",
                None,
                serde_json::json!({
                    "failures": self.0.throttle.limit(),
                    "for_seconds": crate::throttle::WINDOW.as_secs(),
                }),
            );
        }
    }

    pub(crate) fn dependencies(&self) -> &ferry_jobs::readiness::Dependencies {
        &self.0.dependencies
    }

    pub(crate) fn redis(&self) -> ferry_queue::Conn {
        self.0.queue.redis()
    }

    /// The application database and MongoDB, connected on first use.
    pub async fn sync_target(&self) -> Result<&Target, ApiError> {
        self.0
            .sync
            .get_or_try_init(|| Target::connect(&self.0.config))
            .await
            .map_err(ApiError::from)
    }

    /// Jobs finished per second for each kind since the previous call (at least a second
    /// apart), from the cumulative counts `finished`.
    pub(crate) async fn rates(&self, finished: BTreeMap<String, i64>) -> BTreeMap<String, f64> {
        let mut last = self.0.finished.lock().await;
        let now = Instant::now();
        let rates = match last.as_ref() {
            Some((at, before)) => {
                let secs = now.duration_since(*at).as_secs_f64().max(0.001);
                finished
                    .iter()
                    .map(|(kind, n)| {
                        let delta = n - before.get(kind).copied().unwrap_or(*n);
                        (kind.clone(), delta.max(0) as f64 / secs)
                    })
                    .collect()
            }
            None => BTreeMap::new(),
        };
        if last
            .as_ref()
            .is_none_or(|(at, _)| now.duration_since(*at).as_secs_f64() >= 1.0)
        {
            *last = Some((now, finished));
        }
        rates
    }
}

/// Every kind a token may enqueue must exist, and every named token must have its value.
fn check_tokens(config: &Config, registry: &Registry) -> Result<(), ConfigError> {
    let api = &config.api;
    let lists = std::iter::once(("api.enqueue_kinds".to_owned(), &api.enqueue_kinds)).chain(
        api.tokens
            .iter()
            .map(|t| (format!("api.tokens[{}].kinds", t.name), &t.kinds)),
    );
    for (key, kinds) in lists {
        for kind in kinds {
            if registry.get(kind).is_err() {
                return Err(ConfigError::new(
                    key,
                    format!("names kind {kind:?}, which does not exist"),
                    "list kinds ferry runs, e.g. \"sync.entity\" or \"notify.send\" (README, Job kinds)",
                ));
            }
        }
    }
    if let Some(t) = api.tokens.iter().find(|t| t.secret.is_none()) {
        return Err(ConfigError::new(
            format!("api.tokens[{}].env", t.name),
            format!("{} is not set", t.env),
            "set it to a random token (`openssl rand -hex 32`) or remove the token",
        ));
    }
    Ok(())
}

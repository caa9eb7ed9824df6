//! What a migration will do, resolved and checked before anything is copied; `--dry-run`
//! prints it.

use ferry_config::Config;
use futures::TryStreamExt;
use serde::Serialize;
use sqlx::PgPool;

use super::{MigrateArgs, Side, copy::Sizes, ledger::Pair, rewrite::Column};
use crate::JobError;

pub struct Plan {
    pub from: Side,
    pub to: Side,
    pub sizes: Sizes,
    pub transfers: usize,
    pub rewrite: Vec<String>,
    pub rewrite_chunk: usize,
    pub check_http: bool,
}

/// The dry run's report.
#[derive(Debug, Serialize)]
pub struct Dry {
    pub objects: u64,
    pub bytes: u64,
    /// Rows per column whose URL starts with the source's public URL.
    pub rows: std::collections::BTreeMap<String, i64>,
    pub from_url: Option<String>,
    pub to_url: Option<String>,
}

impl Plan {
    pub fn open(config: &Config, args: &MigrateArgs) -> Result<Self, JobError> {
        // Before any store is opened: the job may have been enqueued under other [stores].
        super::overlap::check(config, args).map_err(JobError::permanent)?;
        let from = Side::open(config, &args.from, "from")?;
        let to = Side::open(config, &args.to, "to")?;
        let files = &config.files;
        let transfers = args.transfers.unwrap_or(files.transfers);
        if transfers == 0 {
            return Err(JobError::permanent("transfers must be 1 or more"));
        }
        if !args.rewrite.is_empty() {
            let apart = config.postgres.ferry_url.is_some()
                && config.postgres.ferry_url != config.postgres.url;
            if apart {
                return Err(JobError::permanent(
                    "--rewrite keeps old URLs in ferry's schema in the same transaction as the \
                     rewrite, so schema ferry must live in the application database: unset \
                     FERRY_DATABASE_URL (postgres.ferry_url)",
                ));
            }
        }
        let plan = Self {
            from,
            to,
            sizes: Sizes {
                threshold: (files.multipart_threshold_mib as u64) << 20,
                part: (files.part_size_mib as u64) << 20,
            },
            transfers,
            rewrite: args.rewrite.clone(),
            rewrite_chunk: files.rewrite_chunk,
            check_http: args.check_http,
        };
        plan.url_prefixes(!plan.rewrite.is_empty())?;
        Ok(plan)
    }

    pub fn pair(&self) -> Pair {
        Pair {
            source: self.from.identity(),
            destination: self.to.identity(),
        }
    }

    /// The public URL prefixes a rewrite replaces, each ending in `/` so that `.../av` does
    /// not match `.../avatars/...`; both stores need `public_url` then.
    pub fn url_prefixes(&self, needed: bool) -> Result<(String, String), JobError> {
        match (&self.from.public_url, &self.to.public_url) {
            (Some(f), Some(t)) => Ok((format!("{f}/"), format!("{t}/"))),
            _ if !needed => Ok((String::new(), String::new())),
            _ => Err(JobError::permanent(format!(
                "--rewrite needs public_url on both stores: set it in [stores.{}] and \
                 [stores.{}] to how the application's URLs of their objects begin",
                self.from.name, self.to.name
            ))),
        }
    }

    /// The columns to rewrite, checked against the catalog.
    pub async fn columns(&self, pool: &PgPool) -> Result<Vec<Column>, JobError> {
        let mut columns = Vec::new();
        for spec in &self.rewrite {
            columns.push(Column::resolve(pool, spec).await?);
        }
        Ok(columns)
    }

    /// Objects and bytes at the source (one listing pass).
    pub async fn count_objects(&self) -> Result<(u64, u64), JobError> {
        let mut listing = self.from.store.list_after(&self.from.prefix, None);
        let (mut objects, mut bytes) = (0, 0);
        while let Some(o) = listing.try_next().await? {
            objects += 1;
            bytes += o.size;
        }
        Ok((objects, bytes))
    }

    /// Everything the run would do, changing nothing.
    pub async fn dry_run(&self, pool: &PgPool) -> Result<Dry, JobError> {
        let (objects, bytes) = self.count_objects().await?;
        let mut rows = std::collections::BTreeMap::new();
        let (from, _) = self.url_prefixes(!self.rewrite.is_empty())?;
        for column in self.columns(pool).await? {
            rows.insert(column.target(), column.count(pool, &from).await?);
        }
        Ok(Dry {
            objects,
            bytes,
            rows,
            from_url: self.from.public_url.clone(),
            to_url: self.to.public_url.clone(),
        })
    }
}

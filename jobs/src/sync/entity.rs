use serde::{Deserialize, Serialize};

use super::{QUEUE, SyncError, Table, json_text, mirror::Mirror, settle};
use crate::{Backoff, JobContext, JobError, Kind, Settings};

/// Syncs one row on write: reads the current row and upserts its document, or deletes the
/// document when the row is gone. Enqueued coalesced, so a burst of writes to one row queues
/// one job.
pub struct Entity;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityArgs {
    pub table: String,
    /// The key: a value for a one-column key, or `{column: value}`.
    pub key: serde_json::Value,
}

impl EntityArgs {
    /// The arguments for the row of `table` with `key`: the value of a one-column key, or an
    /// object `{column: value}`; checked against the catalog, so only mirrored tables pass.
    pub fn for_row(
        catalog: &super::Catalog,
        table: &str,
        key: serde_json::Value,
    ) -> Result<Self, SyncError> {
        let table = catalog.table(table)?;
        let key = match key {
            v @ serde_json::Value::Object(_) => v,
            v if table.key.len() == 1 => serde_json::json!({ &table.key[0].name: v }),
            _ => {
                return Err(SyncError::Config(format!(
                    "{} has a {}-column key ({}): give the key as a JSON object {{column: value}}",
                    table.name,
                    table.key.len(),
                    table.key_list()
                )));
            }
        };
        let args = Self {
            table: table.name.clone(),
            key,
        };
        args.key_text(&table)?;
        Ok(args)
    }

    /// The key values as text, in key order.
    pub fn key_text(&self, table: &Table) -> Result<Vec<String>, SyncError> {
        match (&self.key, table.key.len()) {
            (serde_json::Value::Object(map), _) => table
                .key
                .iter()
                .map(|c| {
                    map.get(&c.name)
                        .filter(|v| !v.is_null())
                        .map(json_text)
                        .ok_or_else(|| {
                            SyncError::Config(format!(
                                "key of {} needs column {}; got {}",
                                table.name, c.name, self.key
                            ))
                        })
                })
                .collect(),
            (v, 1) if !v.is_null() && !v.is_array() => Ok(vec![json_text(v)]),
            (v, n) => Err(SyncError::Config(format!(
                "key of {} has {n} columns ({}); give an object {{column: value}}, got {v}",
                table.name,
                table.key_list()
            ))),
        }
    }

    /// The coalesce key: one waiting job per row. Callers pass the full table name and the
    /// key as an object, so the relay and the CLI name a row alike.
    pub fn coalesce_key(&self) -> String {
        format!("sync.entity:{}:{}", self.table, self.key)
    }
}

impl Kind for Entity {
    const NAME: &'static str = "sync.entity";
    type Args = EntityArgs;

    fn defaults() -> Settings {
        Settings {
            queue: QUEUE.into(),
            max_attempts: 10,
            backoff: Backoff {
                base: std::time::Duration::from_secs(1),
                cap: std::time::Duration::from_secs(300),
            },
            timeout: std::time::Duration::from_secs(60),
            ..Settings::default()
        }
    }

    async fn run(&self, args: EntityArgs, ctx: JobContext) -> Result<(), JobError> {
        let target = super::target(&ctx).await?;
        let config = &ctx.deps.config;
        let table = target.recent_catalog(config).await?.table(&args.table)?;
        let key = args.key_text(&table)?;
        let mirror = Mirror::for_job(&target, &ctx);
        // Two jobs for one row can run at once (a change committed after a job started
        // queues a new one): `settle::row` keeps the last write the row as it is.
        Ok(settle::row(&target.app, &mirror, &table, config.sync.timestamps, &key).await?)
    }
}

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{QUEUE, SyncError, Table, Target, mirror::Mirror, page, settle, sweep, triggers};
use crate::{JobContext, JobError, Kind, Settings};

/// Syncs rows changed since each table's watermark, re-reading `sync.overlap` behind it so
/// rows committed late are not missed. Tables without an `updated_at` column are skipped
/// (full sync covers them); tables without change triggers also get a key sweep for deletes.
pub struct Incremental;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementalArgs {
    #[serde(default)]
    pub tables: Vec<String>,
}

impl Kind for Incremental {
    const NAME: &'static str = "sync.incremental";
    type Args = IncrementalArgs;

    fn defaults() -> Settings {
        Settings {
            queue: QUEUE.into(),
            max_attempts: 5,
            ..Settings::default()
        }
    }

    async fn run(&self, args: IncrementalArgs, ctx: JobContext) -> Result<(), JobError> {
        let target = super::target(&ctx).await?;
        let config = &ctx.deps.config;
        let tables = target.catalog(config).await?.select(&args.tables)?;
        let mirror = Mirror::for_job(&target, &ctx);
        for table in &tables {
            if let Some(stop) = ctx.should_stop() {
                return Err(stop);
            }
            let synced = changed_rows(&ctx, &target, &mirror, table).await?;
            let swept = if triggers::installed(&target.app, table).await? {
                0
            } else {
                sweep::sweep(&target, table, config.sync.timestamps, Some(&mirror))
                    .await?
                    .0
            };
            tracing::info!(table = %table.name, synced, deleted = swept, "incremental sync");
        }
        Ok(())
    }
}

async fn changed_rows(
    ctx: &JobContext,
    target: &Target,
    mirror: &Mirror<'_>,
    table: &Table,
) -> Result<u64, JobError> {
    let Some(ua) = &table.updated_at else {
        return Ok(0);
    };
    let config = &ctx.deps.config.sync;
    let record = ctx.deps.record.pool();
    let watermark: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT watermark_at FROM sync_tables WHERE table_name = $1")
            .bind(&table.name)
            .fetch_optional(record)
            .await
            .map_err(SyncError::db("read the watermark"))?
            .flatten();
    let from = watermark.map(|w| (w - config.overlap).to_rfc3339());
    let mut cursor: Option<(String, Vec<String>)> = None;
    let mut newest: Option<String> = None;
    let mut synced = 0;
    let k = table.key.len();
    loop {
        let (filter, binds): (String, Vec<String>) = match (&cursor, &from) {
            (Some((at, key)), _) => {
                let params: Vec<String> = std::iter::once(format!("$1::text::{}", ua.type_name))
                    .chain(
                        table
                            .key
                            .iter()
                            .enumerate()
                            .map(|(i, c)| format!("${}::text::{}", i + 2, c.type_name)),
                    )
                    .collect();
                (
                    format!(
                        "WHERE ({}, {}) > ({})",
                        ua.quoted,
                        table.key_list(),
                        params.join(", ")
                    ),
                    std::iter::once(at.clone())
                        .chain(key.iter().cloned())
                        .collect(),
                )
            }
            (None, Some(from)) => (
                format!("WHERE {} >= $1::text::{}", ua.quoted, ua.type_name),
                vec![from.clone()],
            ),
            (None, None) => (format!("WHERE {} IS NOT NULL", ua.quoted), Vec::new()),
        };
        let sql = format!(
            "SELECT {}, {}::text AS _ferry_updated_at FROM {} {filter} ORDER BY {}, {} LIMIT {}",
            table.select_list(),
            ua.quoted,
            table.quoted,
            ua.quoted,
            table.key_list(),
            config.chunk_size
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in &binds {
            query = query.bind(b);
        }
        let rows = query
            .fetch_all(&target.app)
            .await
            .map_err(SyncError::db("read changed rows"))?;
        if rows.is_empty() {
            break;
        }
        let page = page::to_page(table, config.timestamps, &rows)?;
        settle::page(&target.app, mirror, table, config.timestamps, &page, false).await?;
        synced += page.docs.len() as u64;
        let last = rows
            .last()
            // After the columns, the key texts and the row version (`Table::select_list`).
            .map(|r| sqlx::Row::try_get::<String, _>(r, table.columns.len() + k + 1));
        let at = last
            .transpose()
            .map_err(SyncError::db("read updated_at"))?
            .unwrap_or_default();
        newest = Some(at.clone());
        cursor = Some((at, page.last().unwrap_or_default()));
        if rows.len() < config.chunk_size {
            break;
        }
    }
    sqlx::query(
        "INSERT INTO sync_tables (table_name, watermark_at, last_incremental_at) VALUES ($1, $2::text::timestamptz, now())
         ON CONFLICT (table_name) DO UPDATE SET
            watermark_at = GREATEST(sync_tables.watermark_at, EXCLUDED.watermark_at),
            last_incremental_at = now()",
    )
    .bind(&table.name)
    .bind(newest)
    .execute(record)
    .await
    .map_err(SyncError::db("save the watermark"))?;
    Ok(synced)
}

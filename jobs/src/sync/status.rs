//! Where the mirror stands, per table: rows in the source, documents in the mirror, and when
//! each table was last synced. For `GET /v1/sync/status` and the dashboard's sync panel.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ferry_config::Config;
use ferry_record::Record;
use serde::Serialize;

use super::{SyncError, Target, verify};

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TableStatus {
    pub table: String,
    pub collection: String,
    pub source_rows: i64,
    pub mirror_documents: u64,
    pub last_full_at: Option<DateTime<Utc>>,
    pub last_incremental_at: Option<DateTime<Utc>>,
    /// The later of the two.
    pub last_sync_at: Option<DateTime<Utc>>,
}

type Times = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// Exact counts of every mirrored table (a `count(*)` and a `countDocuments` each).
pub async fn status(
    target: &Target,
    config: &Config,
    record: &Record,
) -> Result<Vec<TableStatus>, SyncError> {
    let catalog = target.catalog(config).await?;
    let times: HashMap<String, Times> =
        sqlx::query_as::<_, (String, Option<DateTime<Utc>>, Option<DateTime<Utc>>)>(
            "SELECT table_name, last_full_at, last_incremental_at FROM sync_tables",
        )
        .fetch_all(record.pool())
        .await
        .map_err(SyncError::db("read last syncs"))?
        .into_iter()
        .map(|(t, full, inc)| (t, (full, inc)))
        .collect();
    let mut out = Vec::with_capacity(catalog.tables.len());
    for table in &catalog.tables {
        let counts = verify::counts(target, table).await?;
        let (full, inc) = times.get(&table.name).copied().unwrap_or_default();
        out.push(TableStatus {
            table: table.name.clone(),
            collection: table.collection.clone(),
            source_rows: counts.source_rows,
            mirror_documents: counts.mirror_documents,
            last_full_at: full,
            last_incremental_at: inc,
            last_sync_at: full.max(inc),
        });
    }
    Ok(out)
}

//! `import_rejects` in schema `ferry`: one row per document that could not become a row.

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::rows::Converted;
use crate::sync::SyncError;

/// A reject as `ferry import rejects --json` prints it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reject {
    pub collection: String,
    pub source_id: String,
    pub reason: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub document: serde_json::Value,
}

/// Records the batch's rejects and clears those of its imported documents. Unchanged rejects
/// are not rewritten.
pub async fn store(
    record: &PgPool,
    collection: &str,
    batch: &[Converted],
    run: Option<Uuid>,
) -> Result<(), SyncError> {
    let mut ids = Vec::new();
    let mut reasons = Vec::new();
    let mut docs = Vec::new();
    let mut imported = Vec::new();
    for c in batch {
        match &c.rows {
            Ok(_) => imported.push(c.source_id.clone()),
            Err(reason) => {
                ids.push(c.source_id.clone());
                reasons.push(reason.clone());
                docs.push(
                    bson::Bson::Document(c.document.clone())
                        .into_relaxed_extjson()
                        .to_string(),
                );
            }
        }
    }
    if !ids.is_empty() {
        sqlx::query(
            "INSERT INTO import_rejects (collection, source_id, reason, document, run_id)
             SELECT $1, s.id, s.reason, s.doc::jsonb, $5
             FROM unnest($2::text[], $3::text[], $4::text[]) AS s(id, reason, doc)
             ON CONFLICT (collection, source_id) DO UPDATE
                SET reason = EXCLUDED.reason, document = EXCLUDED.document,
                    run_id = EXCLUDED.run_id, at = now()
                WHERE (import_rejects.reason, import_rejects.document)
                      IS DISTINCT FROM (EXCLUDED.reason, EXCLUDED.document)",
        )
        .bind(collection)
        .bind(ids)
        .bind(reasons)
        .bind(docs)
        .bind(run)
        .execute(record)
        .await
        .map_err(SyncError::db("record rejects"))?;
    }
    if !imported.is_empty() {
        sqlx::query("DELETE FROM import_rejects WHERE collection = $1 AND source_id = ANY($2)")
            .bind(collection)
            .bind(imported)
            .execute(record)
            .await
            .map_err(SyncError::db("clear rejects"))?;
    }
    Ok(())
}

/// Why `source_id` of `collection` was rejected, if it was.
pub async fn reason(
    record: &PgPool,
    collection: &str,
    source_id: &str,
) -> Result<Option<String>, SyncError> {
    sqlx::query_scalar("SELECT reason FROM import_rejects WHERE collection = $1 AND source_id = $2")
        .bind(collection)
        .bind(source_id)
        .fetch_optional(record)
        .await
        .map_err(SyncError::db("read rejects"))
}

/// Rejects, optionally of one collection, oldest document id first.
pub async fn list(record: &PgPool, collection: Option<&str>) -> Result<Vec<Reject>, SyncError> {
    sqlx::query_as(
        "SELECT collection, source_id, reason, document FROM import_rejects
         WHERE $1::text IS NULL OR collection = $1 ORDER BY collection, source_id",
    )
    .bind(collection)
    .fetch_all(record)
    .await
    .map_err(SyncError::db("read rejects"))
}

/// Rejects per collection.
pub async fn counts(record: &PgPool) -> Result<Vec<(String, i64)>, SyncError> {
    sqlx::query_as("SELECT collection, count(*) FROM import_rejects GROUP BY 1 ORDER BY 1")
        .fetch_all(record)
        .await
        .map_err(SyncError::db("count rejects"))
}

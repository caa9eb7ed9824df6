//! The audit log of operator actions.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::{Record, RecordError};

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub details: Value,
}

/// One entry to write, with the time it happened (a batch is written a little later).
#[derive(Debug, Clone)]
pub struct NewAudit {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub details: Value,
}

impl Record {
    /// Writes many entries in one statement: the API's enqueues are audited in batches so a
    /// request does not wait for a Postgres round trip.
    pub async fn audit_batch(&self, entries: &[NewAudit]) -> Result<(), RecordError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut at = Vec::with_capacity(entries.len());
        let mut actor = Vec::with_capacity(entries.len());
        let mut action = Vec::with_capacity(entries.len());
        let mut target = Vec::with_capacity(entries.len());
        let mut details = Vec::with_capacity(entries.len());
        for e in entries {
            at.push(e.at);
            actor.push(e.actor.as_str());
            action.push(e.action.as_str());
            target.push(e.target.as_deref());
            details.push(e.details.clone());
        }
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target, details)
             SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::jsonb[])",
        )
        .bind(at)
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(details)
        .execute(&self.pool)
        .await
        .map_err(RecordError::query("write audit log"))?;
        Ok(())
    }

    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        details: Value,
    ) -> Result<(), RecordError> {
        sqlx::query(
            "INSERT INTO audit_log (actor, action, target, details) VALUES ($1, $2, $3, $4)",
        )
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(details)
        .execute(&self.pool)
        .await
        .map_err(RecordError::query("write audit log"))?;
        Ok(())
    }

    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, RecordError> {
        sqlx::query_as("SELECT * FROM audit_log ORDER BY id DESC LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(RecordError::query("read audit log"))
    }
}

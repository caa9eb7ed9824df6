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

impl Record {
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

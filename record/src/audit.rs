//! The audit log of operator actions.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use sqlx::postgres::PgPoolCopyExt;

use crate::{Record, RecordError, copy_text};

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
    /// Writes many entries in one `COPY`: the API's enqueues are audited in batches so a
    /// request does not wait for a Postgres round trip, and `COPY` keeps the server's share of
    /// auditing every enqueue small (it competes with the queue for the same cores).
    pub async fn audit_batch(&self, entries: &[NewAudit]) -> Result<(), RecordError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut data = Vec::with_capacity(entries.len() * 160);
        let mut details = Vec::with_capacity(128);
        for e in entries {
            details.clear();
            serde_json::to_writer(&mut details, &e.details)
                .expect("a JSON value always serializes");
            let details = std::str::from_utf8(&details).expect("serde_json writes UTF-8");
            let at = e.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            copy_text::line(
                &mut data,
                &[
                    Some(at.as_str()),
                    Some(&e.actor),
                    Some(&e.action),
                    e.target.as_deref(),
                    Some(details),
                ],
            );
        }
        let write = async {
            let mut copy = self
                .pool
                .copy_in_raw("COPY audit_log (at, actor, action, target, details) FROM STDIN")
                .await?;
            copy.send(data).await?;
            copy.finish().await
        };
        write.await.map_err(RecordError::query("write audit log"))?;
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

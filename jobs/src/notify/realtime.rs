//! Realtime fan-out: a committed in-app row is published as JSON on Redis pub/sub channel
//! `PREFIX:USER_ID` (and with `realtime_pg`, `pg_notify` on the same channel name) for the
//! app's WebSocket layer. A publish never fails or holds up the delivery beyond
//! `notify.realtime_timeout`: the row is committed, so a missed publish is logged, recorded on
//! the delivery (`realtime_missed`) and counted by `/metrics`
//! (`ferry_notify_realtime_missed_total`); the app finds the row on its next read.

use serde_json::Value;

use super::Notifier;

impl Notifier {
    pub(super) async fn publish(&self, key: &str, user: &Value, row: &Value) {
        let n = &self.config.notify;
        let Some(prefix) = &n.realtime else { return };
        let user = match user {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let channel = format!("{prefix}:{user}");
        let payload = row.to_string();
        let mut missed = Vec::new();
        let redis = async {
            let queue = self
                .queue
                .as_ref()
                .ok_or("no Redis connection in this process")?;
            queue
                .publish(&channel, &payload)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        };
        if let Err(e) = within(n.realtime_timeout, redis).await {
            missed.push(format!("Redis: {e}"));
        }
        if n.realtime_pg {
            let pg = async {
                let app = self.app().map_err(|e| e.to_string())?;
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(&channel)
                    .bind(&payload)
                    .execute(app)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(())
            };
            if let Err(e) = within(n.realtime_timeout, pg).await {
                missed.push(format!("pg_notify: {e}"));
            }
        }
        if missed.is_empty() {
            return;
        }
        let why = missed.join("; ");
        tracing::warn!(channel, error = %why, "realtime publish missed; the in-app row is written");
        if let Err(e) = self.record.delivery_realtime_missed(key, &why).await {
            tracing::warn!(error = %e, "could not record the missed realtime publish");
        }
    }
}

async fn within(
    limit: std::time::Duration,
    f: impl Future<Output = Result<(), String>>,
) -> Result<(), String> {
    tokio::time::timeout(limit, f).await.unwrap_or_else(|_| {
        Err(format!(
            "no answer within {}",
            humantime::format_duration(limit)
        ))
    })
}

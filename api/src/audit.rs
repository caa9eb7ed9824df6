//! The API's audit trail, written in batches: each request hands its entry to a channel and
//! one task writes whatever has gathered in a single COPY, so auditing every enqueue costs
//! the request no Postgres round trip. Entries wait in memory while Postgres is unreachable
//! and are retried; a full channel slows enqueues down (backpressure) rather than losing them.

use std::time::Duration;

use chrono::Utc;
use ferry_record::{NewAudit, Record};
use tokio::{sync::mpsc, task::JoinHandle};

/// Entries waiting at most; past this enqueues wait for the writer.
const CAPACITY: usize = 100_000;
/// Entries per COPY at most.
const BATCH: usize = 2_000;
/// How long the writer gathers after the first entry of a batch: under load, fewer and larger
/// COPYs (one commit, one WAL flush each) cost Postgres less per entry; an entry reaches the
/// table at most this much later.
const LINGER: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
pub struct AuditSink(mpsc::Sender<NewAudit>);

fn entry(
    actor: &str,
    action: &str,
    target: Option<String>,
    details: serde_json::Value,
) -> NewAudit {
    NewAudit {
        at: Utc::now(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        target,
        details,
    }
}

impl AuditSink {
    /// The sink and its writer task, which ends once every sink is dropped and the last
    /// entries are written.
    pub fn start(record: Record) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(CAPACITY);
        (Self(tx), tokio::spawn(write(record, rx)))
    }

    /// Queues an entry, waiting while the channel is full.
    pub async fn send(
        &self,
        actor: &str,
        action: &str,
        target: Option<String>,
        details: serde_json::Value,
    ) {
        if self
            .0
            .send(entry(actor, action, target, details))
            .await
            .is_err()
        {
            tracing::error!(action, "audit writer has stopped; entry not written");
        }
    }

    /// Queues an entry without waiting (refusals: a flood of them must not slow the API);
    /// when the channel is full the entry is dropped and said so.
    pub fn try_send(
        &self,
        actor: &str,
        action: &str,
        target: Option<String>,
        details: serde_json::Value,
    ) {
        if self
            .0
            .try_send(entry(actor, action, target, details))
            .is_err()
        {
            tracing::warn!(action, "audit backlog full; a refusal was not recorded");
        }
    }
}

async fn write(record: Record, mut rx: mpsc::Receiver<NewAudit>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if batch.len() < BATCH {
            tokio::time::sleep(LINGER).await;
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(entry) => batch.push(entry),
                    Err(_) => break,
                }
            }
        }
        let mut wait = Duration::from_millis(100);
        while let Err(e) = record.audit_batch(&batch).await {
            tracing::warn!(error = %e, entries = batch.len(), "audit log write failed; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
        batch.clear();
    }
}

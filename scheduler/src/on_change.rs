//! The `[[on_change]]` relay loop: captured changes become the rules' jobs. Every scheduler
//! replica runs it; `FOR UPDATE SKIP LOCKED` in `relay_once` lets them share it, and each
//! job's idempotency key (`change:TABLE:PK:VERSION:RULE`) keeps a change from starting its job
//! twice.

use std::{sync::Arc, time::Duration};

use ferry_jobs::{
    Registry,
    events::{Rules, relay::relay_once},
};
use ferry_queue::Queue;
use ferry_record::Record;
use tokio_util::sync::CancellationToken;

pub async fn run(
    record: Record,
    queue: Queue,
    registry: Arc<Registry>,
    rules: Rules,
    every: Duration,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let mut pause = every;
        match relay_once(&record, &queue, &registry, &rules).await {
            Ok(r) if r.changes == 0 => {}
            Ok(r) => {
                tracing::debug!(
                    changes = r.changes,
                    jobs = r.jobs,
                    failed = r.failed,
                    "relayed changes to on_change rules"
                );
                // More may be waiting: a backlog drains without pauses.
                pause = Duration::ZERO;
            }
            Err(e) => tracing::warn!(error = %e, "relaying changes to on_change rules failed"),
        }
        crate::pause(pause, &shutdown).await;
    }
}

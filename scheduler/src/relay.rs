//! The change relay loop: trigger-captured rows become coalesced `sync.entity` jobs. Every
//! scheduler replica runs it; `FOR UPDATE SKIP LOCKED` in `relay_once` lets them share it.

use std::{sync::Arc, time::Duration};

use ferry_jobs::{Registry, sync::relay::relay_once};
use ferry_queue::Queue;
use ferry_record::Record;
use tokio_util::sync::CancellationToken;

pub async fn run(
    record: Record,
    queue: Queue,
    registry: Arc<Registry>,
    every: Duration,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let mut pause = every;
        match relay_once(&record, &queue, &registry).await {
            Ok((0, _)) => {}
            Ok((changes, jobs)) => {
                tracing::debug!(changes, jobs, "relayed captured changes");
                // More may be waiting: a backlog drains without pauses.
                pause = Duration::ZERO;
            }
            Err(e) => tracing::warn!(error = %e, "relaying captured changes failed"),
        }
        crate::pause(pause, &shutdown).await;
    }
}

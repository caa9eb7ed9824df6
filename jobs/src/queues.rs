//! Operator actions on whole queues, shared by the CLI, the API and the dashboard: pause and
//! resume. A paused queue keeps accepting jobs; no worker starts new ones; running ones finish.

use ferry_queue::Queue;
use ferry_record::Record;
use serde_json::json;

use crate::{Registry, manage::ManageError};

/// Pauses (`paused`) or resumes queue `name` and audits it as `actor`'s `queue.pause` or
/// `queue.resume`. The name must be a queue some kind travels on: an unknown name would pause
/// nothing and say nothing. Returns whether the state changed.
pub async fn set_paused(
    queue: &Queue,
    record: &Record,
    registry: &Registry,
    name: &str,
    paused: bool,
    actor: &str,
) -> Result<bool, ManageError> {
    let known = registry.queues();
    if !known.contains(name) {
        return Err(ManageError::NotFound(format!(
            "no queue {name:?}; the kinds travel on: {}",
            known.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    let changed = if paused {
        queue.pause(name).await?
    } else {
        queue.resume(name).await?
    };
    let action = if paused {
        "queue.pause"
    } else {
        "queue.resume"
    };
    record
        .audit(actor, action, Some(name), json!({ "changed": changed }))
        .await?;
    Ok(changed)
}

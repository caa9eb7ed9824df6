//! import: MongoDB collections into existing PostgreSQL tables, the move away from MongoDB.
//!
//! - [`mapping::plan`] checks `[import]` against the catalog and a sample of each collection
//!   and resolves every target column to its source, parents before children.
//! - `import.run` takes the collections in that order; for each it splits the `_id` range into
//!   `import.chunk` jobs and waits for them before the next collection, so references always
//!   find their rows. Chunks read in `_id` order, convert ([`convert`]), upsert by the mapped
//!   id skipping unchanged rows ([`write`]), and checkpoint the last id under their lease.
//! - A document that cannot become a row is a reject in schema `ferry` with its reason, so
//!   imported + rejected = source count ([`verify`]).

pub mod catalog;
mod chunk;
pub mod convert;
pub mod copy;
pub mod ids;
pub mod mapping;
pub mod propose;
pub mod read;
pub mod rejects;
pub mod rows;
mod run;
pub mod status;
pub mod verify;
pub mod write;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub use chunk::{Chunk, ChunkArgs};
pub use mapping::CollectionPlan;
pub use run::{Run, RunArgs, RunCheckpoint};

use crate::sync::{SyncError, Target};

/// The queue import jobs travel on.
pub const QUEUE: &str = "import";

/// How long chunks reuse a resolved plan: planning samples every collection.
const PLAN_REUSE: Duration = Duration::from_secs(30);

type CachedPlan = (String, Instant, Arc<Vec<CollectionPlan>>);

static RECENT: Mutex<Vec<CachedPlan>> = Mutex::new(Vec::new());

/// The plan of every configured collection, resolved at most [`PLAN_REUSE`] ago for this
/// MongoDB database and target schema.
pub async fn recent_plan(
    target: &Target,
    config: &ferry_config::Config,
) -> Result<Arc<Vec<CollectionPlan>>, SyncError> {
    let key = format!(
        "{}|{}|{}",
        target.mongo.name(),
        config.postgres.url.as_deref().unwrap_or_default(),
        config.import.schema
    );
    if let Some((_, _, plan)) = RECENT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(k, at, _)| *k == key && at.elapsed() < PLAN_REUSE)
    {
        return Ok(plan.clone());
    }
    let plan = Arc::new(mapping::plan(target, &config.import).await?);
    let mut recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    recent.retain(|(k, at, _)| *k != key && at.elapsed() < PLAN_REUSE);
    recent.push((key, Instant::now(), plan.clone()));
    Ok(plan)
}

/// The named collections of `plans` (all when empty), keeping the plan's order.
pub fn select<'a>(
    plans: &'a [CollectionPlan],
    names: &[String],
) -> Result<Vec<&'a CollectionPlan>, SyncError> {
    for n in names {
        if !plans.iter().any(|p| &p.name == n) {
            return Err(SyncError::Config(format!(
                "unknown collection {n:?}; [import] configures: {}",
                plans
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(plans
        .iter()
        .filter(|p| names.is_empty() || names.contains(&p.name))
        .collect())
}

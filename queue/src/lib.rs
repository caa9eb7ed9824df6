//! ferry's job queue on Redis Streams, and the apalis backend that feeds workers from it.
//!
//! Layout of one queue (all keys share the hash tag `{queue}`, so a Redis Cluster holds a
//! queue in one slot):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:{q}:stream` | stream, group `workers` | one entry per due attempt (just the job id); acknowledged entries are dropped by whole nodes (`XTRIM MINID`) behind the oldest pending one, not one by one |
//! | `P:{q}:stream:high`, `:stream:low` | streams, group `workers` | the same for high and low priority jobs |
//! | `P:{q}:paused` | string | present while the queue is paused: no worker starts its jobs |
//! | `P:{q}:tq:T` | list | tenant T's jobs waiting for admission to the streams |
//! | `P:{q}:tring` | list | tenants with waiting jobs, in round-robin order |
//! | `P:{q}:tadm` | hash | per tenant: its stream entries (ready or running) |
//! | `P:{q}:delayed` | sorted set | scheduled and retrying job ids by due time |
//! | `P:{q}:job:ID` | hash | kind, args, state, attempts, times, last error |
//! | `P:{q}:err:ID` | list | every failed attempt's error |
//! | `P:{q}:idem:KEY` | string | the job id an idempotency key created |
//! | `P:{q}:stats` | hash | per kind and state counts |
//! | `P:{q}:metrics` | hash | per kind counters and histogram buckets for `/metrics` |
//! | `P:{q}:workers` | sorted set | live worker ids by last heartbeat |
//! | `P:{q}:idx:STATE` | sorted set | scheduled, retrying and finished job ids by due (finish) time, for listing and retention; waiting and running jobs are listed from the streams and backlogs |
//!
//! Every state change is one Lua script, so counters, hashes and the stream move together.

mod ack;
mod backend;
mod client;
mod conn;
mod error;
mod flow;
mod job;
mod keys;
mod limit;
mod listing;
mod memory;
mod metrics;
mod rate;
mod scripts;

pub use ack::{AckLayer, FailureRule};
pub use backend::{BackendOptions, StreamBackend};
pub use client::{CancelResult, Queue, QueueStats, RequeueResult};
pub use conn::Conn;
pub use error::QueueError;
pub use flow::TenantLoad;
pub use job::{
    AttemptError, Finished, Job, JobRecord, JobState, NewJob, Outcome, Priority, check_tenant,
    now_us,
};
pub use keys::Keys;
pub use limit::Permit;
pub use listing::JobFilter;
pub use memory::QueueMemory;
pub use metrics::{BUCKETS_MS, Histogram, KindMetrics};
pub use rate::{HOLD_AFTER, LATE_OK, SNOOZE_LEAD, Slot};

/// The consumer group every worker of a queue joins.
pub const GROUP: &str = "workers";

//! The job contract and ferry's job kinds.
//!
//! A kind is a stable name, a small argument type, defaults for retries, timeout and
//! concurrency, and an async `run`. A run returns success or a [`JobError`] that says what
//! happens next: retry, give up, snooze, stop.
//!
//! ```
//! use ferry_jobs::{JobContext, JobError, Kind, Settings};
//!
//! struct Greet;
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct GreetArgs { name: String }
//!
//! impl Kind for Greet {
//!     const NAME: &'static str = "greet";
//!     type Args = GreetArgs;
//!     fn defaults() -> Settings { Settings::default() }
//!     async fn run(&self, args: GreetArgs, _ctx: JobContext) -> Result<(), JobError> {
//!         if args.name.is_empty() {
//!             return Err(JobError::permanent("name is empty"));
//!         }
//!         Ok(())
//!     }
//! }
//! ```

mod backoff;
pub mod backup;
mod context;
pub mod diag;
pub mod enqueue;
mod error;
pub mod events;
pub mod files;
pub mod http;
pub mod import;
mod kind;
pub mod maintenance;
pub mod manage;
pub mod notify;
pub mod put_stream;
pub mod queues;
pub mod readiness;
mod registry;
pub mod row_security;
pub mod sql;
pub mod store;
pub mod sync;

pub use backoff::Backoff;
pub use context::{Deps, JobContext};
pub use error::{Cause, Failure, JobError, ResultExt, chain};
pub use kind::{CheckError, Kind, Settings};
pub use registry::{Entry, Registry, UnknownKind};

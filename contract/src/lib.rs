//! The job contract: what a kind of job is and what it may count on, apart from the kinds
//! ferry ships (`ferry-jobs`), so a program of your own can define kinds against it alone and
//! run them on `ferry_worker::run_with` beside the built-in ones.
//!
//! A kind is a stable name, a small argument type, defaults for retries, timeout and
//! concurrency, and an async `run`. A run returns success or a [`JobError`] that says what
//! happens next: retry, give up, snooze, stop. A kind builds the clients it needs on first use
//! and keeps them for the life of the worker process in [`Clients`].
//!
//! ```
//! use ferry_contract::{JobContext, JobError, Kind, Settings};
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
//!
//! Jobs enter the queue through [`enqueue`]: `enqueue::typed::<K>(registry, origin, &args,
//! keys)` checks them like every other enqueue (the kind's `[kinds.NAME]` settings, its
//! queue, the caller's key namespace) and `enqueue::submit` sends them.

mod backoff;
mod clients;
mod context;
pub mod enqueue;
mod error;
mod kind;
mod rate;
mod registry;

pub use backoff::Backoff;
pub use clients::Clients;
pub use context::{Deps, JobContext};
pub use error::{Cause, Failure, JobError, ResultExt, chain};
pub use kind::{CheckError, Kind, Settings};
pub use registry::{Entry, Registry, UnknownKind};

//! ferry's built-in job kinds (sync, backup, files, notify, sql, http, import, maintenance and
//! the diagnostic ones), written against the job contract of `ferry-contract`, which this
//! crate re-exports so `ferry_jobs::Kind` and `ferry_jobs::enqueue` keep working.
//!
//! [`builtin`] is a registry of every built-in kind; a program of your own adds its kinds to
//! it and hands it to `ferry_worker::run_with`.

pub mod backup;
mod builtin;
pub mod diag;
pub mod events;
pub mod files;
pub mod http;
pub mod import;
pub mod maintenance;
pub mod manage;
pub mod notify;
pub mod put_stream;
pub mod queues;
pub mod readiness;
pub mod row_security;
pub mod sql;
pub mod store;
pub mod sync;

pub use builtin::{builtin, registry};
pub use ferry_contract::{
    Backoff, Cause, CheckError, Clients, Deps, Entry, Failure, JobContext, JobError, Kind,
    Registry, ResultExt, Settings, UnknownKind, chain, enqueue,
};

//! Diagnostic kinds for tests, benchmarks and operators checking a deployment.

mod fail;
mod noop;
mod sleep;
mod trace;

pub use fail::{Fail, FailArgs};
pub use noop::{Noop, NoopArgs};
pub use sleep::{Sleep, SleepArgs, SleepCheckpoint};

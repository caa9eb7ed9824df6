use serde::{Deserialize, Serialize};

use crate::{JobContext, JobError, Kind, Settings};

/// Does nothing: measures the queue itself.
pub struct Noop;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoopArgs {}

impl Kind for Noop {
    const NAME: &'static str = "noop";
    type Args = NoopArgs;

    fn defaults() -> Settings {
        Settings::default()
    }

    async fn run(&self, _: NoopArgs, _: JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

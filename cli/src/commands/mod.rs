pub mod enqueue;
pub mod jobs;
pub mod notify;
pub mod runs;
pub mod stats;
pub mod sync;
pub mod wait;
pub mod worker;

//! Exit codes of the contract: 0 success, 1 the work failed or a check found a difference,
//! 2 bad usage or configuration.

use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Ok,
    Failed,
    Usage,
}

impl From<Code> for ExitCode {
    fn from(code: Code) -> Self {
        ExitCode::from(match code {
            Code::Ok => 0,
            Code::Failed => 1,
            Code::Usage => 2,
        })
    }
}

/// An error with the exit code it deserves.
#[derive(Debug)]
pub struct Exit {
    pub code: Code,
    pub message: String,
}

impl Exit {
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: Code::Usage,
            message: message.into(),
        }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            code: Code::Failed,
            message: message.into(),
        }
    }
}

impl From<ferry_config::ConfigError> for Exit {
    fn from(e: ferry_config::ConfigError) -> Self {
        Self::usage(e.to_string())
    }
}

impl From<ferry_record::RecordError> for Exit {
    fn from(e: ferry_record::RecordError) -> Self {
        use ferry_record::RecordError as E;
        match e {
            E::NotConfigured | E::BadUrl(_) | E::Connect(_) | E::NotMigrated(_) => {
                Self::usage(e.to_string())
            }
            e => Self::failed(e.to_string()),
        }
    }
}

impl From<ferry_queue::QueueError> for Exit {
    fn from(e: ferry_queue::QueueError) -> Self {
        use ferry_queue::QueueError as E;
        match e {
            E::BadUrl(_) | E::Unreachable(_) => Self::usage(e.to_string()),
            e => Self::failed(e.to_string()),
        }
    }
}

impl From<ferry_worker::WorkerError> for Exit {
    fn from(e: ferry_worker::WorkerError) -> Self {
        use ferry_worker::WorkerError as E;
        match e {
            E::Config(e) => e.into(),
            E::Record(e) => e.into(),
            E::Queue(e) => e.into(),
            e => Self::failed(e.to_string()),
        }
    }
}

impl From<ferry_scheduler::SchedulerError> for Exit {
    fn from(e: ferry_scheduler::SchedulerError) -> Self {
        use ferry_scheduler::SchedulerError as E;
        match e {
            E::Config(e) => e.into(),
            E::Record(e) => e.into(),
            E::Queue(e) => e.into(),
            e => Self::failed(e.to_string()),
        }
    }
}

pub type Result<T, E = Exit> = std::result::Result<T, E>;

/// Work a command ran in-process (verify, restore, prune) failed the way a job would.
impl From<ferry_jobs::JobError> for Exit {
    fn from(e: ferry_jobs::JobError) -> Self {
        Self::failed(e.to_string())
    }
}

impl From<ferry_jobs::manage::ManageError> for Exit {
    fn from(e: ferry_jobs::manage::ManageError) -> Self {
        use ferry_jobs::manage::ManageError as E;
        match e {
            E::Queue(e) => e.into(),
            E::Record(e) => e.into(),
            E::NotFound(m) => Self::failed(m),
        }
    }
}

impl From<ferry_api::ServeError> for Exit {
    fn from(e: ferry_api::ServeError) -> Self {
        use ferry_api::ServeError as E;
        match e {
            E::Config(e) => e.into(),
            E::Record(e) => e.into(),
            E::Queue(e) => e.into(),
            e => Self::failed(e.to_string()),
        }
    }
}

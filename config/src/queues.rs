//! `[queues.NAME]`: per-queue retention of finished jobs in Redis. Finished jobs are kept for
//! inspection (`jobs ls`, `jobs show`) by count and by age, whichever retires them first;
//! failures stay durable in PostgreSQL whatever Redis keeps.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ConfigError, duration, is_identifier};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// Overrides `worker.keep_finished` for this queue.
    #[serde(default, with = "duration::option")]
    pub keep_finished: Option<Duration>,
    /// Overrides `worker.keep_finished_count` for this queue.
    pub keep_finished_count: Option<usize>,
    /// Overrides `worker.concurrency` for this queue.
    pub concurrency: Option<usize>,
}

/// Jobs at once on the `default` queue when neither `[queues.default] concurrency` nor
/// `worker.concurrency` is set: its built-in kinds are short (noop, sleep, fail) or limited
/// per kind (sql, maintenance.prune), and at 64 the no-op throughput was well below what
/// Redis gives (bench/RESULTS.md, issue 22). Every other queue keeps `worker.concurrency`'s
/// 64: those queues belong to kinds that wait on other systems (webhooks, SMTP, S3, MongoDB,
/// backups), where more slots mean more load on that system, not more throughput.
pub const DEFAULT_QUEUE_CONCURRENCY: usize = 512;

/// How long and how many finished jobs one queue keeps in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    pub age: Duration,
    /// Per final state (succeeded, cancelled, dead).
    pub count: usize,
}

impl crate::Config {
    /// The retention of `queue`: its `[queues.NAME]` settings over the worker's.
    pub fn keep(&self, queue: &str) -> Keep {
        let q = self.queues.get(queue);
        Keep {
            age: q
                .and_then(|q| q.keep_finished)
                .unwrap_or(self.worker.keep_finished),
            count: q
                .and_then(|q| q.keep_finished_count)
                .unwrap_or(self.worker.keep_finished_count),
        }
    }

    /// Jobs one worker process runs at once on `queue`: `[queues.NAME] concurrency`, else
    /// `worker.concurrency` if the file or the environment set it, else 512 on the `default`
    /// queue and `worker.concurrency`'s default (64) on the others.
    pub fn concurrency(&self, queue: &str) -> usize {
        let configured = self.queues.get(queue).and_then(|q| q.concurrency);
        let unset = self.source_of("worker.concurrency") == "default";
        configured.unwrap_or(if queue == "default" && unset {
            DEFAULT_QUEUE_CONCURRENCY
        } else {
            self.worker.concurrency
        })
    }

    pub(crate) fn validate_queues(&self) -> Result<(), ConfigError> {
        for (name, q) in &self.queues {
            if !is_identifier(name) {
                return Err(ConfigError::new(
                    format!("queues.{name}"),
                    "is not a plain name",
                    "use lower-case letters, digits and underscores",
                ));
            }
            if q.concurrency == Some(0) {
                return Err(ConfigError::new(
                    format!("queues.{name}.concurrency"),
                    "is 0",
                    "use 1 or more",
                ));
            }
            if q.keep_finished.is_some_and(|d| d.is_zero()) {
                return Err(ConfigError::new(
                    format!("queues.{name}.keep_finished"),
                    "is zero",
                    "give a duration such as \"1h\"",
                ));
            }
        }
        for (kind, o) in &self.kinds {
            if let Some(queue) = &o.queue
                && !is_identifier(queue)
            {
                return Err(ConfigError::new(
                    format!("kinds.{kind}.queue"),
                    format!("{queue:?} is not a plain name"),
                    "use lower-case letters, digits and underscores",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{Config, Env};

    #[test]
    fn queue_retention_overrides_the_worker_default() {
        let c = Config::from_toml_str(
            "[worker]\nkeep_finished_count = 500\n[queues.bulk]\nkeep_finished = \"1h\"\n",
            &Env::empty(),
        )
        .unwrap();
        assert_eq!(c.keep("bulk").age, Duration::from_secs(3600));
        assert_eq!(c.keep("bulk").count, 500);
        assert_eq!(c.keep("default").count, 500);
        let c = Config::from_toml_str(
            "[worker]\nconcurrency = 32\n[queues.http]\nconcurrency = 8\n",
            &Env::empty(),
        )
        .unwrap();
        assert_eq!((c.concurrency("default"), c.concurrency("http")), (32, 8));
        let e = Config::from_toml_str("[queues.http]\nconcurrency = 0\n", &Env::empty())
            .err()
            .unwrap();
        assert!(e.to_string().contains("queues.http.concurrency"), "{e}");
        let e = Config::from_toml_str("[kinds.noop]\nqueue = \"a b\"\n", &Env::empty())
            .err()
            .unwrap();
        assert!(e.to_string().contains("kinds.noop.queue"), "{e}");
    }
}

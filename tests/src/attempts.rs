//! What traced `sleep` jobs (`"trace": true`) wrote down about each attempt: the work each
//! one did, as evidence independent of the queue's and the record's own bookkeeping.

use uuid::Uuid;

use crate::TestEnv;

/// One attempt of a traced job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub job_id: Uuid,
    pub attempt: i32,
    /// The worker's identity, `host-PID-suffix`.
    pub worker: String,
    /// The step the attempt began at: 0 unless it resumed a checkpoint.
    pub from_step: i32,
    /// Steps it slept.
    pub steps: i32,
    pub completed: bool,
}

impl Attempt {
    /// Whether the worker process `pid` ran this attempt.
    pub fn ran_in(&self, pid: u32) -> bool {
        self.worker.contains(&format!("-{pid}-"))
    }
}

impl TestEnv {
    /// Every traced attempt of this test, oldest first.
    pub async fn attempts(&self) -> Vec<Attempt> {
        let rows: Vec<(Uuid, i32, String, i32, i32, bool)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT job_id, attempt, worker, from_step, steps, completed
                 FROM \"{}\".diag_attempts ORDER BY id",
                self.name
            )))
            .fetch_all(self.record.pool())
            .await
            .unwrap();
        rows.into_iter()
            .map(
                |(job_id, attempt, worker, from_step, steps, completed)| Attempt {
                    job_id,
                    attempt,
                    worker,
                    from_step,
                    steps,
                    completed,
                },
            )
            .collect()
    }

    /// The traced attempts of job `id`, oldest first.
    pub async fn attempts_of(&self, id: Uuid) -> Vec<Attempt> {
        let mut all = self.attempts().await;
        all.retain(|a| a.job_id == id);
        all
    }
}

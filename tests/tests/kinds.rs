//! `[kinds.NAME]` overrides reach every job of the kind, including the ones ferry enqueues
//! itself: a full sync's chunks take the chunk kind's `max_attempts` and `queue`, and the
//! sync follows them on that queue to the end.

use std::time::{Duration, Instant};

use ferry_queue::JobState;
use ferry_tests::TestEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_override_applies_to_the_chunks_a_full_sync_enqueues() {
    let env = TestEnv::new(
        "[sync]\nschemas = [\"{schema}\"]\nchunk_size = 100\npages_per_chunk = 1\n\
         [kinds.\"sync.chunk\"]\nmax_attempts = 2\nqueue = \"bulk\"\n",
    )
    .await;
    env.sql(
        "CREATE TABLE items (id int8 PRIMARY KEY, name text);
         INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 450) i;",
    )
    .await;
    let worker = env.start_worker();
    let out = env.ferry(&["--json", "sync", "full"]);
    assert!(out.status.success(), "{out:?}");
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id: uuid::Uuid = job["id"].as_str().unwrap().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = env.queue.job("sync", id).await.unwrap().unwrap();
        if job.state.is_final() {
            assert_eq!(job.state, JobState::Succeeded, "{job:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "full sync did not finish: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let runs = env.record.runs(None, 1000).await.unwrap();
    let chunks: Vec<_> = runs.iter().filter(|r| r.kind == "sync.chunk").collect();
    // 450 rows in chunks of 100: four bounds and the open range after the last.
    assert_eq!(chunks.len(), 5, "{runs:#?}");
    for chunk in chunks {
        let job = env.queue.job("bulk", chunk.id).await.unwrap();
        let job = job.unwrap_or_else(|| panic!("chunk {} is not on queue bulk", chunk.id));
        assert_eq!(
            (job.max_attempts, job.state),
            (2, JobState::Succeeded),
            "{job:?}"
        );
        assert!(env.queue.job("sync", chunk.id).await.unwrap().is_none());
    }
    worker.stop().await;
    env.cleanup().await;
}

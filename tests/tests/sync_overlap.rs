//! Writers of one document that overlap: on-write `sync.entity` jobs with each other, and with
//! a full sync's pages. Mongo writes wait for a shared permit in no set order, so a job that
//! read a row first may write last; the mirror must still end at each row as it is.

use std::time::{Duration, Instant};

use ferry_tests::{
    TestEnv,
    sync::{SCHOOL, ok, text_of, verify_deep},
};

/// Jobs for one row that overlap may write in another order than they read; the document
/// must still end at the row's last version. Each round queues jobs for the row in a burst,
/// changes the row, and queues one more; once all finished the document must match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_jobs_for_one_row_leave_its_last_version_in_the_mirror() {
    // One writer at a time: the jobs of a burst queue for it in no set order.
    let env = TestEnv::new(&SCHOOL.replace("[sync]", "[sync]\nmax_writers = 1")).await;
    env.load_school().await;
    let worker = env.start_worker();
    ok(&env.ferry(&["sync", "full", "--wait"]));
    let s = env.app_schema();
    env.sql(&format!(
        "UPDATE \"{s}\".courses SET title = 'Race' WHERE id = (SELECT min(id::text)::uuid FROM \"{s}\".courses)"
    ))
    .await;
    let id = text_of(&env, "SELECT min(id::text) FROM courses").await;
    let args = serde_json::json!({"table": format!("{s}.courses"), "key": {"id": id}}).to_string();
    let courses = env
        .mongo()
        .await
        .collection::<mongodb::bson::Document>("courses");
    let mut jobs = 0;
    let mut stale = Vec::new();
    for round in 1..=15 {
        let burst: Vec<_> = (0..24).map(|_| env.job("sync.entity", &args).1).collect();
        env.queue.enqueue("sync", &burst).await.unwrap();
        // Let the burst read the row before it changes.
        tokio::time::sleep(Duration::from_millis(30)).await;
        env.sql(&format!(
            "UPDATE \"{s}\".courses SET max_students = {round} WHERE title = 'Race'"
        ))
        .await;
        env.enqueue("sync.entity", &args).await;
        jobs += 25;
        // Generous: in CI this test shares the one-process MongoDB stand-in with full syncs
        // of 30,000 rows, and one slow write holds the only writer slot.
        env.wait_for_count("sync.entity", "succeeded", jobs, Duration::from_secs(120))
            .await;
        let doc = courses
            .find_one(mongodb::bson::doc! {"title": "Race"})
            .await
            .unwrap()
            .expect("the course's document");
        let mirrored = doc.get("max_students").and_then(|v| v.as_i32());
        if mirrored != Some(round) {
            stale.push((round, mirrored));
        }
    }
    assert!(
        stale.is_empty(),
        "rounds whose document kept an older row (round, max_students): {stale:?}"
    );
    worker.stop().await;
    env.cleanup().await;
}

/// A full sync of a table the app changes while the sync's pages wait to be written, each
/// change followed by its on-write job (as an API server enqueues them). A page read before a
/// change and written after the change's own job must not leave the older row, or a deleted
/// one, in the mirror.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_racing_on_write_jobs_leaves_every_row_as_it_is() {
    // 12 chunks of 5 pages of 100 rows; a worker runs 8 chunks at once.
    let env = race("chunk_size = 100\npages_per_chunk = 5", "", 6000).await;
    // The test takes the only writer slot, so the chunks read their first page and wait.
    let slot = take_writer_slot(&env).await;
    let worker = env.start_worker();
    let full = start(&env, "full");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let runs = env.record.runs(Some("running"), 100).await.unwrap();
        if runs.iter().filter(|r| r.kind == "sync.chunk").count() == 8 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "8 chunks did not start: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Time to read their first page; a chunk still reading only makes the race narrower.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Change every 5th row of each chunk's first page, delete one row of each, and queue
    // their on-write jobs; they wait for the slot beside the pages that hold the old rows.
    let s = env.app_schema();
    env.sql(&format!(
        "UPDATE \"{s}\".items SET n = 1 WHERE (id - 1) % 500 < 100 AND id % 5 = 0;
         DELETE FROM \"{s}\".items WHERE id % 500 = 51;"
    ))
    .await;
    let changed: Vec<i64> = (1..=6000)
        .filter(|id| ((id - 1) % 500 < 100 && id % 5 == 0) || id % 500 == 51)
        .collect();
    queue_on_write(&env, &changed).await;
    // Chunks fill most of the worker's slots: give the jobs a moment to start instead.
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.queue.release(slot).await.unwrap();

    settled(
        &env,
        full,
        changed.len() as i64,
        "rows left older or deleted in the mirror",
    )
    .await;
    worker.stop().await;
    env.cleanup().await;
}

/// The same race for an incremental page, on a table with change triggers (so no key sweep
/// follows to clean up): rows deleted while the page that read them waits to be written must
/// not come back. Three rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_page_racing_deletes_does_not_bring_rows_back() {
    let env = race(
        "chunk_size = 100",
        ", updated_at timestamptz NOT NULL DEFAULT now()",
        1000,
    )
    .await;
    let worker = env.start_worker();
    ok(&env.ferry(&["sync", "full", "--wait"]));
    ok(&env.ferry(&["sync", "install-triggers"]));
    let s = env.app_schema();
    let mut deleted_jobs = 0;
    for round in 0..3 {
        // One statement: one updated_at, so the first page is the 100 lowest ids.
        env.sql(&format!(
            "UPDATE \"{s}\".items SET n = {round} + 1, updated_at = now()"
        ))
        .await;
        let (slot, job) = incremental_held_at_its_write(&env).await;
        let deleted: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "DELETE FROM \"{s}\".items WHERE id IN (SELECT id FROM \"{s}\".items ORDER BY id LIMIT 100)
               AND id % 5 = {round} RETURNING id"
        )))
        .fetch_all(env.record.pool())
        .await
        .unwrap();
        queue_on_write(&env, &deleted).await;
        deleted_jobs += deleted.len() as i64;
        // The worker has 15 slots beside the incremental job.
        release_once_waiting(&env, slot, (deleted.len() as i64).min(10)).await;
        settled(
            &env,
            job,
            deleted_jobs,
            &format!("round {round}: deleted rows back in the mirror"),
        )
        .await;
    }
    worker.stop().await;
    env.cleanup().await;
}

/// The key sweep (incremental sync of a table without change triggers) deletes documents
/// whose rows are gone. A row inserted again while that delete waits, and written by its
/// on-write job first, must not lose its document to the delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_back_while_the_sweep_deletes_keeps_its_document() {
    // No updated_at: incremental sync only sweeps this table.
    let env = race("", "", 1000).await;
    let worker = env.start_worker();
    ok(&env.ferry(&["sync", "full", "--wait"]));
    let s = env.app_schema();
    let gone: Vec<i64> = (1..=1000).filter(|id| id % 50 == 7).collect();
    env.sql(&format!("DELETE FROM \"{s}\".items WHERE id % 50 = 7"))
        .await;
    let (slot, job) = incremental_held_at_its_write(&env).await;
    env.sql(&format!(
        "INSERT INTO \"{s}\".items SELECT i, 1 FROM generate_series(1, 1000) i WHERE i % 50 = 7"
    ))
    .await;
    queue_on_write(&env, &gone).await;
    release_once_waiting(&env, slot, 10).await;
    settled(
        &env,
        job,
        gone.len() as i64,
        "rows back without their documents",
    )
    .await;
    worker.stop().await;
    env.cleanup().await;
}

/// A test with one writer slot (`max_writers = 1`, plus `sync`, more `[sync]` settings), a
/// worker with room for on-write jobs beside the 8 chunks it runs at most, and a table
/// `items (id, n, columns)` of `rows` rows.
async fn race(sync: &str, columns: &str, rows: i64) -> TestEnv {
    let env = TestEnv::new(&format!(
        "[worker]\nconcurrency = 16\n[sync]\nschemas = [\"{{schema}}\"]\nmax_writers = 1\n{sync}\n"
    ))
    .await;
    env.sql(&format!(
        "CREATE TABLE items (id int8 PRIMARY KEY, n int8 NOT NULL{columns});
         INSERT INTO items (id, n) SELECT i, 0 FROM generate_series(1, {rows}) i;"
    ))
    .await;
    env
}

/// Takes the only writer slot (`max_writers = 1`), so sync pages read and then wait.
async fn take_writer_slot(env: &TestEnv) -> ferry_queue::Permit {
    env.queue
        .acquire("mongo-writers", 1, Duration::from_secs(120))
        .await
        .unwrap()
}

/// Takes the writer slot, starts an incremental sync and gives it time to load the catalog
/// and read its first page (or, sweeping, find the rows gone): its first write then waits for
/// the slot. A job still reading only makes the race narrower.
async fn incremental_held_at_its_write(env: &TestEnv) -> (ferry_queue::Permit, uuid::Uuid) {
    let slot = take_writer_slot(env).await;
    let job = start(env, "incremental");
    env.wait_for(job, Duration::from_secs(60), |j| {
        j.state == ferry_queue::JobState::Running
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    (slot, job)
}

/// Starts `ferry sync WHAT` without waiting for it; its job.
fn start(env: &TestEnv, what: &str) -> uuid::Uuid {
    let out = env.ferry(&["--json", "sync", what]);
    ok(&out);
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    job["id"].as_str().unwrap().parse().unwrap()
}

/// Queues the on-write jobs for rows `ids` of `items`, as an API server does after writing.
async fn queue_on_write(env: &TestEnv, ids: &[i64]) {
    let table = format!("{}.items", env.app_schema());
    let jobs: Vec<_> = ids
        .iter()
        .map(|id| {
            let args = serde_json::json!({"table": table, "key": {"id": id}});
            env.job("sync.entity", &args.to_string()).1
        })
        .collect();
    env.queue.enqueue("sync", &jobs).await.unwrap();
}

/// Waits for sync job `job` to succeed and for `on_write` on-write jobs in all to have
/// succeeded, then checks the mirror equals the tables.
async fn settled(env: &TestEnv, job: uuid::Uuid, on_write: i64, what: &str) {
    let done = env
        .wait_for(job, Duration::from_secs(120), |j| j.state.is_final())
        .await;
    assert_eq!(done.state, ferry_queue::JobState::Succeeded, "{done:?}");
    env.wait_for_count(
        "sync.entity",
        "succeeded",
        on_write,
        Duration::from_secs(120),
    )
    .await;
    let (equal, report) = verify_deep(env).await;
    assert!(equal, "{what}: {report:#}");
}

/// Gives the writer slot back as soon as `waiting` on-write jobs wait for it: they have just
/// begun to poll for it, far more often than a page or a delete that has waited long, so
/// they write first.
async fn release_once_waiting(env: &TestEnv, slot: ferry_queue::Permit, waiting: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.count("sync.entity", "running").await < waiting {
        assert!(Instant::now() < deadline, "on-write jobs did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    env.queue.release(slot).await.unwrap();
}

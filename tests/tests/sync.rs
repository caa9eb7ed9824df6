//! sync against real Postgres and the MongoDB stand-in, checked by an independent script.

use std::time::{Duration, Instant};

use ferry_queue::JobState;
use ferry_tests::{
    TestEnv, signal,
    sync::{SCHOOL, ok, text_of, verify_deep, wait_until_equal},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_mirrors_the_school_schema_losslessly() {
    for timestamps in ["date", "iso"] {
        let env = TestEnv::new(&format!("{SCHOOL}\n")).await;
        let env = if timestamps == "iso" {
            env.cleanup().await;
            TestEnv::new(&SCHOOL.replace("[sync]", "[sync]\ntimestamps = \"iso\"")).await
        } else {
            env
        };
        env.load_school().await;
        let worker = env.start_worker();
        let out = env.ferry(&["sync", "full", "--wait"]);
        let text = ok(&out);
        assert!(text.contains("attendance_log has no primary key"), "{text}");

        let (code, report) = env.check_mirror(&[
            "--exclude",
            "profiles.password_hash",
            "--timestamps",
            timestamps,
        ]);
        assert_eq!(
            code, 0,
            "independent check failed ({timestamps}):\n{report}"
        );
        let (equal, report) = verify_deep(&env).await;
        assert!(equal, "{report:#}");

        let names = env.mongo().await.list_collection_names().await.unwrap();
        assert!(names.contains(&"live_classes".to_owned()));
        assert!(
            !names.iter().any(|n| n.starts_with("live_classes_")),
            "a partition was mirrored: {names:?}"
        );
        assert!(!names.contains(&"attendance_log".to_owned()));
        let run = env.ferry(&["--json", "runs", "ls", "--limit", "100"]);
        let runs: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        let full = runs
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == "sync.full")
            .unwrap();
        assert_eq!(full["done"], full["total"], "{full}");
        worker.stop().await;
        env.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_deletes_reach_the_mirror_by_incremental_sync_and_by_triggers() {
    let env = TestEnv::new(SCHOOL).await;
    env.load_school().await;
    let worker = env.start_worker();
    ok(&env.ferry(&["sync", "full", "--wait"]));

    // Without triggers: incremental sync by updated_at, and the key sweep for deletes.
    let course = text_of(&env, "SELECT min(id::text) FROM courses").await;
    let enrollment = text_of(&env, "SELECT min(id::text) FROM enrollments").await;
    env.sql(
        "UPDATE courses SET title = 'Renamed', updated_at = now() WHERE id = (SELECT min(id::text)::uuid FROM courses);
         INSERT INTO lessons (course_id, position, title, body, duration, resource_url, updated_at)
           SELECT course_id, 99, 'New lesson', 'b', '5 minutes', NULL, now() FROM lessons LIMIT 1;
         DELETE FROM enrollments WHERE id = (SELECT min(id::text)::uuid FROM enrollments);",
    )
    .await;
    let lesson = text_of(&env, "SELECT max(id)::text FROM lessons").await;
    // Verify fails for these three changes and no other: each table with its counts and the
    // key of the row that differs (the fixture has 10 courses, 60 lessons, 100 enrollments).
    let (equal, report) = verify_deep(&env).await;
    assert!(!equal, "verify must see the differences: {report:#}");
    let s = env.app_schema();
    assert_eq!(
        differing(&report),
        serde_json::json!({
            format!("{s}.courses"): {"rows": 10, "documents": 10, "missing": [], "different": [course], "extra": []},
            format!("{s}.lessons"): {"rows": 61, "documents": 60, "missing": [lesson], "different": [], "extra": []},
            format!("{s}.enrollments"): {"rows": 99, "documents": 100, "missing": [], "different": [], "extra": [enrollment]},
        }),
        "{report:#}"
    );
    ok(&env.ferry(&["sync", "incremental", "--wait"]));
    let (equal, report) = verify_deep(&env).await;
    assert!(equal, "{report:#}");

    // With triggers: every write is relayed (by the scheduler) into coalesced sync.entity jobs.
    let scheduler = env.start_scheduler();
    ok(&env.ferry(&["sync", "install-triggers"]));
    env.sql(
        "UPDATE profiles SET full_name = 'Zoë Ångström' WHERE id = (SELECT min(id::text)::uuid FROM profiles);
         DELETE FROM quiz_submissions WHERE id IN (SELECT id FROM quiz_submissions ORDER BY id LIMIT 3);
         INSERT INTO user_roles (user_id, role, granted_at) SELECT id, 'admin', now() FROM profiles
           WHERE role = 'student' LIMIT 2 ON CONFLICT DO NOTHING;
         UPDATE live_classes SET meeting_url = 'https://meet.example/x' WHERE id = (SELECT min(id::text)::uuid FROM live_classes);",
    )
    .await;
    wait_until_equal(&env, Duration::from_secs(15)).await;
    let (code, report) = env.check_mirror(&["--exclude", "profiles.password_hash"]);
    assert_eq!(code, 0, "{report}");

    // A burst of 1,000 committed updates to one row is coalesced into far fewer jobs.
    let before = entity_jobs(&env).await;
    let pool = env.record.pool().clone();
    let course: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT min(id::text) FROM \"{}\".courses",
        env.app_schema()
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    for i in 0..1000 {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE \"{}\".courses SET max_students = $1 WHERE id = $2::uuid",
            env.app_schema()
        )))
        .bind(i)
        .bind(&course)
        .execute(&pool)
        .await
        .unwrap();
    }
    wait_until_equal(&env, Duration::from_secs(15)).await;
    let jobs = entity_jobs(&env).await - before;
    // Coalescing merges changes only while a job waits, so the count depends on how quickly
    // the worker keeps up (9 to 123 seen); it must stay far below one job per update.
    assert!(jobs < 300, "1000 updates made {jobs} sync.entity jobs");
    eprintln!("1000 updates to one row -> {jobs} sync.entity jobs");
    scheduler.stop().await;
    worker.stop().await;
    env.cleanup().await;
}

/// The tables a `sync verify --deep --json` report calls different: rows, documents, and the
/// keys missing, different and extra (with a count that must equal the keys named).
fn differing(report: &serde_json::Value) -> serde_json::Value {
    let mut tables = serde_json::Map::new();
    for t in report["tables"].as_array().expect("a report with tables") {
        let keys = |what: &str| {
            let keys = t[what].clone();
            assert_eq!(
                t[format!("{what}_count")].as_u64(),
                keys.as_array().map(|k| k.len() as u64),
                "{what} counted and named differently: {t}"
            );
            keys
        };
        let entry = serde_json::json!({
            "rows": t["source_rows"],
            "documents": t["mirror_documents"],
            "missing": keys("missing"),
            "different": keys("different"),
            "extra": keys("extra"),
        });
        let same = entry["rows"] == entry["documents"]
            && ["missing", "different", "extra"]
                .iter()
                .all(|k| entry[k].as_array().is_some_and(|a| a.is_empty()));
        if !same {
            tables.insert(t["table"].as_str().unwrap().to_owned(), entry);
        }
    }
    serde_json::Value::Object(tables)
}

async fn entity_jobs(env: &TestEnv) -> i64 {
    let stats = env.queue.stats("sync").await.unwrap();
    stats
        .by_kind
        .get("sync.entity")
        .map(|s| {
            s.iter()
                .filter(|(k, _)| *k != "recovered")
                .map(|(_, v)| v)
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_resumes_a_full_sync_from_its_checkpoints() {
    // Chunks of 4 pages of 500 rows: a chunk killed after a page has a checkpoint to resume.
    let env = TestEnv::new(
        "[worker]\nconcurrency = 3\n[sync]\nschemas = [\"{schema}\"]\nchunk_size = 500\npages_per_chunk = 4\n",
    )
    .await;
    env.sql(
        "CREATE TABLE events (id int8, payload text, amount numeric(12,2), at timestamptz, PRIMARY KEY (id) INCLUDE (payload));
         INSERT INTO events SELECT i, md5(i::text), i / 7.0, '2024-01-01'::timestamptz + i * interval '1 second'
           FROM generate_series(1, 30000) i;",
    )
    .await;
    let mut first = env.spawn_worker_process("first");
    let out = env.ferry(&["--json", "sync", "full"]);
    let job: serde_json::Value =
        serde_json::from_slice(&ok(&out).lines().next().map(|_| out.stdout.clone()).unwrap())
            .unwrap();
    let id: uuid::Uuid = job["id"].as_str().unwrap().parse().unwrap();
    // Killed once a chunk is part-way (a page written, more to go) and 5000 rows are done.
    let midway = |r: &&ferry_record::RunRow| {
        r.kind == "sync.chunk" && r.state == "running" && r.done > 0 && r.done % 2000 != 0
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run = env.record.run(id).await.unwrap();
        let runs = env.record.runs(Some("running"), 1000).await.unwrap();
        if run.as_ref().is_some_and(|r| r.done >= 5000) && runs.iter().any(|r| midway(&r)) {
            break;
        }
        assert!(Instant::now() < deadline, "no progress: {run:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    signal(&first, "KILL");
    first.wait().unwrap();
    let done_at_kill = env.record.run(id).await.unwrap().unwrap().done;
    assert!(
        done_at_kill < 30000,
        "the sync finished before the kill; nothing to resume"
    );
    // Rows each chunk had checkpointed when its worker died. Finished ones count too: a chunk
    // that recorded its end but died before its job was acknowledged runs again, from its
    // last checkpoint, reading nothing.
    let chunks_at_kill: Vec<_> = env
        .record
        .runs(None, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == "sync.chunk")
        .collect();
    let at_kill: std::collections::HashMap<uuid::Uuid, i64> =
        chunks_at_kill.iter().map(|r| (r.id, r.done)).collect();
    assert!(
        chunks_at_kill
            .iter()
            .any(|r| r.state == "running" && r.done > 0),
        "no chunk was part-way at the kill: {chunks_at_kill:?}"
    );

    let mut second = env.spawn_with(&["--log-format", "json", "worker"], "second");
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
    let parent = env.record.run(id).await.unwrap().unwrap();
    assert_eq!(parent.done, 30000, "progress counted each row once");
    assert_eq!(parent.lease_epoch, 2, "the parent resumed from its plan");
    let runs = env.record.runs(None, 1000).await.unwrap();
    let chunks: Vec<_> = runs.iter().filter(|r| r.kind == "sync.chunk").collect();
    // 30000 rows / (500 x 4) = 15 ranges, plus the open range after the last bound (it takes
    // rows inserted after planning); planned once although the planner's worker was killed.
    assert_eq!(chunks.len(), 16);
    let redone: Vec<_> = chunks.iter().filter(|r| r.lease_epoch > 1).collect();
    assert!(
        redone.len() <= 3,
        "{} chunks were resumed; at most the 3 in flight",
        redone.len()
    );
    // The work itself: what the second worker read for each chunk it resumed (its own log
    // line), which must be what remained after the chunk's checkpoint, never the whole chunk.
    let log = std::fs::read_to_string(env.log_path("second")).unwrap();
    let done_lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "chunk done")
        .collect();
    for chunk in &redone {
        let checkpointed = at_kill[&chunk.id];
        let line = done_lines
            .iter()
            .find(|l| l["fields"]["job"] == chunk.id.to_string().as_str())
            .unwrap_or_else(|| panic!("no \"chunk done\" line for {}:\n{log}", chunk.id));
        assert_eq!(
            line["fields"]["resumed_at"], checkpointed,
            "chunk {} resumed from another row: {line}",
            chunk.id
        );
        assert_eq!(
            line["fields"]["read"],
            chunk.done - checkpointed,
            "chunk {} redid work it had checkpointed: {line}",
            chunk.id
        );
    }
    assert!(
        redone.iter().any(|c| at_kill[&c.id] > 0),
        "no resumed chunk started from a checkpoint: {at_kill:?}"
    );
    // Checked independently first: ferry's verify maps rows with the same code that wrote the
    // documents, so it cannot see a mapping mistake or a duplicate the kill left behind.
    let (code, report) = env.check_mirror(&[]);
    assert_eq!(code, 0, "independent check failed:\n{report}");
    assert!(report.contains("ok: 30000 rows in 1 tables"), "{report}");
    let (equal, report) = verify_deep(&env).await;
    assert!(equal, "{report:#}");
    signal(&second, "TERM");
    assert!(second.wait().unwrap().success());
    env.cleanup().await;
}

/// The independent checker pairs documents with rows by the text of their key. A second
/// document for one row (a string `_id` beside the Int64 one; a composite key with its fields
/// in another order) is a different `_id` to MongoDB, so it must be reported, not hidden
/// behind the document that happens to be compared. (Int32 and Int64 `_id`s of one value
/// cannot both exist: MongoDB's index compares numbers by value.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_independent_checker_reports_duplicate_documents() {
    let env = TestEnv::new("[sync]\nschemas = [\"{schema}\"]\n").await;
    env.sql(
        "CREATE TABLE items (id int8 PRIMARY KEY, name text);
         INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 5) i;
         CREATE TABLE pairs (a int4, b int4, note text, PRIMARY KEY (a, b));
         INSERT INTO pairs SELECT i, i + 1, 'pair ' || i FROM generate_series(1, 3) i;",
    )
    .await;
    let worker = env.start_worker();
    ok(&env.ferry(&["sync", "full", "--wait"]));
    worker.stop().await;
    let (code, report) = env.check_mirror(&[]);
    assert_eq!(code, 0, "{report}");

    // Each duplicate goes in before the document it duplicates, so a checker that keeps the
    // last document per key compares the right one and finds nothing wrong.
    let mongo = env.mongo().await;
    for (collection, id, duplicate) in [
        ("items", bson::bson!(2_i64), bson::bson!("2")),
        (
            "pairs",
            bson::bson!({ "a": 1, "b": 2 }),
            bson::bson!({ "b": 2, "a": 1 }),
        ),
    ] {
        let coll = mongo.collection::<bson::Document>(collection);
        let filter = bson::doc! { "_id": id };
        let original = coll.find_one(filter.clone()).await.unwrap().unwrap();
        coll.delete_one(filter).await.unwrap();
        let mut copy = original.clone();
        copy.insert("_id", duplicate);
        coll.insert_one(copy).await.unwrap();
        coll.insert_one(original).await.unwrap();
    }
    let (code, report) = env.check_mirror(&[]);
    assert_eq!(code, 1, "{report}");
    for line in [
        "items[_id=2]: 2 documents for one row: \"2\", Int64 2",
        "items: 6 documents (found 6) for 5 rows",
        "pairs[_id=a=1,b=2]: 2 documents for one row",
        "pairs: 4 documents (found 4) for 3 rows",
    ] {
        assert!(report.contains(line), "{line:?} not in:\n{report}");
    }
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sync_input_is_refused_clearly() {
    let env = TestEnv::new(SCHOOL).await;
    env.load_school().await;
    let cases: &[(&[&str], &str)] = &[
        (&["sync", "full", "--tables", "nope"], "unknown table"),
        (&["sync", "entity", "attendance_log", "x"], "no primary key"),
        (&["sync", "entity", "user_roles", "x"], "JSON object"),
    ];
    for (args, message) in cases {
        let out = env.ferry(args);
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
        assert!(text.contains(message), "{args:?}: {text}");
    }
    let bad = TestEnv::new("[sync]\nschemas = [\"{schema}\"]\n[[sync.table]]\nname = \"{schema}.courses\"\nexclude_columns = [\"nope\"]\n").await;
    bad.load_school().await;
    let out = bad.ferry(&["sync", "full"]);
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("has no column \"nope\""), "{text}");
    bad.cleanup().await;

    // A key that does not fit the column type is a permanent error naming the table.
    let worker = env.start_worker();
    let out = env.ferry(&["--json", "sync", "entity", "courses", "not-a-uuid"]);
    let id: uuid::Uuid = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let job = wait_job(&env, id, |j| j.state.is_final()).await;
    assert_eq!(job.state, JobState::Dead);
    assert!(job.last_error.unwrap().contains("does not fit table"));
    worker.stop().await;
    env.cleanup().await;
}

/// MongoDB unreachable: the job is retried, not lost and not reported as done; once the
/// server answers again, the retry writes the document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_mongodb_is_retried_and_then_succeeds() {
    let env = TestEnv::new(&format!(
        "{SCHOOL}\n[kinds.\"sync.entity\"]\nbackoff_base = \"2s\"\n"
    ))
    .await;
    env.load_school().await;
    let course = text_of(&env, "SELECT min(id::text) FROM courses").await;
    let title = text_of(&env, "SELECT title FROM courses ORDER BY id::text LIMIT 1").await;
    let reachable = std::fs::read_to_string(&env.config_path).unwrap();
    let down = reachable.replace(
        &ferry_tests::mongodb_uri(),
        "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300",
    );
    assert_ne!(down, reachable, "the config names no MongoDB to take down");
    std::fs::write(&env.config_path, down).unwrap();
    let out = env.ferry(&["--json", "sync", "entity", "courses", &course]);
    let id: uuid::Uuid = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut worker = env.spawn_worker_process("down");
    let job = wait_job(&env, id, |j| j.state == JobState::Retrying).await;
    assert_eq!(job.attempts, 1, "{job:?}");
    assert!(job.last_error.unwrap().contains("MongoDB"));
    signal(&worker, "TERM");
    assert!(worker.wait().unwrap().success());
    let courses = env.mongo().await.collection::<bson::Document>("courses");
    let filter = bson::doc! { "_id": &course };
    assert_eq!(courses.find_one(filter.clone()).await.unwrap(), None);

    // The server is back: a worker started with the reachable address runs the retry.
    std::fs::write(&env.config_path, reachable).unwrap();
    let mut worker = env.spawn_worker_process("back");
    let job = wait_job(&env, id, |j| j.state.is_final()).await;
    assert_eq!(
        (job.state, job.attempts),
        (JobState::Succeeded, 2),
        "{job:?}"
    );
    let doc = courses
        .find_one(filter)
        .await
        .unwrap()
        .expect("the job succeeded but the document is not in MongoDB");
    assert_eq!(doc.get_str("title").ok(), Some(title.as_str()), "{doc}");
    signal(&worker, "TERM");
    assert!(worker.wait().unwrap().success());
    env.cleanup().await;
}

async fn wait_job(
    env: &TestEnv,
    id: uuid::Uuid,
    done: impl Fn(&ferry_queue::JobRecord) -> bool,
) -> ferry_queue::JobRecord {
    env.wait_for(id, Duration::from_secs(60), done).await
}

/// A deep verify run as a job saves its place after every page: stopped part-way, the next
/// worker resumes from the last page, and the report counts each row exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_verify_job_resumes_from_its_last_page() {
    let env =
        TestEnv::new(&SCHOOL.replace("[sync]", "[sync]\nchunk_size = 2\npages_per_chunk = 100"))
            .await;
    env.load_school().await;
    let worker = env.start_worker();
    ok(&env.ferry(&["sync", "full", "--wait"]));
    worker.stop().await;
    let gone = env
        .mongo()
        .await
        .collection::<bson::Document>("courses")
        .delete_one(bson::doc! {})
        .await
        .unwrap();
    assert_eq!(gone.deleted_count, 1);

    let id = env.enqueue("sync.verify", r#"{"deep": true}"#).await;
    let mut worker = env.spawn_worker_process("verify");
    let deadline = Instant::now() + Duration::from_secs(30);
    while env
        .record
        .run(id)
        .await
        .unwrap()
        .is_none_or(|r| r.done == 0)
    {
        assert!(Instant::now() < deadline, "the verify did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    signal(&worker, "TERM");
    assert!(worker.wait().unwrap().success());
    let stopped = env.record.run(id).await.unwrap().unwrap();
    assert_eq!(stopped.state, "interrupted", "{stopped:?}");

    let worker = env.start_worker();
    let job = env
        .wait_for(id, Duration::from_secs(60), |j| j.state.is_final())
        .await;
    worker.stop().await;
    assert_eq!(job.state, JobState::Dead, "{job:?}");
    assert!(job.last_error.unwrap().contains("courses"));
    let run = env.record.run(id).await.unwrap().unwrap();
    assert!(
        run.resumed_from.is_some(),
        "the second attempt started over"
    );
    let reports = run.checkpoint.unwrap()["done"].as_array().unwrap().clone();
    let sum = |field: &str| -> u64 { reports.iter().map(|r| r[field].as_u64().unwrap()).sum() };
    let rows: u64 = reports
        .iter()
        .map(|r| r["source_rows"].as_u64().unwrap())
        .sum();
    assert_eq!(sum("compared"), rows, "rows compared twice or skipped");
    assert_eq!(sum("missing_count"), 1);
    assert!(stopped.done < rows as i64);
    env.cleanup().await;
}

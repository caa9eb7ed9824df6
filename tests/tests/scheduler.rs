//! The scheduler: exactly-once fires across replicas, catch-up after downtime on an injected
//! clock, pausing, the run reconciler, and refusal of bad schedules.

use std::{collections::BTreeSet, process::Command, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use ferry_queue::{JobFilter, JobRecord, JobState};
use ferry_scheduler::{Fires, Reconciler, TickReport, plan, statuses};
use ferry_tests::{TestEnv, ferry_bin, signal};
use uuid::Uuid;

/// A per-second schedule of no-op jobs.
const EVERY_SECOND: &str =
    "[[schedule]]\nname = \"tick\"\ncron = \"* * * * * *\"\nkind = \"noop\"\n";

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A scheduler replica driven by hand: `tick(now)` is the injected clock.
fn replica(env: &TestEnv, name: &str) -> Fires {
    let planned = plan(&env.config, &env.registry).unwrap();
    Fires::new(
        planned,
        env.record.clone(),
        env.queue.clone(),
        &env.config,
        name,
    )
}

async fn noop_jobs(env: &TestEnv) -> Vec<JobRecord> {
    let filter = JobFilter {
        kind: Some("noop".into()),
        ..JobFilter::default()
    };
    env.queue.list("default", &filter).await.unwrap()
}

async fn fire_rows(env: &TestEnv, schedule: &str) -> Vec<(DateTime<Utc>, Uuid, String)> {
    sqlx::query_as(
        "SELECT fire_time, job_id, claimed_by FROM schedule_fires WHERE schedule = $1 ORDER BY fire_time",
    )
    .bind(schedule)
    .fetch_all(env.record.pool())
    .await
    .unwrap()
}

fn fired(report: &TickReport, schedule: &str) -> Vec<DateTime<Utc>> {
    report
        .enqueued
        .iter()
        .filter(|(name, _, _)| name == schedule)
        .map(|(_, at, _)| *at)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_enqueue_each_fire_of_a_per_second_schedule_once() {
    let env = TestEnv::new(EVERY_SECOND).await;
    let mut replicas: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|label| env.spawn_scheduler_process(label))
        .collect();
    tokio::time::sleep(Duration::from_secs(20)).await;
    for r in &replicas {
        signal(r, "TERM");
    }
    for r in &mut replicas {
        assert!(
            r.wait().unwrap().success(),
            "a scheduler did not stop cleanly"
        );
    }

    let fires = fire_rows(&env, "tick").await;
    let claimers: BTreeSet<&str> = fires.iter().map(|f| f.2.as_str()).collect();
    eprintln!(
        "{} fires in 20 s, claimed by {} replicas",
        fires.len(),
        claimers.len()
    );
    assert!((17..=21).contains(&fires.len()), "{} fires", fires.len());
    for pair in fires.windows(2) {
        assert_eq!(pair[1].0 - pair[0].0, TimeDelta::seconds(1), "{pair:?}");
    }
    let jobs = noop_jobs(&env).await;
    assert_eq!(jobs.len(), fires.len(), "one job per fire, none twice");
    let job_ids: BTreeSet<Uuid> = jobs.iter().map(|j| j.id).collect();
    let fire_ids: BTreeSet<Uuid> = fires.iter().map(|f| f.1).collect();
    assert_eq!(job_ids, fire_ids);
    let keys: BTreeSet<String> = jobs
        .iter()
        .map(|j| j.idempotency_key.clone().unwrap())
        .collect();
    assert_eq!(keys.len(), jobs.len());
    assert!(
        keys.iter()
            .all(|k| k.starts_with("scheduler/noop/schedule:tick:")),
        "{keys:?}"
    );

    let out = env.ferry(&["--json", "schedules", "ls"]);
    assert!(out.status.success(), "{out:?}");
    let ls: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tick = &ls[0];
    assert_eq!(tick["name"], "tick");
    assert_eq!(tick["fires"], fires.len() as i64);
    assert_eq!(tick["last_outcome"], "queued");
    assert_eq!(tick["missed"], 0);
    let last: DateTime<Utc> = tick["last_fire"].as_str().unwrap().parse().unwrap();
    assert_eq!(last, fires.last().unwrap().0);
    assert!(tick["next_fire"].is_string(), "{tick}");
    env.cleanup().await;
}

#[tokio::test]
async fn replicas_ticking_at_once_enqueue_every_fire_exactly_once() {
    let env = TestEnv::new(EVERY_SECOND).await;
    let replicas = [replica(&env, "a"), replica(&env, "b"), replica(&env, "c")];
    let start = at("2026-06-01T12:00:00Z");
    replicas[0].register(start).await.unwrap();
    let mut enqueued = 0;
    for i in 1..=30 {
        let now = start + TimeDelta::milliseconds(i * 1000 + 3);
        // Replica c's clock runs 400 ms behind.
        let ticks = replicas.iter().enumerate().map(|(n, r)| {
            let skew = if n == 2 {
                TimeDelta::milliseconds(400)
            } else {
                TimeDelta::zero()
            };
            r.tick(now - skew)
        });
        for report in futures::future::join_all(ticks).await {
            enqueued += report.unwrap().enqueued.len();
        }
    }
    assert_eq!(enqueued, 30);
    assert_eq!(fire_rows(&env, "tick").await.len(), 30);
    assert_eq!(noop_jobs(&env).await.len(), 30);
    env.cleanup().await;
}

#[tokio::test]
async fn a_fire_enqueued_by_a_replica_that_died_before_committing_is_not_enqueued_again() {
    let env = TestEnv::new(EVERY_SECOND).await;
    let fires = replica(&env, "survivor");
    fires.register(at("2026-06-01T12:00:00Z")).await.unwrap();
    // The dead replica's enqueue reached Redis; its claim in Postgres was rolled back.
    let (queue, mut job) = env.job("noop", "{}");
    job.idempotency_key = Some("scheduler/noop/schedule:tick:2026-06-01T12:00:01.000Z".into());
    let first = env.queue.enqueue(&queue, &[job]).await.unwrap()[0].0;

    let r = fires.tick(at("2026-06-01T12:00:01.005Z")).await.unwrap();
    assert_eq!(
        r.enqueued,
        [("tick".into(), at("2026-06-01T12:00:01Z"), first)]
    );
    assert_eq!(fire_rows(&env, "tick").await[0].1, first);
    assert_eq!(noop_jobs(&env).await.len(), 1);
    env.cleanup().await;
}

#[tokio::test]
async fn after_five_minutes_down_latest_enqueues_one_all_five_skip_none() {
    let schedules: String = ["latest", "all", "skip"]
        .iter()
        .map(|c| {
            format!(
                "[[schedule]]\nname = \"{c}\"\ncron = \"0 * * * * *\"\nkind = \"noop\"\ncatch_up = \"{c}\"\n"
            )
        })
        .collect();
    let env = TestEnv::new(&schedules).await;

    let before = replica(&env, "before");
    before.register(at("2026-06-01T11:59:59Z")).await.unwrap();
    let r = before.tick(at("2026-06-01T12:00:00.200Z")).await.unwrap();
    for name in ["latest", "all", "skip"] {
        assert_eq!(fired(&r, name), [at("2026-06-01T12:00:00Z")], "{r:?}");
    }
    assert_eq!(
        before.tick(at("2026-06-01T12:00:30Z")).await.unwrap(),
        TickReport::default()
    );
    drop(before);

    // No scheduler runs from 12:00:30 to 12:05:40: the fires 12:01 ... 12:05 are missed.
    let after = replica(&env, "after");
    after.register(at("2026-06-01T12:05:40Z")).await.unwrap();
    let r = after.tick(at("2026-06-01T12:05:40Z")).await.unwrap();
    let minute = |m: u32| at(&format!("2026-06-01T12:0{m}:00Z"));
    assert_eq!(fired(&r, "latest"), [minute(5)]);
    assert_eq!(fired(&r, "all"), (1..=5).map(minute).collect::<Vec<_>>());
    assert!(fired(&r, "skip").is_empty());
    assert_eq!((r.missed, r.skipped), (15, 4 + 5));

    // Back on time: the next fire is enqueued as usual, nothing counts as missed.
    let r = after.tick(at("2026-06-01T12:06:00.100Z")).await.unwrap();
    assert_eq!(r.enqueued.len(), 3);
    assert_eq!((r.missed, r.skipped), (0, 0));

    let planned = plan(&env.config, &env.registry).unwrap();
    let status = statuses(
        &planned,
        &env.record,
        &env.queue,
        at("2026-06-01T12:06:01Z"),
    )
    .await
    .unwrap();
    let row = |name: &str| {
        let s = status.iter().find(|s| s.name == name).unwrap();
        (s.fires, s.missed, s.skipped)
    };
    assert_eq!(row("latest"), (3, 5, 4));
    assert_eq!(row("all"), (7, 5, 0));
    assert_eq!(row("skip"), (2, 5, 5));
    for s in &status {
        assert_eq!(s.next_fire, Some(at("2026-06-01T12:07:00Z")));
        assert_eq!(s.last_fire, Some(minute(6)));
        assert_eq!(s.last_outcome.as_deref(), Some("queued"));
    }
    assert_eq!(noop_jobs(&env).await.len(), 3 + 7 + 2);
    env.cleanup().await;
}

/// A clock the test moves by hand.
struct ManualClock(std::sync::Mutex<DateTime<Utc>>);

impl ferry_scheduler::Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_scheduler_reads_its_injected_clock() {
    let env = TestEnv::new(
        "[scheduler]\ntick = \"50ms\"\n[[schedule]]\nname = \"minutely\"\ncron = \"0 * * * * *\"\nkind = \"noop\"\ncatch_up = \"all\"\n",
    )
    .await;
    let clock = std::sync::Arc::new(ManualClock(std::sync::Mutex::new(at(
        "2026-06-01T12:00:30Z",
    ))));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(ferry_scheduler::run_with_clock(
        env.config.clone(),
        clock.clone(),
        shutdown.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(noop_jobs(&env).await.is_empty());
    // Three minutes pass in no time: 12:01, 12:02 and 12:03 were missed, and all catch up.
    *clock.0.lock().unwrap() = at("2026-06-01T12:03:40Z");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while noop_jobs(&env).await.len() < 3 {
        assert!(std::time::Instant::now() < deadline, "no catch-up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    run.await.unwrap().unwrap();
    let fires: Vec<DateTime<Utc>> = fire_rows(&env, "minutely")
        .await
        .iter()
        .map(|f| f.0)
        .collect();
    assert_eq!(
        fires,
        [
            at("2026-06-01T12:01:00Z"),
            at("2026-06-01T12:02:00Z"),
            at("2026-06-01T12:03:00Z")
        ]
    );
    env.cleanup().await;
}

#[tokio::test]
async fn a_paused_schedule_neither_fires_nor_catches_up() {
    let env = TestEnv::new(
        "[[schedule]]\nname = \"minutely\"\ncron = \"0 * * * * *\"\nkind = \"noop\"\ncatch_up = \"all\"\n",
    )
    .await;
    // Tomorrow, on the minute: later than the database's now(), which resume reads.
    let base = Utc::now().duration_trunc_minutes() + TimeDelta::days(1);
    let fires = replica(&env, "a");
    fires.register(base - TimeDelta::seconds(1)).await.unwrap();
    let out = env.ferry(&["schedules", "pause", "minutely"]);
    assert!(out.status.success(), "{out:?}");
    let r = fires.tick(base + TimeDelta::minutes(3)).await.unwrap();
    assert_eq!(r, TickReport::default());
    let out = env.ferry(&["--json", "schedules", "ls"]);
    let ls: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&ls[0]["paused"], &ls[0]["next_fire"]),
        (&serde_json::json!(true), &serde_json::Value::Null)
    );

    assert!(
        env.ferry(&["schedules", "resume", "minutely"])
            .status
            .success()
    );
    let r = fires
        .tick(base + TimeDelta::milliseconds(4 * 60_000 + 100))
        .await
        .unwrap();
    assert_eq!(fired(&r, "minutely"), [base + TimeDelta::minutes(4)]);
    assert_eq!(r.missed, 0);
    let out = env.ferry(&["schedules", "pause", "nightly"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("configured: minutely"),
        "{out:?}"
    );
    let audit = env.record.audit_log(10).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["schedule.resume", "schedule.pause"]);
    env.cleanup().await;
}

trait TruncMinutes {
    fn duration_trunc_minutes(self) -> Self;
}

impl TruncMinutes for DateTime<Utc> {
    fn duration_trunc_minutes(self) -> Self {
        chrono::DurationRound::duration_trunc(self, TimeDelta::minutes(1)).unwrap()
    }
}

/// What Redis loses while a long job runs, besides its worker.
enum Loss {
    /// Every key of the install: a flush, or a failover without AOF.
    Everything,
    /// The job's stream entry only; its hash still says running.
    StreamEntry,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_job_redis_lost_and_whose_worker_died_resumes_from_its_checkpoint() {
    killed_and_lost(Loss::Everything).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_stream_entry_redis_lost_and_whose_worker_died_resumes_from_its_checkpoint() {
    killed_and_lost(Loss::StreamEntry).await;
}

async fn killed_and_lost(loss: Loss) {
    let env =
        TestEnv::new("[scheduler]\nreconcile_after = \"1s\"\nreconcile_every = \"300ms\"\n").await;
    let id = env
        .enqueue("sleep", r#"{"ms": 8000, "steps": 40, "trace": true}"#)
        .await;
    let mut first = env.spawn_worker_process("first");
    let first_pid = first.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while env.record.run(id).await.unwrap().is_none_or(|r| r.done < 5) {
        assert!(std::time::Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&first, "KILL");
    first.wait().unwrap();
    match loss {
        Loss::Everything => {
            assert!(env.forget_redis().await > 0);
            assert!(env.job_record(id).await.is_none());
        }
        Loss::StreamEntry => {
            let client = redis::Client::open(ferry_tests::redis_url()).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let keys = env.queue.keys("default");
            let entry: String = redis::cmd("HGET")
                .arg(keys.job(&id.to_string()))
                .arg("eid")
                .query_async(&mut conn)
                .await
                .unwrap();
            let deleted: i64 = redis::cmd("XDEL")
                .arg(&keys.stream)
                .arg(&entry)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(deleted, 1);
            assert_eq!(env.job_record(id).await.unwrap().state, JobState::Running);
        }
    }
    let at_kill = env.record.run(id).await.unwrap().unwrap();
    assert_eq!(at_kill.state, "running");

    let mut scheduler = env.spawn_scheduler_process("reconciler");
    let mut second = env.spawn_worker_process("second");
    let job = env
        .wait_for(id, Duration::from_secs(40), |j| j.state.is_final())
        .await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let run = env.record.run(id).await.unwrap().unwrap();
    assert_eq!(
        (run.state.as_str(), run.lease_epoch, run.done),
        ("succeeded", 2, 40)
    );
    // The work each attempt did: the re-dispatched one began at the checkpoint and slept only
    // the rest.
    let [killed, resumed] = &env.attempts_of(id).await[..] else {
        panic!("{:?}", env.attempts_of(id).await)
    };
    assert!(killed.ran_in(first_pid) && !killed.completed, "{killed:?}");
    assert_eq!(resumed.from_step as i64, at_kill.done, "{resumed:?}");
    assert_eq!(resumed.steps, 40 - resumed.from_step, "{resumed:?}");
    assert!(resumed.completed);
    assert!(
        (0..=1).contains(&(killed.steps - resumed.from_step)),
        "{killed:?} {resumed:?}"
    );
    let audit = env.record.audit_log(10).await.unwrap();
    let why = match loss {
        Loss::Everything => "Redis lost its job",
        Loss::StreamEntry => "Redis lost its stream entry",
    };
    assert!(
        audit.iter().any(|a| a.action == "run.redispatch"
            && a.target.as_deref() == Some(&id.to_string())
            && a.details["why"].as_str().is_some_and(|w| w.contains(why))),
        "{audit:?}"
    );
    for p in [&scheduler, &second] {
        signal(p, "TERM");
    }
    assert!(scheduler.wait().unwrap().success());
    assert!(second.wait().unwrap().success());
    env.cleanup().await;
}

#[tokio::test]
async fn the_reconciler_leaves_runs_alone_while_redis_or_their_worker_has_them() {
    let env = TestEnv::new("[scheduler]\nreconcile_after = \"1s\"\n").await;
    let args = serde_json::json!({"ms": 10, "steps": 2});
    let open = |id: Uuid, owner: &'static str| {
        let (record, args) = (env.record.clone(), args.clone());
        async move { record.open_run(id, "sleep", &args, owner).await.unwrap() }
    };
    // Its job still waits in Redis.
    let waiting = env.enqueue("sleep", &args.to_string()).await;
    open(waiting, "worker-gone").await;
    // Its job is gone, but its worker still heartbeats (a long step between checkpoints).
    let slow = Uuid::now_v7();
    open(slow, "worker-alive").await;
    let client = redis::Client::open(ferry_tests::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("ZADD")
        .arg(env.queue.keys("default").workers)
        .arg(Utc::now().timestamp_millis())
        .arg("worker-alive")
        .query_async(&mut conn)
        .await
        .unwrap();
    // Its job is gone and so is its worker.
    let lost = Uuid::now_v7();
    open(lost, "worker-gone").await;
    // Recorded as running by a worker that is gone, its stream entry lost.
    let entry_lost = env.enqueue("sleep", &args.to_string()).await;
    open(entry_lost, "worker-gone").await;
    // Recorded as running by a worker that still heartbeats.
    let running = env.enqueue("sleep", &args.to_string()).await;
    open(running, "worker-alive").await;
    for (id, worker) in [(entry_lost, "worker-gone"), (running, "worker-alive")] {
        let _: () = redis::cmd("HSET")
            .arg(env.queue.keys("default").job(&id.to_string()))
            .arg(
                &[
                    "state", "running", "worker", worker, "eid", "1-1", "attempts", "1",
                ][..],
            )
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    // Silent for longer than Redis keeps finished jobs: its missing job proves nothing.
    let ancient = Uuid::now_v7();
    open(ancient, "worker-gone").await;
    sqlx::query("UPDATE runs SET heartbeat_at = now() - interval '1 minute'")
        .execute(env.record.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE runs SET heartbeat_at = now() - interval '25 hours' WHERE id = $1")
        .bind(ancient)
        .execute(env.record.pool())
        .await
        .unwrap();
    // Recent: its worker may still be starting it.
    let fresh = Uuid::now_v7();
    open(fresh, "worker-gone").await;

    let reconciler = Reconciler::new(
        env.record.clone(),
        env.queue.clone(),
        env.registry.clone(),
        &env.config,
    );
    let redispatched: BTreeSet<Uuid> = reconciler
        .once(Utc::now())
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(redispatched, BTreeSet::from([lost, entry_lost]));
    for id in [lost, entry_lost] {
        let job = env.job_record(id).await.unwrap();
        assert_eq!((job.state, job.kind.as_str()), (JobState::Queued, "sleep"));
        assert_eq!(job.args, args);
    }
    assert_eq!(
        env.job_record(running).await.unwrap().state,
        JobState::Running
    );
    // The job exists now: a second pass, or another replica, does nothing.
    assert!(reconciler.once(Utc::now()).await.unwrap().is_empty());
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_scheduler_relays_move_every_captured_change_into_one_waiting_job_per_row() {
    let env = TestEnv::new("[sync]\nrelay_interval = \"50ms\"\n").await;
    let schedulers: Vec<_> = (0..3).map(|_| env.start_scheduler()).collect();
    // 5,000 captured changes to 500 rows, as triggers would write them.
    sqlx::query(
        "INSERT INTO sync_changes (table_name, key, op)
         SELECT 'public.items', jsonb_build_object('id', i % 500), 'UPDATE'
         FROM generate_series(1, 5000) i",
    )
    .execute(env.record.pool())
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_changes")
            .fetch_one(env.record.pool())
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} changes not relayed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for s in schedulers {
        s.stop().await;
    }
    let filter = JobFilter {
        kind: Some("sync.entity".into()),
        ..JobFilter::default()
    };
    let jobs = env.queue.list("sync", &filter).await.unwrap();
    let rows: BTreeSet<String> = jobs
        .iter()
        .map(|j| j.args["key"]["id"].to_string())
        .collect();
    assert_eq!((jobs.len(), rows.len()), (500, 500));
    env.cleanup().await;
}

/// `ferry scheduler` with one bad `[[schedule]]` and unreachable services: it must refuse
/// before connecting, with exit 2, naming the schedule and the fix.
fn refused(schedule: &str) -> String {
    let path = std::env::temp_dir().join(format!("ferry-bad-{:016x}.toml", rand::random::<u64>()));
    std::fs::write(
        &path,
        format!(
            "[postgres]\nurl = \"postgres://nobody@127.0.0.1:1/none\"\n[redis]\nurl = \"redis://127.0.0.1:1\"\n[[schedule]]\nname = \"nightly-backup\"\n{schedule}"
        ),
    )
    .unwrap();
    let out = Command::new(ferry_bin())
        .env_clear()
        .arg("--config")
        .arg(&path)
        .arg("scheduler")
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("schedule[0] (nightly-backup)"), "{stderr}");
    assert!(stderr.contains("fix:"), "{stderr}");
    assert!(!stderr.to_lowercase().contains("connect"), "{stderr}");
    stderr
}

#[test]
fn bad_schedules_stop_the_scheduler_before_it_connects() {
    // Five fields are crontab's form and accepted; four are neither form.
    let e = refused("cron = \"0 2 * *\"\nkind = \"backup.run\"\n");
    assert!(e.contains(".cron"), "{e}");
    let e =
        refused("cron = \"0 0 2 * * *\"\ntimezone = \"Europe/Berlim\"\nkind = \"backup.run\"\n");
    assert!(
        e.contains(".timezone") && e.contains("Europe/Berlim") && e.contains("IANA"),
        "{e}"
    );
    let e = refused("cron = \"0 0 2 * * *\"\nkind = \"bakup.run\"\n");
    assert!(
        e.contains(".kind") && e.contains("bakup.run") && e.contains("backup.run"),
        "{e}"
    );
    let e = refused("cron = \"0 0 2 * * *\"\nkind = \"sleep\"\nargs = { ms = \"soon\" }\n");
    assert!(e.contains(".args"), "{e}");
}

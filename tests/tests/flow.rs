//! Flow control against real Redis and Postgres: tenants share a worker fairly and respect
//! their cap, a paused queue starts nothing, priorities order the work without starving low.

use std::time::{Duration, Instant};

use ferry_queue::{JobState, NewJob, Priority};
use ferry_tests::TestEnv;
use uuid::Uuid;

/// `n` jobs of kind `sleep` for `ms` each, of `tenant` at `priority`.
fn sleeps(
    env: &TestEnv,
    n: usize,
    ms: u64,
    tenant: Option<&str>,
    priority: Priority,
) -> Vec<NewJob> {
    (0..n)
        .map(|_| {
            let (_, mut job) = env.job("sleep", &format!("{{\"ms\":{ms}}}"));
            job.tenant = tenant.map(str::to_owned);
            job.priority = priority;
            job
        })
        .collect()
}

async fn enqueue(env: &TestEnv, jobs: &[NewJob]) -> Vec<Uuid> {
    let ids = env.queue.enqueue("default", jobs).await.unwrap();
    ids.into_iter().map(|(id, _)| id).collect()
}

async fn succeeded(env: &TestEnv, ids: &[Uuid]) -> usize {
    let mut n = 0;
    for id in ids {
        if env
            .job_record(*id)
            .await
            .is_some_and(|j| j.state == JobState::Succeeded)
        {
            n += 1;
        }
    }
    n
}

/// The most of `ids` that ran at once, from the jobs' own start and finish times.
async fn most_at_once(env: &TestEnv, ids: &[Uuid]) -> usize {
    let mut spans = Vec::new();
    for id in ids {
        let job = env.job_record(*id).await.unwrap();
        spans.push((job.started_us.unwrap(), job.finished_us.unwrap()));
    }
    spans
        .iter()
        .map(|(s, _)| spans.iter().filter(|(a, b)| a <= s && s < b).count())
        .max()
        .unwrap()
}

/// Polls until every job in `ids` succeeded; returns how long it took.
async fn all_succeed(env: &TestEnv, ids: &[Uuid], timeout: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let done = succeeded(env, ids).await;
        if done == ids.len() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "{done} of {} succeeded in {timeout:?}",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_tenant_is_served_while_a_big_one_waits() {
    let env = TestEnv::new("[worker]\nconcurrency = 8\n").await;
    // 3,000 jobs of 40 ms on 8 slots: 15 s of work, which FIFO would put ahead of B.
    enqueue(&env, &sleeps(&env, 3000, 40, Some("A"), Priority::Default)).await;
    let worker = env.start_worker();
    env.wait_for_count("sleep", "succeeded", 40, Duration::from_secs(20))
        .await;
    let b = enqueue(&env, &sleeps(&env, 20, 40, Some("B"), Priority::Default)).await;
    let took = all_succeed(&env, &b, Duration::from_secs(15)).await;
    let done = env.count("sleep", "succeeded").await - 20;
    let stats = env.queue.stats("default").await.unwrap();
    eprintln!("B's 20 jobs took {took:?}; {done} of A's ran meanwhile");
    assert!(took < Duration::from_secs(3), "B's 20 jobs took {took:?}");
    assert!(done < 1500, "{done} of A's 3,000 jobs already ran");
    let a = stats.tenants.iter().find(|t| t.tenant == "A");
    assert!(
        a.is_some_and(|a| a.waiting > 1000 && a.running > 0),
        "stats show A waiting and running: {:?}",
        stats.tenants
    );
    worker.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_never_runs_more_than_max_running_and_others_go_on() {
    let env = TestEnv::new("[worker]\nconcurrency = 8\n[tenants]\nmax_running = 2\n").await;
    let c = enqueue(&env, &sleeps(&env, 20, 100, Some("C"), Priority::Default)).await;
    let d = enqueue(&env, &sleeps(&env, 20, 100, Some("D"), Priority::Default)).await;
    let plain = enqueue(&env, &sleeps(&env, 12, 100, None, Priority::Default)).await;
    let worker = env.start_worker();
    all_succeed(&env, &plain, Duration::from_secs(20)).await;
    all_succeed(&env, &c, Duration::from_secs(20)).await;
    all_succeed(&env, &d, Duration::from_secs(20)).await;
    for (tenant, ids) in [("C", &c), ("D", &d)] {
        let most = most_at_once(&env, ids).await;
        assert_eq!(most, 2, "tenant {tenant} ran {most} jobs at once");
    }
    // Jobs without a tenant are not capped: 12 jobs on 8 slots overlap more than 2.
    let most = most_at_once(&env, &plain).await;
    assert!(most > 2, "untenanted jobs ran at most {most} at once");
    let stats = env.queue.stats("default").await.unwrap();
    assert!(stats.tenants.is_empty(), "{:?}", stats.tenants);
    worker.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_queue_starts_nothing_while_jobs_arrive_and_resume_drains_it() {
    let env = TestEnv::new("[worker]\nconcurrency = 8\n").await;
    // The worker waits in its blocking read when the pause comes: the entries it then
    // receives must go back, not start.
    let worker = env.start_worker();
    // A job running when the pause comes finishes.
    let running = enqueue(&env, &sleeps(&env, 1, 1500, None, Priority::Default)).await[0];
    env.wait_for(running, Duration::from_secs(10), |j| {
        j.state == JobState::Running
    })
    .await;
    let out = env.ferry(&["queues", "pause", "default"]);
    assert!(out.status.success(), "{out:?}");
    let unknown = env.ferry(&["queues", "pause", "nope"]);
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no queue \"nope\""),
        "{unknown:?}"
    );
    let mut ids = Vec::new();
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        ids.extend(enqueue(&env, &sleeps(&env, 5, 1, None, Priority::Default)).await);
        ids.extend(enqueue(&env, &sleeps(&env, 1, 1, Some("T"), Priority::High)).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = env.queue.stats("default").await.unwrap();
    assert!(stats.paused);
    let mut started = 0;
    for id in &ids {
        started += usize::from(env.job_record(*id).await.unwrap().started_us.is_some());
    }
    let first = env.job_record(running).await.unwrap();
    assert_eq!(
        first.state,
        JobState::Succeeded,
        "the running job did not finish"
    );
    assert_eq!(started, 0, "jobs started on a paused queue: {stats:?}");
    assert!(ids.len() > 200, "only {} jobs arrived", ids.len());
    let out = env.ferry(&["queues", "resume", "default"]);
    assert!(out.status.success(), "{out:?}");
    all_succeed(&env, &ids, Duration::from_secs(20)).await;
    let audit = env.record.audit_log(20).await.unwrap();
    let actions: Vec<(&str, Option<&str>)> = audit
        .iter()
        .map(|a| (a.action.as_str(), a.target.as_deref()))
        .collect();
    for action in ["queue.pause", "queue.resume"] {
        assert!(actions.contains(&(action, Some("default"))), "{actions:?}");
    }
    worker.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn high_jobs_pass_waiting_default_ones_and_low_ones_still_progress() {
    let env = TestEnv::new("[worker]\nconcurrency = 4\n").await;
    let default = enqueue(&env, &sleeps(&env, 3000, 2, None, Priority::Default)).await;
    let worker = env.start_worker();
    env.wait_for_count("sleep", "succeeded", 20, Duration::from_secs(20))
        .await;
    let high = enqueue(&env, &sleeps(&env, 1, 1, None, Priority::High)).await;
    all_succeed(&env, &high, Duration::from_secs(10)).await;
    let job = env.job_record(high[0]).await.unwrap();
    let waited = Duration::from_micros((job.started_us.unwrap() - job.enqueued_us) as u64);
    let done = succeeded(&env, &default[..]).await;
    eprintln!(
        "the high job started {waited:?} after its enqueue; {done} of 3,000 default jobs had run"
    );
    // FIFO would start it after the ~2,900 default jobs ahead of it: about 1.5 s of work.
    assert!(
        waited < Duration::from_millis(500),
        "the high job waited {waited:?} behind default ones"
    );
    worker.stop().await;

    // Under a backlog of high jobs, low ones are not left to the end.
    let low = enqueue(&env, &sleeps(&env, 20, 2, None, Priority::Low)).await;
    let highs = enqueue(&env, &sleeps(&env, 3000, 2, None, Priority::High)).await;
    let worker = env.start_worker();
    all_succeed(&env, &low, Duration::from_secs(60)).await;
    all_succeed(&env, &highs, Duration::from_secs(60)).await;
    // Counted from the jobs' own finish times, not by polling, which a loaded machine slows.
    let mut last_low = 0;
    for id in &low {
        last_low = last_low.max(env.job_record(*id).await.unwrap().finished_us.unwrap());
    }
    let mut done = 0;
    for id in &highs {
        done += usize::from(env.job_record(*id).await.unwrap().finished_us.unwrap() < last_low);
    }
    eprintln!("{done} of 3,000 high jobs ran before 20 low ones");
    assert!(
        done < 2500,
        "{done} of 3,000 high jobs ran before 20 low ones"
    );
    worker.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenant_counts_survive_a_killed_worker_and_nothing_is_lost() {
    let env = TestEnv::new("[worker]\nconcurrency = 8\n[tenants]\nmax_running = 3\n").await;
    let mut ids = enqueue(&env, &sleeps(&env, 15, 400, Some("K"), Priority::High)).await;
    ids.extend(enqueue(&env, &sleeps(&env, 15, 400, Some("K"), Priority::Low)).await);
    ids.extend(enqueue(&env, &sleeps(&env, 15, 400, Some("L"), Priority::Default)).await);
    let mut killed = env.spawn_worker_process("killed");
    env.wait_for_count("sleep", "running", 6, Duration::from_secs(20))
        .await;
    ferry_tests::signal(&killed, "KILL");
    killed.wait().unwrap();
    // The reclaim re-queues the dead worker's jobs; their tenants keep their places.
    let worker = env.start_worker();
    all_succeed(&env, &ids, Duration::from_secs(60)).await;
    let stats = env.queue.stats("default").await.unwrap();
    assert!(
        stats.tenants.is_empty(),
        "counts left over: {:?}",
        stats.tenants
    );
    let recovered = stats.by_kind["sleep"]
        .get("recovered")
        .copied()
        .unwrap_or(0);
    assert!(recovered >= 6, "{recovered} jobs recovered");
    worker.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn priority_and_tenant_come_from_the_api_the_cli_and_the_kind() {
    use ferry_tests::api::{ADMIN_TOKEN, API_CONFIG, ApiServer, ENQUEUE_TOKEN};
    let env = TestEnv::new(&format!(
        // `sleep` takes no free-form arguments; its `ms` stands in for an organization id.
        "{API_CONFIG}[kinds.sleep]\ntenant_from = \"ms\"\npriority = \"low\"\n"
    ))
    .await;
    let api = ApiServer::start(env.config.clone()).await;
    let client = reqwest::Client::new();
    let post = |path: &str, token: &str, body: serde_json::Value| {
        client
            .post(api.at(path))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let res = post(
        "/v1/jobs",
        ENQUEUE_TOKEN,
        serde_json::json!({"kind": "noop", "priority": "high", "tenant": "acme"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 202);
    let id: Uuid = res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let job = env.job_record(id).await.unwrap();
    assert_eq!(
        (job.priority, job.tenant.as_deref()),
        (Priority::High, Some("acme"))
    );
    let res = post(
        "/v1/jobs",
        ENQUEUE_TOKEN,
        serde_json::json!({"kind": "noop", "priority": "urgent"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 400);
    let text = res.text().await.unwrap();
    assert!(text.contains("urgent") && text.contains("high"), "{text}");
    let res = post(
        "/v1/jobs",
        ENQUEUE_TOKEN,
        serde_json::json!({"kind": "noop", "tenant": "a b"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 400);
    let res = post("/v1/queues/nope/pause", ADMIN_TOKEN, serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    // The kind's settings fill what the enqueue leaves out: tenant from `ms`, priority low.
    let file = std::env::temp_dir().join(format!("{}-lines.jsonl", env.name));
    std::fs::write(
        &file,
        "{\"kind\":\"sleep\",\"args\":{\"ms\":42}}\n{\"kind\":\"sleep\",\"args\":{\"ms\":42},\"tenant\":\"t9\",\"priority\":\"high\"}\n",
    )
    .unwrap();
    let out = env.ferry(&["enqueue", "--json", "--file", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let done: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut seen = Vec::new();
    for d in &done {
        let job = env
            .job_record(d["id"].as_str().unwrap().parse().unwrap())
            .await
            .unwrap();
        seen.push((job.priority, job.tenant));
    }
    assert_eq!(
        seen,
        [
            (Priority::Low, Some("42".to_owned())),
            (Priority::High, Some("t9".to_owned()))
        ]
    );
    let out = env.ferry(&["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tenants = &stats["queues"]["default"]["tenants"];
    assert!(
        tenants.as_array().is_some_and(|t| t.len() == 3),
        "{tenants}"
    );
    let metrics = client
        .get(api.at("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("ferry_tenant_waiting_jobs{queue=\"default\",tenant=\"42\"} 1"),
        "{metrics}"
    );
    let _ = std::fs::remove_file(file);
    api.stop().await;
    env.cleanup().await;
}

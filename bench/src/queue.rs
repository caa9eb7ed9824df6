//! `ferry-bench queue`: no-op throughput and idle pickup latency of one ferry worker process,
//! at its default settings and tuned, beside BullMQ and Sidekiq on the same Redis in the same
//! run, printed as ratios.

use std::{
    fmt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    str::FromStr,
    time::{Duration, Instant},
};

use ferry_queue::{NewJob, Queue};
use serde_json::{Value, json};

use crate::services::Services;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// No-op jobs in each throughput run.
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// Jobs in each latency run (each enqueued to an idle worker).
    #[arg(long, default_value_t = 200)]
    latency_jobs: usize,
    /// Worker settings to measure, comma-separated: `default` runs `ferry worker` with no
    /// flag (what users get), a number N runs it with `--concurrency N`.
    #[arg(long, value_delimiter = ',', default_value = "default,512")]
    concurrency: Vec<Setting>,
    /// Another ferry binary measured the same way in every round, after this build's runs
    /// (e.g. a release build of an older commit).
    #[arg(long)]
    also: Option<PathBuf>,
    /// Rounds of everything (ferry settings, then the baselines), so ratios come from the
    /// same round.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Skip BullMQ and Sidekiq.
    #[arg(long)]
    no_baselines: bool,
    /// Jobs per baseline throughput run.
    #[arg(long, default_value_t = 20_000)]
    baseline_jobs: usize,
    #[command(flatten)]
    services: Services,
}

/// How a measured worker is configured: ferry's defaults, or `--concurrency N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    Default,
    Concurrency(usize),
}

impl FromStr for Setting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "default" => Ok(Self::Default),
            n => n.parse().map(Self::Concurrency).map_err(|_| {
                format!("--concurrency takes `default` or a number of jobs, not {n:?}")
            }),
        }
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::Concurrency(n) => write!(f, "{n}"),
        }
    }
}

/// The schema the benchmark's workers keep their durable record in.
pub const SCHEMA: &str = "ferry_bench";

pub async fn run(args: Args, root: PathBuf, ferry: PathBuf) {
    migrate(&ferry, &args.services.database_url);
    let mut builds = vec![("this", ferry.clone())];
    if let Some(also) = &args.also {
        assert!(also.exists(), "--also {}: no such file", also.display());
        builds.push(("also", also.clone()));
    }
    let mut all = Vec::new();
    for round in 1..=args.rounds {
        let mut rows = Vec::new();
        for (build, bin) in &builds {
            for &setting in &args.concurrency {
                let target = Target {
                    ferry: bin,
                    services: &args.services,
                    redis_url: &args.services.redis_url,
                };
                let (rate, from_ready) = throughput(&target, setting, args.jobs).await;
                let (p50, p99) = latency(&target, setting, args.latency_jobs).await;
                rows.push(json!({
                    "round": round, "system": "ferry", "build": build, "n": args.jobs,
                    "jobs_per_s": rate, "ready_jobs_per_s": from_ready, "lat_n": args.latency_jobs, "p50_ms": p50,
                    "p99_ms": p99, "concurrency": setting.to_string(),
                }));
            }
        }
        if !args.no_baselines {
            for system in ["bullmq", "sidekiq"] {
                match baseline(&root, system, args.baseline_jobs, &args.services.redis_url) {
                    Ok(mut v) => {
                        v["round"] = json!(round);
                        rows.push(v)
                    }
                    Err(e) => eprintln!("{system} baseline failed: {e}"),
                }
            }
        }
        print_round(&rows);
        all.extend(rows);
    }
    println!("{}", json!({ "results": all }));
}

fn print_round(rows: &[Value]) {
    let bullmq = rows
        .iter()
        .find(|r| r["system"] == "bullmq")
        .and_then(|r| r["jobs_per_s"].as_f64());
    println!(
        "{:<5} {:<8} {:<5} {:>11} {:>9} {:>12} {:>12} {:>9} {:>9} {:>10} {:>10}",
        "round",
        "system",
        "build",
        "concurrency",
        "jobs",
        "jobs/s",
        "from ready",
        "p50 ms",
        "p99 ms",
        "vs BullMQ",
        "(ready)"
    );
    for r in rows {
        let rate = r["jobs_per_s"].as_f64().unwrap_or(0.0);
        // ferry's jobs/s counts its process start; BullMQ's and Sidekiq's start at their
        // worker's ready moment, as does ferry's "from ready" figure.
        let ready = r["ready_jobs_per_s"].as_f64();
        let ratio = |x: f64| match (r["system"] == "ferry", bullmq) {
            (true, Some(b)) => format!("{:.2}x", x / b),
            _ => "-".to_owned(),
        };
        println!(
            "{:<5} {:<8} {:<5} {:>11} {:>9} {:>12.0} {:>12} {:>9.2} {:>9.2} {:>10} {:>10}",
            r["round"],
            r["system"].as_str().unwrap_or("?"),
            r["build"].as_str().unwrap_or("-"),
            r["concurrency"].to_string().trim_matches('"'),
            r["n"],
            rate,
            ready.map_or("-".to_owned(), |x| format!("{x:.0}")),
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            ratio(rate),
            ready.map_or("-".to_owned(), ratio)
        );
    }
}

pub fn migrate(ferry: &Path, database_url: &str) {
    let migrated = Command::new(ferry)
        .arg("migrate")
        .env("DATABASE_URL", database_url)
        .env("FERRY_SCHEMA", SCHEMA)
        .stdout(Stdio::null())
        .status()
        .expect("run ferry migrate");
    assert!(migrated.success(), "ferry migrate failed");
}

/// Finished jobs the benchmark's queue client keeps (it enqueues and counts; workers retire).
pub fn keep() -> ferry_config::Keep {
    ferry_config::Keep {
        age: Duration::from_secs(3600),
        count: 10_000,
    }
}

pub fn prefix() -> String {
    format!("bench{:08x}", rand::random::<u32>())
}

/// Which ferry binary runs against which Redis.
pub struct Target<'a> {
    pub ferry: &'a Path,
    pub services: &'a Services,
    /// One URL, or comma-separated cluster seeds.
    pub redis_url: &'a str,
}

impl Target<'_> {
    /// `ferry worker` on `prefix`, configured by `config` (environment first, like a
    /// deployment) and serving `queues` (empty: every queue).
    pub fn worker(
        &self,
        prefix: &str,
        setting: Setting,
        config: Option<&Path>,
        queues: &[&str],
    ) -> std::process::Child {
        let mut cmd = Command::new(self.ferry);
        if let Some(config) = config {
            cmd.arg("--config").arg(config);
        }
        cmd.arg("worker");
        if let Setting::Concurrency(n) = setting {
            cmd.args(["--concurrency", &n.to_string()]);
        }
        if !queues.is_empty() {
            cmd.args(["--queues", &queues.join(",")]);
        }
        cmd.env("REDIS_URL", self.redis_url)
            .env("DATABASE_URL", &self.services.database_url)
            .env("FERRY_SCHEMA", SCHEMA)
            .env("FERRY_REDIS_PREFIX", prefix)
            .env("FERRY_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start ferry worker")
    }
}

/// Succeeded `noop` jobs of `queue` (the state counter, which retention never lowers).
pub async fn succeeded(queue: &Queue, name: &str) -> i64 {
    let stats = queue.stats(name).await.expect("stats");
    stats
        .by_kind
        .get("noop")
        .and_then(|s| s.get("succeeded"))
        .copied()
        .unwrap_or(0)
}

/// Waits until every `(queue, jobs)` has that many succeeded no-op jobs; the workers must
/// stay up meanwhile.
pub async fn wait_done(
    queue: &Queue,
    want: &[(&str, usize)],
    workers: &mut [std::process::Child],
    limit: Duration,
) {
    let start = Instant::now();
    for (name, n) in want {
        while succeeded(queue, name).await < *n as i64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            for w in workers.iter_mut() {
                assert!(
                    w.try_wait().ok().flatten().is_none(),
                    "a ferry worker exited early"
                );
            }
            assert!(start.elapsed() < limit, "throughput run timed out");
        }
    }
}

/// No-op jobs per second of one worker, all jobs enqueued first: (from its spawn, from the
/// moment it is ready). BullMQ and Sidekiq are timed from their worker's own "ready" moment,
/// boot excluded; ready here is when the worker's first heartbeat registers it on the queue
/// (it fetches from then on), so the second figure is timed as they are.
pub async fn throughput(target: &Target<'_>, setting: Setting, jobs: usize) -> (f64, f64) {
    let prefix = prefix();
    let queue = Queue::connect(target.redis_url, &prefix, keep())
        .await
        .expect("Redis");
    enqueue(&queue, "default", jobs).await;
    let start = Instant::now();
    let mut child = target.worker(&prefix, setting, None, &[]);
    while queue.stats("default").await.expect("stats").workers == 0 {
        assert!(
            child.try_wait().ok().flatten().is_none(),
            "the ferry worker exited at start"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let ready = Instant::now();
    wait_done(
        &queue,
        &[("default", jobs)],
        std::slice::from_mut(&mut child),
        Duration::from_secs(300),
    )
    .await;
    let secs = start.elapsed().as_secs_f64();
    let from_ready = ready.elapsed().as_secs_f64();
    stop(&mut child);
    cleanup(target.redis_url, &prefix).await;
    let rate = jobs as f64 / secs;
    eprintln!(
        "ferry {} (concurrency {setting}, {}): {jobs} no-op jobs in {secs:.3} s (worker start included) = {rate:.0}/s; {from_ready:.3} s from ready",
        target.ferry.display(),
        target.redis_url
    );
    (rate, jobs as f64 / from_ready)
}

pub async fn enqueue(queue: &Queue, name: &str, jobs: usize) {
    let start = Instant::now();
    enqueue_quiet(queue, name, jobs).await;
    eprintln!(
        "ferry: enqueued {jobs} jobs on {name} in {:?}",
        start.elapsed()
    );
}

pub async fn enqueue_quiet(queue: &Queue, name: &str, jobs: usize) {
    let batch: Vec<_> = (0..jobs).map(|_| NewJob::new("noop", "{}", 10)).collect();
    for chunk in batch.chunks(50_000) {
        queue.enqueue(name, chunk).await.expect("enqueue");
    }
}

async fn latency(target: &Target<'_>, setting: Setting, jobs: usize) -> (f64, f64) {
    let prefix = prefix();
    let queue = Queue::connect(target.redis_url, &prefix, keep())
        .await
        .expect("Redis");
    let mut child = target.worker(&prefix, setting, None, &[]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut samples = Vec::with_capacity(jobs);
    for i in 0..jobs + 10 {
        let id = queue
            .enqueue("default", &[NewJob::new("noop", "{}", 10)])
            .await
            .expect("enqueue")[0]
            .0;
        let job = loop {
            if let Some(job) = queue.job("default", id).await.expect("read job")
                && job.started_us.is_some()
            {
                break job;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        if i >= 10 {
            samples.push((job.started_us.unwrap_or(0) - job.enqueued_us) as f64 / 1000.0);
        }
    }
    stop(&mut child);
    cleanup(target.redis_url, &prefix).await;
    samples.sort_by(f64::total_cmp);
    let rank =
        |p: f64| samples[((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
    (rank(0.5), rank(0.99))
}

pub(crate) fn stop(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

/// Deletes the prefix's keys, found with SCAN (a million keys would block a shared Redis for
/// a second under KEYS). Keys go one per UNLINK, so a cluster node's slots never mix in one
/// command; a seed list is cleaned node by node (replicas refuse, which is harmless).
pub(crate) async fn cleanup(redis_url: &str, prefix: &str) {
    for node in redis_url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let mut conn = crate::redis_conn(node).await;
        let mut cursor = 0u64;
        loop {
            let Ok((next, keys)): Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}:*"))
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut conn)
                .await
            else {
                break;
            };
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("UNLINK").arg(key).ignore();
            }
            let _: Result<(), _> = pipe.query_async(&mut conn).await;
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
}

fn baseline(root: &Path, system: &str, jobs: usize, redis_url: &str) -> Result<Value, String> {
    let script = root.join(format!("bench/baselines/{system}/run.sh"));
    // Sidekiq has no key prefix: it gets a database of its own, which it may flush.
    let url = match system {
        "sidekiq" => format!("{}/13", redis_url.trim_end_matches('/')),
        _ => redis_url.to_owned(),
    };
    let out = Command::new("bash")
        .arg(&script)
        .env("N", jobs.to_string())
        .env("REDIS_URL", url)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("{} exited {}", script.display(), out.status));
    }
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).map_err(|e| format!("{e}: {line}"))
}

//! `ferry-bench queue`: no-op throughput and idle pickup latency of one ferry worker process,
//! beside BullMQ and Sidekiq on the same Redis in the same run, printed as ratios.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use ferry_queue::{NewJob, Queue};
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// No-op jobs in the throughput run.
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// Jobs in the latency run (each enqueued to an idle worker).
    #[arg(long, default_value_t = 200)]
    latency_jobs: usize,
    /// Concurrency of the ferry worker.
    #[arg(long, default_value_t = 512)]
    concurrency: usize,
    /// Skip BullMQ and Sidekiq.
    #[arg(long)]
    no_baselines: bool,
    /// Jobs per baseline throughput run.
    #[arg(long, default_value_t = 20_000)]
    baseline_jobs: usize,
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/ferry"
    )]
    database_url: String,
}

/// The schema the benchmark's workers keep their durable record in.
const SCHEMA: &str = "ferry_bench";

pub async fn run(args: Args, root: PathBuf, ferry: PathBuf) {
    let migrated = Command::new(&ferry)
        .arg("migrate")
        .env("DATABASE_URL", &args.database_url)
        .env("FERRY_SCHEMA", SCHEMA)
        .stdout(Stdio::null())
        .status()
        .expect("run ferry migrate");
    assert!(migrated.success(), "ferry migrate failed");
    let throughput = ferry_throughput(&args, &ferry).await;
    let latency = ferry_latency(&args, &ferry).await;
    let ours = json!({
        "system": "ferry", "n": args.jobs, "jobs_per_s": throughput,
        "lat_n": args.latency_jobs, "p50_ms": latency.0, "p99_ms": latency.1,
        "concurrency": args.concurrency,
    });
    let mut rows = vec![ours.clone()];
    if !args.no_baselines {
        for system in ["bullmq", "sidekiq"] {
            match baseline(&root, system, args.baseline_jobs, &args.redis_url) {
                Ok(v) => rows.push(v),
                Err(e) => eprintln!("{system} baseline failed: {e}"),
            }
        }
    }
    println!(
        "{:<8} {:>9} {:>12} {:>9} {:>9} {:>12} {:>11}",
        "system", "jobs", "jobs/s", "p50 ms", "p99 ms", "concurrency", "ferry is"
    );
    for r in &rows {
        let ratio = if r["system"] == "ferry" {
            "-".to_owned()
        } else {
            format!(
                "{:.2}x",
                throughput / r["jobs_per_s"].as_f64().unwrap_or(f64::NAN)
            )
        };
        println!(
            "{:<8} {:>9} {:>12.0} {:>9.2} {:>9.2} {:>12} {:>11}",
            r["system"].as_str().unwrap_or("?"),
            r["n"],
            r["jobs_per_s"].as_f64().unwrap_or(0.0),
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            r["concurrency"],
            ratio
        );
    }
    println!("{}", json!({ "results": rows }));
}

/// Finished jobs the benchmark's queue client keeps (it enqueues and counts; workers retire).
pub fn keep() -> ferry_config::Keep {
    ferry_config::Keep {
        age: Duration::from_secs(3600),
        count: 10_000,
    }
}

fn prefix() -> String {
    format!("bench{:08x}", rand::random::<u32>())
}

fn worker(ferry: &PathBuf, args: &Args, prefix: &str) -> std::process::Child {
    Command::new(ferry)
        .args(["worker", "--concurrency", &args.concurrency.to_string()])
        .env("REDIS_URL", &args.redis_url)
        .env("DATABASE_URL", &args.database_url)
        .env("FERRY_SCHEMA", SCHEMA)
        .env("FERRY_REDIS_PREFIX", prefix)
        .env("FERRY_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start ferry worker")
}

async fn counter(queue: &Queue, state: &str) -> i64 {
    let stats = queue.stats("default").await.expect("stats");
    stats
        .by_kind
        .get("noop")
        .and_then(|s| s.get(state))
        .copied()
        .unwrap_or(0)
}

async fn ferry_throughput(args: &Args, ferry: &PathBuf) -> f64 {
    let prefix = prefix();
    let queue = Queue::connect(&args.redis_url, &prefix, keep())
        .await
        .expect("Redis");
    let jobs: Vec<_> = (0..args.jobs)
        .map(|_| NewJob::new("noop", "{}", 10))
        .collect();
    let enqueue = Instant::now();
    queue.enqueue("default", &jobs).await.expect("enqueue");
    eprintln!(
        "ferry: enqueued {} jobs in {:?}",
        args.jobs,
        enqueue.elapsed()
    );
    let start = Instant::now();
    let mut child = worker(ferry, args, &prefix);
    while counter(&queue, "succeeded").await < args.jobs as i64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            child.try_wait().ok().flatten().is_none(),
            "the ferry worker exited early"
        );
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "ferry throughput run timed out"
        );
    }
    let secs = start.elapsed().as_secs_f64();
    stop(&mut child);
    cleanup(&args.redis_url, &prefix).await;
    let rate = args.jobs as f64 / secs;
    eprintln!(
        "ferry: {} no-op jobs in {secs:.3} s (worker start included) = {rate:.0}/s",
        args.jobs
    );
    rate
}

async fn ferry_latency(args: &Args, ferry: &PathBuf) -> (f64, f64) {
    let prefix = prefix();
    let queue = Queue::connect(&args.redis_url, &prefix, keep())
        .await
        .expect("Redis");
    let mut child = worker(ferry, args, &prefix);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut samples = Vec::with_capacity(args.latency_jobs);
    for i in 0..args.latency_jobs + 10 {
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
    cleanup(&args.redis_url, &prefix).await;
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

pub(crate) async fn cleanup(redis_url: &str, prefix: &str) {
    let client = redis::Client::open(redis_url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    for chunk in keys.chunks(1000) {
        let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
    }
}

fn baseline(
    root: &std::path::Path,
    system: &str,
    jobs: usize,
    redis_url: &str,
) -> Result<Value, String> {
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

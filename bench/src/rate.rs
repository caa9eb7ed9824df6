//! `ferry-bench rate`: what a rate limit costs a job when it does not hold the job back. No-op
//! throughput of one worker process without a limit and with `[kinds.noop] rate` set far above
//! what the worker can reach (every job still makes the reservation call), alternating in the
//! same run; the difference per job is the limiter's cost.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use ferry_queue::{NewJob, Queue};
use serde_json::json;

use crate::queue::{cleanup, keep, stop};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// No-op jobs per run.
    #[arg(long, default_value_t = 50_000)]
    jobs: usize,
    /// Runs of each variant, alternating.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Concurrency of the ferry worker.
    #[arg(long, default_value_t = 512)]
    concurrency: usize,
    /// The limit of the limited runs: far above the worker's throughput, so it never waits.
    #[arg(long, default_value = "1000000/s")]
    rate: String,
    #[command(flatten)]
    services: crate::services::Services,
}

const SCHEMA: &str = "ferry_bench";

pub async fn run(args: Args, ferry: PathBuf) {
    let migrated = Command::new(&ferry)
        .arg("migrate")
        .env("DATABASE_URL", &args.services.database_url)
        .env("FERRY_SCHEMA", SCHEMA)
        .stdout(Stdio::null())
        .status()
        .expect("run ferry migrate");
    assert!(migrated.success(), "ferry migrate failed");
    let limited =
        std::env::temp_dir().join(format!("ferry-bench-rate-{}.toml", std::process::id()));
    std::fs::write(&limited, format!("[kinds.noop]\nrate = {:?}\n", args.rate))
        .expect("write config");
    let none = std::env::temp_dir().join(format!("ferry-bench-none-{}.toml", std::process::id()));
    std::fs::write(&none, "").expect("write config");
    let (mut plain, mut paced) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        plain.push(throughput(&args, &ferry, &none).await);
        paced.push(throughput(&args, &ferry, &limited).await);
        eprintln!(
            "round {}: no limit {:.0}/s, rate {} {:.0}/s",
            round + 1,
            plain[round],
            args.rate,
            paced[round]
        );
    }
    let _ = std::fs::remove_file(&limited);
    let _ = std::fs::remove_file(&none);
    let (p, r) = (median(&mut plain), median(&mut paced));
    let cost_us = 1e6 / r - 1e6 / p;
    println!(
        "{:<22} {:>9} {:>12} {:>14}",
        "variant", "jobs", "median/s", "µs per job"
    );
    println!(
        "{:<22} {:>9} {:>12.0} {:>14.1}",
        "no limit",
        args.jobs,
        p,
        1e6 / p
    );
    println!(
        "{:<22} {:>9} {:>12.0} {:>14.1}",
        format!("rate = {:?}", args.rate),
        args.jobs,
        r,
        1e6 / r
    );
    println!(
        "limited/none = {:.3}; limiter cost {cost_us:.1} µs of worker time per job",
        r / p
    );
    println!(
        "{}",
        json!({ "jobs": args.jobs, "rounds": args.rounds, "concurrency": args.concurrency,
                "none_per_s": plain, "limited_per_s": paced, "ratio": r / p, "cost_us": cost_us })
    );
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Jobs per second of one worker process over `args.jobs` no-op jobs enqueued beforehand.
async fn throughput(args: &Args, ferry: &Path, config: &Path) -> f64 {
    let prefix = format!("benchrate{:08x}", rand::random::<u32>());
    let queue = Queue::connect(&args.services.redis_url, &prefix, keep())
        .await
        .expect("Redis");
    let jobs: Vec<_> = (0..args.jobs)
        .map(|_| NewJob::new("noop", "{}", 10))
        .collect();
    queue.enqueue("default", &jobs).await.expect("enqueue");
    let start = Instant::now();
    let mut child = Command::new(ferry)
        .arg("--config")
        .arg(config)
        .args(["worker", "--concurrency", &args.concurrency.to_string()])
        .env("REDIS_URL", &args.services.redis_url)
        .env("DATABASE_URL", &args.services.database_url)
        .env("FERRY_SCHEMA", SCHEMA)
        .env("FERRY_REDIS_PREFIX", &prefix)
        .env("FERRY_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start ferry worker");
    loop {
        let stats = queue.stats("default").await.expect("stats");
        let done = stats
            .by_kind
            .get("noop")
            .and_then(|s| s.get("succeeded"))
            .copied()
            .unwrap_or(0);
        if done >= args.jobs as i64 {
            break;
        }
        assert!(
            child.try_wait().ok().flatten().is_none(),
            "the ferry worker exited early"
        );
        assert!(start.elapsed() < Duration::from_secs(600), "run timed out");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    stop(&mut child);
    cleanup(&args.services.redis_url, &prefix).await;
    args.jobs as f64 / secs
}

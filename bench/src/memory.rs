//! `ferry-bench memory`: Redis memory while one worker at default concurrency runs a steady
//! stream of no-op jobs (5,000/s by default) for minutes, against a private redis-server so
//! the memory is only ferry's. Retention is what `--keep-finished` and `--keep-count` set:
//! scale the age down so its horizon passes several times within the run.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use ferry_queue::Queue;

use crate::{
    private_redis::PrivateRedis,
    queue::{Setting, Target},
    services::Services,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Jobs enqueued per second, in steps of a tenth of a second.
    #[arg(long, default_value_t = 5_000)]
    rate: usize,
    /// Length of the run.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// `worker.keep_finished` of the worker.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    keep_finished: Duration,
    /// `worker.keep_finished_count` of the worker.
    #[arg(long, default_value_t = 10_000)]
    keep_count: usize,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    every: u64,
    #[command(flatten)]
    services: Services,
}

pub async fn run(args: Args, ferry: PathBuf) {
    crate::queue::migrate(&ferry, &args.services.database_url);
    let redis = PrivateRedis::start(false).await;
    let url = redis.url();
    let prefix = crate::queue::prefix();
    let keep = ferry_config::Keep {
        age: args.keep_finished,
        count: args.keep_count,
    };
    let queue = Queue::connect(&url, &prefix, keep).await.expect("Redis");
    let config = std::env::temp_dir().join(format!("ferry-{prefix}.toml"));
    std::fs::write(
        &config,
        format!(
            "[worker]\nkeep_finished = \"{}s\"\nkeep_finished_count = {}\n",
            args.keep_finished.as_secs().max(1),
            args.keep_count
        ),
    )
    .expect("write config");
    let target = Target {
        ferry: &ferry,
        services: &args.services,
        redis_url: &url,
    };
    let mut worker = target.worker(&prefix, Setting::Default, Some(&config), &[]);
    let client = redis::Client::open(url.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    eprintln!(
        "memory: Redis used_memory with the worker connected, before any job: {:.1} MB",
        crate::used_memory(&mut conn).await as f64 / 1e6
    );

    println!(
        "{:>6} {:>11} {:>11} {:>12} {:>12} {:>10} {:>14}",
        "t s", "enqueued", "succeeded", "used MB", "queue MB", "hashes", "stream length"
    );
    let start = Instant::now();
    let per_step = args.rate / 10;
    let (mut enqueued, mut next_sample, mut step) = (0usize, 0u64, 0u64);
    let mut samples = Vec::new();
    while start.elapsed() < args.duration {
        crate::queue::enqueue_quiet(&queue, "default", per_step).await;
        enqueued += per_step;
        step += 1;
        if start.elapsed().as_secs() >= next_sample {
            let used = crate::used_memory(&mut conn).await;
            let mem = queue.memory("default").await.expect("queue memory");
            let done = crate::queue::succeeded(&queue, "default").await;
            let backlog: u64 = redis::cmd("XLEN")
                .arg(format!("{prefix}:{{default}}:stream"))
                .query_async(&mut conn)
                .await
                .unwrap_or(0);
            let t = start.elapsed().as_secs();
            println!(
                "{t:>6} {enqueued:>11} {done:>11} {:>12.1} {:>12.1} {:>10} {backlog:>14}",
                used as f64 / 1e6,
                mem.bytes as f64 / 1e6,
                mem.jobs
            );
            samples.push((t, used, mem.jobs));
            next_sample += args.every;
        }
        assert!(
            worker.try_wait().ok().flatten().is_none(),
            "the ferry worker exited"
        );
        // Paced by the clock, not by sleeps alone, so the rate holds on a busy machine.
        let due = start + Duration::from_millis(100 * step);
        tokio::time::sleep_until(due.into()).await;
    }
    let secs = start.elapsed().as_secs_f64();
    summarize(&samples, enqueued, secs, &args);
    crate::queue::stop(&mut worker);
    let _ = std::fs::remove_file(&config);
}

/// The plateau: the largest memory in each quarter of the run.
fn summarize(samples: &[(u64, u64, u64)], enqueued: usize, secs: f64, args: &Args) {
    let quarter = samples.len().div_ceil(4).max(1);
    let peaks: Vec<String> = samples
        .chunks(quarter)
        .map(|q| {
            let (used, jobs) = q.iter().fold((0, 0), |(u, j), s| (u.max(s.1), j.max(s.2)));
            format!("{:.1} MB / {jobs} hashes", used as f64 / 1e6)
        })
        .collect();
    println!(
        "{enqueued} jobs enqueued in {secs:.0} s ({:.0}/s); keep_finished {:?}, keep_finished_count {}; Redis used_memory peak per quarter of the run: {}",
        enqueued as f64 / secs,
        args.keep_finished,
        args.keep_count,
        peaks.join(", ")
    );
}

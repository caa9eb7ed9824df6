//! `ferry-bench flow`: what flow control costs and gives, at a worker's default settings.
//! - Throughput: N no-op jobs through one worker process, plain (no tenant, default priority)
//!   and with flow control in use (each job of one of `--tenants` tenants, 10% high, 10% low),
//!   alternating round by round, so both see the same machine. Three ways: `drain` enqueues
//!   the jobs first and times the worker alone (flow control then does its admission work
//!   inside the timed part, which plain jobs did at enqueue); `backlog` does the same but
//!   times enqueue and drain together, so each side's stream writes are counted;
//!   `sustained` starts the worker first and times enqueue and work together, as a busy app
//!   sees it.
//! - Priority: a high job enqueued behind `--backlog` waiting default jobs (sleeps of 50-150
//!   ms, so the backlog lasts while the samples are taken): how long until it starts,
//!   p50/p99/max.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ferry_queue::{NewJob, Priority, Queue};

use crate::{
    queue::{Setting, Target, cleanup, keep, migrate, prefix, stop, wait_done},
    services::Services,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// No-op jobs per throughput run.
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// Rounds; each runs plain, then with flow control.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Tenants the flow-control jobs are spread over.
    #[arg(long, default_value_t = 100)]
    tenants: usize,
    /// Default jobs waiting ahead of the high ones in the priority run.
    #[arg(long, default_value_t = 100_000)]
    backlog: usize,
    /// High jobs whose start latency is measured.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    #[command(flatten)]
    services: Services,
}

pub async fn run(args: Args, ferry: PathBuf) {
    migrate(&ferry, &args.services.database_url);
    println!(
        "{:<6} {:<10} {:>12} {:>12} {:>8}",
        "round", "mode", "plain/s", "flow/s", "ratio"
    );
    let mut ratios = serde_json::Map::new();
    for round in 1..=args.rounds {
        for mode in [Mode::Drain, Mode::Backlog, Mode::Sustained] {
            let plain = throughput(&args, &ferry, false, mode).await;
            let flow = throughput(&args, &ferry, true, mode).await;
            let mode = mode.name();
            ratios
                .entry(mode)
                .or_insert_with(|| serde_json::json!([]))
                .as_array_mut()
                .expect("an array")
                .push((flow / plain).into());
            println!(
                "{round:<6} {mode:<10} {plain:>12.0} {flow:>12.0} {:>7.2}x",
                flow / plain
            );
        }
    }
    let (p50, p99, max) = priority_latency(&args, &ferry).await;
    println!(
        "high job behind {} waiting default jobs: start p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms ({} samples)",
        args.backlog, args.samples
    );
    println!(
        "{}",
        serde_json::json!({
            "ratios": ratios, "high_start_ms": {"p50": p50, "p99": p99, "max": max},
            "jobs": args.jobs, "tenants": args.tenants, "backlog": args.backlog,
        })
    );
}

/// What a throughput run times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Jobs enqueued first; the worker alone is timed.
    Drain,
    /// Jobs enqueued first, then the worker; both are timed.
    Backlog,
    /// The worker first; enqueue and work are timed together.
    Sustained,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Drain => "drain",
            Self::Backlog => "backlog",
            Self::Sustained => "sustained",
        }
    }
}

/// One worker process at default settings on its own key prefix.
fn worker(ferry: &Path, args: &Args, prefix: &str) -> std::process::Child {
    let target = Target {
        ferry,
        services: &args.services,
        redis_url: &args.services.redis_url,
    };
    target.worker(prefix, Setting::Default, None, &[])
}

async fn throughput(args: &Args, ferry: &Path, flow: bool, mode: Mode) -> f64 {
    let prefix = prefix();
    let queue = Queue::connect(&args.services.redis_url, &prefix, keep())
        .await
        .expect("Redis");
    let jobs: Vec<NewJob> = (0..args.jobs)
        .map(|i| {
            let mut job = NewJob::new("noop", "{}", 10);
            if flow {
                job.tenant = Some(format!("tenant{}", i % args.tenants));
                job.priority = match i % 10 {
                    0 => Priority::High,
                    1 => Priority::Low,
                    _ => Priority::Default,
                };
            }
            job
        })
        .collect();
    let mut child;
    let mut start = Instant::now();
    if mode == Mode::Sustained {
        child = worker(ferry, args, &prefix);
        // The worker is up once it heartbeats on the queue.
        while queue.stats("default").await.expect("stats").workers == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        start = Instant::now();
        for chunk in jobs.chunks(1000) {
            queue.enqueue("default", chunk).await.expect("enqueue");
        }
    } else {
        queue.enqueue("default", &jobs).await.expect("enqueue");
        if mode == Mode::Drain {
            start = Instant::now();
        }
        child = worker(ferry, args, &prefix);
    }
    wait_done(
        &queue,
        &[("default", args.jobs)],
        std::slice::from_mut(&mut child),
        Duration::from_secs(600),
    )
    .await;
    let rate = args.jobs as f64 / start.elapsed().as_secs_f64();
    stop(&mut child);
    cleanup(&args.services.redis_url, &prefix).await;
    eprintln!("flow={flow} {}: {rate:.0} jobs/s", mode.name());
    rate
}

async fn priority_latency(args: &Args, ferry: &Path) -> (f64, f64, f64) {
    let prefix = prefix();
    let queue = Queue::connect(&args.services.redis_url, &prefix, keep())
        .await
        .expect("Redis");
    // Sleeps of 50 to 150 ms (100 on average), spread so that slots free at a steady pace: with
    // sleeps all of one length, the 512 jobs started together also end together, and a high
    // job enqueued between two such waves waits for a slot up to a whole sleep, which says
    // nothing about priorities (measured: p99 49-75 ms with 100 ms for all).
    let backlog: Vec<NewJob> = (0..args.backlog)
        .map(|i| NewJob::new("sleep", format!(r#"{{"ms":{}}}"#, 50 + (i * 37) % 101), 10))
        .collect();
    queue.enqueue("default", &backlog).await.expect("enqueue");
    let mut child = worker(ferry, args, &prefix);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut samples = Vec::with_capacity(args.samples);
    for _ in 0..args.samples {
        let mut job = NewJob::new("noop", "{}", 10);
        job.priority = Priority::High;
        let id = queue.enqueue("default", &[job]).await.expect("enqueue")[0].0;
        let job = loop {
            if let Some(job) = queue.job("default", id).await.expect("read job")
                && job.started_us.is_some()
            {
                break job;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        };
        samples.push((job.started_us.unwrap_or(0) - job.enqueued_us) as f64 / 1000.0);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let left = queue.stats("default").await.expect("stats").ready;
    eprintln!("default jobs still waiting after the samples: {left}");
    assert!(
        left > 0,
        "the backlog drained before the samples ended; raise --backlog"
    );
    stop(&mut child);
    cleanup(&args.services.redis_url, &prefix).await;
    samples.sort_by(f64::total_cmp);
    let rank =
        |p: f64| samples[((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
    (rank(0.5), rank(0.99), samples[samples.len() - 1])
}

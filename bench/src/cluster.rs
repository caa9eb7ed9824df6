//! Redis Cluster benchmarks, each against servers of the benchmark's own:
//! - `cluster-overhead`: the same no-op throughput on a plain redis-server and on a one-node
//!   cluster (all slots on one node), through the single-node client and through the cluster
//!   client, so what the cluster code path costs shows apart from what the server's cluster
//!   mode costs;
//! - `cluster-spread`: three queues on the three primaries of a 3 + 3 loopback cluster
//!   (`scripts/redis-cluster.sh`), one worker per queue, beside the same on a single Redis.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use ferry_queue::Queue;
use serde_json::json;

use crate::{
    private_redis::{PrivateRedis, free_port},
    queue::{Setting, Target, cleanup, enqueue, keep, prefix, stop, throughput, wait_done},
    services::Services,
};

#[derive(Debug, clap::Args)]
pub struct OverheadArgs {
    /// No-op jobs per throughput run.
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Worker setting: `default` or a concurrency.
    #[arg(long, default_value = "default")]
    concurrency: Setting,
    /// Another ferry binary run the same way on the plain server in every round (e.g. a build
    /// of the commit before the cluster client existed).
    #[arg(long)]
    also: Option<PathBuf>,
    #[command(flatten)]
    services: Services,
}

pub async fn overhead(args: OverheadArgs, ferry: PathBuf) {
    crate::queue::migrate(&ferry, &args.services.database_url);
    let plain = PrivateRedis::start(false).await;
    let node = PrivateRedis::start(true).await;
    let plain_url = plain.url();
    let node_url = node.url();
    // The same node twice is a seed list: the cluster client.
    let node_seeds = format!("{node_url},{node_url}");
    let mut runs: Vec<(&str, &Path, &str)> = vec![
        ("plain server, single client", &ferry, &plain_url),
        ("cluster node, single client", &ferry, &node_url),
        ("cluster node, cluster client", &ferry, &node_seeds),
    ];
    if let Some(also) = &args.also {
        runs.push(("plain server, --also build", also, &plain_url));
    }
    let mut rows = Vec::new();
    println!(
        "{:<5} {:<32} {:>12} {:>14}",
        "round", "run", "jobs/s", "vs first row"
    );
    for round in 1..=args.rounds {
        let mut first = None;
        for (label, bin, url) in &runs {
            let target = Target {
                ferry: bin,
                services: &args.services,
                redis_url: url,
            };
            let rate = throughput(&target, args.concurrency, args.jobs).await.0;
            let base = *first.get_or_insert(rate);
            println!("{round:<5} {label:<32} {rate:>12.0} {:>13.2}x", rate / base);
            rows.push(json!({"round": round, "run": label, "jobs_per_s": rate,
                "concurrency": args.concurrency.to_string(), "n": args.jobs}));
        }
    }
    println!("{}", json!({ "results": rows }));
}

#[derive(Debug, clap::Args)]
pub struct SpreadArgs {
    /// No-op jobs per queue per run.
    #[arg(long, default_value_t = 60_000)]
    jobs: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Worker setting: `default` or a concurrency.
    #[arg(long, default_value = "default")]
    concurrency: Setting,
    /// First port of the cluster's six nodes (their bus ports are 10000 higher).
    #[arg(long, default_value_t = 7400)]
    base_port: u16,
    #[command(flatten)]
    services: Services,
}

pub async fn spread(args: SpreadArgs, root: PathBuf, ferry: PathBuf) {
    crate::queue::migrate(&ferry, &args.services.database_url);
    let dir = std::env::temp_dir().join(format!("ferry-bench-cluster-{}", free_port()));
    let script = root.join("scripts/redis-cluster.sh");
    let up = Command::new("bash")
        .arg(&script)
        .arg("up")
        .arg(&dir)
        .arg(args.base_port.to_string())
        .output()
        .expect("run scripts/redis-cluster.sh");
    assert!(
        up.status.success(),
        "cluster did not start: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let seeds = String::from_utf8_lossy(&up.stdout).trim().to_owned();
    let queues = queues_on_each_primary(args.base_port).await;
    eprintln!("cluster-spread: {seeds}; queues {queues:?}");
    let plain = PrivateRedis::start(false).await;
    let plain_url = plain.url();

    let configs: Vec<PathBuf> = queues
        .iter()
        .map(|q| {
            let path = dir.join(format!("{q}.toml"));
            std::fs::write(&path, format!("[kinds.noop]\nqueue = \"{q}\"\n")).expect("config");
            path
        })
        .collect();
    let mut rows = Vec::new();
    println!(
        "{:<5} {:<44} {:>12} {:>16}",
        "round", "run", "jobs/s", "vs single Redis"
    );
    for round in 1..=args.rounds {
        let mut single = None;
        for (label, url, spread) in [
            ("single Redis, 1 queue, 1 worker", plain_url.as_str(), false),
            (
                "single Redis, 3 queues, 3 workers",
                plain_url.as_str(),
                true,
            ),
            (
                "3+3 cluster, 3 queues on 3 primaries, 3 workers",
                seeds.as_str(),
                true,
            ),
        ] {
            let target = Target {
                ferry: &ferry,
                services: &args.services,
                redis_url: url,
            };
            let rate = if spread {
                three_queues(&target, args.concurrency, &queues, &configs, args.jobs).await
            } else {
                throughput(&target, args.concurrency, args.jobs).await.0
            };
            let base = *single.get_or_insert(rate);
            println!("{round:<5} {label:<44} {rate:>12.0} {:>15.2}x", rate / base);
            rows.push(json!({"round": round, "run": label, "jobs_per_s": rate,
                "concurrency": args.concurrency.to_string()}));
        }
    }
    println!("{}", json!({ "results": rows }));
    drop(plain);
    let _ = Command::new("bash")
        .arg(&script)
        .arg("down")
        .arg(&dir)
        .status();
}

/// One queue name per primary: names whose hash slot each primary serves.
async fn queues_on_each_primary(base_port: u16) -> Vec<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{base_port}")).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("cluster node");
    // CLUSTER SLOTS: [start, end, [host, port, id], replicas...] per range.
    let slots: Vec<(i64, i64, (String, i64))> = {
        let raw: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await
            .expect("CLUSTER SLOTS");
        raw.into_iter()
            .filter_map(|r| match r {
                redis::Value::Array(v) if v.len() >= 3 => {
                    let start: i64 = redis::from_redis_value(v[0].clone()).ok()?;
                    let end: i64 = redis::from_redis_value(v[1].clone()).ok()?;
                    let node: Vec<redis::Value> = redis::from_redis_value(v[2].clone()).ok()?;
                    let host: String = redis::from_redis_value(node.first()?.clone()).ok()?;
                    let port: i64 = redis::from_redis_value(node.get(1)?.clone()).ok()?;
                    Some((start, end, (host, port)))
                }
                _ => None,
            })
            .collect()
    };
    let mut chosen: Vec<(i64, String)> = Vec::new();
    for i in 0..1000 {
        let name = format!("q{i}");
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&name)
            .query_async(&mut conn)
            .await
            .expect("CLUSTER KEYSLOT");
        let Some(port) = slots
            .iter()
            .find(|(s, e, _)| (*s..=*e).contains(&slot))
            .map(|(_, _, (_, p))| *p)
        else {
            continue;
        };
        if !chosen.iter().any(|(p, _)| *p == port) {
            chosen.push((port, name));
        }
        if chosen.len() == 3 {
            break;
        }
    }
    assert_eq!(chosen.len(), 3, "no queue names for three primaries");
    chosen.into_iter().map(|(_, q)| q).collect()
}

/// Jobs per second over three queues, one worker per queue (each configured so `noop`
/// travels on its queue), all enqueued first, worker start included.
async fn three_queues(
    target: &Target<'_>,
    setting: Setting,
    queues: &[String],
    configs: &[PathBuf],
    jobs: usize,
) -> f64 {
    let prefix = prefix();
    let queue = Queue::connect(target.redis_url, &prefix, keep())
        .await
        .expect("Redis");
    for q in queues {
        enqueue(&queue, q, jobs).await;
    }
    let start = Instant::now();
    let mut workers: Vec<_> = queues
        .iter()
        .zip(configs)
        .map(|(q, config)| target.worker(&prefix, setting, Some(config), &[q.as_str()]))
        .collect();
    let want: Vec<(&str, usize)> = queues.iter().map(|q| (q.as_str(), jobs)).collect();
    wait_done(&queue, &want, &mut workers, Duration::from_secs(600)).await;
    let secs = start.elapsed().as_secs_f64();
    for w in &mut workers {
        stop(w);
    }
    cleanup(target.redis_url, &prefix).await;
    let rate = (jobs * queues.len()) as f64 / secs;
    eprintln!(
        "ferry: 3 x {jobs} no-op jobs on {} in {secs:.3} s = {rate:.0}/s",
        target.redis_url
    );
    rate
}

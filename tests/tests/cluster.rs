//! ferry on a real Redis Cluster (3 primaries + 3 replicas on loopback, started by
//! scripts/redis-cluster.sh): queues spread over the primaries, idle pickup and cancel work,
//! and a primary killed with SIGKILL is replaced by its replica without any process exiting.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use ferry_queue::{CancelResult, JobState};
use ferry_tests::TestEnv;

/// A throwaway cluster; stopped and deleted when dropped, even by a failing test.
struct Cluster {
    dir: PathBuf,
    base: u16,
    url: String,
}

/// Whether nothing listens on `port` on loopback.
fn free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

impl Cluster {
    fn start() -> Self {
        // Ports apart per process, so two test runs on one machine do not meet, and free:
        // the range holds the S3 stand-ins' 9000 and 9100, which a base landing there met.
        let mut base = 7600 + (std::process::id() % 200) as u16 * 10;
        while !(0..6).all(|i| free(base + i) && free(base + i + 10_000)) {
            base = 7600 + (base - 7600 + 10) % 2000;
        }
        let dir = std::env::temp_dir().join(format!("ferry-cluster-{base}"));
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/redis-cluster.sh");
        let out = Command::new("bash")
            .arg(&script)
            .args(["up", dir.to_str().unwrap(), &base.to_string()])
            .output()
            .expect("run scripts/redis-cluster.sh");
        let cluster = Self {
            dir,
            base,
            url: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        };
        assert!(
            out.status.success(),
            "cluster did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    fn ports(&self) -> impl Iterator<Item = u16> {
        self.base..self.base + 6
    }

    fn cli(&self, port: u16, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
            .filter(|s| !s.starts_with("Could not connect"))
    }

    /// The port of the connected primary serving `queue`'s slot, asked of any live node.
    fn primary_of(&self, queue: &str) -> Option<u16> {
        let tag = format!("{{{queue}}}");
        for port in self.ports() {
            let Some(slot) = self.cli(port, &["cluster", "keyslot", &tag]) else {
                continue;
            };
            let slot: u16 = slot.trim().parse().ok()?;
            let nodes = self.cli(port, &["cluster", "nodes"])?;
            for line in nodes.lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                    continue;
                }
                let serves = f[8..].iter().any(|range| {
                    let (a, b) = range.split_once('-').unwrap_or((range, range));
                    matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
                });
                if serves {
                    let addr = f[1].split('@').next()?;
                    return addr.rsplit(':').next()?.parse().ok();
                }
            }
        }
        None
    }

    fn kill(&self, port: u16) {
        let pid = std::fs::read_to_string(self.dir.join(port.to_string()).join("pid")).unwrap();
        let status = Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/redis-cluster.sh");
        let _ = Command::new("bash")
            .arg(script)
            .args(["down", self.dir.to_str().unwrap()])
            .status();
    }
}

/// Three queue names whose slots sit on three different primaries.
fn spread(cluster: &Cluster) -> Vec<String> {
    let mut chosen: Vec<(String, u16)> = Vec::new();
    for i in 0..200 {
        let name = format!("q{i}");
        let primary = cluster.primary_of(&name).expect("slot owner");
        if chosen.iter().all(|(_, p)| *p != primary) {
            chosen.push((name, primary));
        }
        if chosen.len() == 3 {
            break;
        }
    }
    assert_eq!(chosen.len(), 3, "no three queues on three primaries");
    chosen.into_iter().map(|(n, _)| n).collect()
}

async fn enqueue_all(env: &TestEnv, per_kind: usize) {
    // During a failover window a call may fail; the caller retries as a client would.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (kind, args) in [
        ("noop", "{}"),
        ("sleep", r#"{"ms": 1}"#),
        ("fail", r#"{"times": 1}"#),
    ] {
        let (queue, _) = env.job(kind, args);
        let jobs: Vec<_> = (0..per_kind).map(|_| env.job(kind, args).1).collect();
        loop {
            match env.queue.enqueue(&queue, &jobs).await {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("enqueue on {queue} failed, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("enqueue on {queue} kept failing: {e}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_spreads_queues_and_survives_a_primary_failover() {
    let cluster = Cluster::start();
    let queues = spread(&cluster);
    let env = TestEnv::on_redis(
        &format!(
            "[kinds.noop]\nqueue = \"{}\"\n[kinds.sleep]\nqueue = \"{}\"\n[kinds.fail]\nqueue = \"{}\"\n",
            queues[0], queues[1], queues[2]
        ),
        &cluster.url,
    )
    .await;
    assert!(env.queue.is_cluster());
    let mut worker = env.spawn_worker_process("cluster-worker");
    let mut scheduler = env.spawn_scheduler_process("cluster-scheduler");

    enqueue_all(&env, 100).await;
    for kind in ["noop", "sleep", "fail"] {
        env.wait_for_count(kind, "succeeded", 100, Duration::from_secs(60))
            .await;
    }
    // Every primary holds a queue.
    let mut holding = 0;
    for queue in &queues {
        let port = cluster.primary_of(queue).unwrap();
        let keys: i64 = cluster
            .cli(port, &["dbsize"])
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        holding += usize::from(keys > 0);
    }
    assert_eq!(holding, 3);

    // A rate limit's keys (next slot, held slots) share the `{limits}` slot: one script call.
    let second = Duration::from_secs(1);
    let a = env
        .queue
        .reserve_start("kind:x", "a", second)
        .await
        .unwrap();
    let b = env
        .queue
        .reserve_start("kind:x", "b", second)
        .await
        .unwrap();
    assert_eq!(b.at_us - a.at_us, 1_000_000);
    let again = env
        .queue
        .reserve_start("kind:x", "b", second)
        .await
        .unwrap();
    assert_eq!((again.at_us, again.fresh), (b.at_us, false));

    // Idle pickup.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let id = env.enqueue("noop", "{}").await;
    env.wait_for(id, Duration::from_secs(5), |j| {
        j.state == JobState::Succeeded
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(3));

    // Cancel a waiting job and a running one.
    let (queue, mut later) = env.job("noop", "{}");
    later.run_at_us = Some(ferry_queue::now_us() + 3_600_000_000);
    env.queue
        .enqueue(&queue, std::slice::from_ref(&later))
        .await
        .unwrap();
    assert_eq!(
        env.queue.cancel(&queue, later.id).await.unwrap(),
        CancelResult::Cancelled
    );
    let long = env.enqueue("sleep", r#"{"ms": 60000}"#).await;
    env.wait_for(long, Duration::from_secs(10), |j| {
        j.state == JobState::Running
    })
    .await;
    assert_eq!(
        env.queue.cancel(&queues[1], long).await.unwrap(),
        CancelResult::Requested
    );
    env.wait_for(long, Duration::from_secs(10), |j| {
        j.state == JobState::Cancelled
    })
    .await;

    // Kill the primary of the noop queue; its replica takes over.
    let victim = cluster.primary_of(&queues[0]).unwrap();
    cluster.kill(victim);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match cluster.primary_of(&queues[0]) {
            Some(p) if p != victim => break,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "no replica took over from {victim}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    enqueue_all(&env, 100).await;
    for kind in ["noop", "sleep", "fail"] {
        env.wait_for_count(kind, "succeeded", 200, Duration::from_secs(90))
            .await;
    }
    assert!(
        worker.try_wait().unwrap().is_none(),
        "the worker exited during the failover"
    );
    assert!(
        scheduler.try_wait().unwrap().is_none(),
        "the scheduler exited during the failover"
    );

    // The CLI reads the cluster too.
    for args in [&["jobs", "ls", "--limit", "5"][..], &["stats"][..]] {
        let out = env.ferry(args);
        assert!(
            out.status.success(),
            "ferry {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drop(worker);
    drop(scheduler);
    env.cleanup().await;
    drop(cluster);
}

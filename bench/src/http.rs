//! `ferry-bench http`: webhook calls per second from one ferry worker process to a local HTTP
//! endpoint (a minimal axum server in this process that answers 200 to everything), beside
//! the same HTTP client driving the endpoint directly (no queue, no signing).

use std::{
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use ferry_queue::{NewJob, Queue};
use futures::{StreamExt, stream};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Webhook calls per measurement.
    #[arg(long, default_value_t = 20_000)]
    calls: usize,
    /// Concurrency of the ferry worker (`worker.concurrency`); unset: ferry's default.
    #[arg(long)]
    concurrency: Option<usize>,
    /// How long the endpoint takes to answer each request, in milliseconds: a receiver that
    /// does work (0: answer at once).
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    #[command(flatten)]
    services: crate::services::Services,
}

const SCHEMA: &str = "bench_http_ferry";

/// What the worker signs with; the endpoint does not check it (a receiver's cost, not
/// ferry's).
const SECRET: &str = "bench-webhook-secret-000001";

/// `worker.concurrency` when `--concurrency` is not given, for the client-alone run.
const DEFAULT_CONCURRENCY: usize = 64;

pub async fn run(args: Args, ferry: PathBuf) {
    let (url, received) = endpoint(Duration::from_millis(args.delay_ms)).await;
    let concurrency = args.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    let alone = client_alone(&url, args.calls, concurrency).await;

    let prefix = format!("bhttp{:08x}", rand::random::<u32>());
    let config = std::env::temp_dir().join(format!("ferry-{prefix}.toml"));
    let worker_section = args
        .concurrency
        .map(|c| format!("[worker]\nconcurrency = {c}\n"))
        .unwrap_or_default();
    std::fs::write(
        &config,
        format!(
            "[postgres]\nurl = \"{db}\"\nschema = \"{SCHEMA}\"\n[redis]\nurl = \"{redis}\"\nprefix = \"{prefix}\"\n{worker_section}[http]\nallow = [\"{url}\"]\n",
            db = args.services.database_url,
            redis = args.services.redis_url,
        ),
    )
    .expect("write config");
    let ferry_cmd = |args: &[&str]| {
        let mut cmd = crate::ferry_command(&ferry, &config, args);
        cmd.env("FERRY_HTTP_SECRET", SECRET);
        cmd
    };
    let migrated = ferry_cmd(&["migrate"])
        .stdout(Stdio::null())
        .status()
        .expect("ferry migrate");
    assert!(migrated.success(), "ferry migrate failed");
    let queue = Queue::connect(&args.services.redis_url, &prefix, crate::queue::keep())
        .await
        .expect("Redis");

    // Every job enqueued first, then one worker started.
    let jobs: Vec<NewJob> = (0..args.calls)
        .map(|i| {
            let args = serde_json::json!({"url": format!("{url}hooks/order"), "body": {"order": i, "status": "paid"}});
            NewJob::new("http", args.to_string(), 10)
        })
        .collect();
    for chunk in jobs.chunks(5_000) {
        queue.enqueue("http", chunk).await.expect("enqueue");
    }
    let before = received.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut worker = ferry_cmd(&["worker"])
        .stdout(Stdio::null())
        .spawn()
        .expect("worker");
    crate::notify::wait_for(&queue, "http", "http", args.calls, &mut worker).await;
    let elapsed = start.elapsed();
    let webhooks = args.calls as f64 / elapsed.as_secs_f64();
    eprintln!(
        "ferry http: {} calls in {elapsed:.2?} (worker start included) = {webhooks:.0}/s",
        args.calls
    );
    crate::queue::stop(&mut worker);
    crate::queue::cleanup(&args.services.redis_url, &prefix).await;
    let _ = std::fs::remove_file(&config);
    assert!(
        received.load(Ordering::Relaxed) - before >= args.calls as u64,
        "the endpoint saw fewer calls than jobs succeeded"
    );

    let label = match args.concurrency {
        Some(c) => format!("ferry http (one worker, concurrency {c})"),
        None => format!("ferry http (one worker, default concurrency {DEFAULT_CONCURRENCY})"),
    };
    println!("{:<50} {:>8} {:>10}", "path", "calls", "calls/s");
    for (path, rate) in [
        (
            format!("client alone ({concurrency} at once, no queue)"),
            alone,
        ),
        (label, webhooks),
    ] {
        println!("{path:<50} {:>8} {rate:>10.0}", args.calls);
    }
    println!(
        "{}",
        serde_json::json!({"calls": args.calls, "concurrency": args.concurrency, "delay_ms": args.delay_ms, "client_alone_per_s": alone, "http_per_s": webhooks})
    );
}

/// The endpoint: 200 "ok" to every request after `delay`, counted, on a free port; its URL
/// ends in `/`.
async fn endpoint(delay: Duration) -> (String, Arc<AtomicU64>) {
    let received = Arc::new(AtomicU64::new(0));
    let count = received.clone();
    let app = axum::Router::new().fallback(move |_body: axum::body::Bytes| {
        let count = count.clone();
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            count.fetch_add(1, Ordering::Relaxed);
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind endpoint");
    let url = format!(
        "http://{}/",
        listener.local_addr().expect("endpoint address")
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// A pooled reqwest client sending the same requests, `concurrency` at once: what the
/// endpoint and HTTP allow on this machine.
async fn client_alone(url: &str, calls: usize, concurrency: usize) -> f64 {
    let client = reqwest::Client::new();
    let start = Instant::now();
    stream::iter(0..calls)
        .map(|i| {
            let request = client
                .post(format!("{url}hooks/order"))
                .json(&serde_json::json!({"order": i, "status": "paid"}));
            async move {
                let response = request.send().await.expect("send");
                assert!(response.status().is_success());
                response.bytes().await.expect("body");
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
    let rate = calls as f64 / start.elapsed().as_secs_f64();
    eprintln!(
        "client alone: {calls} calls in {:.2?} = {rate:.0}/s",
        start.elapsed()
    );
    rate
}

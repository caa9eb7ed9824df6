//! `ferry-bench notify`: emails per second from one ferry worker process to a local SMTP sink
//! (a minimal in-process server that accepts everything), with pooled connections, beside the
//! same pooled mailer driven directly (no queue, no record) against the same sink.

use std::{
    path::PathBuf,
    process::{Child, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use ferry_config::SmtpUrl;
use ferry_jobs::notify::{Mailer, Rendered};
use ferry_queue::{NewJob, Queue};
use futures::{StreamExt, stream};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Emails per measurement.
    #[arg(long, default_value_t = 5_000)]
    emails: usize,
    /// Pooled SMTP connections (notify.connections).
    #[arg(long, default_value_t = 8)]
    connections: u32,
    /// Concurrency of the ferry worker.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[command(flatten)]
    services: crate::services::Services,
}

const SCHEMA: &str = "bench_notify_ferry";
const APP: &str = "bench_notify_app";

pub async fn run(args: Args, ferry: PathBuf) {
    let (port, accepted) = sink().await;
    let url = format!("smtp://127.0.0.1:{port}");
    let raw = raw_mailer(&args, &url).await;

    let pool = sqlx::PgPool::connect(&args.services.database_url)
        .await
        .expect("Postgres");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; DROP SCHEMA IF EXISTS {APP} CASCADE; CREATE SCHEMA {APP};
         CREATE TABLE {APP}.recipients AS
           SELECT 'user' || i || '@bench.test' AS email, 'User ' || i AS name
           FROM generate_series(1, {}) i",
        args.emails
    )))
    .execute(&pool)
    .await
    .expect("bench schema");
    let prefix = format!("bnotify{:08x}", rand::random::<u32>());
    let config = std::env::temp_dir().join(format!("ferry-{prefix}.toml"));
    std::fs::write(
        &config,
        format!(
            "[postgres]\nurl = \"{db}\"\nschema = \"{SCHEMA}\"\n[redis]\nurl = \"{redis}\"\nprefix = \"{prefix}\"\n[worker]\nconcurrency = {c}\n\
             [notify]\nsmtp_url = \"{url}\"\nfrom = \"Bench <bench@ferry.test>\"\nconnections = {conns}\nrate = 1000000\nchunk_size = 500\n\
             [notify.templates.welcome]\nsubject = \"Welcome, {{{{ name }}}}\"\ntext = \"Hello {{{{ name }}}}, your account is ready.\"\n\
             [notify.audiences]\neveryone = \"SELECT email, name FROM {APP}.recipients\"\n",
            db = args.services.database_url,
            redis = args.services.redis_url,
            c = args.concurrency,
            conns = args.connections,
        ),
    )
    .expect("write config");
    let ferry_cmd = |args: &[&str]| crate::ferry_command(&ferry, &config, args);
    let migrated = ferry_cmd(&["migrate"])
        .stdout(Stdio::null())
        .status()
        .expect("ferry migrate");
    assert!(migrated.success(), "ferry migrate failed");
    let queue = Queue::connect(&args.services.redis_url, &prefix, crate::queue::keep())
        .await
        .expect("Redis");

    // notify.send: every job enqueued first, then one worker started.
    let jobs: Vec<NewJob> = (0..args.emails)
        .map(|i| {
            let args = serde_json::json!({"to": format!("user{i}@bench.test"), "template": "welcome", "data": {"name": format!("User {i}")}});
            NewJob::new("notify.send", args.to_string(), 8)
        })
        .collect();
    queue.enqueue("notify", &jobs).await.expect("enqueue");
    let start = Instant::now();
    let mut worker = ferry_cmd(&["worker"])
        .stdout(Stdio::null())
        .spawn()
        .expect("worker");
    wait_for(&queue, "notify", "notify.send", args.emails, &mut worker).await;
    let send = args.emails as f64 / start.elapsed().as_secs_f64();
    eprintln!(
        "ferry notify.send: {} emails in {:.2?} (worker start included) = {send:.0}/s",
        args.emails,
        start.elapsed()
    );

    // notify.broadcast: one job, the same worker, rate unlimited.
    let start = Instant::now();
    let job = NewJob::new(
        "notify.broadcast",
        r#"{"template":"welcome","audience":"everyone"}"#,
        10,
    );
    queue.enqueue("notify", &[job]).await.expect("enqueue");
    wait_for(&queue, "notify", "notify.broadcast", 1, &mut worker).await;
    let broadcast = args.emails as f64 / start.elapsed().as_secs_f64();
    eprintln!(
        "ferry notify.broadcast: {} emails in {:.2?} = {broadcast:.0}/s",
        args.emails,
        start.elapsed()
    );

    crate::queue::stop(&mut worker);
    crate::queue::cleanup(&args.services.redis_url, &prefix).await;
    let _ = std::fs::remove_file(&config);
    assert!(
        accepted.load(Ordering::Relaxed) >= 3 * args.emails as u64,
        "the sink missed mails"
    );
    println!("{:<40} {:>8} {:>10}", "path", "emails", "emails/s");
    for (path, rate) in [
        ("mailer alone (pool, no queue/record)", raw),
        ("ferry notify.send (one worker)", send),
        ("ferry notify.broadcast (one job)", broadcast),
    ] {
        println!("{path:<40} {:>8} {rate:>10.0}", args.emails);
    }
    println!(
        "{}",
        serde_json::json!({"emails": args.emails, "connections": args.connections, "mailer_per_s": raw, "send_per_s": send, "broadcast_per_s": broadcast})
    );
}

/// A minimal SMTP server that accepts every message and keeps nothing, on a free port, in
/// this process: the sink must not be what is measured (the aiosmtpd test sink managed about
/// 170 messages/s here).
async fn sink() -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
    let port = listener.local_addr().expect("sink address").port();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(session(socket, count.clone()));
        }
    });
    (port, accepted)
}

async fn session(socket: TcpStream, accepted: Arc<AtomicU64>) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = tokio::io::BufReader::new(read).lines();
    write.write_all(b"220 bench sink\r\n").await?;
    let mut in_data = false;
    while let Some(line) = lines.next_line().await? {
        let reply: &[u8] = if in_data {
            if line != "." {
                continue;
            }
            in_data = false;
            accepted.fetch_add(1, Ordering::Relaxed);
            b"250 2.0.0 queued\r\n"
        } else {
            match line.get(..4).map(str::to_ascii_uppercase).as_deref() {
                Some("EHLO" | "HELO") => b"250 bench sink\r\n",
                Some("DATA") => {
                    in_data = true;
                    b"354 end with <CRLF>.<CRLF>\r\n"
                }
                Some("QUIT") => {
                    write.write_all(b"221 bye\r\n").await?;
                    return Ok(());
                }
                _ => b"250 OK\r\n",
            }
        };
        write.write_all(reply).await?;
    }
    Ok(())
}

/// The same pooled mailer ferry uses, driven directly: what the sink and SMTP allow.
async fn raw_mailer(args: &Args, url: &str) -> f64 {
    let mailer = Arc::new(
        Mailer::new(
            &SmtpUrl::new(url),
            Some("bench@ferry.test"),
            args.connections,
            Duration::from_secs(30),
        )
        .expect("mailer"),
    );
    let start = Instant::now();
    stream::iter(0..args.emails)
        .map(|i| {
            let mailer = mailer.clone();
            async move {
                let to = Mailer::address(&format!("raw{i}@bench.test")).expect("address");
                let message = Rendered {
                    subject: format!("Welcome, User {i}"),
                    text: format!("Hello User {i}, your account is ready."),
                    html: None,
                };
                mailer
                    .send(to, &format!("raw-{i}"), &message)
                    .await
                    .expect("send");
            }
        })
        .buffer_unordered(args.connections as usize)
        .collect::<Vec<()>>()
        .await;
    let rate = args.emails as f64 / start.elapsed().as_secs_f64();
    eprintln!(
        "mailer alone: {} emails in {:.2?} = {rate:.0}/s",
        args.emails,
        start.elapsed()
    );
    rate
}

/// Waits until `n` jobs of `kind` on queue `name` succeeded; fails on a dead job or an
/// exited worker.
pub(crate) async fn wait_for(queue: &Queue, name: &str, kind: &str, n: usize, worker: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let stats = queue.stats(name).await.expect("stats");
        let count = |state: &str| {
            stats
                .by_kind
                .get(kind)
                .and_then(|s| s.get(state))
                .copied()
                .unwrap_or(0)
        };
        if count("succeeded") >= n as i64 {
            return;
        }
        assert_eq!(
            count("dead"),
            0,
            "{kind} jobs died; see ferry jobs ls --state dead"
        );
        assert!(
            worker.try_wait().ok().flatten().is_none(),
            "the ferry worker exited early"
        );
        assert!(Instant::now() < deadline, "{kind} timed out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

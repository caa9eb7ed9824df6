//! `ferry-bench notify-realtime`: what `[notify] realtime` adds to `notify.send`. Two
//! notifiers built as a worker builds them, the same in every way but `realtime`, deliver
//! in-app rows (no email, so the SMTP round trip does not drown the publish) to the same table,
//! alternating call by call so both see the same load. Each `deliver` is the body of the
//! `notify.send` handler: render, claim the delivery and insert the row in one transaction,
//! then (realtime on) `PUBLISH`. The queue is left out: its pickup latency is milliseconds of
//! noise around a sub-millisecond difference. A subscriber counts what was published.

use std::{
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use ferry_config::{Config, Env};
use ferry_jobs::notify::{Message, Notifier};
use ferry_queue::Queue;
use ferry_record::Record;
use futures::StreamExt;
use serde_json::json;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Measured messages per setting.
    #[arg(long, default_value_t = 5_000)]
    messages: usize,
    /// Unmeasured messages per setting first (pools connect, plans cache).
    #[arg(long, default_value_t = 300)]
    warmup: usize,
    #[command(flatten)]
    services: crate::services::Services,
}

const SCHEMA: &str = "bench_realtime_ferry";
const APP: &str = "bench_realtime_app";

pub async fn run(args: Args, ferry: PathBuf) {
    let pool = sqlx::PgPool::connect(&args.services.database_url)
        .await
        .expect("Postgres");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; DROP SCHEMA IF EXISTS {APP} CASCADE; CREATE SCHEMA {APP};
         CREATE TABLE {APP}.notifications (id bigserial PRIMARY KEY, user_id bigint NOT NULL,
           title text NOT NULL, body text NOT NULL, link text, created_at timestamptz NOT NULL DEFAULT now())"
    )))
    .execute(&pool)
    .await
    .expect("bench schema");
    let prefix = format!("brt{:08x}", rand::random::<u32>());
    let channel_prefix = format!("{prefix}:notifications");
    let toml = |realtime: bool| {
        format!(
            "[postgres]\nurl = \"{db}\"\nschema = \"{SCHEMA}\"\n[redis]\nurl = \"{redis}\"\nprefix = \"{prefix}\"\n\
             [notify]\ntable = \"{APP}.notifications\"\n{rt}\
             [notify.templates.welcome]\nsubject = \"Welcome, {{{{ name }}}}\"\ntext = \"Hello {{{{ name }}}}, your account is ready.\"\n",
            db = args.services.database_url,
            redis = args.services.redis_url,
            rt = if realtime {
                format!("realtime = \"{channel_prefix}\"\n")
            } else {
                String::new()
            },
        )
    };
    let file = std::env::temp_dir().join(format!("ferry-{prefix}.toml"));
    std::fs::write(&file, toml(true)).expect("write config");
    let migrated = crate::ferry_command(&ferry, &file, &["migrate"])
        .stdout(Stdio::null())
        .status()
        .expect("ferry migrate");
    assert!(migrated.success(), "ferry migrate failed");
    let _ = std::fs::remove_file(&file);

    let config = |realtime| {
        Arc::new(Config::from_toml_str(&toml(realtime), &Env::empty()).expect("bench config"))
    };
    let (on, off) = (config(true), config(false));
    let record = Record::connect(&on.postgres).await.expect("record");
    let queue = Queue::connect(&args.services.redis_url, &prefix, crate::queue::keep())
        .await
        .expect("Redis");
    // Both get the Redis connection: the only difference is the setting.
    let notifiers = [
        Notifier::new(on, record.clone(), Some(queue.clone())).expect("notifier on"),
        Notifier::new(off, record, Some(queue.clone())).expect("notifier off"),
    ];

    // Every row goes to user 42, so one channel carries every publish.
    let received = Arc::new(AtomicU64::new(0));
    let client = redis::Client::open(args.services.redis_url.as_str()).expect("Redis URL");
    let mut pubsub = client.get_async_pubsub().await.expect("subscribe");
    pubsub
        .subscribe(format!("{channel_prefix}:42"))
        .await
        .expect("subscribe");
    let count = received.clone();
    tokio::spawn(async move {
        let mut messages = pubsub.into_on_message();
        while messages.next().await.is_some() {
            count.fetch_add(1, Ordering::Relaxed);
        }
    });

    let user = json!(42);
    let mut latencies = [Vec::new(), Vec::new()];
    let total = args.warmup + args.messages;
    for i in 0..total {
        // Alternate which goes first, so neither always follows the other's commit.
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let key = format!("bench:{which}:{i}");
            let data = json!({"name": format!("User {i}")});
            let message = Message {
                key: &key,
                job_id: uuid::Uuid::now_v7(),
                template: "welcome",
                to: None,
                user_id: Some(&user),
                data: &data,
                columns: None,
                resend: false,
            };
            let start = Instant::now();
            notifiers[which].deliver(&message).await.expect("deliver");
            let took = start.elapsed();
            if i >= args.warmup {
                latencies[which].push(took);
            }
        }
    }
    // Every publish with realtime on must reach the subscriber.
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::Relaxed) < total as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = received.load(Ordering::Relaxed);
    let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {APP}.notifications"
    )))
    .fetch_one(&pool)
    .await
    .expect("count rows");
    crate::queue::cleanup(&args.services.redis_url, &prefix).await;
    assert_eq!(got, total as u64, "the subscriber missed publishes");
    assert_eq!(rows, 2 * total as i64, "rows missing");

    let [on, off] = latencies.map(|mut l| {
        l.sort();
        let at = |q: f64| l[((l.len() as f64 * q) as usize).min(l.len() - 1)];
        (at(0.50), at(0.99))
    });
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{:<14} {:>8} {:>9} {:>9}",
        "realtime", "messages", "p50 ms", "p99 ms"
    );
    for (name, (p50, p99)) in [("on", on), ("off", off)] {
        println!(
            "{name:<14} {:>8} {:>9.3} {:>9.3}",
            args.messages,
            ms(p50),
            ms(p99)
        );
    }
    let added = ms(on.0) - ms(off.0);
    println!("p50 added by the publish: {added:.3} ms; subscriber received {got}/{total}");
    println!(
        "{}",
        json!({"messages": args.messages, "on_p50_ms": ms(on.0), "on_p99_ms": ms(on.1),
               "off_p50_ms": ms(off.0), "off_p99_ms": ms(off.1), "p50_added_ms": added,
               "received": got, "published": total})
    );
}

//! `ferry-bench sync`: a full sync of generated rows into the MongoDB stand-in, against
//! (a) the raw driver's unordered bulk inserts of the same documents to the same server and
//! (b) a null sink (read + map + encode, no writes); with the worker's peak memory at two
//! table sizes.

use std::{path::PathBuf, process::Stdio, sync::Arc, time::Instant};

use bson::RawDocumentBuf;
use ferry_config::{Config, Env};
use ferry_jobs::sync::{Target, page};
use serde_json::json;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    rows: i64,
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/ferry"
    )]
    database_url: String,
    #[arg(long, env = "MONGODB_URI", default_value = "mongodb://127.0.0.1:27017")]
    mongodb_uri: String,
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
}

const SCHEMA: &str = "bench_sync_app";

pub async fn run(args: Args, ferry: PathBuf) {
    let small = (args.rows / 4).max(1);
    let pool = sqlx::PgPool::connect(&args.database_url)
        .await
        .expect("Postgres");
    for (table, n) in [("items", args.rows), ("items_small", small)] {
        ensure_table(&pool, table, n).await;
    }
    let tag = format!("{:08x}", rand::random::<u32>());
    let config = |db: &str, tables: &str| {
        let text = format!(
            "[postgres]\nurl = \"{}\"\nschema = \"bench_sync_ferry\"\n[redis]\nurl = \"{}\"\nprefix = \"bsync{tag}\"\n[mongodb]\nuri = \"{}\"\ndatabase = \"{db}\"\n[sync]\nschemas = [\"{SCHEMA}\"]\n{tables}",
            args.database_url, args.redis_url, args.mongodb_uri
        );
        (
            Config::from_toml_str(&text, &Env::empty()).expect("config"),
            text,
        )
    };

    // (b) null sink, and the documents for (a).
    let (cfg, _) = config(&format!("bench_null_{tag}"), "");
    let target = Target::connect(&cfg).await.expect("targets");
    let table = target
        .catalog(&cfg)
        .await
        .expect("catalog")
        .table(&format!("{SCHEMA}.items"))
        .expect("table");
    // Two readers over the two halves of the key range, as two chunk jobs would run.
    let started = Instant::now();
    let middle = (args.rows / 2).to_string();
    let halves = [
        (None, Some(vec![middle.clone()])),
        (Some(vec![middle]), None),
    ];
    let mut readers = Vec::new();
    for (start, end) in halves {
        let (target, table, timestamps, size) = (
            target.clone(),
            table.clone(),
            cfg.sync.timestamps,
            cfg.sync.chunk_size,
        );
        readers.push(tokio::spawn(async move {
            let mut after: Option<Vec<String>> = start;
            let mut docs: Vec<RawDocumentBuf> = Vec::new();
            let mut bytes = 0;
            loop {
                let range = page::Range {
                    after: after.as_deref(),
                    upto: end.as_deref(),
                };
                let p = page::read(&target.app, &table, timestamps, range, size)
                    .await
                    .expect("read");
                if p.docs.is_empty() {
                    break;
                }
                bytes += p.bytes;
                after = p.last();
                docs.extend(p.docs);
            }
            (docs, bytes)
        }));
    }
    let mut docs: Vec<RawDocumentBuf> = Vec::with_capacity(args.rows as usize);
    let mut bytes = 0;
    for r in readers {
        let (d, b) = r.await.expect("reader");
        docs.extend(d);
        bytes += b;
    }
    let null_secs = started.elapsed().as_secs_f64();
    let null_rate = docs.len() as f64 / null_secs;
    eprintln!(
        "null sink: {} rows ({} MB of BSON) in {null_secs:.2} s",
        docs.len(),
        bytes / 1_000_000
    );

    // (a) the raw driver: unordered bulk inserts of the same documents, batches of 1000.
    let raw_db = target.mongo.client().database(&format!("bench_raw_{tag}"));
    let coll = raw_db.collection::<RawDocumentBuf>("items");
    let started = Instant::now();
    let docs = Arc::new(docs);
    let mut tasks = Vec::new();
    // Same parallelism as ferry's default sync.max_writers.
    for w in 0..4 {
        let docs = docs.clone();
        let coll = coll.clone();
        tasks.push(tokio::spawn(async move {
            for (i, batch) in docs.chunks(1000).enumerate() {
                if i % 4 == w {
                    coll.insert_many(batch.to_vec())
                        .ordered(false)
                        .await
                        .expect("insert");
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let raw_secs = started.elapsed().as_secs_f64();
    let raw_rate = docs.len() as f64 / raw_secs;
    eprintln!("raw driver: {} rows in {raw_secs:.2} s", docs.len());
    drop(docs);
    let _ = raw_db.drop().await;

    // ferry: a worker process and `ferry sync full --wait`, at two sizes.
    let mut results = Vec::new();
    for (name, n) in [("items_small", small), ("items", args.rows)] {
        let db = format!("bench_ferry_{tag}_{name}");
        let (_, text) = config(
            &db,
            &format!(
                "[[sync.table]]\nname = \"{SCHEMA}.{}\"\nskip = true\n",
                if name == "items" {
                    "items_small"
                } else {
                    "items"
                }
            ),
        );
        let path = std::env::temp_dir().join(format!("ferry-bench-sync-{tag}.toml"));
        std::fs::write(&path, text).expect("write config");
        let ferry_cmd = |a: &[&str]| crate::ferry_command(&ferry, &path, a);
        assert!(
            ferry_cmd(&["migrate"])
                .stdout(Stdio::null())
                .status()
                .expect("migrate")
                .success()
        );
        let mut worker = ferry_cmd(&["worker"])
            .stdout(Stdio::null())
            .spawn()
            .expect("worker");
        let started = Instant::now();
        let status = ferry_cmd(&["sync", "full", "--wait"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("sync");
        let secs = started.elapsed().as_secs_f64();
        assert!(status.success(), "ferry sync full failed");
        let peak = crate::peak_rss_kb(worker.id());
        crate::queue::stop(&mut worker);
        let _ = target.mongo.client().database(&db).drop().await;
        let _ = std::fs::remove_file(&path);
        eprintln!(
            "ferry: {n} rows of {name} in {secs:.2} s, worker peak RSS {} MB",
            peak / 1024
        );
        results.push(json!({ "table": name, "rows": n, "seconds": secs, "rows_per_s": n as f64 / secs, "peak_rss_mb": peak as f64 / 1024.0 }));
    }
    let ferry_rate = results[1]["rows_per_s"].as_f64().unwrap_or(0.0);
    println!("{:<28} {:>12}", "measure", "rows/s");
    println!("{:<28} {:>12.0}", "null sink (read+map+encode)", null_rate);
    println!("{:<28} {:>12.0}", "raw driver inserts", raw_rate);
    println!(
        "{:<28} {:>12.0}   {:.2}x raw driver",
        "ferry sync full",
        ferry_rate,
        ferry_rate / raw_rate
    );
    for r in &results {
        println!(
            "worker peak RSS at {:>8} rows: {:.0} MB",
            r["rows"],
            r["peak_rss_mb"].as_f64().unwrap_or(0.0)
        );
    }
    println!(
        "{}",
        json!({ "null_sink_rows_per_s": null_rate, "raw_driver_rows_per_s": raw_rate, "ferry": results, "ratio_to_raw": ferry_rate / raw_rate })
    );
}

async fn ensure_table(pool: &sqlx::PgPool, table: &str, rows: i64) {
    let count: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT CASE WHEN to_regclass('{SCHEMA}.{table}') IS NULL THEN NULL ELSE (SELECT count(*) FROM {SCHEMA}.{table}) END"
    )))
    .fetch_one(pool)
    .await
    .unwrap_or(None);
    if count == Some(rows) {
        return;
    }
    eprintln!("generating {rows} rows in {SCHEMA}.{table}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS {SCHEMA};
         DROP TABLE IF EXISTS {SCHEMA}.{table};
         CREATE TABLE {SCHEMA}.{table} (
           id int8 PRIMARY KEY, ref uuid NOT NULL, name text NOT NULL, price numeric(12,2),
           created_at timestamptz NOT NULL, tags text[], meta jsonb, active bool);
         INSERT INTO {SCHEMA}.{table}
           SELECT i, md5(i::text)::uuid, 'item ' || i, (i % 100000) / 100.0,
                  '2024-01-01'::timestamptz + i * interval '1 second',
                  ARRAY['t' || (i % 7), 't' || (i % 11)],
                  jsonb_build_object('rank', i % 1000, 'label', md5(i::text)),
                  i % 2 = 0
           FROM generate_series(1, {rows}) i;
         ANALYZE {SCHEMA}.{table};"
    )))
    .execute(pool)
    .await
    .expect("generate rows");
}

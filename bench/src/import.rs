//! `ferry-bench import`: MongoDB → PostgreSQL import of Mongoose-style documents.
//!
//! 1. Pipeline: documents already in memory, converted and written by ferry's own import
//!    writer (upsert by mapped id, unchanged rows skipped, rejects recorded) with the
//!    parallelism of one worker (`import.chunk` runs 4 at once), against a raw `COPY` of the
//!    same rows into an identical empty table, in the same run.
//! 2. End to end: `ferry import run --wait` with one worker process against the MongoDB
//!    stand-in's own cursor read (`find().sort({_id: 1})`, decoded as the import decodes it)
//!    of the same collection, in the same run; the worker's peak RSS at two collection sizes.

use std::{path::PathBuf, process::Stdio, sync::Arc, time::Instant};

use bson::{Bson, Decimal128, Document, RawDocumentBuf, doc, oid::ObjectId};
use ferry_config::{Config, Env};
use ferry_jobs::{
    import::{CollectionPlan, mapping, rows::Converted, write::Writer},
    sync::Target,
};
use futures::StreamExt;
use serde_json::json;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Documents for the in-memory pipeline and its COPY baseline.
    #[arg(long, default_value_t = 1_000_000)]
    docs: usize,
    /// Collection sizes in the MongoDB stand-in for the end-to-end runs (read and import).
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    sizes: Vec<usize>,
    /// `import.docs_per_chunk` of the ferry runs; 0: ferry's default.
    #[arg(long, default_value_t = 0)]
    docs_per_chunk: usize,
    /// Skip the end-to-end runs (pipeline and COPY only).
    #[arg(long)]
    no_e2e: bool,
    /// Hold the pipeline's source as raw BSON, decoded batch by batch inside the timed run as
    /// a cursor's batches are, instead of decoded documents moved in and freed one by one
    /// (1,000,000 of them scatter the heap, and freeing them costs the writers' time).
    #[arg(long)]
    raw_source: bool,
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

const APP: &str = "bench_import_app";
const RECORD: &str = "bench_import_ferry";
/// Writers at once: `import.chunk`'s concurrency per worker.
const WRITERS: usize = 4;

const TABLE: &str = "(id uuid PRIMARY KEY, email text NOT NULL UNIQUE, full_name text,
    role text NOT NULL, balance numeric(12,2), logins integer, tags text[], settings jsonb,
    active boolean, created_at timestamptz NOT NULL)";

/// Document `i`: a Mongoose-style user (nested profile, Decimal128, date, array, subdocument).
fn document(i: usize) -> Document {
    let mut id = [0u8; 12];
    id[0] = 0x65;
    id[4..].copy_from_slice(&(i as u64).to_be_bytes());
    let mut d = doc! {
        "_id": ObjectId::from_bytes(id),
        "email": format!("user{i}@example.com"),
        "profile": {"name": format!("User {i}"), "bio": "imported by the benchmark"},
        "role": if i.is_multiple_of(10) { "instructor" } else { "student" },
        "balance": Bson::Decimal128(format!("{}.{:02}", i % 100_000, i % 100).parse::<Decimal128>().expect("decimal")),
        "tags": ["new", format!("t{}", i % 7)],
        "settings": {"theme": "dark", "limits": {"seats": (i % 50) as i32, "ratio": 0.5}},
        "active": i.is_multiple_of(2),
        "createdAt": bson::DateTime::from_millis(1_700_000_000_000 + i as i64 * 1000),
        "__v": 0,
    };
    // Mongoose stores numbers as doubles unless told otherwise.
    d.insert(
        "logins",
        if i.is_multiple_of(2) {
            Bson::Double((i % 50) as f64)
        } else {
            Bson::Int32((i % 50) as i32)
        },
    );
    d
}

pub async fn run(args: Args, ferry: PathBuf) {
    let tag = format!("{:08x}", rand::random::<u32>());
    let db = format!("bench_import_{tag}");
    let docs_per_chunk = if args.docs_per_chunk == 0 {
        String::new()
    } else {
        format!("docs_per_chunk = {}\n", args.docs_per_chunk)
    };
    let text = format!(
        "[postgres]\nurl = \"{}\"\nschema = \"{RECORD}\"\n[redis]\nurl = \"{}\"\nprefix = \"bimport{tag}\"\n[mongodb]\nuri = \"{}\"\ndatabase = \"{db}\"\n[import]\nschema = \"{APP}\"\n{docs_per_chunk}[[import.collection]]\nname = \"items\"\ntable = \"items\"\ncolumns = {{ full_name = \"profile.name\", created_at = \"createdAt\" }}\n",
        args.database_url, args.redis_url, args.mongodb_uri
    );
    let cfg = Config::from_toml_str(&text, &Env::empty()).expect("config");
    let path = std::env::temp_dir().join(format!("ferry-bench-import-{tag}.toml"));
    std::fs::write(&path, &text).expect("write config");
    let ferry_cmd = |a: &[&str]| crate::ferry_command(&ferry, &path, a);
    assert!(
        ferry_cmd(&["migrate"])
            .stdout(Stdio::null())
            .status()
            .expect("migrate")
            .success()
    );
    let target = Target::connect(&cfg).await.expect("targets");
    let record = ferry_record::Record::connect(&cfg.postgres)
        .await
        .expect("record");
    reset_tables(&target.app, record.pool()).await;

    // The plan needs the collection and a sample of it in MongoDB.
    let items = target.mongo.collection::<Document>("items");
    let first = args.sizes.first().copied().unwrap_or(0).max(1000);
    load(&items, 0, first).await;
    let plans = mapping::plan(&target, &cfg.import).await.expect("plan");

    // Upsert path alone, then as chunks write (COPY for new batches), then raw COPY.
    let (n, raw) = (args.docs, args.raw_source);
    let upsert_rate = pipeline(&target, record.pool(), &plans, n, false, raw).await;
    let pipeline_rate = pipeline(&target, record.pool(), &plans, n, true, raw).await;
    let copy_rates = raw_copy(&target, &plans[0], args.docs).await;

    let mut e2e = Vec::new();
    if !args.no_e2e {
        let mut loaded = first;
        for &n in &args.sizes {
            load(&items, loaded, n).await;
            loaded = loaded.max(n);
            let raw = raw_read(&items).await;
            reset_tables(&target.app, record.pool()).await;
            let mut worker = ferry_cmd(&["worker"])
                .stdout(Stdio::null())
                .spawn()
                .expect("worker");
            let started = Instant::now();
            let ok = ferry_cmd(&["import", "run", "--wait"])
                .stdout(Stdio::null())
                .status()
                .expect("import")
                .success();
            let secs = started.elapsed().as_secs_f64();
            let peak = crate::peak_rss_kb(worker.id());
            crate::queue::stop(&mut worker);
            assert!(ok, "ferry import run failed");
            let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {APP}.items"
            )))
            .fetch_one(&target.app)
            .await
            .expect("count");
            assert_eq!(rows as usize, n, "the import lost documents");
            let rate = n as f64 / secs;
            eprintln!(
                "{n} documents: stand-in cursor read {raw:.0}/s; ferry import run --wait {secs:.1} s = {rate:.0}/s ({:.2}x); worker peak RSS {} MB",
                rate / raw,
                peak / 1024
            );
            e2e.push(json!({"documents": n, "raw_read_per_s": raw, "ferry_seconds": secs,
                "ferry_per_s": rate, "ratio_to_raw_read": rate / raw, "worker_peak_rss_mb": peak as f64 / 1024.0}));
        }
    }
    let _ = target.mongo.drop().await;
    let _ = std::fs::remove_file(&path);

    println!("{:<44} {:>12}", "measure", "docs/s");
    println!(
        "{:<44} {:>12.0}",
        "ferry pipeline, upsert path only", upsert_rate
    );
    println!(
        "{:<44} {:>12.0}",
        "ferry pipeline as chunks write (COPY if new)", pipeline_rate
    );
    for (name, rate) in &copy_rates {
        println!(
            "{:<44} {:>12.0}   ferry {:.2}x",
            name,
            rate,
            pipeline_rate / rate
        );
    }
    for r in &e2e {
        println!(
            "{:>8} docs: stand-in cursor read {:>8.0}/s, ferry import {:>8.0}/s ({:.2}x), worker peak RSS {:.0} MB",
            r["documents"],
            r["raw_read_per_s"].as_f64().unwrap_or(0.0),
            r["ferry_per_s"].as_f64().unwrap_or(0.0),
            r["ratio_to_raw_read"].as_f64().unwrap_or(0.0),
            r["worker_peak_rss_mb"].as_f64().unwrap_or(0.0)
        );
    }
    println!(
        "{}",
        json!({"pipeline_docs_per_s": pipeline_rate, "upsert_path_docs_per_s": upsert_rate, "copy": copy_rates.iter().map(|(n, r)| json!({"name": n, "rows_per_s": r})).collect::<Vec<_>>(), "end_to_end": e2e})
    );
}

/// One writer's documents: decoded, or raw BSON decoded as they are taken.
enum Source {
    Decoded(Vec<Document>),
    Raw(Vec<RawDocumentBuf>),
}

impl Source {
    fn into_iter(self) -> Box<dyn Iterator<Item = Document> + Send> {
        match self {
            Self::Decoded(d) => Box::new(d.into_iter()),
            Self::Raw(r) => Box::new(
                r.into_iter()
                    .map(|d| Document::try_from(d.as_ref()).expect("decode")),
            ),
        }
    }
}

async fn reset_tables(app: &sqlx::PgPool, record: &sqlx::PgPool) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS {APP};
         DROP TABLE IF EXISTS {APP}.items, {APP}.items_copy;
         CREATE TABLE {APP}.items {TABLE};
         CREATE TABLE {APP}.items_copy {TABLE};"
    )))
    .execute(app)
    .await
    .expect("tables");
    sqlx::query("DELETE FROM import_rejects")
        .execute(record)
        .await
        .expect("clear rejects");
}

/// Inserts documents `from..to` into the stand-in.
async fn load(items: &mongodb::Collection<Document>, from: usize, to: usize) {
    if from >= to {
        return;
    }
    let started = Instant::now();
    let mut batch = Vec::with_capacity(1000);
    for i in from..to {
        batch.push(document(i));
        if batch.len() == 1000 || i + 1 == to {
            items
                .insert_many(std::mem::take(&mut batch))
                .ordered(false)
                .await
                .expect("insert");
        }
    }
    eprintln!(
        "loaded documents {from}..{to} into the stand-in in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The stand-in's own cursor read of the whole collection in `_id` order, decoded into
/// documents as the import decodes them, batches as large as the import's.
async fn raw_read(items: &mongodb::Collection<Document>) -> f64 {
    let started = Instant::now();
    let mut cursor = items
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .batch_size(1000)
        .await
        .expect("find");
    let mut n = 0usize;
    while let Some(d) = cursor.next().await {
        std::hint::black_box(d.expect("read"));
        n += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("stand-in cursor read: {n} documents in {secs:.1} s");
    n as f64 / secs
}

/// The import writer over `n` in-memory documents into the empty table, `WRITERS` at once,
/// batches of 1000 as `import.batch_size`; docs/s. `copy`: new batches by `COPY` (as chunks
/// write), else every batch by `INSERT ... ON CONFLICT` (the upsert path alone).
async fn pipeline(
    target: &Target,
    record: &sqlx::PgPool,
    plans: &[CollectionPlan],
    n: usize,
    copy: bool,
    raw: bool,
) -> f64 {
    reset_tables(&target.app, record).await;
    let batch = 1000;
    // Each writer a contiguous quarter, as chunks are contiguous `_id` ranges.
    let per = n.div_ceil(WRITERS);
    let parts: Vec<Source> = (0..WRITERS)
        .map(|w| {
            let ids = w * per..((w + 1) * per).min(n);
            if raw {
                Source::Raw(
                    ids.map(|i| RawDocumentBuf::try_from(&document(i)).expect("bson"))
                        .collect(),
                )
            } else {
                Source::Decoded(ids.map(document).collect())
            }
        })
        .collect();
    let started = Instant::now();
    let plans = Arc::new(plans.to_vec());
    let mut tasks = Vec::new();
    for part in parts {
        let (target, record, plans) = (target.clone(), record.clone(), plans.clone());
        tasks.push(tokio::spawn(async move {
            let writer = Writer {
                target: &target,
                record: &record,
                plans: &plans,
                plan: &plans[0],
                run: None,
                dry_run: false,
                copy,
            };
            let mut docs = part.into_iter();
            let mut written = 0i64;
            loop {
                let converted: Vec<Converted> = docs
                    .by_ref()
                    .take(batch)
                    .map(|d| Converted::new(&plans[0], d))
                    .collect();
                if converted.is_empty() {
                    break;
                }
                let tally = writer.write(converted).await.expect("write");
                assert_eq!(tally.rejected, 0, "the benchmark's documents are valid");
                written += tally.inserted;
            }
            written
        }));
    }
    let mut written = 0;
    for t in tasks {
        written += t.await.expect("writer");
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(written as usize, n);
    eprintln!("ferry pipeline (copy: {copy}): {n} documents in {secs:.2} s");
    n as f64 / secs
}

/// `COPY` of the rows the import makes of the same documents, as text prepared before the
/// clock starts, into an identical empty table; rows/s with 4 streams and with 1.
async fn raw_copy(target: &Target, plan: &CollectionPlan, n: usize) -> Vec<(String, f64)> {
    let per = n.div_ceil(WRITERS);
    let columns: Vec<&str> = plan
        .rows
        .columns
        .iter()
        .map(|m| m.column.quoted.as_str())
        .collect();
    let statement = format!("COPY {APP}.items_copy ({}) FROM STDIN", columns.join(", "));
    let mut parts: Vec<Vec<u8>> = vec![Vec::new(); WRITERS];
    for i in 0..n {
        let rows = Converted::new(plan, document(i)).rows.expect("valid");
        ferry_record::copy_text::line(&mut parts[i / per], &rows.row);
    }
    let mut rates = Vec::new();
    for (name, streams) in [("raw COPY, 4 streams", WRITERS), ("raw COPY, 1 stream", 1)] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("TRUNCATE {APP}.items_copy")))
            .execute(&target.app)
            .await
            .expect("truncate");
        let started = Instant::now();
        let mut tasks = Vec::new();
        let data: Vec<Vec<u8>> = if streams == 1 {
            vec![parts.concat()]
        } else {
            parts.clone()
        };
        for part in data {
            let (pool, statement) = (target.app.clone(), statement.clone());
            tasks.push(tokio::spawn(async move {
                let mut conn = pool.acquire().await.expect("connection");
                let mut copy = conn.copy_in_raw(&statement).await.expect("copy");
                for piece in part.chunks(1 << 20) {
                    copy.send(piece).await.expect("copy data");
                }
                copy.finish().await.expect("copy end")
            }));
        }
        let mut copied = 0;
        for t in tasks {
            copied += t.await.expect("copy");
        }
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(copied as usize, n);
        eprintln!("{name}: {n} rows in {secs:.2} s");
        rates.push((name.to_owned(), n as f64 / secs));
    }
    rates
}

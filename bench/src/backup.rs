//! `ferry-bench backup`: `ferry backup run` of a generated database into an s3s-fs server,
//! against `pg_dump -Fc` to a file (the baseline of the goal) and `pg_dump -Fc -Z0` piped to
//! `zstd -3 -T0` (the same pipeline by shell), measured in the same run; with the worker's
//! peak memory.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use ferry_tests::s3::{S3Server, SECRET_KEY};
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
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// ferry's zstd level (`backup.level`); the shell pipeline uses the same.
    #[arg(long, default_value_t = 3)]
    level: i32,
}

const DATABASE: &str = "bench_backup";

pub async fn run(args: Args, ferry: PathBuf) {
    let mut url = url::Url::parse(&args.database_url).expect("DATABASE_URL");
    url.set_path(&format!("/{DATABASE}"));
    ensure_database(&args.database_url, url.as_str(), args.rows).await;
    let scratch = std::env::temp_dir().join(format!("ferry-bench-backup-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();

    let dump_file = scratch.join("plain.dump");
    let (plain_secs, plain_bytes) = timed(&dump_file, || {
        Command::new("pg_dump")
            .args(["-Fc", "-f"])
            .arg(&dump_file)
            .arg(format!("--dbname={url}"))
            .status()
    });
    eprintln!("pg_dump -Fc: {plain_secs:.2} s, {plain_bytes} bytes");

    let zst_file = scratch.join("shell.dump.zst");
    let (shell_secs, shell_bytes) = timed(&zst_file, || {
        Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -o pipefail; pg_dump -Fc -Z0 --dbname='{url}' | zstd -q -{} -T0 -o '{}'",
                args.level,
                zst_file.display()
            ))
            .status()
    });
    eprintln!(
        "pg_dump -Fc -Z0 | zstd -{} -T0: {shell_secs:.2} s, {shell_bytes} bytes",
        args.level
    );

    let s3 = S3Server::start("bench-backups");
    let tag = format!("{:08x}", rand::random::<u32>());
    let config = scratch.join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "[postgres]\nurl = \"{}\"\nschema = \"bench_backup_ferry\"\n[redis]\nurl = \"{}\"\nprefix = \"bbk{tag}\"\n[backup]\ndatabases = [\"{DATABASE}\"]\ntarget = \"bench\"\nlevel = {}\n{}",
            args.database_url,
            args.redis_url,
            args.level,
            s3.store_toml("bench", "bench-backups", SECRET_KEY)
        ),
    )
    .unwrap();
    let ferry_cmd = |a: &[&str]| crate::ferry_command(&ferry, &config, a);
    assert!(
        ferry_cmd(&["migrate"])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    let mut worker = ferry_cmd(&["worker"])
        .stdout(Stdio::null())
        .spawn()
        .expect("worker");
    let started = Instant::now();
    let status = ferry_cmd(&["backup", "run", "--wait"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let ferry_secs = started.elapsed().as_secs_f64();
    assert!(status.success(), "ferry backup run failed");
    let peak_kb = crate::peak_rss_kb(worker.id());
    crate::queue::stop(&mut worker);
    let listed = ferry_cmd(&["--json", "backup", "list"]).output().unwrap();
    let list: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap_or_default();
    let ferry_bytes = list[0]["bytes"].as_u64().unwrap_or(0);
    eprintln!(
        "ferry backup run: {ferry_secs:.2} s, {ferry_bytes} bytes, worker peak RSS {} MB",
        peak_kb / 1024
    );

    println!(
        "{:<36} {:>9} {:>14} {:>9}",
        "measure", "seconds", "bytes", "vs -Fc"
    );
    for (name, secs, bytes) in [
        ("pg_dump -Fc > file", plain_secs, plain_bytes),
        ("pg_dump -Z0 | zstd -T0 > file", shell_secs, shell_bytes),
        ("ferry backup run (to S3)", ferry_secs, ferry_bytes),
    ] {
        println!(
            "{name:<36} {secs:>9.2} {bytes:>14} {:>8.2}x",
            secs / plain_secs
        );
    }
    println!("worker peak RSS: {:.0} MB", peak_kb as f64 / 1024.0);
    println!(
        "{}",
        json!({
            "rows": args.rows,
            "level": args.level,
            "pg_dump_fc": { "seconds": plain_secs, "bytes": plain_bytes },
            "shell_zstd": { "seconds": shell_secs, "bytes": shell_bytes },
            "ferry": { "seconds": ferry_secs, "bytes": ferry_bytes, "peak_rss_mb": peak_kb as f64 / 1024.0 },
            "time_ratio": ferry_secs / plain_secs,
            "size_ratio": ferry_bytes as f64 / plain_bytes as f64,
        })
    );
    let _ = std::fs::remove_dir_all(&scratch);
}

fn timed(
    file: &Path,
    run: impl FnOnce() -> std::io::Result<std::process::ExitStatus>,
) -> (f64, u64) {
    let started = Instant::now();
    let status = run().expect("run");
    let secs = started.elapsed().as_secs_f64();
    assert!(status.success(), "{} failed", file.display());
    (secs, std::fs::metadata(file).map(|m| m.len()).unwrap_or(0))
}

/// A database with `rows` rows of mixed types, made once and reused.
async fn ensure_database(admin_url: &str, url: &str, rows: i64) {
    let admin = sqlx::PgPool::connect(admin_url).await.expect("Postgres");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)")
            .bind(DATABASE)
            .fetch_one(&admin)
            .await
            .unwrap();
    if !exists {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {DATABASE}")))
            .execute(&admin)
            .await
            .unwrap();
    }
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('public.items')::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    let count: Option<i64> = match table {
        Some(_) => Some(
            sqlx::query_scalar("SELECT count(*) FROM public.items")
                .fetch_one(&pool)
                .await
                .unwrap(),
        ),
        None => None,
    };
    if count == Some(rows) {
        return;
    }
    eprintln!("generating {rows} rows in {DATABASE}.public.items");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS items;
         CREATE TABLE items (id bigint PRIMARY KEY, uid uuid NOT NULL, name text NOT NULL,
             price numeric(12,2), qty int, created_at timestamptz NOT NULL, tags text[], meta jsonb);
         INSERT INTO items SELECT g, gen_random_uuid(), 'item ' || g || ' ' || md5(g::text),
             (g % 10000) / 100.0, g % 97, now() - g * interval '1 second',
             ARRAY['t' || (g % 7), 't' || (g % 11)], jsonb_build_object('k', g % 13, 'v', md5(g::text))
         FROM generate_series(1, {rows}) g;
         ANALYZE items;"
    )))
    .execute(&pool)
    .await
    .unwrap();
}

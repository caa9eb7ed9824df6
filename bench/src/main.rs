//! Benchmarks of ferry against the named baselines, measured in the same run.
//! Run through `bench/run.sh`, which builds release binaries and starts the services.

mod backup;
mod cluster;
mod files;
mod flow;
mod http;
mod import;
mod listing;
mod memory;
mod notify;
mod private_redis;
mod queue;
mod rate;
mod realtime;
mod services;
mod sync;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// No-op throughput and pickup latency, default and tuned, against BullMQ and Sidekiq.
    Queue(queue::Args),
    /// Single-node client vs the cluster client, on a plain server and a one-node cluster.
    ClusterOverhead(cluster::OverheadArgs),
    /// Three queues on the three primaries of a 3 + 3 cluster, beside a single Redis.
    ClusterSpread(cluster::SpreadArgs),
    /// `jobs ls`, the failed-jobs panel and /metrics with a million finished jobs in Redis.
    Listing(listing::Args),
    /// Redis memory over a steady run of no-op jobs, sampled.
    Memory(memory::Args),
    /// Full sync rows/s against the raw driver and a null sink; peak memory.
    Sync(sync::Args),
    /// `ferry backup run` to S3 against `pg_dump -Fc > file`; size and peak memory.
    Backup(backup::Args),
    /// `ferry files migrate` moto → s3s-fs against `rclone copy`; peak memory; one 1 GiB object.
    Files(files::Args),
    /// Emails/s from one worker to a local SMTP sink, beside the pooled mailer alone.
    Notify(notify::Args),
    /// p50/p99 of `notify.send` (in-app row) with `[notify] realtime` on and off, alternating.
    NotifyRealtime(realtime::Args),
    /// Webhook calls/s from one worker to a local HTTP endpoint, beside the client alone.
    Http(http::Args),
    /// No-op throughput with tenants and priorities against without; a high job's start
    /// behind a backlog of default ones.
    Flow(flow::Args),
    /// MongoDB → PostgreSQL import against raw `COPY` and the stand-in's cursor read; memory.
    Import(import::Args),
    /// No-op throughput with a kind rate limit that never binds, against none, alternating.
    Rate(rate::Args),
}

#[tokio::main]
async fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let ferry = root.join("target/release/ferry");
    assert!(
        ferry.exists(),
        "build first: cargo build --release -p ferry-cli (bench/run.sh does)"
    );
    match Cli::parse().command {
        Command::Queue(args) => queue::run(args, root, ferry).await,
        Command::ClusterOverhead(args) => cluster::overhead(args, ferry).await,
        Command::ClusterSpread(args) => cluster::spread(args, root, ferry).await,
        Command::Listing(args) => listing::run(args, ferry).await,
        Command::Memory(args) => memory::run(args, ferry).await,
        Command::Sync(args) => sync::run(args, ferry).await,
        Command::Backup(args) => backup::run(args, ferry).await,
        Command::Notify(args) => notify::run(args, ferry).await,
        Command::NotifyRealtime(args) => realtime::run(args, ferry).await,
        Command::Files(args) => files::run(args, ferry).await,
        Command::Import(args) => import::run(args, ferry).await,
        Command::Http(args) => http::run(args, ferry).await,
        Command::Flow(args) => flow::run(args, ferry).await,
        Command::Rate(args) => rate::run(args, ferry).await,
    }
}

/// A process's peak resident memory (VmHWM) in KiB; 0 if it cannot be read.
fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs one statement (DDL or a bulk insert) on its own connection.
async fn sql_exec(database_url: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(database_url)
        .await
        .expect("PostgreSQL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A connection for the benchmark's own bulk calls (fill scripts, cleanup of a million keys),
/// which take longer than the client's default response timeout on a busy machine.
async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(std::time::Duration::from_secs(120)));
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("redis")
}

/// Redis's `used_memory` (bytes), from `INFO memory`.
async fn used_memory(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .expect("INFO memory");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// `ferry --config CONFIG ARGS...` with every environment override of config removed, so the
/// measured process sees the benchmark's config and nothing else; logs at warn.
fn ferry_command(ferry: &Path, config: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(ferry);
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env("FERRY_LOG", "warn");
    for var in [
        "DATABASE_URL",
        "FERRY_DATABASE_URL",
        "FERRY_SCHEMA",
        "REDIS_URL",
        "FERRY_REDIS_PREFIX",
        "MONGODB_URI",
        "MONGODB_DATABASE",
        "SMTP_URL",
        "SMTP_FROM",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

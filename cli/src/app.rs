use std::{path::PathBuf, sync::Arc};

use clap::{Parser, Subcommand};
use ferry_config::{Config, Env};
use ferry_jobs::Registry;
use ferry_queue::Queue;
use ferry_record::Record;

use crate::{
    commands,
    exit::{Code, Exit, Result},
};

/// ferry: background jobs for data work — sync, backup, files, notify — on Redis and Postgres.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about)]
pub struct Cli {
    /// Configuration file (missing default file: built-in defaults and the environment).
    #[arg(long, global = true, env = "FERRY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log format on stderr.
    #[arg(long, global = true, env = "FERRY_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply schema `ferry` (idempotent).
    Migrate,
    /// Run a worker until SIGTERM or Ctrl-C.
    Worker(commands::worker::Args),
    /// Run cron fires, the change relay and the run reconciler until SIGTERM or Ctrl-C.
    Scheduler,
    /// Cron schedules: next and last fire, outcome, missed fires; pause and resume.
    #[command(subcommand)]
    Schedules(commands::schedules::Command),
    /// Serve the HTTP API, the admin dashboard and /metrics until SIGTERM.
    Serve(commands::serve::Args),
    /// Enqueue one job, or many from JSON lines.
    Enqueue(commands::enqueue::Args),
    /// List, inspect, re-queue and cancel jobs.
    #[command(subcommand)]
    Jobs(commands::jobs::Command),
    /// Long runs with their checkpoints and progress.
    #[command(subcommand)]
    Runs(commands::runs::Command),
    /// Pause and resume whole queues.
    #[command(subcommand)]
    Queues(commands::queues::Command),
    /// Jobs by kind and state, queue depth, oldest job age, tenants.
    Stats,
    /// Mirror PostgreSQL tables into MongoDB.
    #[command(subcommand)]
    Sync(commands::sync::Command),
    /// Import MongoDB collections into PostgreSQL tables (the move away from MongoDB).
    #[command(subcommand)]
    Import(commands::import::Command),
    /// Back up PostgreSQL to an object store, verify, restore and prune.
    #[command(subcommand)]
    Backup(commands::backup::Command),
    /// Migrate objects between stores, rewrite their URLs, roll the rewrite back.
    #[command(subcommand)]
    Files(commands::files::Command),
    /// Send notifications: in-app rows and email.
    #[command(subcommand)]
    Notify(commands::notify::Command),
    /// Exit 0 when this host's api, worker or scheduler is healthy (for container probes).
    Healthcheck(commands::healthcheck::Args),
    /// Check the configuration and show where each value came from.
    #[command(subcommand)]
    Config(commands::config::Command),
    /// Delete ferry's own records past `[retention]` (what the daily maintenance does).
    Prune(commands::prune::Args),
    /// [[on_change]] rules: install the change capture they need.
    #[command(subcommand)]
    Events(commands::events::Command),
}

pub fn init_tracing(cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// What commands share: config, kinds, and lazily opened connections.
pub struct Ctx {
    pub config: Arc<Config>,
    pub registry: Registry,
    pub json: bool,
}

impl Ctx {
    pub async fn queue(&self) -> Result<Queue> {
        Ok(Queue::for_config(&self.config).await?)
    }

    pub async fn record(&self) -> Result<Record> {
        let record = Record::connect(&self.config.postgres).await?;
        record.check_migrated().await?;
        Ok(record)
    }

    /// Who did an operator action, for the audit log.
    pub fn actor(&self) -> String {
        format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into())
        )
    }
}

pub async fn run(cli: Cli) -> Result<Code> {
    let env = Env::process();
    let (path, required) = match &cli.config {
        Some(path) => (path.clone(), true),
        None => (PathBuf::from("ferry.toml"), false),
    };
    let config = Arc::new(Config::load(&path, required, &env)?);
    let registry = ferry_jobs::registry(&config)?;
    let ctx = Ctx {
        config,
        registry,
        json: cli.json,
    };
    match cli.command {
        Command::Migrate => {
            let record = Record::connect(&ctx.config.postgres).await?;
            record
                .migrate()
                .await
                .map_err(|e| Exit::failed(e.to_string()))?;
            println!("schema {:?} is up to date", record.schema());
            Ok(Code::Ok)
        }
        Command::Worker(args) => commands::worker::run(&ctx, args).await,
        Command::Scheduler => commands::scheduler::run(&ctx).await,
        Command::Schedules(command) => commands::schedules::run(&ctx, command).await,
        Command::Serve(args) => commands::serve::run(&ctx, args).await,
        Command::Enqueue(args) => commands::enqueue::run(&ctx, args).await,
        Command::Jobs(command) => commands::jobs::run(&ctx, command).await,
        Command::Runs(command) => commands::runs::run(&ctx, command).await,
        Command::Queues(command) => commands::queues::run(&ctx, command).await,
        Command::Stats => commands::stats::run(&ctx).await,
        Command::Sync(command) => commands::sync::run(&ctx, command).await,
        Command::Import(command) => commands::import::run(&ctx, command).await,
        Command::Backup(command) => commands::backup::run(&ctx, command).await,
        Command::Files(command) => commands::files::run(&ctx, command).await,
        Command::Notify(command) => commands::notify::run(&ctx, command).await,
        Command::Healthcheck(args) => commands::healthcheck::run(&ctx, args).await,
        Command::Config(command) => commands::config::run(&ctx, command),
        Command::Prune(args) => commands::prune::run(&ctx, args).await,
        Command::Events(command) => commands::events::run(&ctx, command).await,
    }
}

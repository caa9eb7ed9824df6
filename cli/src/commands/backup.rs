use ferry_jobs::backup::{self, RunArgs, manifest};
use serde_json::json;
use uuid::Uuid;

use crate::{
    app::Ctx,
    commands::enqueue,
    exit::{Code, Exit, Result},
    output,
};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Back up every configured database (or those named) as a `backup.run` job.
    Run {
        /// Only these databases (comma-separated); default backup.databases.
        #[arg(long, value_delimiter = ',')]
        databases: Vec<String>,
        /// Follow the job until it finishes and exit with its outcome.
        #[arg(long)]
        wait: bool,
    },
    /// Backups in the manifest, newest first.
    List {
        /// Only backups of this database.
        #[arg(long)]
        database: Option<String>,
    },
    /// Download, check, decrypt and restore a backup into a scratch database, then compare
    /// row counts with the manifest. Exit 1 on any difference.
    Verify {
        /// The backup's id (`ferry backup list`).
        id: Uuid,
    },
    /// Restore a backup into the database at URL (created if missing; must hold no tables).
    Restore {
        /// The backup's id (`ferry backup list`).
        id: Uuid,
        /// postgres://USER@HOST/DB, without a password: a command line is visible to every
        /// user of the host.
        #[arg(long)]
        to: String,
        /// The environment variable holding the password for --to (default PGPASSWORD).
        #[arg(long, value_name = "NAME")]
        to_password_env: Option<String>,
    },
    /// Delete backups outside the retention generations (never the newest verified one).
    Prune {
        /// Print what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(ctx: &Ctx, command: Command) -> Result<Code> {
    match command {
        Command::Run { databases, wait } => {
            ctx.config
                .store("backup.target", &ctx.config.backup.target)?;
            backup::selected(&ctx.config, &databases).map_err(|e| Exit::usage(e.to_string()))?;
            enqueue::submit::<backup::Run>(
                ctx,
                &RunArgs { databases },
                enqueue::Keys::default(),
                wait,
            )
            .await
        }
        Command::List { database } => {
            let record = ctx.record().await?;
            let all = manifest::list(record.pool(), database.as_deref()).await?;
            if ctx.json {
                let rows: Vec<_> = all
                    .iter()
                    .map(|m| {
                        let mut v = serde_json::to_value(m).unwrap_or_default();
                        v["verified"] = json!(m.verified());
                        v
                    })
                    .collect();
                output::json(&rows);
                return Ok(Code::Ok);
            }
            let mut t = output::table(&[
                "id",
                "database",
                "created",
                "bytes",
                "rows",
                "encrypted",
                "verified",
            ]);
            for m in &all {
                t.add_row(vec![
                    m.id.to_string(),
                    m.database.clone(),
                    m.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    m.bytes.to_string(),
                    m.row_counts.values().sum::<i64>().to_string(),
                    if m.encrypted_to.is_some() {
                        "yes"
                    } else {
                        "no"
                    }
                    .into(),
                    match (&m.verified_at, &m.verify_error) {
                        (None, _) => "never".into(),
                        (Some(at), None) => format!("ok {}", at.format("%Y-%m-%d")),
                        (Some(_), Some(_)) => "FAILED".into(),
                    },
                ]);
            }
            println!("{t}");
            Ok(Code::Ok)
        }
        Command::Verify { id } => {
            let record = ctx.record().await?;
            let m = manifest::get(record.pool(), id).await?;
            let report = backup::verify(&ctx.config, record.pool(), &m).await?;
            if ctx.json {
                output::json(&report);
            } else if report.ok {
                println!(
                    "backup {id} verified: restored {} tables, row counts match the manifest",
                    m.row_counts.len()
                );
            } else {
                eprintln!(
                    "backup {id} FAILED verify: {}",
                    report.error.as_deref().unwrap_or_default()
                );
                for (table, (want, got)) in &report.differences {
                    eprintln!("  {table}: manifest {want:?}, restored {got:?}");
                }
            }
            Ok(if report.ok { Code::Ok } else { Code::Failed })
        }
        Command::Restore {
            id,
            to,
            to_password_env,
        } => {
            let target = restore_target(&to, to_password_env.as_deref())?;
            let record = ctx.record().await?;
            let m = manifest::get(record.pool(), id).await?;
            let store = backup::store_of(&ctx.config, &m)?;
            let counts = backup::restore::restore(&ctx.config, &store, &m, target).await?;
            let differ: Vec<&String> = m
                .row_counts
                .iter()
                .filter(|(t, n)| counts.get(*t) != Some(n))
                .map(|(t, _)| t)
                .collect();
            if ctx.json {
                output::json(&json!({ "id": id, "tables": counts.len(), "differ": differ }));
            } else {
                println!(
                    "restored backup {id} ({}) : {} tables, {} rows",
                    m.database,
                    counts.len(),
                    counts.values().sum::<i64>()
                );
            }
            if !differ.is_empty() {
                eprintln!("row counts differ from the manifest in: {differ:?}");
                return Ok(Code::Failed);
            }
            Ok(Code::Ok)
        }
        Command::Prune { dry_run } => {
            let record = ctx.record().await?;
            let report = backup::prune(&ctx.config, record.pool(), dry_run).await?;
            if ctx.json {
                output::json(&json!({
                    "dry_run": dry_run,
                    "kept": report.kept,
                    "deleted": report.deleted.iter().map(|m| m.id).collect::<Vec<_>>(),
                }));
            } else {
                let verb = if dry_run { "would delete" } else { "deleted" };
                for m in &report.deleted {
                    println!(
                        "{verb} {} {} {} ({} bytes)",
                        m.id,
                        m.database,
                        m.created_at.format("%Y-%m-%d %H:%M"),
                        m.bytes
                    );
                }
                println!(
                    "kept {}, {verb} {}",
                    report.kept.len(),
                    report.deleted.len()
                );
            }
            Ok(Code::Ok)
        }
    }
}

/// The database `--to` names, with its password from the environment: a password in the URL
/// itself is refused, since every user of the host can read a command line.
fn restore_target(to: &str, password_env: Option<&str>) -> Result<backup::Database> {
    let target = backup::Database::parse(to).map_err(|e| Exit::usage(format!("--to: {e}")))?;
    if target.has_password() {
        return Err(Exit::usage(format!(
            "--to {} carries a password, which any user of this host can read in the process \
             list; remove it from the URL and put it in an environment variable: PGPASSWORD, or \
             one you name with --to-password-env NAME",
            target.url
        )));
    }
    let var = password_env.unwrap_or("PGPASSWORD");
    match std::env::var(var) {
        Ok(password) => Ok(target.with_password(ferry_config::Secret::new(password))),
        Err(_) if password_env.is_some() => Err(Exit::usage(format!(
            "--to-password-env {var}: the variable is not set; export it with the password of \
             {}",
            target.url
        ))),
        Err(_) => Ok(target),
    }
}

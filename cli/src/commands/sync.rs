use ferry_jobs::sync::{
    self, EntityArgs, FullArgs, IncrementalArgs, SyncError, Target, VerifyArgs,
};
use serde_json::json;

use crate::{
    app::Ctx,
    commands::enqueue::{self, Keys},
    exit::{Code, Exit, Result},
    output,
};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Plan and run a chunked full sync.
    Full {
        /// Only these tables (schema.table, comma-separated); default every mirrored table.
        #[arg(long, value_delimiter = ',')]
        tables: Vec<String>,
        /// Follow the job until it finishes and exit with its outcome.
        #[arg(long)]
        wait: bool,
    },
    /// Sync rows changed since each table's watermark (and sweep deletes where no triggers).
    Incremental {
        /// Only these tables (schema.table, comma-separated); default every mirrored table.
        #[arg(long, value_delimiter = ',')]
        tables: Vec<String>,
        /// Follow the job until it finishes and exit with its outcome.
        #[arg(long)]
        wait: bool,
    },
    /// Sync one row now. KEY: the value of a one-column key, or a JSON object {column: value}.
    Entity {
        /// The table, schema.table.
        table: String,
        /// The row's key: its text for a one-column key, a JSON object for a composite one.
        key: String,
    },
    /// Compare source and mirror: counts; with --deep every document. Exit 1 on a difference.
    Verify {
        /// Only these tables (schema.table, comma-separated); default every mirrored table.
        #[arg(long, value_delimiter = ',')]
        tables: Vec<String>,
        /// Compare every document, not just counts.
        #[arg(long)]
        deep: bool,
        /// Run as a `sync.verify` job that checkpoints every page (resumable; for large
        /// tables), follow it, and leave the report in `ferry runs show ID`.
        #[arg(long)]
        job: bool,
    },
    /// Install change-capture triggers so writes and deletes reach the mirror within seconds.
    InstallTriggers {
        /// Only these tables (schema.table, comma-separated); default every mirrored table.
        #[arg(long, value_delimiter = ',')]
        tables: Vec<String>,
    },
    /// The mirrored tables: key, collection, incremental column, columns that may lose
    /// precision; and the tables left out, with the config that fixes each.
    Tables,
}

impl From<SyncError> for Exit {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Config(_) | SyncError::Unavailable(_) => Exit::usage(e.to_string()),
            e => Exit::failed(e.to_string()),
        }
    }
}

pub async fn run(ctx: &Ctx, command: Command) -> Result<Code> {
    let target = Target::connect(&ctx.config).await?;
    let catalog = target.catalog(&ctx.config).await?;
    match command {
        Command::Full { tables, wait } => {
            let selected = catalog.select(&tables)?;
            warn_unmirrored(&catalog);
            warn_row_security(&target, &selected).await?;
            enqueue::submit::<sync::Full>(ctx, &FullArgs { tables }, Keys::default(), wait).await
        }
        Command::Incremental { tables, wait } => {
            catalog.select(&tables)?;
            enqueue::submit::<sync::Incremental>(
                ctx,
                &IncrementalArgs { tables },
                Keys::default(),
                wait,
            )
            .await
        }
        Command::Entity { table, key } => {
            // KEY is JSON when it is an object; otherwise the text of a one-column key.
            let key = match serde_json::from_str::<serde_json::Value>(&key) {
                Ok(v @ serde_json::Value::Object(_)) => v,
                _ => json!(key),
            };
            let args = EntityArgs::for_row(&catalog, &table, key)?;
            let keys = Keys {
                coalesce: Some(args.coalesce_key()),
                ..Keys::default()
            };
            enqueue::submit::<sync::Entity>(ctx, &args, keys, false).await
        }
        Command::Verify { tables, deep, job } if job => {
            catalog.select(&tables)?;
            let args = VerifyArgs { tables, deep };
            enqueue::submit::<sync::Verify>(ctx, &args, Keys::default(), true).await
        }
        Command::Verify { tables, deep, .. } => {
            let tables = catalog.select(&tables)?;
            let reports = sync::verify::verify(&target, &ctx.config, &tables, deep).await?;
            let ok = reports.iter().all(|r| r.ok());
            if ctx.json {
                output::json(&json!({ "ok": ok, "tables": reports }));
            } else {
                let mut t = output::table(&[
                    "table",
                    "rows",
                    "documents",
                    "missing",
                    "different",
                    "extra",
                    "result",
                ]);
                for r in &reports {
                    let (m, d, x) = if deep {
                        (
                            r.missing_count.to_string(),
                            r.different_count.to_string(),
                            r.extra_count.to_string(),
                        )
                    } else {
                        ("-".into(), "-".into(), "-".into())
                    };
                    t.add_row(vec![
                        r.table.clone(),
                        r.source_rows.to_string(),
                        r.mirror_documents.to_string(),
                        m,
                        d,
                        x,
                        if r.ok() { "ok" } else { "DIFFERENT" }.into(),
                    ]);
                }
                println!("{t}");
                for r in reports.iter().filter(|r| !r.ok()) {
                    for (what, keys) in [
                        ("missing", &r.missing),
                        ("different", &r.different),
                        ("extra", &r.extra),
                    ] {
                        if !keys.is_empty() {
                            println!("{} {what}: {}", r.table, keys.join(", "));
                        }
                    }
                }
            }
            Ok(if ok { Code::Ok } else { Code::Failed })
        }
        Command::InstallTriggers { tables } => {
            let tables = catalog.select(&tables)?;
            sync::triggers::install(&target.app, &ctx.config.postgres.schema, &tables).await?;
            if let Ok(record) = ctx.record().await {
                let names: Vec<_> = tables.iter().map(|t| t.name.clone()).collect();
                record
                    .audit(
                        &ctx.actor(),
                        "sync.install-triggers",
                        None,
                        json!({ "tables": names }),
                    )
                    .await?;
            }
            println!(
                "change capture installed on {} tables; the scheduler (ferry scheduler) relays changes into sync.entity jobs",
                tables.len()
            );
            Ok(Code::Ok)
        }
        Command::Tables => {
            if ctx.json {
                let tables: Vec<_> = catalog
                    .tables
                    .iter()
                    .map(|t| {
                        json!({
                            "table": t.name, "collection": t.collection,
                            "key": t.key.iter().map(|c| &c.name).collect::<Vec<_>>(),
                            "updated_at": t.updated_at.as_ref().map(|c| &c.name),
                            "lossy": lossy(ctx, t),
                        })
                    })
                    .collect();
                output::json(&json!({ "tables": tables, "unmirrored": catalog.unmirrored }));
            } else {
                let mut t = output::table(&[
                    "table",
                    "collection",
                    "key",
                    "incremental by",
                    "may lose precision",
                ]);
                for table in &catalog.tables {
                    t.add_row(vec![
                        table.name.clone(),
                        table.collection.clone(),
                        table
                            .key
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        table
                            .updated_at
                            .as_ref()
                            .map(|c| c.name.clone())
                            .unwrap_or_else(|| "-".into()),
                        lossy(ctx, table).join("; "),
                    ]);
                }
                println!("{t}");
                warn_unmirrored(&catalog);
            }
            warn_row_security(&target, &catalog.tables).await?;
            Ok(Code::Ok)
        }
    }
}

fn lossy(ctx: &Ctx, table: &sync::Table) -> Vec<String> {
    table
        .columns
        .iter()
        .filter_map(|c| {
            c.ty.loss(&c.type_name, ctx.config.sync.timestamps)
                .map(|why| format!("{}: {why}", c.name))
        })
        .collect()
}

fn warn_unmirrored(catalog: &sync::Catalog) {
    for u in &catalog.unmirrored {
        eprintln!("not mirrored: {u}");
    }
}

/// A mirror of a table row-level security filters for ferry's role is partial, silently.
async fn warn_row_security(target: &Target, tables: &[sync::Table]) -> Result<()> {
    let names: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
    let hidden = ferry_jobs::row_security::hidden(&target.app, &names)
        .await
        .map_err(|e| Exit::failed(format!("cannot check row-level security: {e}")))?;
    if let Some(hidden) = hidden {
        eprintln!("WARNING: {hidden}");
    }
    Ok(())
}

//! `ferry import`: MongoDB collections into PostgreSQL tables.

use ferry_jobs::{
    import::{
        self, CollectionPlan, RunArgs,
        mapping::TablePlan,
        read::{self, Range},
        rejects,
        rows::Converted,
        verify,
        write::{Tally, Writer},
    },
    sync::Target,
};
use serde_json::json;

use crate::{
    app::Ctx,
    commands::enqueue::{self, Keys},
    exit::{Code, Result},
    output,
};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The import order and every target column with its source and conversion; for
    /// collections not configured yet, a proposed table and mapping from a sample.
    Plan,
    /// Import (chunked, resumable) in foreign-key order.
    Run {
        /// Only these collections (comma-separated); default every configured one.
        #[arg(long, value_delimiter = ',')]
        collections: Vec<String>,
        /// Convert and write inside transactions that are rolled back; report what would
        /// happen. Writes nothing, rejects included.
        #[arg(long)]
        dry_run: bool,
        /// Follow the run to its end, with progress and ETA.
        #[arg(long)]
        wait: bool,
    },
    /// Documents that could not become rows, with the reason.
    Rejects {
        /// Only this collection's rejects.
        #[arg(long)]
        collection: Option<String>,
    },
    /// Counts per collection (imported + rejected = source); --deep compares every
    /// document with its rows. Exit 1 on a difference.
    Verify {
        /// Only these collections (comma-separated); default every configured one.
        #[arg(long, value_delimiter = ',')]
        collections: Vec<String>,
        /// Re-read every document, convert it and compare it with its rows, naming ids.
        #[arg(long)]
        deep: bool,
    },
}

pub async fn run(ctx: &Ctx, command: Command) -> Result<Code> {
    let target = Target::connect(&ctx.config).await?;
    if let Command::Rejects { collection } = &command {
        let record = ctx.record().await?;
        let list = rejects::list(record.pool(), collection.as_deref()).await?;
        if ctx.json {
            output::json(&list);
        } else {
            let mut t = output::table(&["collection", "source id", "reason"]);
            for r in &list {
                t.add_row(vec![
                    r.collection.clone(),
                    r.source_id.clone(),
                    r.reason.clone(),
                ]);
            }
            println!("{t}");
            println!("{} rejects", list.len());
        }
        return Ok(Code::Ok);
    }
    let plans = import::mapping::plan(&target, &ctx.config.import).await?;
    match command {
        Command::Plan => {
            print_plan(ctx, &plans);
            let proposals = import::propose::propose(&target, &ctx.config.import).await?;
            for p in &proposals {
                println!(
                    "\n{} is not configured; a table and mapping from {} sampled documents:\n\n{}\n{}",
                    p.collection, p.sampled, p.create_table, p.config
                );
            }
            Ok(Code::Ok)
        }
        Command::Run {
            collections,
            dry_run: true,
            ..
        } => {
            let selected = import::select(&plans, &collections)?;
            let record = ctx.record().await?;
            let mut out = Vec::new();
            for plan in selected {
                out.push((
                    plan.name.clone(),
                    dry_run(ctx, &target, &record, &plans, plan).await?,
                ));
            }
            if ctx.json {
                let v: Vec<_> = out
                    .iter()
                    .map(|(c, t)| json!({"collection": c, "would": t}))
                    .collect();
                output::json(&json!({ "dry_run": true, "collections": v }));
            } else {
                let mut t = output::table(&[
                    "collection",
                    "documents",
                    "would insert",
                    "would update",
                    "unchanged",
                    "would reject",
                ]);
                for (c, n) in &out {
                    t.add_row(vec![
                        c.clone(),
                        n.read.to_string(),
                        n.inserted.to_string(),
                        n.updated.to_string(),
                        n.unchanged.to_string(),
                        n.rejected.to_string(),
                    ]);
                }
                println!("{t}");
                println!("dry run: nothing was written");
            }
            Ok(Code::Ok)
        }
        Command::Run {
            collections, wait, ..
        } => {
            import::select(&plans, &collections)?;
            enqueue::submit::<import::Run>(ctx, &RunArgs { collections }, Keys::default(), wait)
                .await
        }
        Command::Verify { collections, deep } => {
            let selected = import::select(&plans, &collections)?;
            let record = ctx.record().await?;
            let reports = verify::verify(
                &target,
                record.pool(),
                &selected,
                deep,
                ctx.config.import.batch_size,
            )
            .await?;
            let ok = reports.iter().all(|r| r.ok());
            if ctx.json {
                output::json(&json!({ "ok": ok, "collections": reports }));
            } else {
                let mut t = output::table(&[
                    "collection",
                    "table",
                    "documents",
                    "rows",
                    "rejected",
                    "different",
                    "result",
                ]);
                for r in &reports {
                    t.add_row(vec![
                        r.counts.collection.clone(),
                        r.counts.table.clone(),
                        r.counts.source.to_string(),
                        r.counts.imported.to_string(),
                        r.counts.rejected.to_string(),
                        if deep {
                            r.different_count.to_string()
                        } else {
                            "-".into()
                        },
                        if r.ok() { "ok" } else { "DIFFERENT" }.into(),
                    ]);
                }
                println!("{t}");
                for r in reports.iter().filter(|r| !r.different.is_empty()) {
                    println!(
                        "{} different: {}",
                        r.counts.collection,
                        r.different.join(", ")
                    );
                }
            }
            Ok(if ok { Code::Ok } else { Code::Failed })
        }
        Command::Rejects { .. } => unreachable!("handled above"),
    }
}

/// One collection through the real conversion and writes, in rolled-back transactions.
async fn dry_run(
    ctx: &Ctx,
    target: &Target,
    record: &ferry_record::Record,
    plans: &[CollectionPlan],
    plan: &CollectionPlan,
) -> Result<Tally> {
    let n = ctx.config.import.batch_size;
    let mut cursor = read::open(&target.mongo, &plan.name, &Range::default(), n).await?;
    let writer = Writer {
        target,
        record: record.pool(),
        plans,
        plan,
        run: None,
        dry_run: true,
        copy: true,
    };
    let mut tally = Tally::default();
    loop {
        let docs = read::next_batch(&mut cursor, n).await?;
        if docs.is_empty() {
            return Ok(tally);
        }
        let batch = docs.into_iter().map(|d| Converted::new(plan, d)).collect();
        tally.add(&writer.write(batch).await?);
    }
}

/// A collection's tables: its own, then each child's.
fn tables(p: &CollectionPlan) -> Vec<(String, &TablePlan)> {
    let mut out = vec![(p.rows.table.name.clone(), &p.rows)];
    out.extend(
        p.children
            .iter()
            .map(|c| (format!("{} ← {}[]", c.rows.table.name, c.path), &c.rows)),
    );
    out
}

fn print_plan(ctx: &Ctx, plans: &[CollectionPlan]) {
    if ctx.json {
        let v: Vec<_> = plans
            .iter()
            .enumerate()
            .map(|(i, p)| {
                json!({
                    "order": i + 1,
                    "collection": p.name,
                    "after": p.after,
                    "tables": tables(p).iter().map(|(name, t)| json!({
                        "table": name,
                        "columns": t.columns.iter().map(|m| json!({
                            "column": m.column.name, "type": m.column.type_name,
                            "source": m.from.describe(), "origin": m.origin,
                        })).collect::<Vec<_>>(),
                        "no_source": t.unmapped,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        output::json(&json!({ "collections": v }));
        return;
    }
    for (i, p) in plans.iter().enumerate() {
        let after = if p.after.is_empty() {
            String::new()
        } else {
            format!(
                " (after {})",
                p.after.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        };
        println!(
            "{}. {}{after}, {} documents sampled",
            i + 1,
            p.name,
            p.sampled
        );
        for (name, t) in tables(p) {
            let mut table = output::table(&["column", "type", "source", "from"]);
            for m in &t.columns {
                table.add_row(vec![
                    m.column.name.clone(),
                    m.column.type_name.clone(),
                    m.from.describe(),
                    m.origin.to_owned(),
                ]);
            }
            for u in &t.unmapped {
                table.add_row(vec![
                    u.clone(),
                    String::new(),
                    "(no source: default or NULL)".into(),
                    String::new(),
                ]);
            }
            println!("   {name}\n{table}");
        }
    }
}

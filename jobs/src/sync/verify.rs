//! Compares the mirror with its source: counts, and with `deep` every document, page by
//! page (a hash per page; documents compared one by one only where the hashes differ).

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    time::Duration,
};

use bson::{Bson, Document, doc};
use ferry_config::Config;
use ferry_record::{Lease, Progress, RunState};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::{SyncError, Table, Target, bson_text, page, sweep};
use crate::{JobContext, JobError, Kind, Settings};

/// At most this many keys are named per table and kind of difference.
const EXAMPLES: usize = 20;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TableReport {
    pub table: String,
    pub collection: String,
    pub source_rows: i64,
    pub mirror_documents: u64,
    /// Rows compared document by document (deep only).
    pub compared: u64,
    pub missing: Vec<String>,
    pub different: Vec<String>,
    pub extra: Vec<String>,
    pub missing_count: u64,
    pub different_count: u64,
    pub extra_count: u64,
}

impl TableReport {
    pub fn ok(&self) -> bool {
        self.source_rows as u64 == self.mirror_documents
            && self.missing_count == 0
            && self.different_count == 0
            && self.extra_count == 0
    }
}

/// Where a verify stands: the tables finished, the one under way, and the last key compared
/// in it. A `sync.verify` job saves this after every page, so a large table's deep verify
/// resumes where it stopped.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VerifyState {
    pub done: Vec<TableReport>,
    pub current: Option<TableReport>,
    pub after: Option<Vec<String>>,
}

/// Verifies in one go (the CLI).
pub async fn verify(
    target: &Target,
    config: &Config,
    tables: &[Table],
    deep: bool,
) -> Result<Vec<TableReport>, JobError> {
    let mut state = VerifyState::default();
    resume(target, config, tables, deep, &mut state, None).await?;
    Ok(state.done)
}

/// Continues the verify `state` describes. With a job, the state is saved after each page and
/// the job's stop request is honoured between pages.
pub async fn resume(
    target: &Target,
    config: &Config,
    tables: &[Table],
    deep: bool,
    state: &mut VerifyState,
    job: Option<(&JobContext, &Lease)>,
) -> Result<(), JobError> {
    // Counts taken through row-level security would match a mirror made the same way.
    let names: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
    if let Some(hidden) = crate::row_security::hidden(&target.app, &names)
        .await
        .map_err(SyncError::db("check row-level security"))?
    {
        return Err(JobError::permanent(format!("cannot verify: {hidden}")));
    }
    for table in tables.iter().skip(state.done.len()) {
        let resuming = state
            .current
            .as_ref()
            .is_some_and(|r| r.table == table.name);
        if !resuming {
            state.current = Some(counts(target, table).await?);
            state.after = None;
        }
        if deep {
            compare(target, config, table, state, job).await?;
            let (extra, examples) =
                sweep::sweep(target, table, config.sync.timestamps, None).await?;
            let r = state.current.as_mut().expect("a table is under way");
            r.extra_count = extra;
            r.extra = examples.iter().map(bson_text).collect();
        }
        state.done.extend(state.current.take());
        state.after = None;
        save(state, job).await?;
    }
    Ok(())
}

pub(crate) async fn counts(target: &Target, table: &Table) -> Result<TableReport, SyncError> {
    let coll = target.mongo.collection::<Document>(&table.collection);
    let mut r = TableReport {
        table: table.name.clone(),
        collection: table.collection.clone(),
        ..TableReport::default()
    };
    r.source_rows = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {}",
        table.quoted
    )))
    .fetch_one(&target.app)
    .await
    .map_err(SyncError::db("count rows"))?;
    r.mirror_documents = coll
        .count_documents(doc! {})
        .await
        .map_err(SyncError::mongo("count documents"))?;
    Ok(r)
}

async fn save(state: &VerifyState, job: Option<(&JobContext, &Lease)>) -> Result<(), JobError> {
    let Some((ctx, lease)) = job else {
        return Ok(());
    };
    let compared: u64 = state
        .done
        .iter()
        .chain(&state.current)
        .map(|r| r.compared)
        .sum();
    let progress = Progress {
        done: compared as i64,
        ..Progress::default()
    };
    lease.save(state, progress).await?;
    match ctx.should_stop() {
        Some(stop) => Err(stop),
        None => Ok(()),
    }
}

async fn compare(
    target: &Target,
    config: &Config,
    table: &Table,
    state: &mut VerifyState,
    job: Option<(&JobContext, &Lease)>,
) -> Result<(), JobError> {
    let coll = target.mongo.collection::<Document>(&table.collection);
    loop {
        let range = page::Range {
            after: state.after.as_deref(),
            upto: None,
        };
        let page = page::read(
            &target.app,
            table,
            config.sync.timestamps,
            range,
            config.sync.chunk_size,
        )
        .await?;
        if page.docs.is_empty() {
            break;
        }
        let mirror: Vec<Document> = coll
            .find(doc! { "_id": { "$in": page.ids.clone() } })
            .await
            .map_err(SyncError::mongo("read documents"))?
            .try_collect()
            .await
            .map_err(SyncError::mongo("read documents"))?;
        let source: Vec<Document> = page
            .docs
            .iter()
            .map(|d| Document::try_from(d.as_ref()).unwrap_or_default())
            .collect();
        let r = state.current.as_mut().expect("a table is under way");
        r.compared += source.len() as u64;
        if page_hash(&source) != page_hash(&mirror) {
            let by_id: HashMap<String, Document> = mirror
                .into_iter()
                .map(|d| {
                    (
                        canonical(d.get("_id").unwrap_or(&Bson::Null)).to_string(),
                        d,
                    )
                })
                .collect();
            for (id, doc) in page.ids.iter().zip(&source) {
                let label = bson_text(id);
                match by_id.get(&canonical(id).to_string()) {
                    None => {
                        r.missing_count += 1;
                        if r.missing.len() < EXAMPLES {
                            r.missing.push(label);
                        }
                    }
                    Some(m)
                        if canonical(&Bson::Document(m.clone()))
                            != canonical(&Bson::Document(doc.clone())) =>
                    {
                        r.different_count += 1;
                        if r.different.len() < EXAMPLES {
                            r.different.push(label);
                        }
                    }
                    Some(_) => {}
                }
            }
        }
        let full = page.docs.len() == config.sync.chunk_size;
        state.after = page.last();
        if !full {
            break;
        }
        save(state, job).await?;
    }
    Ok(())
}

/// `sync.verify`: the same comparison as a job that checkpoints after every page, for
/// tables too large to verify in one sitting. Fails (dead, with the tables named) when the
/// mirror differs; the full report is the run's checkpoint (`ferry runs show ID`).
pub struct Verify;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyArgs {
    #[serde(default)]
    pub tables: Vec<String>,
    #[serde(default)]
    pub deep: bool,
}

impl Kind for Verify {
    const NAME: &'static str = "sync.verify";
    type Args = VerifyArgs;

    fn defaults() -> Settings {
        Settings {
            queue: super::QUEUE.into(),
            max_attempts: 5,
            timeout: Duration::from_secs(24 * 3600),
            ..Settings::default()
        }
    }

    async fn run(&self, args: VerifyArgs, ctx: JobContext) -> Result<(), JobError> {
        let target = super::target(&ctx).await?;
        let config = &ctx.deps.config;
        let tables = target.catalog(config).await?.select(&args.tables)?;
        let lease = ctx.open_run().await?;
        let mut state: VerifyState = lease.checkpoint()?.unwrap_or_default();
        let job = Some((&ctx, &lease));
        match resume(&target, config, &tables, args.deep, &mut state, job).await {
            Ok(()) => {}
            Err(e @ (JobError::Interrupted | JobError::Cancelled)) => {
                let state = match e {
                    JobError::Cancelled => RunState::Cancelled,
                    _ => RunState::Interrupted,
                };
                lease.finish(state, None).await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        }
        let differ: Vec<&str> = state
            .done
            .iter()
            .filter(|r| !r.ok())
            .map(|r| r.table.as_str())
            .collect();
        if differ.is_empty() {
            lease.finish(RunState::Succeeded, None).await?;
            return Ok(());
        }
        let message = format!(
            "the mirror differs in {}; `ferry runs show {}` has the keys",
            differ.join(", "),
            ctx.id
        );
        lease.finish(RunState::Failed, Some(&message)).await?;
        Err(JobError::permanent(message))
    }
}

/// Field order does not matter to a document's meaning: sort it away.
fn canonical(v: &Bson) -> Bson {
    match v {
        Bson::Document(d) => {
            let mut fields: Vec<(&String, &Bson)> = d.iter().collect();
            fields.sort_by(|a, b| a.0.cmp(b.0));
            Bson::Document(
                fields
                    .into_iter()
                    .map(|(k, v)| (k.clone(), canonical(v)))
                    .collect(),
            )
        }
        Bson::Array(a) => Bson::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

fn page_hash(docs: &[Document]) -> u64 {
    let mut items: Vec<String> = docs
        .iter()
        .map(|d| canonical(&Bson::Document(d.clone())).to_string())
        .collect();
    items.sort();
    let mut h = DefaultHasher::new();
    items.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_order_does_not_change_a_page_hash_but_values_do() {
        let a = doc! { "_id": 1, "x": 1, "y": { "b": 2, "a": 1 } };
        let b = doc! { "y": { "a": 1, "b": 2 }, "x": 1, "_id": 1 };
        assert_eq!(page_hash(std::slice::from_ref(&a)), page_hash(&[b]));
        let c = doc! { "_id": 1, "x": 2, "y": { "b": 2, "a": 1 } };
        assert_ne!(page_hash(&[a]), page_hash(&[c]));
    }
}

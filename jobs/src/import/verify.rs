//! `ferry import verify`: counts per collection (imported + rejected = source); with `deep`,
//! every document converted again and compared with its rows, naming the ids that differ.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::PgPool;

use super::{
    mapping::{CollectionPlan, TablePlan},
    read::{self, Range},
    rejects,
    rows::{Converted, Row},
    status::{self, CollectionStatus},
    write::{bind_columns, unnest_source},
};
use crate::sync::{SyncError, Target};

/// Differing ids named in a report; the count is always exact.
const NAMED: usize = 100;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub counts: CollectionStatus,
    /// Deep only: documents neither equal to their rows nor rejected.
    pub different_count: i64,
    pub different: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.counts.balanced() && self.different_count == 0
    }
}

pub async fn verify(
    target: &Target,
    record: &PgPool,
    plans: &[&CollectionPlan],
    deep: bool,
    batch_size: usize,
) -> Result<Vec<Report>, SyncError> {
    let counts = status::status(target, record, plans).await?;
    let mut reports = Vec::new();
    for (plan, counts) in plans.iter().zip(counts) {
        let mut report = Report {
            counts,
            different_count: 0,
            different: Vec::new(),
        };
        if deep {
            compare_all(target, record, plan, batch_size, &mut report).await?;
        }
        reports.push(report);
    }
    Ok(reports)
}

async fn compare_all(
    target: &Target,
    record: &PgPool,
    plan: &CollectionPlan,
    batch_size: usize,
    report: &mut Report,
) -> Result<(), SyncError> {
    let mut cursor = read::open(&target.mongo, &plan.name, &Range::default(), batch_size).await?;
    loop {
        let docs = read::next_batch(&mut cursor, batch_size).await?;
        if docs.is_empty() {
            return Ok(());
        }
        let batch: Vec<Converted> = docs.into_iter().map(|d| Converted::new(plan, d)).collect();
        // Key of each row → the document it came from.
        let mut owner: HashMap<String, &str> = HashMap::new();
        let mut suspects: Vec<&str> = Vec::new();
        let mut parents: Vec<&Row> = Vec::new();
        let mut children: Vec<Vec<&Row>> = vec![Vec::new(); plan.children.len()];
        for c in &batch {
            match &c.rows {
                Err(_) => suspects.push(&c.source_id),
                Ok(rows) => {
                    owner.insert(
                        rows.row[plan.rows.key].clone().unwrap_or_default(),
                        &c.source_id,
                    );
                    parents.push(&rows.row);
                    for (i, child) in plan.children.iter().enumerate() {
                        for r in &rows.children[i] {
                            owner.insert(
                                r[child.rows.key].clone().unwrap_or_default(),
                                &c.source_id,
                            );
                            children[i].push(r);
                        }
                    }
                }
            }
        }
        let mut differing = differing_keys(&target.app, &plan.rows, &parents).await?;
        for (i, child) in plan.children.iter().enumerate() {
            differing.extend(differing_keys(&target.app, &child.rows, &children[i]).await?);
        }
        suspects.extend(differing.iter().filter_map(|k| owner.get(k).copied()));
        suspects.sort_unstable();
        suspects.dedup();
        for sid in suspects {
            // A rejected document has no row, and its reject says why.
            if rejects::reason(record, &plan.name, sid).await?.is_some() {
                continue;
            }
            report.different_count += 1;
            if report.different.len() < NAMED {
                report.different.push(sid.to_owned());
            }
        }
    }
}

/// Keys of `rows` whose row is missing or holds other values.
async fn differing_keys(
    app: &PgPool,
    t: &TablePlan,
    rows: &[&Row],
) -> Result<Vec<String>, SyncError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let (source, casts) = unnest_source(t);
    let key = &t.columns[t.key].column;
    let cols: Vec<String> = t
        .columns
        .iter()
        .map(|m| format!("t.{}", m.column.quoted))
        .collect();
    let sql = format!(
        "SELECT s.c{k} FROM {source} LEFT JOIN {table} t ON t.{kq} = s.c{k}::{kc}
         WHERE t.{kq} IS NULL OR ({cols}) IS DISTINCT FROM ({casts})",
        k = t.key,
        table = t.table.quoted,
        kq = key.quoted,
        kc = key.cast,
        cols = cols.join(", "),
        casts = casts.join(", "),
    );
    let q = bind_columns(sqlx::query(sqlx::AssertSqlSafe(sql)), t, rows);
    q.fetch_all(app)
        .await
        .map_err(SyncError::db("compare rows"))?
        .iter()
        .map(|r| sqlx::Row::try_get::<String, _>(r, 0))
        .collect::<Result<_, _>>()
        .map_err(SyncError::db("compare rows"))
}

//! Writes converted documents: refs checked against the imported parents, rows upserted by
//! their mapped id (rows whose values are unchanged are not touched, so a re-run writes
//! nothing) or, when none of a batch's rows is there yet, copied in, elements gone from an
//! array deleted, and what Postgres refuses (unique, check, foreign key, length) turned into
//! rejects one document at a time.

use std::collections::{BTreeMap, BTreeSet};

use bson::{Bson, doc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::{
    copy,
    mapping::{CollectionPlan, TablePlan},
    rejects,
    rows::{Converted, DocRows, Row},
};
use crate::sync::{SyncError, Target};

/// Documents by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tally {
    pub read: i64,
    pub inserted: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub rejected: i64,
}

impl Tally {
    pub fn add(&mut self, o: &Tally) {
        self.read += o.read;
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.rejected += o.rejected;
    }
}

/// Writes batches of one collection.
pub struct Writer<'a> {
    pub target: &'a Target,
    pub record: &'a PgPool,
    /// Every configured collection, to look up the tables refs point into.
    pub plans: &'a [CollectionPlan],
    pub plan: &'a CollectionPlan,
    pub run: Option<Uuid>,
    /// Run everything in a transaction that is rolled back; write no rejects. Refs to
    /// documents not imported yet count as satisfied when the document exists in MongoDB.
    pub dry_run: bool,
    /// Write a batch none of whose documents is in the table yet by `COPY` ([`copy`]).
    pub copy: bool,
}

/// Errors Postgres raises for one row's data (classes 21, 22, 23): that document is rejected.
fn refused(e: &sqlx::Error) -> Option<String> {
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    let code = db.code()?;
    if !["21", "22", "23"].iter().any(|c| code.starts_with(c)) {
        return None;
    }
    let detail = db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .and_then(|p| p.detail())
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    Some(format!(
        "PostgreSQL refused the row: {}{detail}",
        db.message()
    ))
}

impl Writer<'_> {
    pub async fn write(&self, mut batch: Vec<Converted>) -> Result<Tally, SyncError> {
        self.check_refs(&mut batch).await?;
        let mut tally = Tally {
            read: batch.len() as i64,
            ..Tally::default()
        };
        let mut tx = self
            .target
            .app
            .begin()
            .await
            .map_err(SyncError::db("begin"))?;
        if self.dry_run {
            // Rows of parents a dry run did not keep would fail foreign keys: replica mode
            // skips those triggers (and only a superuser may set it; otherwise the dry run
            // reports such rows as rejects).
            let replica = sqlx::query("SET LOCAL session_replication_role = replica")
                .execute(&mut *tx)
                .await;
            if replica.is_err() {
                tx.rollback().await.map_err(SyncError::db("roll back"))?;
                tx = self
                    .target
                    .app
                    .begin()
                    .await
                    .map_err(SyncError::db("begin"))?;
            }
        }
        let ok: Vec<&DocRows> = batch.iter().filter_map(|c| c.rows.as_ref().ok()).collect();
        let mut savepoint_needed = false;
        sqlx::query("SAVEPOINT batch")
            .execute(&mut *tx)
            .await
            .map_err(SyncError::db("write rows"))?;
        match self.store_rows(&mut tx, &ok).await {
            Ok(written) => count(&mut tally, &written, ok.len()),
            Err(e) if refused(&e).is_some() => savepoint_needed = true,
            Err(e) => return Err(SyncError::db("write rows")(e)),
        }
        if savepoint_needed {
            sqlx::query("ROLLBACK TO SAVEPOINT batch")
                .execute(&mut *tx)
                .await
                .map_err(SyncError::db("write rows"))?;
            self.one_by_one(&mut tx, &mut batch, &mut tally).await?;
        }
        if self.dry_run {
            tx.rollback().await.map_err(SyncError::db("roll back"))?;
        } else {
            tx.commit().await.map_err(SyncError::db("commit rows"))?;
        }
        tally.rejected = batch.iter().filter(|c| c.rows.is_err()).count() as i64;
        if !self.dry_run {
            rejects::store(self.record, &self.plan.name, &batch, self.run).await?;
        }
        Ok(tally)
    }

    /// After the batch failed as a whole: each document in its own savepoint.
    async fn one_by_one(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        batch: &mut [Converted],
        tally: &mut Tally,
    ) -> Result<(), SyncError> {
        for c in batch.iter_mut() {
            let Ok(rows) = &c.rows else { continue };
            sqlx::query("SAVEPOINT doc")
                .execute(&mut **tx)
                .await
                .map_err(SyncError::db("write rows"))?;
            match self.upsert(tx, &[rows]).await {
                Ok(written) => {
                    count(tally, &written, 1);
                    sqlx::query("RELEASE SAVEPOINT doc")
                        .execute(&mut **tx)
                        .await
                        .map_err(SyncError::db("write rows"))?;
                }
                Err(e) => {
                    let Some(reason) = refused(&e) else {
                        return Err(SyncError::db("write rows")(e));
                    };
                    sqlx::query("ROLLBACK TO SAVEPOINT doc")
                        .execute(&mut **tx)
                        .await
                        .map_err(SyncError::db("write rows"))?;
                    c.reject(reason);
                }
            }
        }
        Ok(())
    }

    /// Copies the documents' rows when none is in the table yet, else upserts them; returns,
    /// per written parent row, whether it was new.
    async fn store_rows(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        docs: &[&DocRows],
    ) -> Result<Vec<bool>, sqlx::Error> {
        let parents: Vec<&Row> = docs.iter().map(|d| &d.row).collect();
        if !self.copy || docs.is_empty() || !copy::all_new(tx, &self.plan.rows, &parents).await? {
            return self.upsert(tx, docs).await;
        }
        copy::copy_rows(tx, &self.plan.rows, &parents).await?;
        for (i, child) in self.plan.children.iter().enumerate() {
            let rows: Vec<&Row> = docs.iter().flat_map(|d| &d.children[i]).collect();
            // Rows of another parent's element would conflict: then the upsert path.
            copy::copy_rows(tx, &child.rows, &rows).await?;
        }
        Ok(vec![true; docs.len()])
    }

    /// Upserts the documents' rows; returns, per written parent row, whether it was new.
    async fn upsert(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        docs: &[&DocRows],
    ) -> Result<Vec<bool>, sqlx::Error> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let parents: Vec<&Row> = docs.iter().map(|d| &d.row).collect();
        let written = upsert_rows(tx, &self.plan.rows, &parents).await?;
        for (i, child) in self.plan.children.iter().enumerate() {
            let rows: Vec<&Row> = docs.iter().flat_map(|d| &d.children[i]).collect();
            upsert_rows(tx, &child.rows, &rows).await?;
            // Elements no longer in the array.
            let parent_keys: Vec<Option<String>> = parents
                .iter()
                .map(|r| r[self.plan.rows.key].clone())
                .collect();
            let keys: Vec<Option<String>> =
                rows.iter().map(|r| r[child.rows.key].clone()).collect();
            let t = &child.rows.table;
            let pcol = &child.rows.columns[child.parent].column;
            let kcol = &child.rows.columns[child.rows.key].column;
            let sql = format!(
                "DELETE FROM {} WHERE {} = ANY($1::text[]::{}[]) AND NOT ({} = ANY($2::text[]::{}[]))",
                t.quoted, pcol.quoted, pcol.cast, kcol.quoted, kcol.cast
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(parent_keys)
                .bind(keys)
                .execute(&mut **tx)
                .await?;
        }
        Ok(written)
    }

    /// Rejects documents whose refs point at rows that are not there, naming whether the
    /// referenced document was itself rejected.
    async fn check_refs(&self, batch: &mut [Converted]) -> Result<(), SyncError> {
        let mut wanted: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for c in batch.iter() {
            if let Ok(rows) = &c.rows {
                for r in &rows.refs {
                    if r.collection != self.plan.name {
                        wanted
                            .entry(&r.collection)
                            .or_default()
                            .insert(r.key.clone());
                    }
                }
            }
        }
        let mut present: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (collection, keys) in wanted {
            let Some(target) = self.plans.iter().find(|p| p.name == collection) else {
                continue;
            };
            let key = &target.rows.columns[target.rows.key].column;
            let sql = format!(
                "SELECT {k}::text FROM {t} WHERE {k} = ANY($1::text[]::{c}[])",
                k = key.quoted,
                t = target.rows.table.quoted,
                c = key.cast
            );
            let found: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(keys.into_iter().collect::<Vec<_>>())
                .fetch_all(&self.target.app)
                .await
                .map_err(SyncError::db("check references"))?;
            present.insert(collection.to_owned(), found.into_iter().collect());
        }
        for c in batch.iter_mut() {
            let Ok(rows) = &c.rows else { continue };
            let missing = rows.refs.iter().find(|r| {
                r.collection != self.plan.name
                    && present
                        .get(&r.collection)
                        .is_some_and(|p| !p.contains(&r.key))
            });
            let Some(r) = missing.cloned() else { continue };
            if self.dry_run && self.in_source(&r.collection, &r.raw).await? {
                continue;
            }
            let why = match rejects::reason(self.record, &r.collection, &r.source_id).await? {
                Some(reason) => format!("which was rejected ({reason})"),
                None => "which does not exist (or was not imported yet)".into(),
            };
            c.reject(format!(
                "{} refers to {} document {}, {why}; fix that document, or this reference, and re-run",
                r.path, r.collection, r.source_id
            ));
        }
        Ok(())
    }

    async fn in_source(&self, collection: &str, id: &Bson) -> Result<bool, SyncError> {
        let found = self
            .target
            .mongo
            .collection::<bson::Document>(collection)
            .find(doc! {"_id": id.clone()})
            .projection(doc! {"_id": 1})
            .limit(1)
            .await
            .map_err(SyncError::mongo("look up a reference"))?
            .try_next()
            .await
            .map_err(SyncError::mongo("look up a reference"))?;
        Ok(found.is_some())
    }
}

fn count(tally: &mut Tally, written: &[bool], docs: usize) {
    let inserted = written.iter().filter(|n| **n).count() as i64;
    tally.inserted += inserted;
    tally.updated += written.len() as i64 - inserted;
    tally.unchanged += docs as i64 - written.len() as i64;
}

/// `unnest($1::text[], ...) AS s(c0, ...)` and the casts that turn its text into the columns.
pub fn unnest_source(t: &TablePlan) -> (String, Vec<String>) {
    let params: Vec<String> = (1..=t.columns.len())
        .map(|i| format!("${i}::text[]"))
        .collect();
    let names: Vec<String> = (0..t.columns.len()).map(|i| format!("c{i}")).collect();
    let casts = t
        .columns
        .iter()
        .enumerate()
        .map(|(i, m)| format!("s.c{i}::{}", m.column.cast))
        .collect();
    (
        format!("unnest({}) AS s({})", params.join(", "), names.join(", ")),
        casts,
    )
}

/// Binds rows column by column as text arrays.
pub fn bind_columns<'q>(
    mut q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    t: &TablePlan,
    rows: &[&Row],
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    for i in 0..t.columns.len() {
        let column: Vec<Option<String>> = rows.iter().map(|r| r[i].clone()).collect();
        q = q.bind(column);
    }
    q
}

async fn upsert_rows(
    tx: &mut Transaction<'static, Postgres>,
    t: &TablePlan,
    rows: &[&Row],
) -> Result<Vec<bool>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let (source, casts) = unnest_source(t);
    let cols: Vec<&str> = t.columns.iter().map(|m| m.column.quoted.as_str()).collect();
    let key = &t.columns[t.key].column.quoted;
    let others: Vec<&str> = cols.iter().copied().filter(|c| *c != key).collect();
    let action = if others.is_empty() {
        "NOTHING".to_owned()
    } else {
        let set: Vec<String> = others
            .iter()
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        let old: Vec<String> = others.iter().map(|c| format!("t.{c}")).collect();
        let new: Vec<String> = others.iter().map(|c| format!("EXCLUDED.{c}")).collect();
        format!(
            "UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({})",
            set.join(", "),
            old.join(", "),
            new.join(", ")
        )
    };
    let sql = format!(
        "INSERT INTO {} AS t ({}) SELECT {} FROM {source} ON CONFLICT ({key}) DO {action} RETURNING (xmax = 0)",
        t.table.quoted,
        cols.join(", "),
        casts.join(", "),
    );
    let q = bind_columns(sqlx::query(sqlx::AssertSqlSafe(sql)), t, rows);
    q.fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| sqlx::Row::try_get::<bool, _>(r, 0))
        .collect()
}

//! URL rewrite: in chunks, the source's public URL prefix becomes the destination's in the
//! named columns, and every old value is kept (`files_rewrites`) so a rollback restores it.
//!
//! Table and column names come from the command line: each is checked to be a plain name,
//! then looked up in the catalog, and only the catalog's quoted names reach SQL.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::JobError;

/// A column to rewrite, as the catalog knows it.
#[derive(Debug, Clone)]
pub struct Column {
    /// `schema.table.column`, as given back by `target()`.
    pub schema: String,
    pub table: String,
    pub column: String,
    /// Primary key columns, in key order: the keyset of the chunks and the row identity the
    /// old values are kept under.
    pub key: Vec<String>,
}

fn db(what: String) -> impl Fn(sqlx::Error) -> JobError {
    move |e| JobError::db(what.clone(), e)
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Column {
    /// Resolves `spec` (`table.column` in schema public, or `schema.table.column`).
    pub async fn resolve(pool: &PgPool, spec: &str) -> Result<Self, JobError> {
        let parts: Vec<&str> = spec.split('.').collect();
        let (schema, table, column) = match parts[..] {
            [t, c] => ("public", t, c),
            [s, t, c] => (s, t, c),
            _ => {
                return Err(JobError::permanent(format!(
                    "--rewrite {spec:?}: give TABLE.COLUMN or SCHEMA.TABLE.COLUMN"
                )));
            }
        };
        if ![schema, table, column]
            .iter()
            .all(|n| ferry_config::is_sql_name(n))
        {
            return Err(JobError::permanent(format!(
                "--rewrite {spec:?}: names may hold only letters, digits and underscores"
            )));
        }
        let row = sqlx::query(
            "SELECT t.typname::text AS type,
                    (SELECT array_agg(a.attname::text ORDER BY k.n)
                       FROM pg_index i
                       CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
                       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                      WHERE i.indrelid = c.oid AND i.indisprimary) AS key
               FROM pg_class c
               JOIN pg_namespace s ON s.oid = c.relnamespace
               JOIN pg_attribute col ON col.attrelid = c.oid AND col.attnum > 0
                                    AND NOT col.attisdropped
               JOIN pg_type t ON t.oid = col.atttypid
              WHERE s.nspname = $1 AND c.relname = $2 AND col.attname = $3
                AND c.relkind IN ('r', 'p')",
        )
        .bind(schema)
        .bind(table)
        .bind(column)
        .fetch_optional(pool)
        .await
        .map_err(db(format!("--rewrite {spec}: reading the catalog")))?;
        let Some(row) = row else {
            return Err(JobError::permanent(format!(
                "--rewrite {spec:?}: no column {column:?} in table {schema}.{table} of the \
                 application database"
            )));
        };
        let type_name: String = row.get("type");
        if !matches!(type_name.as_str(), "text" | "varchar" | "bpchar") {
            return Err(JobError::permanent(format!(
                "--rewrite {spec:?}: the column is {type_name}; only text columns hold URLs \
                 ferry rewrites"
            )));
        }
        let key: Option<Vec<String>> = row.get("key");
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return Err(JobError::permanent(format!(
                "--rewrite {spec:?}: {schema}.{table} has no primary key, so old values could \
                 not be matched back to their rows; add one"
            )));
        };
        Ok(Self {
            schema: schema.to_owned(),
            table: table.to_owned(),
            column: column.to_owned(),
            key,
        })
    }

    pub fn target(&self) -> String {
        format!("{}.{}.{}", self.schema, self.table, self.column)
    }

    fn relation(&self) -> String {
        format!("{}.{}", quote(&self.schema), quote(&self.table))
    }

    /// `t."k1", t."k2"`
    fn key_of(&self, alias: &str) -> String {
        self.key
            .iter()
            .map(|k| format!("{alias}.{}", quote(k)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Rows whose value starts with `from`.
    pub async fn count(&self, pool: &PgPool, from: &str) -> Result<i64, JobError> {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE starts_with({}, $1)",
            self.relation(),
            quote(&self.column)
        );
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(from)
            .fetch_one(pool)
            .await
            .map_err(db(format!("counting rows of {}", self.target())))
    }

    /// Rewrites the next chunk after `after` (a key as JSON) in one statement that also keeps
    /// the old values; returns the rows changed and the chunk's last key (None: done).
    pub async fn chunk(
        &self,
        pool: &PgPool,
        run_id: Uuid,
        from: &str,
        to: &str,
        after: Option<&Value>,
        limit: usize,
    ) -> Result<(u64, Option<Value>), JobError> {
        let col = quote(&self.column);
        let rel = self.relation();
        let keys_t = self.key_of("t");
        let build = self
            .key
            .iter()
            .map(|k| format!("'{}', t.{}", k.replace('\'', "''"), quote(k)))
            .collect::<Vec<_>>()
            .join(", ");
        let order_cols = (0..self.key.len())
            .map(|i| format!("k{i}"))
            .collect::<Vec<_>>();
        let select_keys = self
            .key
            .iter()
            .enumerate()
            .map(|(i, k)| format!("t.{} AS k{i}", quote(k)))
            .collect::<Vec<_>>()
            .join(", ");
        let after_clause = if after.is_some() {
            format!(
                "AND ({keys_t}) > (SELECT {} FROM jsonb_populate_record(NULL::{rel}, $4) r)",
                self.key_of("r")
            )
        } else {
            String::new()
        };
        let sql = format!(
            "WITH batch AS (
                SELECT {select_keys}, jsonb_build_object({build}) AS row_key, t.{col} AS old
                  FROM {rel} t
                 WHERE starts_with(t.{col}, $1) {after_clause}
                 ORDER BY {keys_t} LIMIT $5 FOR UPDATE
             ), saved AS (
                INSERT INTO files_rewrites (run_id, target, row_key, old_value, new_value)
                SELECT $3, $6, row_key, old, $2 || substr(old, length($1) + 1) FROM batch
                ON CONFLICT (run_id, target, row_key) DO NOTHING
                RETURNING 1
             ), updated AS (
                UPDATE {rel} t SET {col} = $2 || substr(b.old, length($1) + 1)
                  FROM batch b WHERE ({keys_t}) = ({bkeys})
                RETURNING 1
             )
             SELECT (SELECT count(*) FROM updated) AS rows,
                    (SELECT row_key FROM batch ORDER BY {desc} LIMIT 1) AS last",
            bkeys = order_cols
                .iter()
                .map(|c| format!("b.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
            desc = order_cols
                .iter()
                .map(|c| format!("{c} DESC"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(from)
            .bind(to)
            .bind(run_id)
            .bind(after)
            .bind(limit as i64)
            .bind(self.target())
            .fetch_one(pool)
            .await
            .map_err(db(format!("rewriting {}", self.target())))?;
        let rows: i64 = row.get("rows");
        let last: Option<Value> = row.get("last");
        Ok((rows as u64, last))
    }

    /// Puts back the old values of `run_id` in chunks. A row whose value changed since the
    /// rewrite is left as it is and counted in `changed`.
    pub async fn rollback(
        &self,
        pool: &PgPool,
        run_id: Uuid,
        limit: usize,
    ) -> Result<Rollback, JobError> {
        let col = quote(&self.column);
        let rel = self.relation();
        let sql = format!(
            "WITH batch AS (
                SELECT row_key, old_value, new_value FROM files_rewrites
                 WHERE run_id = $1 AND target = $2 AND rolled_back_at IS NULL
                 LIMIT $3 FOR UPDATE
             ), restored AS (
                UPDATE {rel} t SET {col} = b.old_value
                  FROM batch b CROSS JOIN LATERAL jsonb_populate_record(NULL::{rel}, b.row_key) r
                 WHERE ({keys_t}) = ({keys_r}) AND t.{col} = b.new_value
                RETURNING 1
             ), marked AS (
                UPDATE files_rewrites f SET rolled_back_at = now() FROM batch b
                 WHERE f.run_id = $1 AND f.target = $2 AND f.row_key = b.row_key
                RETURNING 1
             )
             SELECT (SELECT count(*) FROM restored) AS restored,
                    (SELECT count(*) FROM marked) AS marked",
            keys_t = self.key_of("t"),
            keys_r = self.key_of("r"),
        );
        let mut total = Rollback::default();
        loop {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(run_id)
                .bind(self.target())
                .bind(limit as i64)
                .fetch_one(pool)
                .await
                .map_err(db(format!("rolling back {}", self.target())))?;
            let restored: i64 = row.get("restored");
            let marked: i64 = row.get("marked");
            total.restored += restored as u64;
            total.changed += (marked - restored) as u64;
            if marked == 0 {
                return Ok(total);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Rollback {
    pub restored: u64,
    /// Rows changed by someone else since the rewrite: left as they are.
    pub changed: u64,
}

/// The targets `run_id` rewrote and has not rolled back yet.
pub async fn targets(pool: &PgPool, run_id: Uuid) -> Result<Vec<String>, JobError> {
    sqlx::query_scalar(
        "SELECT DISTINCT target FROM files_rewrites
          WHERE run_id = $1 AND rolled_back_at IS NULL ORDER BY target",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await
    .map_err(db("listing rewritten columns".into()))
}

/// Rewritten values of `run_id`, in pages: `(target, row_key)` after `after`.
pub async fn rewritten(
    pool: &PgPool,
    run_id: Uuid,
    after: Option<&(String, Value)>,
    limit: i64,
) -> Result<Vec<(String, Value, String)>, JobError> {
    let (target, key) = match after {
        Some((t, k)) => (Some(t.as_str()), Some(k)),
        None => (None, None),
    };
    sqlx::query_as(
        "SELECT target, row_key, new_value FROM files_rewrites
          WHERE run_id = $1 AND rolled_back_at IS NULL
            AND ($2::text IS NULL OR (target, row_key) > ($2, $3::jsonb))
          ORDER BY target, row_key LIMIT $4",
    )
    .bind(run_id)
    .bind(target)
    .bind(key)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(db("reading rewritten values".into()))
}

/// Restores every URL `run_id` rewrote, column by column; returns what each got back.
pub async fn rollback_run(
    pool: &PgPool,
    run_id: Uuid,
    chunk: usize,
) -> Result<std::collections::BTreeMap<String, Rollback>, JobError> {
    let mut done = std::collections::BTreeMap::new();
    for target in targets(pool, run_id).await? {
        let column = Column::resolve(pool, &target).await?;
        done.insert(target, column.rollback(pool, run_id, chunk).await?);
    }
    Ok(done)
}

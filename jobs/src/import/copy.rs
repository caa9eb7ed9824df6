//! First loads by `COPY`: rows whose keys are not in the table yet need no conflict handling,
//! and `COPY` writes them in multi-row batches where `INSERT ... ON CONFLICT` goes row by row.
//! Anything Postgres refuses fails the whole `COPY`; the writer then rolls back to its
//! savepoint and takes the upsert path, which finds the document at fault.

use ferry_record::copy_text::line;
use sqlx::{Postgres, Transaction};

use super::{mapping::TablePlan, rows::Row};

/// Whether none of `rows`' keys is in the table: only then may they be copied in.
pub async fn all_new(
    tx: &mut Transaction<'static, Postgres>,
    t: &TablePlan,
    rows: &[&Row],
) -> Result<bool, sqlx::Error> {
    let key = &t.columns[t.key].column;
    let keys: Vec<Option<String>> = rows.iter().map(|r| r[t.key].clone()).collect();
    let sql = format!(
        "SELECT NOT EXISTS (SELECT 1 FROM {} WHERE {} = ANY($1::text[]::{}[]))",
        t.table.quoted, key.quoted, key.cast
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(keys)
        .fetch_one(&mut **tx)
        .await
}

/// `COPY`s the rows into the table; the count written.
pub async fn copy_rows(
    tx: &mut Transaction<'static, Postgres>,
    t: &TablePlan,
    rows: &[&Row],
) -> Result<u64, sqlx::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let columns: Vec<&str> = t.columns.iter().map(|m| m.column.quoted.as_str()).collect();
    let statement = format!(
        "COPY {} ({}) FROM STDIN",
        t.table.quoted,
        columns.join(", ")
    );
    let mut data = Vec::with_capacity(rows.len() * 128);
    for row in rows {
        line(&mut data, row);
    }
    let mut copy = tx.copy_in_raw(&statement).await?;
    copy.send(data).await?;
    copy.finish().await
}

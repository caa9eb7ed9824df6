//! Reading rows in key order and turning them into documents.

use bson::{Bson, Document, RawDocumentBuf};
use ferry_config::Timestamps;
use sqlx::{PgPool, postgres::PgRow};

use super::{SyncError, Table, mapping};

/// One page of rows as documents, with the cursor after its last row.
#[derive(Debug, Default)]
pub struct Page {
    pub docs: Vec<RawDocumentBuf>,
    pub ids: Vec<Bson>,
    pub bytes: u64,
    /// Numerics stored as strings because Decimal128 cannot hold them.
    pub inexact: u64,
    /// Each row's key (as text) and version (`xmin`) when it was read, in page order.
    pub versions: Vec<(Vec<String>, String)>,
}

impl Page {
    /// The last row's key as text (the cursor after this page); `None` when it is empty.
    pub fn last(&self) -> Option<Vec<String>> {
        self.versions.last().map(|(key, _)| key.clone())
    }
}

/// Bounds of a keyset read: rows with key > `after` and key <= `upto`.
#[derive(Debug, Clone, Default)]
pub struct Range<'a> {
    pub after: Option<&'a [String]>,
    pub upto: Option<&'a [String]>,
}

pub async fn read(
    app: &PgPool,
    table: &Table,
    timestamps: Timestamps,
    range: Range<'_>,
    limit: usize,
) -> Result<Page, SyncError> {
    let mut conditions = Vec::new();
    let mut binds: Vec<&String> = Vec::new();
    if let Some(after) = range.after {
        conditions.push(table.key_compare(">", binds.len() + 1));
        binds.extend(after);
    }
    if let Some(upto) = range.upto {
        conditions.push(table.key_compare("<=", binds.len() + 1));
        binds.extend(upto);
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT {} FROM {} {filter} ORDER BY {} LIMIT {limit}",
        table.select_list(),
        table.quoted,
        table.key_list()
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for b in binds {
        query = query.bind(b);
    }
    let rows = query
        .fetch_all(app)
        .await
        .map_err(SyncError::db("read rows"))?;
    to_page(table, timestamps, &rows)
}

/// The rows whose keys (as text) are `key`: zero or one.
pub async fn read_one(
    app: &PgPool,
    table: &Table,
    timestamps: Timestamps,
    key: &[String],
) -> Result<Page, SyncError> {
    let sql = format!(
        "SELECT {} FROM {} WHERE {}",
        table.select_list(),
        table.quoted,
        table.key_compare("=", 1)
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for k in key {
        query = query.bind(k);
    }
    let rows = query
        .fetch_all(app)
        .await
        .map_err(|e| key_error(e, table, key, "read a row"))?;
    to_page(table, timestamps, &rows)
}

/// The keys of the page's rows that changed or were deleted since the page was read: their
/// version (`xmin`) is another now, or they are gone. One indexed lookup per row.
pub async fn moved(
    app: &PgPool,
    table: &Table,
    page: &Page,
) -> Result<Vec<Vec<String>>, SyncError> {
    if page.versions.is_empty() {
        return Ok(Vec::new());
    }
    let k = table.key.len();
    let columns: Vec<String> = (0..k).map(|i| format!("_ferry_k{i}")).collect();
    let arrays: Vec<String> = (1..=k).map(|i| format!("${i}::text[]")).collect();
    let join: Vec<String> = table
        .key
        .iter()
        .zip(&columns)
        .map(|(c, k)| format!("t.{} = k.{k}::text::{}", c.quoted, c.type_name))
        .collect();
    let sql = format!(
        "SELECT t.xmin::text FROM unnest({}) WITH ORDINALITY AS k({}, _ferry_i)
         LEFT JOIN {} t ON {} ORDER BY k._ferry_i",
        arrays.join(", "),
        columns.join(", "),
        table.quoted,
        join.join(" AND ")
    );
    let mut query = sqlx::query_scalar::<_, Option<String>>(sqlx::AssertSqlSafe(sql));
    for i in 0..k {
        let values: Vec<&str> = page
            .versions
            .iter()
            .map(|(key, _)| key[i].as_str())
            .collect();
        query = query.bind(values);
    }
    let now = query
        .fetch_all(app)
        .await
        .map_err(SyncError::db("read row versions"))?;
    Ok(page
        .versions
        .iter()
        .zip(now)
        .filter(|((_, then), now)| now.as_ref() != Some(then))
        .map(|((key, _), _)| key.clone())
        .collect())
}

/// The `_id` a row with this key (as text) has, computed by Postgres's own casts so it
/// matches what a full sync writes even when the row is gone.
pub async fn id_for(
    app: &PgPool,
    table: &Table,
    timestamps: Timestamps,
    key: &[String],
) -> Result<Bson, SyncError> {
    let exprs: Vec<String> = table
        .key
        .iter()
        .enumerate()
        .map(|(i, c)| {
            c.ty.select_expr(&format!("(${}::text::{})", i + 1, c.type_name))
        })
        .collect();
    let mut query = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {}", exprs.join(", "))));
    for k in key {
        query = query.bind(k);
    }
    let row = query
        .fetch_one(app)
        .await
        .map_err(|e| key_error(e, table, key, "cast a key"))?;
    let mut inexact = 0;
    let values = table
        .key
        .iter()
        .enumerate()
        .map(|(i, c)| mapping::decode(&row, i, &c.ty, timestamps, &mut inexact))
        .collect::<Result<Vec<_>, _>>()
        .map_err(SyncError::db("decode a key"))?;
    Ok(make_id(table, values))
}

/// A key that Postgres cannot cast to the key columns' types (class 22, data exception) is
/// bad input, not an outage.
fn key_error(e: sqlx::Error, table: &Table, key: &[String], what: &'static str) -> SyncError {
    match &e {
        sqlx::Error::Database(d) if d.code().is_some_and(|c| c.starts_with("22")) => {
            SyncError::Config(format!(
                "key {key:?} does not fit table {}: {}",
                table.name,
                d.message()
            ))
        }
        _ => SyncError::db(what)(e),
    }
}

fn make_id(table: &Table, mut values: Vec<Bson>) -> Bson {
    if values.len() == 1 {
        return values.remove(0);
    }
    Bson::Document(
        table
            .key
            .iter()
            .map(|c| c.name.clone())
            .zip(values)
            .collect(),
    )
}

pub(super) fn to_page(
    table: &Table,
    timestamps: Timestamps,
    rows: &[PgRow],
) -> Result<Page, SyncError> {
    let mut page = Page::default();
    let n = table.columns.len();
    for row in rows {
        let mut doc = Document::new();
        let mut fields = Vec::with_capacity(n);
        for (i, c) in table.columns.iter().enumerate() {
            let v = mapping::decode(row, i, &c.ty, timestamps, &mut page.inexact).map_err(|e| {
                SyncError::Config(format!(
                    "{}.{} ({}): cannot read the value: {e}",
                    table.name, c.name, c.type_name
                ))
            })?;
            fields.push(v);
        }
        let key_values: Vec<Bson> = table
            .key
            .iter()
            .map(|k| {
                let i = table
                    .columns
                    .iter()
                    .position(|c| c.name == k.name)
                    .unwrap_or(0);
                fields[i].clone()
            })
            .collect();
        let id = make_id(table, key_values);
        doc.insert("_id", id.clone());
        for (c, v) in table.columns.iter().zip(fields) {
            doc.insert(c.name.clone(), v);
        }
        let raw = RawDocumentBuf::try_from(&doc).map_err(|e| {
            SyncError::Config(format!(
                "{}: a row does not encode as BSON: {e}",
                table.name
            ))
        })?;
        page.bytes += raw.as_bytes().len() as u64;
        page.docs.push(raw);
        page.ids.push(id);
        let k = table.key.len();
        let key_text: Vec<String> = (0..k)
            .map(|j| sqlx::Row::try_get::<String, _>(row, n + j))
            .collect::<Result<_, _>>()
            .map_err(SyncError::db("read the key"))?;
        let version: String =
            sqlx::Row::try_get(row, n + k).map_err(SyncError::db("read the row version"))?;
        page.versions.push((key_text, version));
    }
    Ok(page)
}

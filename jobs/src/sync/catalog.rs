//! Which tables are mirrored, with which key and columns: read from the Postgres catalog and
//! checked against `[sync]` config. Names from outside are only ever matched against the
//! catalog and quoted; nothing from a job's arguments is spliced into SQL.

use std::collections::BTreeMap;

use ferry_config::{Sync, SyncTable};
use sqlx::PgPool;

use super::{
    SyncError,
    mapping::{ColumnType, Scalar},
};

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    /// `"name"`, safe to splice.
    pub quoted: String,
    pub ty: ColumnType,
    /// The type as Postgres prints it, for casts of bound key values.
    pub type_name: String,
    pub not_null: bool,
}

/// A mirrored table.
#[derive(Debug, Clone)]
pub struct Table {
    /// `schema.table`
    pub name: String,
    /// `"schema"."table"`
    pub quoted: String,
    pub collection: String,
    pub key: Vec<Column>,
    /// Mirrored columns (exclusions applied), in table order.
    pub columns: Vec<Column>,
    pub updated_at: Option<Column>,
}

/// The mirrored tables, and the tables left out with the reason and the fix.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tables: Vec<Table>,
    pub unmirrored: Vec<String>,
}

pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

impl Catalog {
    /// `record_schema` holds ferry's own tables, which are never mirrored.
    pub async fn discover(
        app: &PgPool,
        sync: &Sync,
        record_schema: &str,
    ) -> Result<Self, SyncError> {
        let overrides: BTreeMap<&str, &SyncTable> =
            sync.tables.iter().map(|t| (t.name.as_str(), t)).collect();
        let mut names: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT n.nspname::text, c.relname::text, c.oid::int8
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY($1)
               AND n.nspname <> $2
             ORDER BY 1, 2",
        )
        .bind(&sync.schemas)
        .bind(record_schema)
        .fetch_all(app)
        .await
        .map_err(SyncError::db("read the catalog"))?;
        // Tables named in config outside `sync.schemas` are mirrored too.
        for t in &sync.tables {
            let (schema, table) = t.name.split_once('.').unwrap_or(("", &t.name));
            if names.iter().any(|(s, n, _)| s == schema && n == table) {
                continue;
            }
            let found: Option<(String, String, i64, bool)> = sqlx::query_as(
                "SELECT n.nspname::text, c.relname::text, c.oid::int8, c.relispartition
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind IN ('r', 'p') AND n.nspname = $1 AND c.relname = $2",
            )
            .bind(schema)
            .bind(table)
            .fetch_optional(app)
            .await
            .map_err(SyncError::db("read the catalog"))?;
            match found {
                Some((_, _, _, true)) => {
                    return Err(SyncError::Config(format!(
                        "sync.table {}: is a partition; partitions sync through their partitioned parent, name the parent instead",
                        t.name
                    )));
                }
                Some((s, n, oid, false)) => names.push((s, n, oid)),
                None => {
                    return Err(SyncError::Config(format!(
                        "sync.table {}: no such table; fix the name or remove the entry",
                        t.name
                    )));
                }
            }
        }
        let mut catalog = Catalog::default();
        for (schema, table, oid) in names {
            let name = format!("{schema}.{table}");
            let o = overrides.get(name.as_str()).copied();
            if o.is_some_and(|o| o.skip) {
                continue;
            }
            let columns = columns(app, oid).await?;
            let col = |c: &str, field: &str| {
                columns
                    .iter()
                    .find(|x| x.name == c)
                    .cloned()
                    .ok_or_else(|| {
                        SyncError::Config(format!(
                            "sync.table {name}.{field}: table {name} has no column {c:?}"
                        ))
                    })
            };
            let key: Vec<Column> = match o.and_then(|o| o.key.as_ref()) {
                Some(cols) => cols
                    .iter()
                    .map(|c| col(c, "key"))
                    .collect::<Result<_, _>>()?,
                None => primary_key(app, oid)
                    .await?
                    .iter()
                    .map(|c| col(c, "key"))
                    .collect::<Result<_, _>>()?,
            };
            if key.is_empty() {
                catalog.unmirrored.push(format!(
                    "{name} has no primary key: add [[sync.table]] name = \"{name}\" with key = [\"column\", ...] (unique, not null) to mirror it, or skip = true"
                ));
                continue;
            }
            if let Some(c) = key.iter().find(|c| !c.not_null) {
                return Err(SyncError::Config(format!(
                    "sync.table {name}.key: column {} can be NULL; key columns must be NOT NULL and unique",
                    c.name
                )));
            }
            let excluded = o.map(|o| o.exclude_columns.clone()).unwrap_or_default();
            for c in &excluded {
                col(c, "exclude_columns")?;
                if key.iter().any(|k| &k.name == c) {
                    return Err(SyncError::Config(format!(
                        "sync.table {name}.exclude_columns: {c} is a key column and cannot be excluded"
                    )));
                }
            }
            let updated_at = match o.and_then(|o| o.updated_at.as_ref()) {
                Some(c) => {
                    let c = col(c, "updated_at")?;
                    if !matches!(c.ty.scalar, Scalar::Timestamptz | Scalar::Timestamp) || c.ty.array
                    {
                        return Err(SyncError::Config(format!(
                            "sync.table {name}.updated_at: column {} is {}, not a timestamp",
                            c.name, c.type_name
                        )));
                    }
                    Some(c)
                }
                None => columns
                    .iter()
                    .find(|c| {
                        c.name == "updated_at"
                            && matches!(c.ty.scalar, Scalar::Timestamptz | Scalar::Timestamp)
                            && !c.ty.array
                    })
                    .cloned(),
            };
            catalog.tables.push(Table {
                quoted: format!("{}.{}", quote(&schema), quote(&table)),
                collection: o
                    .and_then(|o| o.collection.clone())
                    .unwrap_or_else(|| table.clone()),
                columns: columns
                    .into_iter()
                    .filter(|c| !excluded.contains(&c.name))
                    .collect(),
                key,
                updated_at,
                name,
            });
        }
        let mut seen = BTreeMap::new();
        for t in &catalog.tables {
            if let Some(other) = seen.insert(t.collection.clone(), t.name.clone()) {
                return Err(SyncError::Config(format!(
                    "tables {other} and {} would share collection {}; set collection in [[sync.table]] for one of them",
                    t.name, t.collection
                )));
            }
        }
        Ok(catalog)
    }

    /// The named tables (`schema.table` or a bare table name), or all.
    pub fn select(&self, names: &[String]) -> Result<Vec<Table>, SyncError> {
        if names.is_empty() {
            return Ok(self.tables.clone());
        }
        names.iter().map(|n| self.table(n)).collect()
    }

    pub fn table(&self, name: &str) -> Result<Table, SyncError> {
        self.tables
            .iter()
            .find(|t| t.name == name || t.name.split_once('.').is_some_and(|(_, b)| b == name))
            .cloned()
            .ok_or_else(|| {
                let known: Vec<_> = self.tables.iter().map(|t| t.name.as_str()).collect();
                let hint = self
                    .unmirrored
                    .iter()
                    .find(|u| u.contains(name))
                    .cloned()
                    .unwrap_or_default();
                SyncError::Config(format!(
                    "unknown table {name:?}; mirrored tables: {}. {hint}",
                    known.join(", ")
                ))
            })
    }
}

async fn columns(app: &PgPool, oid: i64) -> Result<Vec<Column>, SyncError> {
    let rows: Vec<(String, bool, String, String, bool, String)> = sqlx::query_as(
        "WITH cols AS (
            SELECT a.attname::text AS name, a.attnum, a.attnotnull,
                   format_type(a.atttypid, a.atttypmod) AS type_name,
                   CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END AS base
            FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
            WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped)
         SELECT c.name, c.attnotnull, c.type_name, b.typname::text, b.typcategory = 'A',
                COALESCE(CASE WHEN e.typtype = 'd' THEN eb.typname ELSE e.typname END, '')::text
         FROM cols c JOIN pg_type b ON b.oid = c.base
         LEFT JOIN pg_type e ON e.oid = b.typelem AND b.typcategory = 'A'
         LEFT JOIN pg_type eb ON eb.oid = e.typbasetype
         ORDER BY c.attnum",
    )
    .bind(oid)
    .fetch_all(app)
    .await
    .map_err(SyncError::db("read table columns"))?;
    Ok(rows
        .into_iter()
        .map(|(name, not_null, type_name, base, array, elem)| {
            let scalar = if array {
                Scalar::from_type_name(&elem)
            } else {
                Scalar::from_type_name(&base)
            };
            Column {
                quoted: quote(&name),
                name,
                ty: ColumnType { scalar, array },
                type_name,
                not_null,
            }
        })
        .collect())
}

/// Primary key columns in key order; `INCLUDE` columns are not part of the key.
async fn primary_key(app: &PgPool, oid: i64) -> Result<Vec<String>, SyncError> {
    sqlx::query_scalar(
        "SELECT a.attname::text
         FROM pg_index i
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = $1::oid AND i.indisprimary AND k.ord <= i.indnkeyatts
         ORDER BY k.ord",
    )
    .bind(oid)
    .fetch_all(app)
    .await
    .map_err(SyncError::db("read primary key"))
}

impl Table {
    /// `"k1", "k2"`
    pub fn key_list(&self) -> String {
        self.key
            .iter()
            .map(|c| c.quoted.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `("k1", "k2") OP ($n::text::T1, $n+1::text::T2)`: compares keys with values bound as text.
    pub fn key_compare(&self, op: &str, first_param: usize) -> String {
        let params: Vec<String> = self
            .key
            .iter()
            .enumerate()
            .map(|(i, c)| format!("${}::text::{}", first_param + i, c.type_name))
            .collect();
        format!("({}) {op} ({})", self.key_list(), params.join(", "))
    }

    /// Mirrored columns, then each key column as text (the cursor), then the row version
    /// (`xmin`, which every update changes) as text.
    pub fn select_list(&self) -> String {
        let mut exprs: Vec<String> = self
            .columns
            .iter()
            .map(|c| c.ty.select_expr(&c.quoted))
            .collect();
        // Aliased so ORDER BY the key names the table's columns, not these copies.
        exprs.extend(
            self.key
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{}::text AS _ferry_key{i}", c.quoted)),
        );
        exprs.push("xmin::text AS _ferry_version".to_owned());
        exprs.join(", ")
    }
}

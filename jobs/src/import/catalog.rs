//! The target tables of an import as the Postgres catalog describes them: columns with their
//! types, defaults and enum labels, the primary key, and the foreign keys that order the
//! collections. Config names are only matched against this and quoted, never spliced raw.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::PgPool;

use crate::sync::{
    SyncError,
    catalog::quote,
    mapping::{ColumnType, Scalar},
};

#[derive(Debug, Clone)]
pub struct TargetColumn {
    pub name: String,
    /// `"name"`, safe to splice.
    pub quoted: String,
    pub ty: ColumnType,
    /// As Postgres prints it (`numeric(12,2)`, `app.mood[]`), for messages.
    pub type_name: String,
    /// The type without modifiers, for casts of bound text: the assignment to the column
    /// then applies the modifier and fails (instead of truncating) on a too-long string.
    pub cast: String,
    pub not_null: bool,
    /// Has a default or is an identity: may be left without a source.
    pub defaulted: bool,
    /// Labels of an enum column (empty otherwise).
    pub labels: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct TargetTable {
    /// `schema.table`
    pub name: String,
    pub quoted: String,
    pub columns: Vec<TargetColumn>,
    /// The one-column primary key.
    pub key: String,
    /// Tables (`schema.table`) this one has foreign keys to.
    pub references: BTreeSet<String>,
}

impl TargetTable {
    pub fn column(&self, name: &str) -> Option<&TargetColumn> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Reads `schema.table`; `key` names the config key in errors.
pub async fn read_table(app: &PgPool, name: &str, key: &str) -> Result<TargetTable, SyncError> {
    let (schema, table) = name.split_once('.').unwrap_or(("public", name));
    let oid: Option<i64> = sqlx::query_scalar(
        "SELECT c.oid::int8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p') AND n.nspname = $1 AND c.relname = $2",
    )
    .bind(schema)
    .bind(table)
    .fetch_optional(app)
    .await
    .map_err(SyncError::db("read the catalog"))?;
    let Some(oid) = oid else {
        return Err(SyncError::Config(format!(
            "config {key}: table {name} does not exist; fix: create it with the application's migrations first, or correct the name (import.schema is the default schema)"
        )));
    };
    #[allow(clippy::type_complexity)]
    let rows: Vec<(String, bool, bool, String, String, String, bool, String, Vec<String>)> =
        sqlx::query_as(
            "SELECT a.attname::text, a.attnotnull, a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '',
                    format_type(a.atttypid, a.atttypmod), format_type(a.atttypid, NULL),
                    b.typname::text, b.typcategory = 'A',
                    COALESCE(e.typname, '')::text,
                    COALESCE((SELECT array_agg(l.enumlabel::text ORDER BY l.enumsortorder) FROM pg_enum l
                              WHERE l.enumtypid = COALESCE(e.oid, b.oid)), '{}')
             FROM pg_attribute a
             JOIN pg_type t ON t.oid = a.atttypid
             JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
             LEFT JOIN pg_type e ON e.oid = b.typelem AND b.typcategory = 'A'
             WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
        )
        .bind(oid)
        .fetch_all(app)
        .await
        .map_err(SyncError::db("read table columns"))?;
    let columns = rows
        .into_iter()
        .map(
            |(name, not_null, defaulted, type_name, cast, base, array, elem, labels)| {
                TargetColumn {
                    quoted: quote(&name),
                    name,
                    ty: ColumnType {
                        scalar: Scalar::from_type_name(if array { &elem } else { &base }),
                        array,
                    },
                    type_name,
                    cast,
                    not_null,
                    defaulted,
                    labels,
                }
            },
        )
        .collect();
    let pk: Vec<String> = sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
         WHERE i.indrelid = $1::oid AND i.indisprimary",
    )
    .bind(oid)
    .fetch_all(app)
    .await
    .map_err(SyncError::db("read primary key"))?;
    let [pk] = <[String; 1]>::try_from(pk).map_err(|k| {
        SyncError::Config(format!(
            "config {key}: table {name} has {} primary key columns; fix: give it a one-column primary key (the id the documents map to)",
            k.len()
        ))
    })?;
    let references: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT n.nspname || '.' || c.relname FROM pg_constraint f
         JOIN pg_class c ON c.oid = f.confrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE f.conrelid = $1::oid AND f.contype = 'f' AND f.confrelid <> f.conrelid",
    )
    .bind(oid)
    .fetch_all(app)
    .await
    .map_err(SyncError::db("read foreign keys"))?;
    Ok(TargetTable {
        quoted: format!("{}.{}", quote(schema), quote(table)),
        name: format!("{schema}.{table}"),
        columns,
        key: pk,
        references: references.into_iter().collect(),
    })
}

/// Orders items so that each comes after those it depends on; `deps[i]` are indexes. A cycle
/// is an error naming its members.
pub fn order(names: &[String], deps: &[BTreeSet<usize>]) -> Result<Vec<usize>, SyncError> {
    let mut done = Vec::new();
    let mut placed = BTreeSet::new();
    while done.len() < names.len() {
        let next = (0..names.len())
            .find(|i| !placed.contains(i) && deps[*i].iter().all(|d| placed.contains(d) || d == i));
        match next {
            Some(i) => {
                placed.insert(i);
                done.push(i);
            }
            None => {
                let left: Vec<&str> = (0..names.len())
                    .filter(|i| !placed.contains(i))
                    .map(|i| names[i].as_str())
                    .collect();
                return Err(SyncError::Config(format!(
                    "collections {} reference each other in a cycle (foreign keys or refs); fix: make one of the foreign keys nullable and import it in a second pass, or drop one ref",
                    left.join(", ")
                )));
            }
        }
    }
    Ok(done)
}

/// Field paths present in sampled documents, dotted into embedded documents (arrays count as
/// a leaf; their elements' fields are listed under `path.`).
pub fn sample_paths(docs: &[bson::Document]) -> BTreeMap<String, usize> {
    fn walk(prefix: &str, doc: &bson::Document, out: &mut BTreeMap<String, usize>) {
        for (k, v) in doc {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            *out.entry(path.clone()).or_default() += 1;
            match v {
                bson::Bson::Document(d) => walk(&path, d, out),
                bson::Bson::Array(items) => {
                    for item in items {
                        if let bson::Bson::Document(d) = item {
                            walk(&path, d, out);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = BTreeMap::new();
    for d in docs {
        walk("", d, &mut out);
    }
    out
}

//! The import plan: `[import]` config checked against the catalog and a sample of each
//! collection, resolved into column mappings, in foreign-key order. Every refusal names the
//! config key and the fix, and happens before anything is written.

use std::collections::{BTreeMap, BTreeSet};

use bson::{Document, doc};
use ferry_config::{INDEX, Import, Source};
use futures::TryStreamExt;

use super::catalog::{self, TargetColumn, TargetTable};
use crate::sync::{SyncError, Target};

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum From {
    /// A dotted path in the document (or element).
    Path(String),
    /// A dotted path holding an id of a document of another configured collection.
    Ref { path: String, collection: String },
    /// The element's position in its array.
    Index,
    /// The parent row's id (child tables).
    Parent,
    /// A child row's own id, derived from the parent id, path and index.
    ElementId,
}

impl From {
    pub fn describe(&self) -> String {
        match self {
            Self::Path(p) => p.clone(),
            Self::Ref { path, collection } => format!("{path} → {collection} id"),
            Self::Index => INDEX.into(),
            Self::Parent => "parent id".into(),
            Self::ElementId => "derived (parent id, path, index)".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ColumnMap {
    pub column: TargetColumn,
    pub from: From,
    /// `config`, `same name`, `snake_case`, `primary key` or `ferry`.
    pub origin: &'static str,
}

/// Rows of one table: the mapped columns and the index of the key among them.
#[derive(Debug, Clone)]
pub struct TablePlan {
    pub table: TargetTable,
    pub columns: Vec<ColumnMap>,
    pub key: usize,
    /// Columns left without a source (they take their default or NULL).
    pub unmapped: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ChildPlan {
    /// Dotted path of the array.
    pub path: String,
    pub rows: TablePlan,
    /// Index of the parent-id column among `rows.columns`.
    pub parent: usize,
}

#[derive(Debug, Clone)]
pub struct CollectionPlan {
    pub name: String,
    pub rows: TablePlan,
    pub children: Vec<ChildPlan>,
    /// Configured collections this one must follow.
    pub after: BTreeSet<String>,
    pub sampled: usize,
}

impl CollectionPlan {
    /// Configured collections whose ids this one's columns hold.
    pub fn refs(&self) -> impl Iterator<Item = (&ColumnMap, &str)> {
        std::iter::once(&self.rows)
            .chain(self.children.iter().map(|c| &c.rows))
            .flat_map(|t| &t.columns)
            .filter_map(|c| match &c.from {
                From::Ref { collection, .. } => Some((c, collection.as_str())),
                _ => None,
            })
    }
}

/// `createdAt` → `created_at`.
pub fn snake_case(field: &str) -> String {
    let mut out = String::new();
    for (i, ch) in field.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

/// Resolves every configured collection, parents first.
pub async fn plan(target: &Target, config: &Import) -> Result<Vec<CollectionPlan>, SyncError> {
    let existing: BTreeSet<String> = target
        .mongo
        .list_collection_names()
        .await
        .map_err(SyncError::mongo("list collections"))?
        .into_iter()
        .collect();
    let mut plans = Vec::new();
    for (i, c) in config.collections.iter().enumerate() {
        let key = |field: &str| format!("import.collection[{i}] ({}).{field}", c.name);
        if !existing.contains(&c.name) {
            return Err(SyncError::Config(format!(
                "config {}: MongoDB database {:?} has no collection {:?}; fix: correct the name (collections there: {})",
                key("name"),
                target.mongo.name(),
                c.name,
                existing.iter().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        let sample: Vec<Document> = target
            .mongo
            .collection::<Document>(&c.name)
            .find(doc! {})
            .sort(doc! {"_id": 1})
            .limit(config.sample_size as i64)
            .await
            .map_err(SyncError::mongo("sample documents"))?
            .try_collect()
            .await
            .map_err(SyncError::mongo("sample documents"))?;
        let seen = catalog::sample_paths(&sample);
        let table =
            catalog::read_table(&target.app, &config.qualified(&c.table), &key("table")).await?;
        let rows = table_plan(
            table,
            &c.columns,
            &seen,
            sample.len(),
            &key("columns"),
            None,
        )?;
        let mut children = Vec::new();
        for (j, child) in c.children.iter().enumerate() {
            let ck = |field: &str| key(&format!("child[{j}].{field}"));
            if !sample.is_empty() && !seen.contains_key(&child.path) {
                return Err(never_seen(&ck("path"), &child.path, &seen, sample.len()));
            }
            let elements: Vec<Document> = sample
                .iter()
                .filter_map(|d| d.get_array(&child.path).ok().cloned())
                .flatten()
                .filter_map(|e| e.as_document().cloned())
                .collect();
            let child_seen = catalog::sample_paths(&elements);
            let table =
                catalog::read_table(&target.app, &config.qualified(&child.table), &ck("table"))
                    .await?;
            let rows = table_plan(
                table,
                &child.columns,
                &child_seen,
                elements.len(),
                &ck("columns"),
                Some((&child.parent, &ck("parent"))),
            )?;
            let parent = rows
                .columns
                .iter()
                .position(|m| m.from == From::Parent)
                .unwrap_or_default();
            children.push(ChildPlan {
                path: child.path.clone(),
                rows,
                parent,
            });
        }
        plans.push(CollectionPlan {
            name: c.name.clone(),
            rows,
            children,
            after: BTreeSet::new(),
            sampled: sample.len(),
        });
    }
    // Parents first: refs, and foreign keys between the tables of configured collections.
    let owner: BTreeMap<String, String> = plans
        .iter()
        .flat_map(|p| {
            std::iter::once(p.rows.table.name.clone())
                .chain(p.children.iter().map(|c| c.rows.table.name.clone()))
                .map(|t| (t, p.name.clone()))
        })
        .collect();
    for p in &mut plans {
        let mut after: BTreeSet<String> = p.refs().map(|(_, c)| c.to_owned()).collect();
        for t in std::iter::once(&p.rows.table).chain(p.children.iter().map(|c| &c.rows.table)) {
            after.extend(t.references.iter().filter_map(|r| owner.get(r).cloned()));
        }
        after.remove(&p.name);
        p.after = after;
    }
    let names: Vec<String> = plans.iter().map(|p| p.name.clone()).collect();
    let deps: Vec<BTreeSet<usize>> = plans
        .iter()
        .map(|p| {
            p.after
                .iter()
                .filter_map(|a| names.iter().position(|n| n == a))
                .collect()
        })
        .collect();
    let order = catalog::order(&names, &deps)?;
    let mut slots: Vec<Option<CollectionPlan>> = plans.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}

fn never_seen(key: &str, path: &str, seen: &BTreeMap<String, usize>, n: usize) -> SyncError {
    let top: Vec<&str> = seen.keys().map(String::as_str).take(40).collect();
    SyncError::Config(format!(
        "config {key}: path {path:?} occurs in none of the {n} sampled documents; fix: correct the path (paths seen: {})",
        top.join(", ")
    ))
}

/// Maps the columns of one table. `parent`: the child's parent column and its config key.
fn table_plan(
    table: TargetTable,
    configured: &BTreeMap<String, Source>,
    seen: &BTreeMap<String, usize>,
    sampled: usize,
    key: &str,
    parent: Option<(&String, &String)>,
) -> Result<TablePlan, SyncError> {
    let known = || {
        table
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for name in configured.keys() {
        if table.column(name).is_none() {
            return Err(SyncError::Config(format!(
                "config {key}.{name}: table {} has no column {name:?}; fix: use one of: {}",
                table.name,
                known()
            )));
        }
    }
    if let Some((p, pkey)) = parent
        && table.column(p).is_none()
    {
        return Err(SyncError::Config(format!(
            "config {pkey}: table {} has no column {p:?}; fix: name the column that holds the parent id (one of: {})",
            table.name,
            known()
        )));
    }
    let mut columns = Vec::new();
    let mut unmapped = Vec::new();
    for col in &table.columns {
        let (from, origin) = match configured.get(&col.name) {
            Some(Source::Path(p)) if p == INDEX => (From::Index, "config"),
            Some(Source::Path(p)) => (From::Path(p.clone()), "config"),
            Some(Source::Ref(r)) => (
                From::Ref {
                    path: r.path.clone(),
                    collection: r.collection.clone(),
                },
                "config",
            ),
            None if parent.is_some_and(|(p, _)| *p == col.name) => (From::Parent, "ferry"),
            None => match seen
                .keys()
                .filter(|f| !f.contains('.'))
                .find(|f| **f == col.name || snake_case(f) == col.name)
            {
                Some(f) if f == "_id" => (From::Path(f.clone()), "same name"),
                Some(f) => (
                    From::Path(f.clone()),
                    if *f == col.name {
                        "same name"
                    } else {
                        "snake_case"
                    },
                ),
                None if col.name == table.key && parent.is_some() => (From::ElementId, "ferry"),
                None if col.name == table.key => (From::Path("_id".into()), "primary key"),
                None => {
                    if col.not_null && !col.defaulted {
                        return Err(SyncError::Config(format!(
                            "config {key}.{}: column {} of {} is NOT NULL without a default and no field of that name (or its camelCase) is in the sample; fix: map it, e.g. {} = \"someField\"",
                            col.name, col.name, table.name, col.name
                        )));
                    }
                    unmapped.push(col.name.clone());
                    continue;
                }
            },
        };
        let path = match &from {
            From::Path(p) | From::Ref { path: p, .. } => Some(p),
            _ => None,
        };
        if let Some(p) = path
            && sampled > 0
            && !seen.contains_key(p)
            && !(p == "_id" && parent.is_none())
        {
            return Err(never_seen(&format!("{key}.{}", col.name), p, seen, sampled));
        }
        columns.push(ColumnMap {
            column: col.clone(),
            from,
            origin,
        });
    }
    let key_index = columns
        .iter()
        .position(|m| m.column.name == table.key)
        .ok_or_else(|| {
            SyncError::Config(format!(
                "config {key}: the primary key {} of {} has no source; fix: map it, e.g. {} = \"_id\"",
                table.key, table.name, table.key
            ))
        })?;
    Ok(TablePlan {
        table,
        columns,
        key: key_index,
        unmapped,
    })
}

//! For collections not in `[import]` yet: a `CREATE TABLE` and a mapping inferred from a
//! sample, as a starting point for the application's migration and ferry's config.

use std::collections::{BTreeMap, BTreeSet};

use bson::{Bson, Document, doc};
use ferry_config::Import;
use futures::TryStreamExt;

use super::mapping::snake_case;
use crate::sync::{SyncError, Target, catalog::quote};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Proposal {
    pub collection: String,
    pub sampled: usize,
    pub create_table: String,
    pub config: String,
}

pub async fn propose(target: &Target, config: &Import) -> Result<Vec<Proposal>, SyncError> {
    let mut out = Vec::new();
    let names = target
        .mongo
        .list_collection_names()
        .await
        .map_err(SyncError::mongo("list collections"))?;
    for name in names {
        if config.collection(&name).is_some() || name.starts_with("system.") {
            continue;
        }
        let sample: Vec<Document> = target
            .mongo
            .collection::<Document>(&name)
            .find(doc! {})
            .limit(config.sample_size as i64)
            .await
            .map_err(SyncError::mongo("sample documents"))?
            .try_collect()
            .await
            .map_err(SyncError::mongo("sample documents"))?;
        out.push(proposal(&name, &config.schema, &sample));
    }
    Ok(out)
}

/// The SQL type for the values a field took in the sample.
fn sql_type(values: &[&Bson]) -> &'static str {
    let kinds: BTreeSet<&str> = values
        .iter()
        .filter(|v| !matches!(v, Bson::Null))
        .map(|v| match v {
            Bson::String(_) => "text",
            Bson::Int32(_) => "int32",
            Bson::Int64(_) => "int64",
            Bson::Double(_) => "double",
            Bson::Decimal128(_) => "numeric",
            Bson::Boolean(_) => "boolean",
            Bson::DateTime(_) => "timestamptz",
            Bson::ObjectId(_) => "uuid",
            Bson::Array(items) if items.iter().all(|i| matches!(i, Bson::String(_))) => "text[]",
            _ => "jsonb",
        })
        .collect();
    let kinds: Vec<&str> = kinds.into_iter().collect();
    match kinds.as_slice() {
        [] => "text",
        ["int32"] => "integer",
        ["int32", "int64"] | ["int64"] => "bigint",
        ["double"] | ["double", "int32"] | ["double", "int64"] | ["double", "int32", "int64"] => {
            "double precision"
        }
        ["text"] => "text",
        ["numeric"] => "numeric",
        ["boolean"] => "boolean",
        ["timestamptz"] => "timestamptz",
        ["uuid"] => "uuid",
        ["text[]"] => "text[]",
        _ => "jsonb",
    }
}

fn proposal(collection: &str, schema: &str, sample: &[Document]) -> Proposal {
    let mut fields: BTreeMap<&str, Vec<&Bson>> = BTreeMap::new();
    for d in sample {
        for (k, v) in d {
            fields.entry(k.as_str()).or_default().push(v);
        }
    }
    let table = snake_case(collection);
    let mut columns = Vec::new();
    let mut mapping = Vec::new();
    for (field, values) in &fields {
        let column = if *field == "_id" {
            "id".to_owned()
        } else {
            snake_case(field)
        };
        let ty = sql_type(values);
        let always =
            values.len() == sample.len() && values.iter().all(|v| !matches!(v, Bson::Null));
        let mut line = format!("    {} {ty}", quote(&column));
        if *field == "_id" {
            line.push_str(" PRIMARY KEY");
        } else if always {
            line.push_str(" NOT NULL");
        }
        if ty == "uuid" && *field != "_id" {
            line.push_str(" -- an ObjectId: a reference? map it as { path, ref = \"collection\" } and add a foreign key");
        }
        if values.iter().any(
            |v| matches!(v, Bson::Array(a) if a.iter().any(|i| matches!(i, Bson::Document(_)))),
        ) {
            line.push_str(
                " -- an array of documents: or a child table, [[import.collection.child]]",
            );
        }
        columns.push(line);
        mapping.push(format!("{column} = {:?}", field));
    }
    Proposal {
        collection: collection.to_owned(),
        sampled: sample.len(),
        create_table: format!(
            "CREATE TABLE {}.{} (\n{}\n);",
            quote(schema),
            quote(&table),
            columns.join(",\n")
        ),
        config: format!(
            "[[import.collection]]\nname = {collection:?}\ntable = {table:?}\ncolumns = {{ {} }}",
            mapping.join(", ")
        ),
    }
}

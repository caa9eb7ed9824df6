//! Compares the mirror with its source: counts, and with `deep` every document, page by
//! page (a hash per page; documents compared one by one only where the hashes differ).

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
};

use bson::{Bson, Document, doc};
use ferry_config::Config;
use futures::TryStreamExt;
use serde::Serialize;

use super::{SyncError, Table, Target, bson_text, page, sweep};

/// At most this many keys are named per table and kind of difference.
const EXAMPLES: usize = 20;

#[derive(Debug, Clone, Default, Serialize)]
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

pub async fn verify(
    target: &Target,
    config: &Config,
    tables: &[Table],
    deep: bool,
) -> Result<Vec<TableReport>, SyncError> {
    let mut reports = Vec::new();
    for table in tables {
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
        if deep {
            compare(target, config, table, &mut r).await?;
            let (extra, examples) =
                sweep::sweep(target, table, config.sync.timestamps, None).await?;
            r.extra_count = extra;
            r.extra = examples.iter().map(bson_text).collect();
        }
        reports.push(r);
    }
    Ok(reports)
}

async fn compare(
    target: &Target,
    config: &Config,
    table: &Table,
    r: &mut TableReport,
) -> Result<(), SyncError> {
    let coll = target.mongo.collection::<Document>(&table.collection);
    let mut after: Option<Vec<String>> = None;
    loop {
        let range = page::Range {
            after: after.as_deref(),
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
        if page.docs.len() < config.sync.chunk_size {
            break;
        }
        after = page.last;
    }
    Ok(())
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

//! Reading a collection in `_id` order: the ranges chunks cover and the batches they write.

use bson::{Bson, Document, doc};
use futures::StreamExt;
use mongodb::Cursor;

use crate::sync::SyncError;

/// Documents with `after < _id <= upto` (either end open).
#[derive(Debug, Clone, Default)]
pub struct Range {
    pub after: Option<Bson>,
    pub upto: Option<Bson>,
}

impl Range {
    pub fn filter(&self) -> Document {
        let mut cond = Document::new();
        if let Some(a) = &self.after {
            cond.insert("$gt", a.clone());
        }
        if let Some(u) = &self.upto {
            cond.insert("$lte", u.clone());
        }
        if cond.is_empty() {
            doc! {}
        } else {
            doc! {"_id": cond}
        }
    }
}

/// An `_id` as JSON for checkpoints and job arguments (canonical extended JSON keeps its type).
pub fn id_to_json(id: &Bson) -> serde_json::Value {
    id.clone().into_canonical_extjson()
}

pub fn id_from_json(v: &serde_json::Value) -> Result<Bson, SyncError> {
    Bson::try_from(v.clone())
        .map_err(|e| SyncError::Config(format!("bad document id in checkpoint: {e}")))
}

/// Opens a cursor over `range` in `_id` order.
pub async fn open(
    mongo: &mongodb::Database,
    collection: &str,
    range: &Range,
    batch: usize,
) -> Result<Cursor<Document>, SyncError> {
    mongo
        .collection::<Document>(collection)
        .find(range.filter())
        .sort(doc! {"_id": 1})
        .batch_size(batch as u32)
        .await
        .map_err(SyncError::mongo("read documents"))
}

/// Up to `n` documents from the cursor; fewer only at its end.
pub async fn next_batch(
    cursor: &mut Cursor<Document>,
    n: usize,
) -> Result<Vec<Document>, SyncError> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match cursor.next().await {
            Some(d) => out.push(d.map_err(SyncError::mongo("read documents"))?),
            None => break,
        }
    }
    Ok(out)
}

/// Upper bounds splitting the collection into ranges of `per_chunk` documents, found in one
/// pass over the ids; refuses collections mixing `_id` types (MongoDB compares ranges within
/// one type only, so a range would miss the others).
pub async fn bounds(
    mongo: &mongodb::Database,
    collection: &str,
    per_chunk: usize,
) -> Result<(Vec<Bson>, i64), SyncError> {
    let mut cursor = mongo
        .collection::<Document>(collection)
        .find(doc! {})
        .projection(doc! {"_id": 1})
        .sort(doc! {"_id": 1})
        .batch_size(10_000)
        .await
        .map_err(SyncError::mongo("plan chunks"))?;
    let mut bounds = Vec::new();
    let mut n = 0i64;
    let mut first_type = None;
    while let Some(d) = cursor.next().await {
        let d = d.map_err(SyncError::mongo("plan chunks"))?;
        let id = d.get("_id").cloned().unwrap_or(Bson::Null);
        let ty = id.element_type();
        match first_type {
            None => first_type = Some(ty),
            Some(t) if t != ty => {
                return Err(SyncError::Config(format!(
                    "collection {collection} mixes _id types ({t:?} and {ty:?}); fix: import it with one _id type, e.g. convert the others in MongoDB first"
                )));
            }
            _ => {}
        }
        n += 1;
        if n % per_chunk as i64 == 0 {
            bounds.push(id);
        }
    }
    Ok((bounds, n))
}

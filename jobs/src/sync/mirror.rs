//! Writes to MongoDB: unordered bulk upserts by `_id`, inserts for first loads, deletes.
//! Every write holds one of `sync.max_writers` permits shared by all workers.

use std::time::Duration;

use bson::{Bson, RawArrayBuf, RawBson, RawDocumentBuf, doc, rawdoc};
use ferry_queue::Queue;

use super::SyncError;

/// MongoDB accepts commands up to 16 MiB of documents; stay well below.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
const PERMIT_LEASE: Duration = Duration::from_secs(120);

pub struct Mirror<'a> {
    pub db: &'a mongodb::Database,
    pub queue: &'a Queue,
    pub max_writers: usize,
}

impl<'a> Mirror<'a> {
    /// The mirror a sync job writes to, under the shared writer limit.
    pub fn for_job(target: &'a super::Target, ctx: &'a crate::JobContext) -> Self {
        Self {
            db: &target.mongo,
            queue: &ctx.deps.queue,
            max_writers: ctx.deps.config.sync.max_writers,
        }
    }

    async fn permit<T>(
        &self,
        write: impl Future<Output = Result<T, SyncError>>,
    ) -> Result<T, SyncError> {
        let permit = self
            .queue
            .acquire("mongo-writers", self.max_writers, PERMIT_LEASE)
            .await
            .map_err(|e| SyncError::Unavailable(e.to_string()))?;
        let result = write.await;
        let _ = self.queue.release(permit).await;
        result
    }

    /// Replaces or creates each document by `_id`, unordered.
    pub async fn upsert(&self, collection: &str, docs: &[RawDocumentBuf]) -> Result<(), SyncError> {
        for batch in batches(docs) {
            let mut updates = RawArrayBuf::new();
            for d in batch {
                let id = d
                    .get("_id")
                    .ok()
                    .flatten()
                    .map(RawBson::from)
                    .unwrap_or(RawBson::Null);
                updates.push(rawdoc! { "q": { "_id": id }, "u": d.clone(), "upsert": true });
            }
            let command = rawdoc! { "update": collection, "updates": updates, "ordered": false };
            let reply = self
                .permit(async {
                    self.db
                        .run_raw_command(command)
                        .await
                        .map_err(SyncError::mongo("upsert documents"))
                })
                .await?;
            check_write_errors(&reply, "upsert documents")?;
        }
        Ok(())
    }

    /// Inserts into a collection that was empty when the run began (much faster than upserts);
    /// documents a resumed chunk wrote before are upserted instead.
    pub async fn insert(&self, collection: &str, docs: &[RawDocumentBuf]) -> Result<(), SyncError> {
        for batch in batches(docs) {
            let mut array = RawArrayBuf::new();
            for d in batch {
                array.push(d.clone());
            }
            let command = rawdoc! { "insert": collection, "documents": array, "ordered": false };
            let reply = self
                .permit(async {
                    self.db
                        .run_raw_command(command)
                        .await
                        .map_err(SyncError::mongo("insert documents"))
                })
                .await?;
            let errors = reply.get_array("writeErrors").cloned().unwrap_or_default();
            if errors.is_empty() {
                continue;
            }
            let duplicates: Vec<usize> = errors
                .iter()
                .filter_map(|e| e.as_document())
                .filter(|e| e.get_i32("code").ok() == Some(11000))
                .filter_map(|e| e.get_i32("index").ok().map(|i| i as usize))
                .collect();
            if duplicates.len() != errors.len() {
                return Err(SyncError::Mongo {
                    what: "insert documents",
                    message: format!(
                        "{} documents were refused: {:?}",
                        errors.len(),
                        errors.first()
                    ),
                    transient: false,
                });
            }
            let again: Vec<RawDocumentBuf> = duplicates
                .into_iter()
                .filter_map(|i| batch.get(i).cloned())
                .collect();
            Box::pin(self.upsert(collection, &again)).await?;
        }
        Ok(())
    }

    pub async fn delete(&self, collection: &str, ids: &[Bson]) -> Result<u64, SyncError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let coll = self.db.collection::<bson::Document>(collection);
        let filter = doc! { "_id": { "$in": ids.to_vec() } };
        let result = self
            .permit(async {
                coll.delete_many(filter)
                    .await
                    .map_err(SyncError::mongo("delete documents"))
            })
            .await?;
        Ok(result.deleted_count)
    }
}

fn batches(docs: &[RawDocumentBuf]) -> Vec<&[RawDocumentBuf]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, d) in docs.iter().enumerate() {
        let len = d.as_bytes().len();
        if i > start && bytes + len > MAX_BATCH_BYTES {
            out.push(&docs[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += len;
    }
    if start < docs.len() {
        out.push(&docs[start..]);
    }
    out
}

fn check_write_errors(reply: &bson::Document, what: &'static str) -> Result<(), SyncError> {
    match reply.get_array("writeErrors") {
        Ok(errors) if !errors.is_empty() => Err(SyncError::Mongo {
            what,
            message: format!(
                "{} documents were refused, first: {:?}",
                errors.len(),
                errors[0]
            ),
            transient: false,
        }),
        _ => Ok(()),
    }
}

//! One object from source to destination: skipped when already identical, else streamed (one
//! PUT fed from the source's body, or parts of bounded size above the threshold), hashed on
//! the way (sha256 for the ledger; MD5 where the source's ETag cannot stand for it), checked
//! against the ETag the destination computed, and recorded only after that.

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use md5::{Digest as _, Md5};
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    Side,
    ledger::{self, Done, Pair},
    listing::Pending,
};
use crate::{
    JobError,
    store::{Fetched, Listed, StoreError},
};

/// Where multipart starts, and the part size that bounds a copy's memory: two parts per
/// transfer.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub threshold: u64,
    pub part: u64,
}

impl Sizes {
    /// S3 allows 10,000 parts: a larger object gets larger parts.
    fn part_for(&self, size: u64) -> u64 {
        self.part
            .max(size.div_ceil(10_000).next_multiple_of(1 << 20))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Copied {
        bytes: u64,
    },
    Skipped,
    /// Deleted from the source after it was listed.
    Gone,
}

pub struct Copy<'a> {
    pub pool: &'a PgPool,
    pub pair: &'a Pair,
    pub from: &'a Side,
    pub to: &'a Side,
    pub sizes: Sizes,
    pub run_id: Uuid,
}

impl Copy<'_> {
    /// Copies the object unless the destination already holds it.
    pub async fn one(&self, pending: Pending) -> Result<Outcome, JobError> {
        let Pending {
            object,
            prior,
            mut at_dest,
        } = pending;
        let object = &object;
        let rel = self.from.relative(&object.key);
        let dest_key = self.to.key(rel);
        if let Some(p) = &prior
            && let Some(id) = &p.upload_id
        {
            // An earlier attempt died mid-upload: its parts would stay billed forever.
            self.to.store.abort_upload(&dest_key, id).await?;
            ledger::aborted(self.pool, self.pair, rel).await?;
        }
        // Some servers (s3s-fs) list no ETags: ask for it where the size already matches.
        if at_dest
            .as_ref()
            .is_some_and(|d| d.e_tag.is_none() && d.size == object.size)
        {
            at_dest = self.to.store.head(&dest_key).await?;
        }
        if let Some(dest) = &at_dest
            && identical(object, prior.as_ref(), dest)
        {
            ledger::skipped(
                self.pool,
                self.pair,
                &Done {
                    key: rel,
                    size: object.size,
                    source_etag: object.e_tag.as_deref(),
                    dest_etag: dest.e_tag.as_deref(),
                    sha256: None,
                    run_id: self.run_id,
                },
            )
            .await?;
            return Ok(Outcome::Skipped);
        }
        let Some(fetched) = self.get(&object.key).await? else {
            return Ok(Outcome::Gone);
        };
        let size = fetched.meta.size;
        let source_etag = fetched.meta.e_tag.clone();
        let sent = if size <= self.sizes.threshold {
            let source_md5 = plain_md5(source_etag.as_deref());
            let mut sent = self
                .streamed(&dest_key, fetched, source_md5.clone())
                .await?;
            let differs = |etag: &Option<String>| {
                plain_md5(etag.as_deref()).is_some_and(|d| Some(d) != source_md5)
            };
            if source_md5.is_some() && differs(&sent.dest_etag) {
                // The source's ETag is no MD5 of its bytes (encrypted with KMS, some S3
                // clones): copy again, hashing the bytes to know what the ETag should be.
                let Some(again) = self.get(&object.key).await? else {
                    return Ok(Outcome::Gone);
                };
                sent = self.streamed(&dest_key, again, None).await?;
            }
            sent
        } else {
            self.multipart(rel, &dest_key, fetched).await?
        };
        let Sent {
            dest_etag,
            expected,
            sha256,
        } = sent;
        check_etag(self.to, &dest_key, dest_etag.as_deref(), &expected, size).await?;
        ledger::copied(
            self.pool,
            self.pair,
            &Done {
                key: rel,
                size,
                source_etag: source_etag.as_deref(),
                dest_etag: dest_etag.as_deref(),
                sha256: Some(&sha256),
                run_id: self.run_id,
            },
        )
        .await?;
        Ok(Outcome::Copied { bytes: size })
    }

    /// The source object with its attributes and body; `None` once it is deleted.
    async fn get(&self, key: &str) -> Result<Option<Fetched>, JobError> {
        match self.from.store.get_with_attributes(key).await {
            Ok(f) => Ok(Some(f)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// One PUT streamed from the source's body, nothing held but the chunks in flight. With
    /// `source_md5` (the source's ETag, when it is a plain MD5) the destination's ETag must
    /// equal it, so no MD5 is computed here; otherwise the bytes are hashed for it.
    async fn streamed(
        &self,
        dest_key: &str,
        fetched: Fetched,
        source_md5: Option<String>,
    ) -> Result<Sent, JobError> {
        let size = fetched.meta.size;
        let hashes = Arc::new(Mutex::new(Hashes {
            sha256: Sha256::new(),
            md5: source_md5.is_none().then(Md5::new),
            read: 0,
        }));
        let counted = hashes.clone();
        let body = fetched
            .body
            .map(move |chunk| {
                let chunk = chunk.map_err(std::io::Error::other)?;
                let mut h = counted.lock().unwrap_or_else(|p| p.into_inner());
                h.sha256.update(&chunk);
                if let Some(md5) = &mut h.md5 {
                    md5.update(&chunk);
                }
                h.read += chunk.len() as u64;
                Ok(chunk)
            })
            .boxed();
        let dest_etag = self
            .to
            .store
            .put_streamed(dest_key, size, &fetched.attributes, body)
            .await?;
        let h = Arc::try_unwrap(hashes)
            .map_err(|_| JobError::retryable("the upload kept its body"))?
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        if h.read != size {
            return Err(self.changed(&fetched.meta.key, h.read, size));
        }
        Ok(Sent {
            dest_etag,
            expected: match h.md5 {
                Some(md5) => hex(&md5.finalize()),
                None => source_md5.unwrap_or_default(),
            },
            sha256: format!("{:x}", h.sha256.finalize()),
        })
    }

    /// Parts of bounded size, the next read while the last uploads: two parts per transfer.
    async fn multipart(
        &self,
        rel: &str,
        dest_key: &str,
        fetched: Fetched,
    ) -> Result<Sent, JobError> {
        let size = fetched.meta.size;
        let mut reader = Reader {
            body: fetched.body,
            pending: Bytes::new(),
            sha256: Sha256::new(),
            read: 0,
        };
        let mut upload = self
            .to
            .store
            .begin_upload_with(dest_key, fetched.attributes)
            .await?;
        if let Some(id) = upload.id() {
            ledger::uploading(self.pool, self.pair, rel, size, id, self.run_id).await?;
        }
        let part = self.sizes.part_for(size) as usize;
        let mut part_hashes = Md5::new();
        let mut parts = 0;
        let sent: Result<(), JobError> = async {
            let mut md5 = Md5::new();
            let mut data = reader.next_part(part.min(size as usize), &mut md5).await?;
            loop {
                part_hashes.update(std::mem::replace(&mut md5, Md5::new()).finalize());
                parts += 1;
                if reader.read >= size {
                    return Ok(upload.put(data).await?);
                }
                let want = part.min((size - reader.read) as usize);
                let (put, next) = tokio::join!(upload.put(data), reader.next_part(want, &mut md5));
                put?;
                data = next?;
            }
        }
        .await;
        if let Err(e) = sent {
            if upload.abort().await {
                ledger::aborted(self.pool, self.pair, rel).await?;
            }
            return Err(e);
        }
        let dest_etag = upload.complete().await?;
        if reader.read != size || !reader.exhausted().await? {
            return Err(self.changed(&fetched.meta.key, reader.read, size));
        }
        Ok(Sent {
            dest_etag,
            expected: format!("{}-{parts}", hex(&part_hashes.finalize())),
            sha256: format!("{:x}", reader.sha256.finalize()),
        })
    }

    fn changed(&self, key: &str, read: u64, size: u64) -> JobError {
        JobError::retryable(format!(
            "{}: {key} changed while it was copied (read {read} of {size} bytes)",
            self.from.store.url
        ))
    }
}

/// What an upload sent and the destination said.
struct Sent {
    dest_etag: Option<String>,
    /// The ETag the bytes sent should have.
    expected: String,
    sha256: String,
}

struct Hashes {
    sha256: Sha256,
    md5: Option<Md5>,
    read: u64,
}

/// A lowercase MD5 from an ETag that is one (not a multipart ETag like `...-3`).
fn plain_md5(etag: Option<&str>) -> Option<String> {
    let e = etag?.trim_matches('"').to_ascii_lowercase();
    (e.len() == 32 && e.bytes().all(|b| b.is_ascii_hexdigit())).then_some(e)
}

/// Identical when the ledger's copy of this very source version is still at the destination,
/// or, without a ledger row, when both stores report the same size and ETag (an ETag is the
/// MD5 of the bytes, or of the part MD5s for a multipart upload of the same layout).
fn identical(source: &Listed, prior: Option<&ledger::Entry>, dest: &Listed) -> bool {
    if let Some(p) = prior
        && p.state != "uploading"
        && p.size as u64 == source.size
        && p.source_etag == source.e_tag
    {
        return dest.size == source.size && dest.e_tag.is_some() && dest.e_tag == p.dest_etag;
    }
    dest.size == source.size && dest.e_tag.is_some() && dest.e_tag == source.e_tag
}

/// The destination's ETag must be the MD5 the bytes sent give. Stores whose ETag is no MD5
/// (encrypted with KMS, some S3 clones) are checked by size instead.
async fn check_etag(
    to: &Side,
    key: &str,
    got: Option<&str>,
    expected: &str,
    size: u64,
) -> Result<(), JobError> {
    let got = got.map(|e| e.trim_matches('"').to_ascii_lowercase());
    match got {
        Some(etag) if etag == expected => Ok(()),
        Some(etag) if looks_like_md5(&etag) => Err(JobError::retryable(format!(
            "{}: {key} was stored with ETag {etag}, but the bytes sent give {expected}",
            to.store.url
        ))),
        _ => match to.store.head(key).await? {
            Some(h) if h.size == size => Ok(()),
            h => Err(JobError::retryable(format!(
                "{}: {key} holds {:?} bytes after the copy, expected {size}",
                to.store.url,
                h.map(|h| h.size)
            ))),
        },
    }
}

fn looks_like_md5(etag: &str) -> bool {
    let hash = etag.split_once('-').map_or(etag, |(h, _)| h);
    hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The source body cut into parts of an exact size, every byte hashed once.
struct Reader {
    body: futures::stream::BoxStream<'static, Result<Bytes, StoreError>>,
    pending: Bytes,
    sha256: Sha256,
    read: u64,
}

impl Reader {
    /// The next `len` bytes (fewer only if the body ends), in one buffer of that size. Each
    /// chunk is hashed as it arrives, so hashing never holds the runtime for a whole part.
    async fn next_part(&mut self, len: usize, md5: &mut Md5) -> Result<Bytes, JobError> {
        let mut buf = BytesMut::with_capacity(len);
        while buf.len() < len {
            if self.pending.is_empty() {
                match self.body.next().await {
                    Some(chunk) => self.pending = chunk?,
                    None => break,
                }
            }
            let take = self.pending.len().min(len - buf.len());
            let chunk = self.pending.split_to(take);
            self.sha256.update(&chunk);
            md5.update(&chunk);
            buf.extend_from_slice(&chunk);
        }
        self.read += buf.len() as u64;
        Ok(buf.freeze())
    }

    /// Whether the body has ended: a source that sends more than it listed has changed.
    async fn exhausted(&mut self) -> Result<bool, JobError> {
        if !self.pending.is_empty() {
            return Ok(false);
        }
        match self.body.next().await {
            None => Ok(true),
            Some(chunk) => Ok(chunk?.is_empty() && self.body.next().await.is_none()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(size: u64, e_tag: Option<&str>) -> Listed {
        Listed {
            key: "k".into(),
            size,
            e_tag: e_tag.map(str::to_owned),
        }
    }

    fn entry(size: i64, source: &str, dest: &str, state: &str) -> ledger::Entry {
        ledger::Entry {
            size,
            source_etag: Some(source.into()),
            dest_etag: Some(dest.into()),
            state: state.into(),
            upload_id: None,
            run_id: Uuid::nil(),
        }
    }

    #[test]
    fn identical_needs_the_ledgers_copy_or_matching_etags() {
        let src = listed(10, Some("\"a\""));
        // No ledger row: the stores' ETags decide.
        assert!(identical(&src, None, &listed(10, Some("\"a\""))));
        assert!(!identical(&src, None, &listed(10, Some("\"b-2\""))));
        assert!(!identical(&src, None, &listed(11, Some("\"a\""))));
        assert!(!identical(&src, None, &listed(10, None)));
        // The ledger's copy of this source version is still there, under another ETag layout.
        let copied = entry(10, "\"a\"", "\"b-2\"", "copied");
        assert!(identical(&src, Some(&copied), &listed(10, Some("\"b-2\""))));
        // ... but not once the destination changed, nor for a changed source.
        assert!(!identical(&src, Some(&copied), &listed(10, Some("\"c\""))));
        let changed = listed(10, Some("\"z\""));
        assert!(!identical(
            &changed,
            Some(&copied),
            &listed(10, Some("\"b-2\""))
        ));
    }

    #[test]
    fn parts_grow_past_ten_thousand() {
        let sizes = Sizes {
            threshold: 8 << 20,
            part: 8 << 20,
        };
        assert_eq!(sizes.part_for(1 << 30), 8 << 20);
        let huge = 200u64 << 30;
        let part = sizes.part_for(huge);
        assert!(huge.div_ceil(part) <= 10_000, "{part}");
        assert_eq!(part % (1 << 20), 0);
    }

    #[test]
    fn md5_etags_are_recognised() {
        assert!(looks_like_md5("9e107d9d372bb6826bd81d3542a419d6"));
        assert!(looks_like_md5("9e107d9d372bb6826bd81d3542a419d6-3"));
        assert!(!looks_like_md5("W/abc"));
    }
}

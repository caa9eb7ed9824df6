//! One object from source to destination: skipped when already identical, else streamed in
//! parts of bounded size, hashed on the way (sha256 for the ledger, MD5 to check the ETag the
//! destination computed), and recorded only after the destination confirmed the bytes.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use md5::{Digest as _, Md5};
use object_store::PutPayload;
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
    store::{Listed, StoreError},
};

/// Sizes that bound a copy's memory: two parts (or one whole small object) per transfer.
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
        let fetched = match self.from.store.get_with_attributes(&object.key).await {
            Ok(f) => f,
            Err(StoreError::NotFound { .. }) => return Ok(Outcome::Gone),
            Err(e) => return Err(e.into()),
        };
        let size = fetched.meta.size;
        let mut reader = Reader {
            body: fetched.body,
            pending: Bytes::new(),
            sha256: Sha256::new(),
            read: 0,
        };
        let (dest_etag, expected) = if size <= self.sizes.threshold {
            let mut md5 = Md5::new();
            let data = reader.next_part(size as usize, &mut md5).await?;
            let expected = hex(&md5.finalize());
            let etag = self
                .to
                .store
                .put_with_attributes(&dest_key, PutPayload::from_bytes(data), fetched.attributes)
                .await?;
            (etag, expected)
        } else {
            let mut upload = self
                .to
                .store
                .begin_upload_with(&dest_key, fetched.attributes)
                .await?;
            if let Some(id) = upload.id() {
                ledger::uploading(self.pool, self.pair, rel, size, id, self.run_id).await?;
            }
            let part = self.sizes.part_for(size) as usize;
            let mut part_hashes = Md5::new();
            let mut parts = 0;
            // The next part is read while the last one uploads: two parts per transfer.
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
                    let (put, next) =
                        tokio::join!(upload.put(data), reader.next_part(want, &mut md5));
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
            let etag = upload.complete().await?;
            (etag, format!("{}-{parts}", hex(&part_hashes.finalize())))
        };
        if reader.read != size || !reader.exhausted().await? {
            return Err(JobError::Retryable(format!(
                "{}: {} changed while it was copied (read {} of {size} bytes)",
                self.from.store.url, object.key, reader.read
            )));
        }
        check_etag(self.to, &dest_key, dest_etag.as_deref(), &expected, size).await?;
        let sha256 = format!("{:x}", reader.sha256.finalize());
        ledger::copied(
            self.pool,
            self.pair,
            &Done {
                key: rel,
                size,
                source_etag: fetched.meta.e_tag.as_deref(),
                dest_etag: dest_etag.as_deref(),
                sha256: Some(&sha256),
                run_id: self.run_id,
            },
        )
        .await?;
        Ok(Outcome::Copied { bytes: size })
    }
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
        Some(etag) if looks_like_md5(&etag) => Err(JobError::Retryable(format!(
            "{}: {key} was stored with ETag {etag}, but the bytes sent give {expected}",
            to.store.url
        ))),
        _ => match to.store.head(key).await? {
            Some(h) if h.size == size => Ok(()),
            h => Err(JobError::Retryable(format!(
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

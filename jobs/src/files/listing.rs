//! The source listing in batches, each object with its ledger row and what the destination's
//! own listing shows at the same key: one query and a share of a listing page per batch,
//! instead of a ledger lookup and a HEAD request per object.
//!
//! Both listings come in key order (S3 lists by the keys' UTF-8 bytes, as `str` compares),
//! and both sides' keys are their prefix plus the same relative key, so one pass over the
//! destination's listing, in step with the source's, finds every match.

use futures::{TryStreamExt, stream::BoxStream};
use sqlx::PgPool;

use super::{
    Side,
    ledger::{self, Pair},
};
use crate::{
    JobError,
    store::{Listed, StoreError},
};

/// A source object and what is known of it before copying.
pub struct Pending {
    pub object: Listed,
    pub prior: Option<ledger::Entry>,
    /// The destination's listing entry at the same key (its ETag may be missing: some
    /// servers list none).
    pub at_dest: Option<Listed>,
}

pub struct Batches<'a> {
    source: BoxStream<'static, Result<Listed, StoreError>>,
    /// A listing stream must not be polled once it ended.
    source_ended: bool,
    dest: Cursor,
    pool: &'a PgPool,
    pair: &'a Pair,
    from: &'a Side,
    to: &'a Side,
}

impl<'a> Batches<'a> {
    /// From the start, or after `marker` (a source key) on a resumed run.
    pub fn new(
        pool: &'a PgPool,
        pair: &'a Pair,
        from: &'a Side,
        to: &'a Side,
        marker: Option<&str>,
    ) -> Self {
        let dest_marker = marker.map(|m| to.key(from.relative(m)));
        Self {
            source: from.store.list_after(&from.prefix, marker),
            source_ended: false,
            dest: Cursor {
                stream: to.store.list_after(&to.prefix, dest_marker.as_deref()),
                peeked: None,
                ended: false,
            },
            pool,
            pair,
            from,
            to,
        }
    }

    /// Whether the source's listing has ended: every object is in a batch already returned.
    pub fn ended(&self) -> bool {
        self.source_ended
    }

    /// Up to `max` next objects; empty once the listing is done.
    pub async fn next(&mut self, max: usize) -> Result<Vec<Pending>, JobError> {
        let mut objects = Vec::new();
        while objects.len() < max && !self.source_ended {
            match self.source.try_next().await? {
                Some(o) => objects.push(o),
                None => self.source_ended = true,
            }
        }
        let keys: Vec<&str> = objects.iter().map(|o| self.from.relative(&o.key)).collect();
        let mut priors = ledger::get_many(self.pool, self.pair, &keys).await?;
        let mut batch = Vec::with_capacity(objects.len());
        for object in objects {
            let rel = self.from.relative(&object.key).to_owned();
            let at_dest = self.dest.seek(self.to, &rel).await?;
            batch.push(Pending {
                prior: priors.remove(&rel),
                at_dest,
                object,
            });
        }
        Ok(batch)
    }
}

struct Cursor {
    stream: BoxStream<'static, Result<Listed, StoreError>>,
    peeked: Option<Listed>,
    ended: bool,
}

impl Cursor {
    /// The destination's entry for relative key `rel`, passing over keys before it. Calls
    /// come in increasing `rel`.
    async fn seek(&mut self, to: &Side, rel: &str) -> Result<Option<Listed>, JobError> {
        loop {
            if self.peeked.is_none() {
                if self.ended {
                    return Ok(None);
                }
                self.peeked = self.stream.try_next().await?;
                if self.peeked.is_none() {
                    self.ended = true;
                    return Ok(None);
                }
            }
            let here = self.peeked.as_ref().map(|p| to.relative(&p.key));
            match here.map(|h| h.cmp(rel)) {
                Some(std::cmp::Ordering::Less) => self.peeked = None,
                Some(std::cmp::Ordering::Equal) => return Ok(self.peeked.take()),
                _ => return Ok(None),
            }
        }
    }
}

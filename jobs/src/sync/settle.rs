//! Keeping a document at its row's latest version when writers overlap.
//!
//! Jobs that write one document can run at once: an on-write `sync.entity` job with another,
//! or with a full-sync chunk or an incremental page that read the row a moment earlier.
//! Mongo writes wait for a shared permit in no set order, so the job that read the older row
//! can write last and leave it in the mirror. Whoever writes therefore checks afterwards that
//! the row is still what it wrote, and writes it again if not: the last write to a document
//! is then always of the row as it is.

use ferry_config::Timestamps;
use sqlx::PgPool;

use super::{SyncError, Table, mirror::Mirror, page};

/// Writes of one row before giving up for a retry when the row changes under each write.
const WRITE_ROUNDS: usize = 8;

/// Writes the document of the row with `key` (deletes it when the row is gone), then reads
/// the row again and writes again until what it read matches what it wrote.
pub async fn row(
    app: &PgPool,
    mirror: &Mirror<'_>,
    table: &Table,
    timestamps: Timestamps,
    key: &[String],
) -> Result<(), SyncError> {
    let mut written = None;
    for _ in 0..WRITE_ROUNDS {
        let page = page::read_one(app, table, timestamps, key).await?;
        if written.as_ref() == Some(&page.docs) {
            return Ok(());
        }
        if page.docs.is_empty() {
            let id = page::id_for(app, table, timestamps, key).await?;
            mirror.delete(&table.collection, &[id]).await?;
        } else {
            mirror.upsert(&table.collection, &page.docs).await?;
        }
        written = Some(page.docs);
    }
    // Unavailable: retried, like a busy service.
    Err(SyncError::Unavailable(format!(
        "row {key:?} of {} changed during each of {WRITE_ROUNDS} writes to its document; retrying",
        table.name
    )))
}

/// Writes a page read a moment ago (inserts into a collection empty at planning, else
/// upserts), then settles each row that changed or was deleted since the read. Returns how
/// many rows that was.
pub async fn page(
    app: &PgPool,
    mirror: &Mirror<'_>,
    table: &Table,
    timestamps: Timestamps,
    page: &page::Page,
    insert: bool,
) -> Result<usize, SyncError> {
    if insert {
        mirror.insert(&table.collection, &page.docs).await?;
    } else {
        mirror.upsert(&table.collection, &page.docs).await?;
    }
    let moved = page::moved(app, table, page).await?;
    for key in &moved {
        row(app, mirror, table, timestamps, key).await?;
    }
    Ok(moved.len())
}

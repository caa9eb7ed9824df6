//! The key sweep: removes documents whose rows are gone, for tables without change triggers.

use bson::{Bson, doc};
use futures::TryStreamExt;

use ferry_config::Timestamps;

use super::{SyncError, Table, Target, bson_text, mapping::Scalar, mirror::Mirror, settle};

const BATCH: usize = 1000;

/// Documents of `table`'s collection whose key has no row, in batches; `apply` deletes them.
/// Returns how many were found.
pub async fn sweep(
    target: &Target,
    table: &Table,
    timestamps: Timestamps,
    mirror: Option<&Mirror<'_>>,
) -> Result<(u64, Vec<Bson>), SyncError> {
    let coll = target.mongo.collection::<bson::Document>(&table.collection);
    let mut cursor = coll
        .find(doc! {})
        .projection(doc! { "_id": 1 })
        .batch_size(BATCH as u32)
        .await
        .map_err(SyncError::mongo("list document ids"))?;
    let mut found = 0;
    let mut examples = Vec::new();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let next = cursor
            .try_next()
            .await
            .map_err(SyncError::mongo("list document ids"))?;
        if let Some(d) = &next
            && let Some(id) = d.get("_id")
        {
            batch.push(id.clone());
        }
        if batch.len() >= BATCH || (next.is_none() && !batch.is_empty()) {
            let missing = missing_rows(target, table, timestamps, &batch).await?;
            found += missing.len() as u64;
            examples.extend(
                missing
                    .iter()
                    .take(20usize.saturating_sub(examples.len()))
                    .cloned(),
            );
            if let Some(mirror) = mirror
                && !missing.is_empty()
            {
                mirror.delete(&table.collection, &missing).await?;
                // A key inserted again between the look-up and the delete may have had its
                // document written (by its on-write job) before the delete: write it again.
                let gone = missing_rows(target, table, timestamps, &missing).await?;
                for id in missing.iter().filter(|id| !gone.contains(id)) {
                    settle::row(&target.app, mirror, table, timestamps, &key_text(table, id))
                        .await?;
                }
            }
            batch.clear();
        }
        if next.is_none() {
            break;
        }
    }
    Ok((found, examples))
}

/// The ids among `ids` whose rows do not exist.
pub async fn missing_rows(
    target: &Target,
    table: &Table,
    timestamps: Timestamps,
    ids: &[Bson],
) -> Result<Vec<Bson>, SyncError> {
    let keys: Vec<Vec<String>> = ids.iter().map(|id| key_text(table, id)).collect();
    let columns: Vec<Vec<String>> = (0..table.key.len())
        .map(|i| keys.iter().map(|k| k[i].clone()).collect())
        .collect();
    let unnest: Vec<String> = (1..=table.key.len())
        .map(|i| format!("${i}::text[]"))
        .collect();
    let cast: Vec<String> = table
        .key
        .iter()
        .enumerate()
        .map(|(i, c)| format!("u.c{i}::{}", c.type_name))
        .collect();
    let names: Vec<String> = (0..table.key.len()).map(|i| format!("c{i}")).collect();
    let sql = format!(
        "SELECT u.ord FROM unnest({}) WITH ORDINALITY AS u({}, ord)
         WHERE NOT EXISTS (SELECT 1 FROM {} t WHERE ({}) = ({}))",
        unnest.join(", "),
        names.join(", "),
        table.quoted,
        table
            .key
            .iter()
            .map(|c| match c.ty.scalar {
                // Dates in `_id` keep milliseconds: compare at that precision.
                Scalar::Timestamptz | Scalar::Timestamp if timestamps == Timestamps::Date => {
                    format!("date_trunc('milliseconds', t.{})", c.quoted)
                }
                _ => format!("t.{}", c.quoted),
            })
            .collect::<Vec<_>>()
            .join(", "),
        cast.join(", ")
    );
    let mut query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
    for c in &columns {
        query = query.bind(c);
    }
    let missing = query
        .fetch_all(&target.app)
        .await
        .map_err(SyncError::db("look up keys"))?;
    Ok(missing
        .into_iter()
        .filter_map(|i| ids.get((i - 1) as usize).cloned())
        .collect())
}

/// A document's `_id` as the key's column values in text, in key order.
fn key_text(table: &Table, id: &Bson) -> Vec<String> {
    table
        .key
        .iter()
        .map(|c| match (id, table.key.len()) {
            (Bson::Document(d), n) if n > 1 => d.get(&c.name).map(bson_text).unwrap_or_default(),
            (v, _) => bson_text(v),
        })
        .collect()
}

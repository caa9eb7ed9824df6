//! Where each configured collection stands: documents in MongoDB, rows in its table, rejects.

use serde::Serialize;
use sqlx::PgPool;

use super::{mapping::CollectionPlan, rejects};
use crate::sync::{SyncError, Target};

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CollectionStatus {
    pub collection: String,
    pub table: String,
    pub source: i64,
    pub imported: i64,
    pub rejected: i64,
}

impl CollectionStatus {
    /// Every document is a row or a reject, and nothing else is in the table.
    pub fn balanced(&self) -> bool {
        self.imported + self.rejected == self.source
    }
}

pub async fn status(
    target: &Target,
    record: &PgPool,
    plans: &[&CollectionPlan],
) -> Result<Vec<CollectionStatus>, SyncError> {
    let rejected = rejects::counts(record).await?;
    let mut out = Vec::new();
    for p in plans {
        let source = target
            .mongo
            .collection::<bson::Document>(&p.name)
            .count_documents(bson::doc! {})
            .await
            .map_err(SyncError::mongo("count documents"))? as i64;
        let imported: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {}",
            p.rows.table.quoted
        )))
        .fetch_one(&target.app)
        .await
        .map_err(SyncError::db("count rows"))?;
        out.push(CollectionStatus {
            collection: p.name.clone(),
            table: p.rows.table.name.clone(),
            source,
            imported,
            rejected: rejected
                .iter()
                .find(|(c, _)| *c == p.name)
                .map_or(0, |(_, n)| *n),
        });
    }
    Ok(out)
}

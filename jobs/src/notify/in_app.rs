//! The in-app row: written once per message, in one transaction with its delivery record,
//! with the app's own columns checked against the catalog, then published for realtime.

use std::collections::BTreeSet;

use ferry_record::NewDelivery;
use serde_json::{Map, Value};
use sqlx::PgPool;

use super::{Notifier, Rendered};
use crate::{JobError, sync::catalog::quote};

/// The columns of the in-app table, as the catalog had them when last read.
#[derive(Debug, Default)]
pub(super) struct TableColumns(tokio::sync::RwLock<Option<BTreeSet<String>>>);

impl TableColumns {
    /// The catalog's columns of `table` (a quoted name), read again when `wanted` is not among
    /// those read before, so a column added to the app's table is seen without a restart.
    async fn get(
        &self,
        app: &PgPool,
        table: &str,
        wanted: &[&str],
    ) -> Result<BTreeSet<String>, JobError> {
        if let Some(known) = self.0.read().await.as_ref()
            && wanted.iter().all(|w| known.contains(*w))
        {
            return Ok(known.clone());
        }
        let read: Vec<String> = sqlx::query_scalar(
            "SELECT attname::text FROM pg_attribute
             WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
        )
        .bind(table)
        .fetch_all(app)
        .await
        .map_err(|e| JobError::db("Postgres failed to read the columns of notify.table", e))?;
        let read: BTreeSet<String> = read.into_iter().collect();
        *self.0.write().await = Some(read.clone());
        Ok(read)
    }
}

impl Notifier {
    /// Inserts the in-app row unless an earlier attempt did, in one transaction with the
    /// mark; once committed, publishes it (see `realtime`).
    pub(super) async fn in_app(
        &self,
        delivery: &NewDelivery<'_>,
        user: &Value,
        rendered: &Rendered,
        columns: Option<&Map<String, Value>>,
    ) -> Result<(), JobError> {
        let n = &self.config.notify;
        let Some((schema, table)) = n.table_parts() else {
            return Err(JobError::permanent(
                "user_id asks for an in-app notification, but notify.table is not set",
            ));
        };
        let app = self.app()?;
        // Config checked these as plain names; quoted all the same.
        let quoted = match schema {
            Some(s) => format!("{}.{}", quote(s), quote(table)),
            None => quote(table),
        };
        let c = &n.columns;
        let mut row: Map<String, Value> = [
            (c.user.clone(), user.clone()),
            (c.title.clone(), Value::from(rendered.subject.as_str())),
            (c.body.clone(), Value::from(rendered.text.as_str())),
        ]
        .into_iter()
        .collect();
        if let Some(columns) = columns.filter(|m| !m.is_empty()) {
            let named: Vec<(&str, &Value)> = columns
                .iter()
                .map(|(name, v)| (c.extra.get(name).map_or(name.as_str(), String::as_str), v))
                .collect();
            let wanted: Vec<&str> = named.iter().map(|(c, _)| *c).collect();
            let known = self.in_app_columns.get(app, &quoted, &wanted).await?;
            for ((column, value), given) in named.into_iter().zip(columns.keys()) {
                if row.contains_key(column) {
                    return Err(JobError::permanent(format!(
                        "columns.{given}: column {column:?} gets the {} of the notification; leave it out of columns",
                        if column == c.user {
                            "user_id"
                        } else if column == c.title {
                            "rendered subject"
                        } else {
                            "rendered text"
                        }
                    )));
                }
                if !known.contains(column) {
                    return Err(JobError::permanent(format!(
                        "columns.{given}: {} has no column {column:?}; it has: {} (map other names in [notify.columns])",
                        n.table.as_deref().unwrap_or_default(),
                        known.iter().cloned().collect::<Vec<_>>().join(", ")
                    )));
                }
                row.insert(column.to_owned(), value.clone());
            }
        }
        let db = |what: &'static str| {
            move |e: sqlx::Error| JobError::db(format!("Postgres failed to {what}"), e)
        };
        let mut tx = app.begin().await.map_err(db("begin"))?;
        let mut inserted = None;
        if self.record.claim_in_app(&mut tx, delivery).await? {
            // Every name is config's user/title/body or a column the catalog has, quoted. The
            // row goes through jsonb_populate_record so each column may be any type Postgres
            // can read from JSON (bigint or uuid users, a jsonb data column).
            let list = row.keys().map(|k| quote(k)).collect::<Vec<_>>().join(", ");
            let sql = format!(
                "INSERT INTO {quoted} AS t ({list})
                 SELECT {list} FROM jsonb_populate_record(NULL::{quoted}, $1)
                 RETURNING to_jsonb(t)"
            );
            let written: Value = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(Value::Object(row))
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| {
                    if ferry_record::is_transient(&e) {
                        JobError::retryable_from(
                            "Postgres failed to insert the in-app notification",
                            e,
                        )
                    } else {
                        JobError::permanent_from(
                            format!(
                                "the in-app notification does not fit {}",
                                n.table.as_deref().unwrap_or_default()
                            ),
                            e,
                        )
                    }
                })?;
            inserted = Some(written);
        }
        tx.commit()
            .await
            .map_err(db("commit the in-app notification"))?;
        if let Some(written) = inserted {
            self.publish(delivery.key, user, &written).await;
        }
        Ok(())
    }
}

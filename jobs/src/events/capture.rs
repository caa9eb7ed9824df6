//! Change capture for `[[on_change]]` rules: one AFTER row trigger per watched table, firing
//! only for the operations some rule uses, appends the change and its row to
//! `change_events`. Needs ferry's schema in the application database.

use sqlx::PgPool;

use super::{EventsError, Rules};
use crate::sync::catalog::quote;

pub const TRIGGER: &str = "ferry_on_change";

/// Creates the capture function in `schema` (ferry's record schema) and a trigger on each
/// watched table; idempotent. Returns the tables with their primary key columns.
pub async fn install(
    app: &PgPool,
    schema: &str,
    rules: &Rules,
) -> Result<Vec<(String, Vec<String>)>, EventsError> {
    let present: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("{}.change_events", quote(schema)))
        .fetch_one(app)
        .await
        .map_err(EventsError::db("look for the change table"))?;
    if !present {
        return Err(EventsError::Setup(format!(
            "the application database has no {schema}.change_events: capture needs ferry's schema in the application database (run `ferry migrate` with FERRY_DATABASE_URL unset or equal to DATABASE_URL)"
        )));
    }
    let s = quote(schema);
    let function = format!(
        r#"CREATE OR REPLACE FUNCTION {s}.{TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  r jsonb;
  k jsonb := '{{}}';
  i int;
BEGIN
  IF TG_OP = 'DELETE' THEN r := to_jsonb(OLD); ELSE r := to_jsonb(NEW); END IF;
  FOR i IN 1 .. TG_NARGS - 1 LOOP
    k := k || jsonb_build_object(TG_ARGV[i], r -> TG_ARGV[i]);
  END LOOP;
  INSERT INTO {s}.change_events (table_name, op, key, row, old)
    VALUES (TG_ARGV[0], TG_OP, k, r, CASE WHEN TG_OP = 'UPDATE' THEN to_jsonb(OLD) END);
  RETURN NULL;
END
$fn$"#
    );
    let mut tx = app.begin().await.map_err(EventsError::db("begin"))?;
    sqlx::query(sqlx::AssertSqlSafe(function))
        .execute(&mut *tx)
        .await
        .map_err(EventsError::db("create the capture function"))?;
    let mut installed = Vec::new();
    for (table, ops) in rules.tables() {
        // Config checked `schema.table` as plain names; the catalog must know the table and
        // its primary key, whose names are then quoted or bound, never spliced raw.
        let key: Option<Vec<String>> = sqlx::query_scalar(
            "SELECT array_agg(a.attname::text ORDER BY array_position(i.indkey, a.attnum))
             FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
             WHERE i.indrelid = to_regclass($1) AND i.indisprimary",
        )
        .bind(table_quoted(table))
        .fetch_one(&mut *tx)
        .await
        .map_err(EventsError::db("read primary keys"))?;
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return Err(EventsError::Setup(format!(
                "on_change table {table} does not exist or has no primary key; each change is keyed by its row's primary key"
            )));
        };
        let args: Vec<String> = std::iter::once(literal(table))
            .chain(key.iter().map(|c| literal(c)))
            .collect();
        let events: Vec<&str> = ops.iter().map(|o| o.sql()).collect();
        let quoted = table_quoted(table);
        for sql in [
            format!("DROP TRIGGER IF EXISTS {TRIGGER} ON {quoted}"),
            format!(
                "CREATE TRIGGER {TRIGGER} AFTER {} ON {quoted} FOR EACH ROW EXECUTE FUNCTION {s}.{TRIGGER}({})",
                events.join(" OR "),
                args.join(", ")
            ),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .map_err(EventsError::db("create a trigger"))?;
        }
        installed.push((table.to_owned(), key));
    }
    tx.commit()
        .await
        .map_err(EventsError::db("commit triggers"))?;
    Ok(installed)
}

/// `"schema"."table"` from a checked `schema.table`.
fn table_quoted(table: &str) -> String {
    match table.split_once('.') {
        Some((schema, name)) => format!("{}.{}", quote(schema), quote(name)),
        None => quote(table),
    }
}

/// A string literal; the names come from config and the catalog, quoting keeps them inert.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

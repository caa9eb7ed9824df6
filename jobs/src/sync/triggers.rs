//! Change capture: AFTER INSERT/UPDATE/DELETE row triggers on mirrored tables append each
//! changed key to `sync_changes` in ferry's schema; the scheduler relays them into
//! `sync.entity` jobs. Needs ferry's schema in the application database.

use sqlx::PgPool;

use super::{SyncError, Table, catalog::quote};

pub const TRIGGER: &str = "ferry_sync_capture";

pub async fn installed(app: &PgPool, table: &Table) -> Result<bool, SyncError> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = $2)",
    )
    .bind(&table.quoted)
    .bind(TRIGGER)
    .fetch_one(app)
    .await
    .map_err(SyncError::db("look for triggers"))
}

/// Creates the capture function in `schema` (ferry's record schema) and a trigger on each
/// table; idempotent. Partitioned parents get one trigger that covers every partition.
pub async fn install(app: &PgPool, schema: &str, tables: &[Table]) -> Result<(), SyncError> {
    let present: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("{}.sync_changes", quote(schema)))
        .fetch_one(app)
        .await
        .map_err(SyncError::db("look for the change table"))?;
    if !present {
        return Err(SyncError::Config(format!(
            "the application database has no {schema}.sync_changes: triggers need ferry's schema in the application database (run `ferry migrate` with FERRY_DATABASE_URL unset or equal to DATABASE_URL)"
        )));
    }
    let s = quote(schema);
    let function = format!(
        r#"CREATE OR REPLACE FUNCTION {s}.{TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  new_key jsonb := '{{}}';
  old_key jsonb := '{{}}';
  i int;
BEGIN
  FOR i IN 1 .. TG_NARGS - 1 LOOP
    IF TG_OP <> 'DELETE' THEN new_key := new_key || jsonb_build_object(TG_ARGV[i], to_jsonb(NEW) -> TG_ARGV[i]); END IF;
    IF TG_OP <> 'INSERT' THEN old_key := old_key || jsonb_build_object(TG_ARGV[i], to_jsonb(OLD) -> TG_ARGV[i]); END IF;
  END LOOP;
  IF TG_OP <> 'DELETE' THEN
    INSERT INTO {s}.sync_changes (table_name, key, op) VALUES (TG_ARGV[0], new_key, TG_OP);
  END IF;
  -- A delete, or an update that changed the key: the old key's document must go.
  IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND old_key <> new_key) THEN
    INSERT INTO {s}.sync_changes (table_name, key, op) VALUES (TG_ARGV[0], old_key, 'DELETE');
  END IF;
  RETURN NULL;
END
$fn$"#
    );
    let mut tx = app.begin().await.map_err(SyncError::db("begin"))?;
    sqlx::query(sqlx::AssertSqlSafe(function))
        .execute(&mut *tx)
        .await
        .map_err(SyncError::db("create the capture function"))?;
    for t in tables {
        let args: Vec<String> = std::iter::once(literal(&t.name))
            .chain(t.key.iter().map(|c| literal(&c.name)))
            .collect();
        for sql in [
            format!("DROP TRIGGER IF EXISTS {TRIGGER} ON {}", t.quoted),
            format!(
                "CREATE TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW EXECUTE FUNCTION {s}.{TRIGGER}({})",
                t.quoted,
                args.join(", ")
            ),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .map_err(SyncError::db("create a trigger"))?;
        }
    }
    tx.commit().await.map_err(SyncError::db("commit triggers"))
}

/// A string literal; the names come from the catalog, quoting keeps them inert anyway.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

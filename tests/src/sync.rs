//! Helpers the sync suites share: CLI outcomes, deep verify, and one value from the
//! test's application schema.

use std::time::{Duration, Instant};

use crate::TestEnv;

/// Sync config for the school fixture, with `profiles.password_hash` left out.
pub const SCHOOL: &str = r#"
[sync]
schemas = ["{schema}"]
[[sync.table]]
name = "{schema}.profiles"
exclude_columns = ["password_hash"]
"#;

/// The command's output, asserting it succeeded.
pub fn ok(out: &std::process::Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "exit {:?}: {text}", out.status.code());
    text
}

/// `ferry sync verify --deep`: whether the mirror equals the tables, and the report.
pub async fn verify_deep(env: &TestEnv) -> (bool, serde_json::Value) {
    let out = env.ferry(&["--json", "sync", "verify", "--deep"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    (out.status.success(), report)
}

/// Polls deep verify until the mirror equals the tables.
pub async fn wait_until_equal(env: &TestEnv, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let (equal, report) = verify_deep(env).await;
        if equal {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "mirror still differs: {report:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The single text value `sql` returns, run in the test's application schema.
pub async fn text_of(env: &TestEnv, sql: &str) -> String {
    let mut tx = env.record.pool().begin().await.unwrap();
    // SET LOCAL: the pooled connection must not keep this search_path.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SET LOCAL search_path = \"{}\"",
        env.app_schema()
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    let text = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut *tx)
        .await
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
    tx.commit().await.unwrap();
    text
}

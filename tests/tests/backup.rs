//! Backups against real Postgres, `pg_dump`/`pg_restore`, a private s3s-fs server per test,
//! and local directories.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use age::secrecy::ExposeSecret;
use ferry_queue::{JobRecord, JobState};
use ferry_tests::{
    TestEnv,
    s3::{S3Server, SECRET_KEY},
};
use serde_json::Value;
use uuid::Uuid;

/// Several schemas, a partitioned table, an enum, arrays, json, bytea and NULLs.
const SOURCE: &str = "
CREATE TYPE level AS ENUM ('low', 'high');
CREATE TABLE courses (id uuid PRIMARY KEY, title text NOT NULL, price numeric(12,2),
    tags text[], meta jsonb, created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO courses SELECT gen_random_uuid(), 'course ' || g, g * 1.5, ARRAY['a', g::text],
    jsonb_build_object('n', g), now() - g * interval '1 minute' FROM generate_series(1, 3000) g;
CREATE TABLE events (id bigint, at date NOT NULL, level level, payload bytea) PARTITION BY RANGE (at);
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE events_2027 PARTITION OF events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
INSERT INTO events SELECT g, date '2026-06-01' + (g % 200), 'high', decode(md5(g::text), 'hex')
    FROM generate_series(1, 10000) g;
CREATE SCHEMA billing;
CREATE TABLE billing.invoices (id serial PRIMARY KEY, amount numeric, note text);
INSERT INTO billing.invoices (amount, note) SELECT g, NULL FROM generate_series(1, 300) g;
";

const TABLES: [&str; 4] = [
    "public.courses",
    "public.events_2026",
    "public.events_2027",
    "billing.invoices",
];

fn config(target: &str, extra: &str) -> String {
    format!(
        "[backup]\ndatabases = [\"{{database}}\"]\ntarget = \"{target}\"\n{extra}\n[kinds.\"backup.run\"]\nbackoff_base = \"1s\"\n"
    )
}

fn local_store() -> PathBuf {
    std::env::temp_dir().join(format!("ferry-backups-{:x}", rand::random::<u64>()))
}

/// Per-table content hashes over `t::text`, the measure of a faithful restore.
async fn table_hashes(url: &str) -> BTreeMap<String, String> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let mut hashes = BTreeMap::new();
    for t in TABLES {
        let hash: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {t} t"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        hashes.insert(t.to_owned(), hash);
    }
    pool.close().await;
    hashes
}

async fn wait_backup_job(env: &TestEnv, id: Uuid, done: impl Fn(&JobRecord) -> bool) -> JobRecord {
    env.wait_for(id, Duration::from_secs(60), done).await
}

/// Starts a worker, enqueues `backup.run`, and returns the job once it is final.
async fn run_to_the_end(env: &TestEnv) -> JobRecord {
    let worker = env.start_worker();
    let out = env.ferry(&["--json", "backup", "run"]);
    let id: Uuid = json_of(&out)["id"].as_str().unwrap().parse().unwrap();
    let job = wait_backup_job(env, id, |j| j.state.is_final()).await;
    worker.stop().await;
    job
}

fn json_of(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "ferry failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `ferry backup run --wait` and returns the newest manifest entry.
fn backup_now(env: &TestEnv) -> Value {
    let out = env.ferry(&["backup", "run", "--wait"]);
    assert!(out.status.success(), "backup failed: {}", stderr(&out));
    json_of(&env.ferry(&["--json", "backup", "list"]))[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_verify_and_restore_reproduce_every_table() {
    let s3 = S3Server::start("backups");
    let env = TestEnv::new(&config(
        "main",
        &s3.store_toml("main", "backups", SECRET_KEY),
    ))
    .await;
    env.create_database(SOURCE).await;
    let worker = env.start_worker();

    let m = backup_now(&env);
    for field in [
        "id",
        "database",
        "bytes",
        "sha256",
        "created_at",
        "verified",
    ] {
        assert!(m.get(field).is_some(), "list --json lacks {field}: {m}");
    }
    assert_eq!(m["database"], env.database());
    assert_eq!(m["verified"], false);
    assert_eq!(m["row_counts"]["public.courses"], 3000);
    assert_eq!(m["row_counts"]["public.events_2026"], 10000);
    assert_eq!(m["row_counts"]["billing.invoices"], 300);
    let id = m["id"].as_str().unwrap();

    let out = env.ferry(&["backup", "verify", id]);
    assert!(out.status.success(), "verify failed: {}", stderr(&out));
    assert_eq!(
        json_of(&env.ferry(&["--json", "backup", "list"]))[0]["verified"],
        true
    );

    let restored = format!("{}_restored", env.name);
    let restored_url = env.database_url_of(&restored);
    let out = env.ferry(&["backup", "restore", id, "--to", &restored_url]);
    assert!(out.status.success(), "restore failed: {}", stderr(&out));
    assert_eq!(
        table_hashes(&env.database_url_of(&env.database())).await,
        table_hashes(&restored_url).await
    );
    // A second restore into the same, now full, database is refused.
    let out = env.ferry(&["backup", "restore", id, "--to", &restored_url]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("restore into a new or empty database"),
        "{}",
        stderr(&out)
    );

    assert!(s3.pending_parts().is_empty(), "{:?}", s3.pending_parts());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {restored} WITH (FORCE)"
    )))
    .execute(env.record.pool())
    .await
    .unwrap();
    worker.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_or_altered_backup_fails_verify() {
    let dir = local_store();
    let env = TestEnv::new(&config(&format!("file://{}", dir.display()), "")).await;
    env.create_database(SOURCE).await;
    let worker = env.start_worker();
    let m = backup_now(&env);
    let id = m["id"].as_str().unwrap();
    let object = dir.join(m["object_key"].as_str().unwrap());
    let original = std::fs::read(&object).unwrap();

    std::fs::write(&object, &original[..original.len() * 6 / 10]).unwrap();
    let out = env.ferry(&["backup", "verify", id]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("truncated or altered"),
        "{}",
        stderr(&out)
    );

    let mut altered = original.clone();
    altered[original.len() / 2] ^= 0x01;
    std::fs::write(&object, &altered).unwrap();
    let out = env.ferry(&["backup", "verify", id]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("truncated or altered"),
        "{}",
        stderr(&out)
    );
    let listed = json_of(&env.ferry(&["--json", "backup", "list"]));
    assert_eq!(listed[0]["verified"], false);
    assert!(
        listed[0]["verify_error"]
            .as_str()
            .unwrap()
            .contains("truncated")
    );

    std::fs::write(&object, &original).unwrap();
    let out = env.ferry(&["backup", "verify", id]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Restored counts that differ from the manifest fail verify, naming each table with both
    // counts: the manifest is told of one invoice more and of a table the dump does not hold.
    sqlx::query(
        r#"UPDATE backups SET row_counts = row_counts || '{"billing.invoices": 301, "public.gone": 5}'
            WHERE id = $1::uuid"#,
    )
    .bind(id)
    .execute(env.record.pool())
    .await
    .unwrap();
    let out = env.ferry(&["--json", "backup", "verify", id]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["differences"],
        serde_json::json!({"billing.invoices": [301, 300], "public.gone": [5, null]}),
        "{report}"
    );
    assert_eq!(
        report["error"], "2 tables differ from the manifest after restore",
        "{report}"
    );

    worker.stop().await;
    env.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_backup_restores_only_with_its_identity() {
    let identity = age::x25519::Identity::generate();
    let stranger = age::x25519::Identity::generate();
    let dir = local_store();
    let env = TestEnv::new(&config(
        &format!("file://{}", dir.display()),
        &format!("encrypt_to = \"{}\"", identity.to_public()),
    ))
    .await;
    env.create_database(SOURCE).await;
    let worker = env.start_worker();
    let m = backup_now(&env);
    let id = m["id"].as_str().unwrap();
    assert!(m["object_key"].as_str().unwrap().ends_with(".age"));
    let object = std::fs::read(dir.join(m["object_key"].as_str().unwrap())).unwrap();
    assert!(object.starts_with(b"age-encryption.org/v1"));

    let out = env.ferry(&["backup", "verify", id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("FERRY_AGE_IDENTITY"),
        "{}",
        stderr(&out)
    );

    let with = |key: &age::x25519::Identity, args: &[&str]| {
        env.command(args)
            .env("FERRY_AGE_IDENTITY", key.to_string().expose_secret())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let out = with(&stranger, &["backup", "verify", id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot decrypt"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("AGE-SECRET-KEY"),
        "a secret reached the output"
    );

    let out = with(&identity, &["backup", "verify", id]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A restore without the identity, or with a stranger's, fails and leaves the target
    // without a table; with the identity it reproduces every table.
    let restored = format!("{}_restored", env.name);
    let restored_url = env.database_url_of(&restored);
    let out = env.ferry(&["backup", "restore", id, "--to", &restored_url]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("FERRY_AGE_IDENTITY"),
        "{}",
        stderr(&out)
    );
    assert_eq!(tables_in(&restored_url).await, Vec::<String>::new());
    let out = with(&stranger, &["backup", "restore", id, "--to", &restored_url]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot decrypt"), "{}", stderr(&out));
    assert_eq!(tables_in(&restored_url).await, Vec::<String>::new());
    let out = with(&identity, &["backup", "restore", id, "--to", &restored_url]);
    assert!(out.status.success(), "restore failed: {}", stderr(&out));
    assert_eq!(
        table_hashes(&env.database_url_of(&env.database())).await,
        table_hashes(&restored_url).await
    );

    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {restored} WITH (FORCE)"
    )))
    .execute(env.record.pool())
    .await
    .unwrap();
    worker.stop().await;
    env.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// The tables of database `url`, none when it does not exist: what a failed restore left.
async fn tables_in(url: &str) -> Vec<String> {
    let pool = match sqlx::PgPool::connect(url).await {
        Ok(pool) => pool,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => return vec![],
        Err(e) => panic!("{url}: {e}"),
    };
    let tables = sqlx::query_scalar(
        "SELECT schemaname || '.' || tablename FROM pg_tables
          WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    tables
}

/// The store dies after the first part landed: the attempt fails and is retried, the retry
/// aborts the half-done upload by its saved id, and no part is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_dying_mid_upload_is_retried_and_leaves_no_parts() {
    let mut s3 = S3Server::start("backups");
    let env = TestEnv::new(&config(
        "main",
        &s3.store_toml("main", "backups", SECRET_KEY),
    ))
    .await;
    // About 25 MB of hex text: three or more 8 MiB parts after compression.
    env.create_database(
        "CREATE TABLE blobs (id int PRIMARY KEY, body text);
         INSERT INTO blobs SELECT g, (SELECT string_agg(md5(random()::text || g || i), '')
             FROM generate_series(1, 40000) i) FROM generate_series(1, 20) g;",
    )
    .await;
    let worker = env.start_worker();
    let out = env.ferry(&["--json", "backup", "run"]);
    let id: Uuid = json_of(&out)["id"].as_str().unwrap().parse().unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    while s3.pending_parts().is_empty() {
        assert!(Instant::now() < deadline, "no part was uploaded");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    s3.freeze();
    s3.kill();
    let job = wait_backup_job(&env, id, |j| j.state == JobState::Retrying).await;
    assert!(
        job.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("cannot"),
        "{job:?}"
    );
    s3.restart();
    let job = wait_backup_job(&env, id, |j| j.state.is_final()).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_eq!(job.attempts, 2);
    assert!(
        s3.pending_parts().is_empty(),
        "orphan parts: {:?}",
        s3.pending_parts()
    );

    let m = json_of(&env.ferry(&["--json", "backup", "list"]))[0].clone();
    assert!(m["bytes"].as_i64().unwrap() > 8 << 20);
    let out = env.ferry(&["backup", "verify", m["id"].as_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    worker.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_credential_is_permanent() {
    let s3 = S3Server::start("backups");
    let env = TestEnv::new(&config(
        "main",
        &s3.store_toml("main", "backups", "not-the-secret"),
    ))
    .await;
    env.create_database("CREATE TABLE t (id int PRIMARY KEY)")
        .await;
    let worker = env.start_worker();
    let out = env.ferry(&["--json", "backup", "run"]);
    let id: Uuid = json_of(&out)["id"].as_str().unwrap().parse().unwrap();
    let job = wait_backup_job(&env, id, |j| j.state.is_final()).await;
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(job.attempts, 1);
    let error = job.last_error.unwrap();
    assert!(error.contains("refused the credentials"), "{error}");
    assert!(
        !error.contains("not-the-secret"),
        "the secret reached the error"
    );
    worker.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error() {
    // A database not in the config: refused before anything is queued.
    let dir = local_store();
    let env = TestEnv::new(&config(&format!("file://{}", dir.display()), "")).await;
    let out = env.ferry(&["backup", "run", "--databases", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not configured for backups"),
        "{}",
        stderr(&out)
    );

    // A configured database that does not exist: dead at once, saying so.
    let job = run_to_the_end(&env).await;
    assert_eq!(job.state, JobState::Dead);
    assert!(job.last_error.unwrap().contains("does not exist"));
    env.cleanup().await;

    // No usable pg_dump.
    let env = TestEnv::new(&config(
        &format!("file://{}", dir.display()),
        "pg_bin_dir = \"/nonexistent\"",
    ))
    .await;
    env.create_database("CREATE TABLE t (id int PRIMARY KEY)")
        .await;
    let worker = env.start_worker();
    let id: Uuid = json_of(&env.ferry(&["--json", "backup", "run"]))["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let job = wait_backup_job(&env, id, |j| j.state.is_final()).await;
    assert_eq!(job.state, JobState::Dead);
    assert!(job.last_error.unwrap().contains("backup.pg_bin_dir"));
    worker.stop().await;
    env.cleanup().await;

    // An unreachable store: retried, not lost.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = TestEnv::new(&config(
        "main",
        &format!(
            "[stores.main]\nurl = \"s3://backups\"\nendpoint = \"http://127.0.0.1:{closed}\"\naccess_key_id = \"a\"\nsecret_access_key = \"b\"\n"
        ),
    ))
    .await;
    env.create_database("CREATE TABLE t (id int PRIMARY KEY)")
        .await;
    let worker = env.start_worker();
    let id: Uuid = json_of(&env.ferry(&["--json", "backup", "run"]))["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let job = wait_backup_job(&env, id, |j| j.state == JobState::Retrying).await;
    assert!(job.last_error.unwrap().contains("cannot start an upload"));
    worker.stop().await;
    env.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_generations_and_the_newest_verified_backup() {
    let dir = local_store();
    let env = TestEnv::new(&config(
        &format!("file://{}", dir.display()),
        "retention = { daily = 1, weekly = 0, monthly = 0 }",
    ))
    .await;
    env.create_database("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await;
    let worker = env.start_worker();
    let ids: Vec<String> = (0..3)
        .map(|_| backup_now(&env)["id"].as_str().unwrap().to_owned())
        .collect();
    // Spread them over days: 10 and 5 days ago, and today. The oldest is the one verified.
    for (id, days) in ids.iter().zip([10, 5, 0]) {
        sqlx::query(
            "UPDATE backups SET created_at = now() - $2 * interval '1 day' WHERE id = $1::uuid",
        )
        .bind(id)
        .bind(days)
        .execute(env.record.pool())
        .await
        .unwrap();
    }
    assert!(env.ferry(&["backup", "verify", &ids[0]]).status.success());

    let dry = json_of(&env.ferry(&["--json", "backup", "prune", "--dry-run"]));
    assert_eq!(dry["deleted"], serde_json::json!([ids[1]]));
    assert_eq!(
        json_of(&env.ferry(&["--json", "backup", "list"]))
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let list = json_of(&env.ferry(&["--json", "backup", "list"]));
    let middle = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == ids[1].as_str())
        .unwrap()["object_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(dir.join(&middle).exists());
    let done = json_of(&env.ferry(&["--json", "backup", "prune"]));
    assert_eq!(done["deleted"], serde_json::json!([ids[1]]));
    assert!(!dir.join(&middle).exists());
    let left: Vec<String> = json_of(&env.ferry(&["--json", "backup", "list"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(left, vec![ids[2].clone(), ids[0].clone()]);

    worker.stop().await;
    env.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
}

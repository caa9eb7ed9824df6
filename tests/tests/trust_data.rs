//! What an operator must be able to trust about backups: a retried `backup.run` leaves no
//! object the manifest does not know, passwords never reach a command line, and row-level
//! security that would hide rows from ferry's counts is reported, not silently counted around.
//! Real Postgres (roles created per test), `pg_dump`/`pg_restore` behind a recording wrapper,
//! a private s3s-fs per test.

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use ferry_queue::JobState;
use ferry_tests::{
    TestEnv,
    s3::{ACCESS_KEY, S3Server, SECRET_KEY},
};
use futures::TryStreamExt;
use object_store::{ObjectStore, aws::AmazonS3Builder};
use serde_json::Value;
use uuid::Uuid;

fn backup_config(s3: &S3Server, extra: &str) -> String {
    format!(
        "[backup]\ndatabases = [\"{{database}}\"]\ntarget = \"main\"\n{extra}\n\
         [kinds.\"backup.run\"]\nbackoff_base = \"300ms\"\nbackoff_cap = \"1s\"\n{}",
        s3.store_toml("main", "backups", SECRET_KEY)
    )
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_of(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "ferry failed: {}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every object in bucket `backups`, by key relative to the store's prefix `backups`.
async fn bucket_keys(s3: &S3Server) -> BTreeSet<String> {
    let client = AmazonS3Builder::new()
        .with_bucket_name("backups")
        .with_region("us-east-1")
        .with_endpoint(s3.endpoint())
        .with_allow_http(true)
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .build()
        .unwrap();
    client
        .list(None)
        .map_ok(|o| {
            let key = o.location.to_string();
            key.strip_prefix("backups/").unwrap_or(&key).to_owned()
        })
        .try_collect()
        .await
        .unwrap()
}

/// Makes the record fail once with a connection error (retryable) where `when` says, through
/// a trigger in the test's own record schema.
async fn inject_fault(env: &TestEnv, table: &str, when: &str) {
    let s = &env.name;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SEQUENCE \"{s}\".fault;
         CREATE FUNCTION \"{s}\".fault() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF ({when}) AND nextval('\"{s}\".fault') = 1 THEN
                 RAISE EXCEPTION 'injected: the record went away' USING ERRCODE = '08006';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER fault BEFORE INSERT OR UPDATE ON \"{s}\".{table}
             FOR EACH ROW EXECUTE FUNCTION \"{s}\".fault();"
    )))
    .execute(env.record.pool())
    .await
    .unwrap();
}

/// Backs up with the fault in place and checks the retry leaves the bucket holding exactly
/// the objects the manifest records, one backup of the database, no parts.
async fn retried_backup_leaves_only_recorded_objects(table: &str, when: &str) {
    let s3 = S3Server::start("backups");
    let env = TestEnv::new(&backup_config(&s3, "")).await;
    env.create_database(
        "CREATE TABLE notes (id int PRIMARY KEY, body text);
         INSERT INTO notes SELECT g, md5(g::text) FROM generate_series(1, 2000) g;",
    )
    .await;
    inject_fault(&env, table, when).await;
    let worker = env.start_worker();
    let out = env.ferry(&["--json", "backup", "run"]);
    let id: Uuid = json_of(&out)["id"].as_str().unwrap().parse().unwrap();
    let job = env
        .wait_for(id, Duration::from_secs(120), |j| j.state.is_final())
        .await;
    worker.stop().await;
    assert_eq!(
        (job.state, job.attempts),
        (JobState::Succeeded, 2),
        "{job:?}"
    );

    let manifest = json_of(&env.ferry(&["--json", "backup", "list"]));
    let recorded: BTreeSet<String> = manifest
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["object_key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recorded.len(), 1, "{manifest}");
    assert_eq!(
        bucket_keys(&s3).await,
        recorded,
        "objects the manifest does not know"
    );
    assert!(s3.pending_parts().is_empty(), "{:?}", s3.pending_parts());
    let out = env.ferry(&["backup", "verify", manifest[0]["id"].as_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_upload_but_before_the_manifest_removes_the_object() {
    // The first manifest insert fails: the object is complete in the bucket, unrecorded.
    retried_backup_leaves_only_recorded_objects("backups", "TG_OP = 'INSERT'").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_manifest_but_before_the_checkpoint_dumps_nothing_new() {
    // The manifest row lands, then saving the checkpoint that says so fails.
    retried_backup_leaves_only_recorded_objects(
        "runs",
        "TG_OP = 'UPDATE' AND jsonb_array_length(coalesce(NEW.checkpoint->'done', '[]')) > 0",
    )
    .await;
}

/// The test server's URL with another user (and extra query).
fn url_as(user: &str, query: Option<&str>) -> String {
    let mut url = url::Url::parse(&ferry_tests::database_url()).unwrap();
    url.set_username(user).unwrap();
    let _ = url.set_password(None);
    url.set_query(query);
    url.to_string()
}

async fn admin(env: &TestEnv, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(env.record.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
}

/// `ferry worker` with other database settings, killed when dropped.
fn worker_with(env: &TestEnv, vars: &[(&str, &str)]) -> ferry_tests::WorkerProcess {
    let log = std::env::temp_dir().join(format!("ferry-{}-worker.log", env.name));
    let mut cmd = env.command(&["worker"]);
    cmd.envs(vars.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    ferry_tests::WorkerProcess(cmd.spawn().unwrap())
}

/// `pg_dump` and `pg_restore` wrappers in a directory of their own that append their argv,
/// and whether PGPASSWORD reached them, to `log`, then run the real tool.
fn recording_tools(log: &std::path::Path) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferry-tools-{:x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    for tool in ["pg_dump", "pg_restore"] {
        let real = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap();
        let real = String::from_utf8(real.stdout).unwrap().trim().to_owned();
        assert!(!real.is_empty(), "{tool} is not on PATH");
        let path = dir.join(tool);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\n{{ printf '%s' {tool}; for a in \"$@\"; do printf ' %s' \"$a\"; done; \
                 printf ' PGPASSWORD=%s\\n' \"${{PGPASSWORD:+set}}\"; }} >> '{}'\nexec '{real}' \"$@\"\n",
                log.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_reach_a_command_line() {
    let s3 = S3Server::start("backups");
    let log = std::env::temp_dir().join(format!("ferry-argv-{:x}.log", rand::random::<u64>()));
    let tools = recording_tools(&log);
    let env = TestEnv::new(&backup_config(
        &s3,
        &format!("pg_bin_dir = \"{}\"", tools.display()),
    ))
    .await;
    let role = format!("{}_owner", env.name);
    let password = format!("pw-{:x}", rand::random::<u64>());
    // Trust authentication here accepts any password: what matters is where it travels.
    admin(
        &env,
        &format!("CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'"),
    )
    .await;
    env.create_database(
        "CREATE TABLE notes (id int PRIMARY KEY); INSERT INTO notes VALUES (1), (2);",
    )
    .await;
    // libpq's `?password=` form, the one a URL parser does not see as a password.
    let app_url = url_as(&role, Some(&format!("password={password}")));
    let worker = worker_with(&env, &[("DATABASE_URL", &app_url)]);
    let out = env
        .command(&["backup", "run", "--wait"])
        .env("DATABASE_URL", &app_url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    drop(worker);
    let id = json_of(&env.ferry(&["--json", "backup", "list"]))[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let restored = format!("{}_restored", env.name);
    // A password in --to would sit in ferry's own argv: refused, and not echoed.
    let out = env.ferry(&[
        "backup",
        "restore",
        &id,
        "--to",
        &url_as(&role, None)
            .replace(&format!("{role}@"), &format!("{role}:{password}@"))
            .replace("/ferry", &format!("/{restored}")),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--to-password-env"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains(&password), "{}", stderr(&out));
    let out = env
        .command(&[
            "backup",
            "restore",
            &id,
            "--to",
            &url_as(&role, None).replace("/ferry", &format!("/{restored}")),
            "--to-password-env",
            "RESTORE_PASSWORD",
        ])
        .env("RESTORE_PASSWORD", &password)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    let calls = std::fs::read_to_string(&log).unwrap();
    for tool in ["pg_dump", "pg_restore"] {
        let run: Vec<&str> = calls
            .lines()
            .filter(|l| l.starts_with(tool) && l.contains("--dbname"))
            .collect();
        assert!(!run.is_empty(), "{tool} never ran: {calls}");
        for line in run {
            assert!(line.ends_with("PGPASSWORD=set"), "{line}");
        }
    }
    assert!(
        !calls.contains(&password),
        "a password on a command line: {calls}"
    );
    admin(
        &env,
        &format!("DROP DATABASE IF EXISTS {restored} WITH (FORCE)"),
    )
    .await;
    let name = env.name.clone();
    let pool = env.record.pool().clone();
    env.cleanup().await;
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP ROLE IF EXISTS {name}_owner"
    )))
    .execute(&pool)
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_security_hiding_rows_from_ferry_is_reported() {
    let s3 = S3Server::start("backups");
    let env = TestEnv::new(&format!(
        "{}\n[sync]\nschemas = [\"{{schema}}\"]\n",
        backup_config(&s3, "")
    ))
    .await;
    let app = env.app_schema();
    let reader = format!("{}_reader", env.name);
    admin(
        &env,
        &format!("CREATE ROLE {reader} LOGIN NOSUPERUSER NOBYPASSRLS"),
    )
    .await;
    let policy = "ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
                  CREATE POLICY half ON notes USING (id % 2 = 0);";
    env.sql(&format!(
        "CREATE TABLE notes (id int PRIMARY KEY, body text);
         INSERT INTO notes SELECT g, md5(g::text) FROM generate_series(1, 100) g;
         CREATE TABLE open_notes (id int PRIMARY KEY);
         INSERT INTO open_notes SELECT generate_series(1, 10);
         {policy}
         GRANT USAGE ON SCHEMA \"{app}\" TO {reader};
         GRANT SELECT ON ALL TABLES IN SCHEMA \"{app}\" TO {reader}"
    ))
    .await;
    let db = env
        .create_database(&format!(
            "CREATE TABLE notes (id int PRIMARY KEY); INSERT INTO notes SELECT generate_series(1, 10);
             {policy} GRANT SELECT ON notes TO {reader};"
        ))
        .await;
    db.close().await;
    // ferry's application role is the reader; its own record stays with the admin.
    let as_reader = [
        ("DATABASE_URL", url_as(&reader, None)),
        ("FERRY_DATABASE_URL", ferry_tests::database_url()),
    ];
    let vars: Vec<(&str, &str)> = as_reader.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let ferry = |args: &[&str]| {
        env.command(args)
            .envs(vars.iter().copied())
            .output()
            .unwrap()
    };
    let hidden = format!("row-level security hides rows of {app}.notes from role \"{reader}\"");

    let out = ferry(&["sync", "tables"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&hidden), "{}", stderr(&out));
    assert!(!stderr(&out).contains("open_notes"), "{}", stderr(&out));

    // A mirror made through the policy matches counts made through it: verify must not pass.
    let worker = worker_with(&env, &vars);
    let out = ferry(&["sync", "full", "--wait"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ferry(&["sync", "verify"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "verify passed: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains(&hidden), "{}", stderr(&out));
    assert!(stderr(&out).contains("BYPASSRLS"), "{}", stderr(&out));

    let out = ferry(&["backup", "run", "--wait"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    drop(worker);
    let runs: Value =
        serde_json::from_slice(&ferry(&["--json", "runs"]).stdout).unwrap_or_default();
    let text = format!("{}{runs}", stderr(&out));
    assert!(
        text.contains("lacks BYPASSRLS") && text.contains("public.notes"),
        "{text}"
    );
    assert!(bucket_keys(&s3).await.is_empty());

    let name = env.name.clone();
    let pool = env.record.pool().clone();
    env.cleanup().await;
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP OWNED BY {name}_reader; DROP ROLE IF EXISTS {name}_reader"
    )))
    .execute(&pool)
    .await;
}

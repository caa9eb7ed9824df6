//! Bucket-to-bucket migration: moto (the second S3 server) as the source, a private s3s-fs
//! per test as the destination, URL columns in the test's own schema.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use bytes::Bytes;
use ferry_queue::{JobState, NewJob};
use ferry_tests::{
    TestEnv, moto,
    s3::{ACCESS_KEY, S3Server, SECRET_KEY},
};
use futures::{StreamExt, TryStreamExt};
use object_store::{
    Attribute, AttributeValue, Attributes, GetOptions, ObjectStore, ObjectStoreExt,
    aws::AmazonS3Builder, path::Path,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

const MIB: usize = 1 << 20;

fn bucket_name() -> String {
    format!("src-{:012x}", rand::random::<u64>() >> 16)
}

/// Source `src` (moto bucket `bucket`, side prefix given on the command line), destination
/// `dst` (bucket `media` under prefix `site` on `s3`), 5 MiB multipart threshold and parts;
/// `kind` adds settings of the kind.
fn config(bucket: &str, s3: &S3Server, secret: &str, kind: &str) -> String {
    format!(
        "[files]\nmultipart_threshold_mib = 5\npart_size_mib = 5\ntransfers = 4\n\
         [kinds.\"files.migrate\"]\nbackoff_base = \"300ms\"\nbackoff_cap = \"1s\"\n{kind}\n\
         [stores.src]\nurl = \"s3://{bucket}\"\nendpoint = \"{}\"\naccess_key_id = \"{key}\"\n\
         secret_access_key = \"{key}\"\n\
         public_url = \"https://project.supabase.co/storage/v1/object/public/{bucket}\"\n\
         [stores.dst]\nurl = \"s3://media/site\"\nendpoint = \"{}\"\naccess_key_id = \"{ACCESS_KEY}\"\n\
         secret_access_key = \"{secret}\"\npublic_url = \"{}/media/site\"\n",
        moto::endpoint(),
        s3.endpoint(),
        s3.endpoint(),
        key = moto::KEY,
    )
}

/// What a source object is.
struct Object {
    key: String,
    data: Bytes,
    attributes: Attributes,
}

fn attributes(i: usize) -> Attributes {
    let mut a = Attributes::new();
    let types = [
        "image/png",
        "application/pdf",
        "text/plain; charset=utf-8",
        "video/mp4",
    ];
    a.insert(Attribute::ContentType, types[i % types.len()].into());
    if i.is_multiple_of(2) {
        a.insert(Attribute::CacheControl, "public, max-age=3600".into());
    }
    if i.is_multiple_of(3) {
        a.insert(
            Attribute::ContentDisposition,
            AttributeValue::from(format!("attachment; filename=\"file{i}.bin\"")),
        );
    }
    a.insert(
        Attribute::Metadata("owner".into()),
        AttributeValue::from(format!("user-{i}")),
    );
    a
}

fn random_bytes(len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    rand::fill(&mut v[..]);
    Bytes::from(v)
}

/// `small` objects of up to 300 kB (one empty, one with spaces in its key, one with non-ASCII
/// letters) and `large` ones
/// from 6 MiB up, every second of those uploaded to the source in parts.
async fn fill(bucket: &moto::Bucket, prefix: &str, small: usize, large: &[usize]) -> Vec<Object> {
    let mut objects = Vec::new();
    for i in 0..small {
        let key = match i {
            0 => format!("{prefix}/empty.txt"),
            1 => format!("{prefix}/user 1/photo one.png"),
            2 => format!("{prefix}/été/ünïcode.png"),
            _ => format!("{prefix}/{}/file-{i:04}.bin", i % 7),
        };
        let len = if i == 0 { 0 } else { (i * 7919) % 300_000 };
        objects.push(Object {
            key,
            data: random_bytes(len),
            attributes: attributes(i),
        });
    }
    for (j, &len) in large.iter().enumerate() {
        objects.push(Object {
            key: format!("{prefix}/large/video-{j}.mp4"),
            data: random_bytes(len),
            attributes: attributes(j),
        });
    }
    let puts = objects.iter().enumerate().map(|(i, o)| {
        let multipart = o.data.len() > 5 * MIB && i.is_multiple_of(2);
        bucket.put(&o.key, o.data.clone(), o.attributes.clone(), multipart)
    });
    futures::stream::iter(puts)
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    objects
}

fn dest_client(s3: &S3Server) -> object_store::aws::AmazonS3 {
    AmazonS3Builder::new()
        .with_bucket_name("media")
        .with_region("us-east-1")
        .with_endpoint(s3.endpoint())
        .with_allow_http(true)
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .build()
        .unwrap()
}

/// The destination key of a source key under side prefix `from` moved to `site/moved`.
fn dest_key(key: &str, from: &str) -> String {
    format!(
        "site/moved/{}",
        key.strip_prefix(&format!("{from}/")).unwrap()
    )
}

/// Every object is at the destination with the same bytes (sha256) and attributes.
async fn assert_copied(s3: &S3Server, from: &str, objects: &[Object]) {
    let client = dest_client(s3);
    for o in objects {
        let got = client
            .get_opts(
                &Path::parse(dest_key(&o.key, from)).unwrap(),
                GetOptions::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("{} is not at the destination: {e}", o.key));
        let attributes = got.attributes.clone();
        let bytes = got.bytes().await.unwrap();
        assert_eq!(
            format!("{:x}", Sha256::digest(&bytes)),
            format!("{:x}", Sha256::digest(&o.data)),
            "bytes of {} differ",
            o.key
        );
        assert_eq!(attributes, o.attributes, "attributes of {} differ", o.key);
    }
}

fn url_of(base: &str, key: &str) -> String {
    // As applications store them: path segments percent-encoded.
    let encoded: Vec<String> = key
        .split('/')
        .map(|s| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>())
        .map(|s| s.replace('+', "%20"))
        .collect();
    format!("{base}/{}", encoded.join("/"))
}

fn json_of(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "ferry failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn urls(env: &TestEnv) -> BTreeMap<i64, Option<String>> {
    sqlx::query_as::<_, (i64, Option<String>)>(sqlx::AssertSqlSafe(format!(
        "SELECT id, url FROM \"{}\".attachments ORDER BY id",
        env.app_schema()
    )))
    .fetch_all(env.record.pool())
    .await
    .unwrap()
    .into_iter()
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrates_verifies_rewrites_and_rolls_back() {
    let bucket = moto::Bucket::create(&bucket_name());
    let s3 = S3Server::start("media");
    let env = TestEnv::new(&config(&bucket.name, &s3, SECRET_KEY, "")).await;
    let objects = fill(
        &bucket,
        "uploads",
        124,
        &[6 * MIB + 1, 11 * MIB, 12 * MIB + 3, 16 * MIB],
    )
    .await;
    // An object outside the migrated prefix stays where it is.
    bucket
        .put(
            "other/keep.txt",
            Bytes::from_static(b"x"),
            attributes(1),
            false,
        )
        .await;
    let src_base = format!(
        "https://project.supabase.co/storage/v1/object/public/{}",
        bucket.name
    );
    let mut values: Vec<String> = objects.iter().map(|o| url_of(&src_base, &o.key)).collect();
    values.push("https://elsewhere.example.com/a.png".into());
    values.push(format!("{src_base}/other/keep.txt"));
    // Shares the prefix's first letters only.
    values.push(format!("{src_base}/uploads-old/a.png"));
    env.sql("CREATE TABLE attachments (id bigserial PRIMARY KEY, url text, note text)")
        .await;
    for v in &values {
        env.sql(&format!("INSERT INTO attachments (url) VALUES ('{v}')"))
            .await;
    }
    env.sql("INSERT INTO attachments (url) VALUES (NULL)").await;
    let before = urls(&env).await;
    let column = format!("{}.attachments.url", env.app_schema());
    let total_bytes: usize = objects.iter().map(|o| o.data.len()).sum();

    let plan = json_of(&env.ferry(&[
        "--json",
        "files",
        "migrate",
        "--from",
        "src:uploads",
        "--to",
        "dst:moved",
        "--rewrite",
        &column,
        "--dry-run",
    ]));
    assert_eq!(plan["objects"], objects.len());
    assert_eq!(plan["bytes"], total_bytes);
    assert_eq!(plan["rows"][&column], objects.len());
    assert_eq!(urls(&env).await, before, "a dry run changed rows");
    assert!(
        dest_client(&s3)
            .list(None)
            .try_next()
            .await
            .unwrap()
            .is_none()
    );

    let worker = env.start_worker();
    let first = json_of(&env.ferry(&[
        "--json",
        "files",
        "migrate",
        "--from",
        "src:uploads",
        "--to",
        "dst:moved",
        "--rewrite",
        &column,
        "--wait",
    ]));
    assert_eq!(first["state"], "succeeded", "{first}");
    assert_eq!(first["copied"], objects.len(), "{first}");
    assert_eq!(first["skipped"], 0);
    assert_eq!(first["bytes"], total_bytes);
    assert_eq!(first["rewritten"], objects.len());
    assert_eq!(first["checked"], objects.len());
    assert_eq!(first["unreachable"], 0);
    assert_copied(&s3, "uploads", &objects).await;
    // The progress totals come from the one listing here (it fits in one batch).
    let id: Uuid = first["id"].as_str().unwrap().parse().unwrap();
    let cp = run_checkpoint(&env, id).await;
    assert_eq!(cp["total_objects"], objects.len(), "{cp}");
    assert_eq!(cp["total_bytes"], total_bytes, "{cp}");

    // The ledger holds each object's sha256 as copied.
    let ledger: BTreeMap<String, String> = sqlx::query_as::<_, (String, String)>(
        "SELECT key, sha256 FROM files_objects WHERE state = 'copied'",
    )
    .fetch_all(env.record.pool())
    .await
    .unwrap()
    .into_iter()
    .collect();
    for o in &objects {
        let rel = o.key.strip_prefix("uploads/").unwrap();
        assert_eq!(
            ledger[rel],
            format!("{:x}", Sha256::digest(&o.data)),
            "{rel}"
        );
    }

    let after = urls(&env).await;
    let dst_base = format!("{}/media/site/moved", s3.endpoint());
    for (id, old) in &before {
        let new = &after[id];
        match old {
            Some(old) if old.starts_with(&format!("{src_base}/uploads/")) => {
                let rest = old.strip_prefix(&format!("{src_base}/uploads")).unwrap();
                assert_eq!(new.as_deref(), Some(format!("{dst_base}{rest}").as_str()));
            }
            other => assert_eq!(new, other, "row {id} is outside the migration"),
        }
    }

    // A second run copies nothing and has nothing left to rewrite.
    let second = json_of(&env.ferry(&[
        "--json",
        "files",
        "migrate",
        "--from",
        "src:uploads",
        "--to",
        "dst:moved",
        "--rewrite",
        &column,
        "--wait",
    ]));
    assert_eq!(second["state"], "succeeded", "{second}");
    assert_eq!(second["copied"], 0, "{second}");
    assert_eq!(second["skipped"], objects.len());
    assert_eq!(second["bytes"], 0);
    assert_eq!(second["rewritten"], 0);

    // The application edits two rewritten rows after the migration: one gets a new URL, the
    // other only a new note. Rollback restores every old URL but the one the app replaced,
    // which keeps the app's value and is counted as changed.
    let edited = *after
        .iter()
        .find(|(_, url)| url.as_deref().is_some_and(|u| u.starts_with(&dst_base)))
        .unwrap()
        .0;
    let noted = edited + 1;
    assert!(after[&noted].as_deref().unwrap().starts_with(&dst_base));
    let app_value = "https://app.example.com/uploaded-after-the-migration.png";
    env.sql(&format!(
        "UPDATE attachments SET url = '{app_value}' WHERE id = {edited};
         UPDATE attachments SET note = 'edited' WHERE id = {noted};"
    ))
    .await;
    let run = first["id"].as_str().unwrap();
    let back = json_of(&env.ferry(&["--json", "files", "rollback", run]));
    assert_eq!(back[&column]["restored"], objects.len() - 1, "{back}");
    assert_eq!(back[&column]["changed"], 1, "{back}");
    let mut expected = before.clone();
    expected.insert(edited, Some(app_value.to_owned()));
    assert_eq!(urls(&env).await, expected);
    let again = json_of(&env.ferry(&["--json", "files", "rollback", run]));
    assert_eq!(again, serde_json::json!({}), "a second rollback found work");

    worker.stop().await;
    env.cleanup().await;
    bucket.remove().await;
}

/// Keys the ledger calls copied, with when (microseconds since the epoch).
async fn copied_rows(env: &TestEnv) -> BTreeMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>(
        "SELECT key, (extract(epoch FROM copied_at) * 1000000)::bigint FROM files_objects
          WHERE state = 'copied'",
    )
    .fetch_all(env.record.pool())
    .await
    .unwrap()
    .into_iter()
    .collect()
}

async fn run_checkpoint(env: &TestEnv, id: Uuid) -> Value {
    env.record
        .run(id)
        .await
        .unwrap()
        .and_then(|r| r.checkpoint)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_resumes_and_copies_nothing_twice() {
    let bucket = moto::Bucket::create(&bucket_name());
    let s3 = S3Server::start("media");
    let env = TestEnv::new(&config(&bucket.name, &s3, SECRET_KEY, "")).await;
    let large = [11 * MIB, 12 * MIB, 13 * MIB, 11 * MIB];
    let objects = fill(&bucket, "in", 150, &large).await;
    let args = r#"{"from": "src:in", "to": "dst:moved", "transfers": 2}"#;

    let mut worker = env.spawn_worker_process("first");
    let id = env.enqueue("files.migrate", args).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while copied_rows(&env).await.len() < 30 {
        assert!(Instant::now() < deadline, "the migration did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.kill().unwrap();
    worker.wait().unwrap();
    let before_kill = copied_rows(&env).await;
    assert!(
        before_kill.len() < objects.len(),
        "the run finished before the kill; make it larger"
    );

    let _second = env.spawn_worker_process("second");
    let job = env
        .wait_for(id, Duration::from_secs(120), |j| j.state.is_final())
        .await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert!(job.attempts >= 2, "the job was not resumed: {job:?}");
    assert_copied(&s3, "in", &objects).await;
    let after = copied_rows(&env).await;
    for (key, at) in &before_kill {
        assert_eq!(
            after.get(key),
            Some(at),
            "{key} was copied again after the kill"
        );
    }
    // An object whose upload completed just before the kill, but not its ledger row, is found
    // identical and recorded as skipped: at most the two in flight.
    let skipped = objects.len() - after.len();
    assert!(skipped <= 2, "{skipped} objects lost their ledger row");
    assert!(
        s3.pending_parts().is_empty(),
        "orphan parts: {:?}",
        s3.pending_parts()
    );
    let cp = run_checkpoint(&env, id).await;
    assert_eq!(cp["phase"], "done");
    // Counted from the ledger: every object once, across both attempts.
    assert_eq!(cp["copied"], after.len(), "{cp}");
    assert_eq!(cp["skipped"], skipped, "{cp}");

    // A second run copies 0 objects.
    let rerun = env.enqueue("files.migrate", args).await;
    let job = env
        .wait_for(rerun, Duration::from_secs(60), |j| j.state.is_final())
        .await;
    assert_eq!(job.state, JobState::Succeeded);
    let cp = run_checkpoint(&env, rerun).await;
    assert_eq!(cp["copied"], 0, "{cp}");
    assert_eq!(cp["skipped"], objects.len(), "{cp}");
    assert_eq!(copied_rows(&env).await, after);

    env.cleanup().await;
    bucket.remove().await;
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_and_refused_credentials_are_permanent() {
    let s3 = S3Server::start("media");
    // A source bucket that does not exist.
    let env = TestEnv::new(&config(&bucket_name(), &s3, SECRET_KEY, "")).await;
    let worker = env.start_worker();
    let out = env.ferry(&[
        "--json", "files", "migrate", "--from", "src", "--to", "dst", "--wait",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["state"], "failed");
    assert!(
        summary["error"]
            .as_str()
            .unwrap()
            .contains("bucket does not exist"),
        "{summary}"
    );
    let id: Uuid = summary["id"].as_str().unwrap().parse().unwrap();
    let job = env.job_record(id).await.unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Dead, 1), "{job:?}");
    worker.stop().await;
    env.cleanup().await;

    // The destination refuses the key.
    let bucket = moto::Bucket::create(&bucket_name());
    fill(&bucket, "p", 3, &[]).await;
    let env = TestEnv::new(&config(&bucket.name, &s3, "wrong-secret", "")).await;
    let worker = env.start_worker();
    let out = env.ferry(&[
        "--json", "files", "migrate", "--from", "src:p", "--to", "dst", "--wait",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        summary["error"]
            .as_str()
            .unwrap()
            .contains("refused the credentials"),
        "{summary}"
    );
    assert!(!summary["error"].as_str().unwrap().contains("wrong-secret"));
    assert_eq!(summary["copied"], 0);
    assert!(copied_rows(&env).await.is_empty());
    let id: Uuid = summary["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(env.job_record(id).await.unwrap().attempts, 1);
    // Bad input is refused before anything is enqueued.
    for (args, says) in [
        (&["--from", "nope", "--to", "dst"][..], "not in [stores]"),
        (
            &[
                "--from",
                "src",
                "--to",
                "dst",
                "--rewrite",
                "users;drop.url",
            ],
            "letters, digits",
        ),
        (
            &[
                "--from",
                "src",
                "--to",
                "dst",
                "--rewrite",
                "public.nope.url",
            ],
            "no column",
        ),
    ] {
        let out = env.ferry(&[&["files", "migrate"][..], args].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }

    worker.stop().await;
    env.cleanup().await;
    bucket.remove().await;

    // The source refuses the key (s3s-fs checks signatures; moto takes any key).
    let origin = S3Server::start("origin");
    std::fs::create_dir_all(origin.dir.join("origin/backups")).unwrap();
    std::fs::write(origin.dir.join("origin/backups/a.bin"), b"a").unwrap();
    let env = TestEnv::new(&format!(
        "{}{}",
        origin.store_toml("src", "origin", "wrong-secret"),
        s3.store_toml("dst", "media", SECRET_KEY)
    ))
    .await;
    let worker = env.start_worker();
    let out = env.ferry(&[
        "--json", "files", "migrate", "--from", "src", "--to", "dst", "--wait",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = summary["error"].as_str().unwrap();
    assert!(error.contains("refused the credentials"), "{summary}");
    assert!(error.contains("s3://origin"), "names the store: {error}");
    assert!(!error.contains("wrong-secret"));
    assert_eq!(summary["copied"], 0);
    let id: Uuid = summary["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(env.job_record(id).await.unwrap().attempts, 1);

    worker.stop().await;
    env.cleanup().await;
}

/// Every object the ledger calls copied is at the destination, whole.
async fn ledger_is_true(env: &TestEnv, s3: &S3Server) {
    let client = dest_client(s3);
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT key, size FROM files_objects WHERE state = 'copied'")
            .fetch_all(env.record.pool())
            .await
            .unwrap();
    for (key, size) in rows {
        let path = Path::parse(format!("site/moved/{key}")).unwrap();
        let head = client.head(&path).await;
        assert_eq!(
            head.map(|m| m.size as i64).ok(),
            Some(size),
            "ledger says {key} was copied, the destination disagrees"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_destination_is_retried_and_the_ledger_stays_true() {
    let bucket = moto::Bucket::create(&bucket_name());
    let mut s3 = S3Server::start("media");
    let env = TestEnv::new(&config(&bucket.name, &s3, SECRET_KEY, "")).await;
    let objects = fill(&bucket, "f", 60, &[11 * MIB, 11 * MIB, 11 * MIB]).await;
    let worker = env.start_worker();
    let id = env
        .enqueue(
            "files.migrate",
            r#"{"from": "src:f", "to": "dst:moved", "transfers": 1}"#,
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while copied_rows(&env).await.len() < 10 {
        assert!(Instant::now() < deadline, "the migration did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s3.kill();
    let job = env
        .wait_for(id, Duration::from_secs(60), |j| {
            j.state == JobState::Retrying || j.state.is_final()
        })
        .await;
    assert_eq!(job.state, JobState::Retrying, "{job:?}");
    let error = job.last_error.clone().unwrap_or_default();
    assert!(error.contains("cannot"), "{error}");
    s3.restart();
    ledger_is_true(&env, &s3).await;
    let job = env
        .wait_for(id, Duration::from_secs(90), |j| j.state.is_final())
        .await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_copied(&s3, "f", &objects).await;
    ledger_is_true(&env, &s3).await;
    worker.stop().await;
    env.cleanup().await;
    bucket.remove().await;
}

/// A destination whose disk fills up: s3s-fs over its own 8 MiB tmpfs (in a user and mount
/// namespace, so it runs without root; where it cannot, the test fails instead of skipping).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_destination_fails_retryably_and_reports_only_what_is_there() {
    let mut s3 = S3Server::start_on_tmpfs("media", "8m");
    let bucket = moto::Bucket::create(&bucket_name());
    let env = TestEnv::new(&config(&bucket.name, &s3, SECRET_KEY, "max_attempts = 2")).await;
    fill(&bucket, "full", 1, &[]).await;
    for i in 0..5 {
        bucket
            .put(
                &format!("full/big-{i}.bin"),
                random_bytes(3 * MIB),
                attributes(i),
                false,
            )
            .await;
    }
    let worker = env.start_worker();
    let out = env.ferry(&[
        "--json",
        "files",
        "migrate",
        "--from",
        "src:full",
        "--to",
        "dst:moved",
        "--wait",
    ]);
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{summary}");
    let id: Uuid = summary["id"].as_str().unwrap().parse().unwrap();
    let job = env.job_record(id).await.unwrap();
    assert_eq!(
        (job.state, job.attempts),
        (JobState::Dead, 2),
        "retried until the last attempt: {job:?}"
    );
    let error = job.last_error.clone().unwrap_or_default();
    assert!(error.contains("cannot write"), "{error}");
    ledger_is_true(&env, &s3).await;
    // 8 MiB hold the empty object and at most two of the 3 MiB ones.
    let copied = copied_rows(&env).await.len();
    assert!(copied <= 3, "{copied} objects cannot fit in 8 MiB");
    worker.stop().await;
    s3.kill();
    env.cleanup().await;
    bucket.remove().await;
}

/// A plain HTTP server over s3s-fs's directory: the destination's public_url, served the way
/// a CDN or a public bucket would serve it. Killed when dropped.
struct Http(std::process::Child, u16);

impl Http {
    fn serve(dir: &std::path::Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "http.server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self(child, port)
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ferry files migrate --from src:u --to dst:moved --rewrite COLUMN --check-http --wait`:
/// its exit code and summary.
fn migrate_checked(env: &TestEnv, column: &str) -> (Option<i32>, Value) {
    let out = env.ferry(&[
        "--json",
        "files",
        "migrate",
        "--from",
        "src:u",
        "--to",
        "dst:moved",
        "--rewrite",
        column,
        "--check-http",
        "--wait",
    ]);
    (
        out.status.code(),
        serde_json::from_slice(&out.stdout).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_urls_fail_the_run_and_rollback_restores_them() {
    let bucket = moto::Bucket::create(&bucket_name());
    let s3 = S3Server::start("media");
    let http = Http::serve(&s3.dir);
    let served = format!("http://127.0.0.1:{}/media/site", http.1);
    let text = config(&bucket.name, &s3, SECRET_KEY, "").replace(
        &format!("public_url = \"{}/media/site\"", s3.endpoint()),
        &format!("public_url = \"{served}\""),
    );
    let env = TestEnv::new(&text).await;
    let objects = fill(&bucket, "u", 5, &[]).await;
    let src_base = format!(
        "https://project.supabase.co/storage/v1/object/public/{}",
        bucket.name
    );
    env.sql("CREATE TABLE docs (tenant int, id int, file text, PRIMARY KEY (tenant, id))")
        .await;
    for (i, o) in objects.iter().enumerate() {
        let url = url_of(&src_base, &o.key);
        env.sql(&format!(
            "INSERT INTO docs VALUES ({}, {i}, '{url}')",
            i % 2
        ))
        .await;
    }
    // A URL whose object was never in the source bucket.
    env.sql(&format!(
        "INSERT INTO docs VALUES (9, 9, '{src_base}/u/missing.png')"
    ))
    .await;
    let column = format!("{}.docs.file", env.app_schema());
    let before = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
        "SELECT string_agg(file, ' ' ORDER BY tenant, id) FROM {}.docs",
        env.app_schema()
    )))
    .fetch_one(env.record.pool())
    .await
    .unwrap();

    let worker = env.start_worker();
    let (code, summary) = migrate_checked(&env, &column);
    assert_eq!(code, Some(1), "{summary}");
    assert_eq!(summary["copied"], objects.len(), "{summary}");
    assert_eq!(summary["rewritten"], objects.len() + 1);
    assert_eq!(summary["checked"], objects.len() + 1);
    assert_eq!(summary["unreachable"], 1, "{summary}");
    let sample = summary["unreachable_sample"][0].as_str().unwrap();
    assert!(sample.contains("missing.png"), "{sample}");
    let error = summary["error"].as_str().unwrap();
    assert!(error.contains("ferry files rollback"), "{error}");

    // Served objects answer over HTTP; stop the server and every one fails the check.
    drop(http);
    let out = env.ferry(&[
        "--json",
        "files",
        "rollback",
        summary["id"].as_str().unwrap(),
    ]);
    let back = json_of(&out);
    assert_eq!(back[&column]["restored"], objects.len() + 1, "{back}");
    let after = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
        "SELECT string_agg(file, ' ' ORDER BY tenant, id) FROM {}.docs",
        env.app_schema()
    )))
    .fetch_one(env.record.pool())
    .await
    .unwrap();
    assert_eq!(after, before);

    // Rewritten again with nothing serving the public URL: every URL is unreachable.
    let (code, summary) = migrate_checked(&env, &column);
    assert_eq!(code, Some(1), "{summary}");
    assert_eq!(summary["copied"], 0, "{summary}");
    assert_eq!(summary["unreachable"], objects.len() + 1, "{summary}");

    worker.stop().await;
    env.cleanup().await;
    bucket.remove().await;
}

/// A source whose ETag looks like an MD5 but is none (a KMS-encrypted bucket, some S3 clones):
/// the destination's ETag differs, so the object is copied once more with its MD5 computed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_etag_that_is_no_md5_is_noticed_and_copied_again() {
    let origin = S3Server::start("origin");
    let s3 = S3Server::start("media");
    let data = random_bytes(300_000);
    std::fs::create_dir_all(origin.dir.join("origin/backups")).unwrap();
    std::fs::write(origin.dir.join("origin/backups/k.bin"), &data).unwrap();
    // s3s-fs keeps an object's ETag in a file beside it, named by the unpadded base64 of
    // bucket ("origin") and key ("backups/k.bin"), and serves it as is: here an MD5, but of
    // no bytes of this object.
    std::fs::write(
        origin
            .dir
            .join(".bucket-b3JpZ2lu.object-YmFja3Vwcy9rLmJpbg.internal.json"),
        r#"{"e_tag":"0123456789abcdef0123456789abcdef"}"#,
    )
    .unwrap();
    let env = TestEnv::new(&format!(
        "[kinds.\"files.migrate\"]\nbackoff_base = \"300ms\"\nbackoff_cap = \"1s\"\n{}{}",
        origin.store_toml("src", "origin", SECRET_KEY),
        s3.store_toml("dst", "media", SECRET_KEY)
    ))
    .await;
    let worker = env.start_worker();
    let out = json_of(&env.ferry(&[
        "--json", "files", "migrate", "--from", "src", "--to", "dst", "--wait",
    ]));
    assert_eq!(out["state"], "succeeded", "{out}");
    assert_eq!(out["copied"], 1, "{out}");
    let id: Uuid = out["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(env.job_record(id).await.unwrap().attempts, 1, "{out}");
    assert_eq!(
        std::fs::read(s3.dir.join("media/backups/k.bin")).unwrap(),
        data
    );
    let (sha256, dest_etag): (String, String) =
        sqlx::query_as("SELECT sha256, dest_etag FROM files_objects WHERE key = 'k.bin'")
            .fetch_one(env.record.pool())
            .await
            .unwrap();
    assert_eq!(sha256, format!("{:x}", Sha256::digest(&data)));
    assert_eq!(
        dest_etag.trim_matches('"'),
        <md5::Md5 as md5::Digest>::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    worker.stop().await;
    env.cleanup().await;
}

/// A TCP proxy to `upstream` that passes the server's bytes at about `per_sec` bytes a second,
/// as a slow link would.
async fn slow_proxy(upstream: u16, per_sec: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    return;
                };
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                let up = async {
                    let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
                    let _ = to_server.shutdown().await;
                };
                let down = async {
                    let mut buf = vec![0u8; per_sec / 20];
                    while let Ok(n @ 1..) = from_server.read(&mut buf).await {
                        if to_client.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    let _ = to_client.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    port
}

/// Downloads that take longer than the store's request timeout still finish: a download is
/// limited by stalls, not by its length, and a single PUT gets time for its size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_longer_than_the_request_timeout_finish() {
    let origin = S3Server::start("origin");
    let s3 = S3Server::start("media");
    std::fs::create_dir_all(origin.dir.join("origin/backups")).unwrap();
    // One streamed in a single PUT, one in parts (threshold 5 MiB).
    let objects = [
        ("single.bin", random_bytes(4 * MIB)),
        ("parts.bin", random_bytes(6 * MIB)),
    ];
    for (key, data) in &objects {
        std::fs::write(origin.dir.join("origin/backups").join(key), data).unwrap();
    }
    // 2 MB/s: each object takes two seconds or more, twice the timeout.
    let port = slow_proxy(origin.port, 2_000_000).await;
    let env = TestEnv::new(&format!(
        "[files]\nmultipart_threshold_mib = 5\npart_size_mib = 5\n\
         [kinds.\"files.migrate\"]\nbackoff_base = \"300ms\"\nbackoff_cap = \"1s\"\n\
         [stores.src]\nurl = \"s3://origin/backups\"\nendpoint = \"http://127.0.0.1:{port}\"\n\
         access_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{SECRET_KEY}\"\n\
         request_timeout = \"1s\"\n{}",
        s3.store_toml("dst", "media", SECRET_KEY)
    ))
    .await;
    let worker = env.start_worker();
    let started = Instant::now();
    let out = json_of(&env.ferry(&[
        "--json", "files", "migrate", "--from", "src", "--to", "dst", "--wait",
    ]));
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "the link was not slow"
    );
    assert_eq!(out["state"], "succeeded", "{out}");
    assert_eq!(out["copied"], 2, "{out}");
    let id: Uuid = out["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(env.job_record(id).await.unwrap().attempts, 1, "{out}");
    for (key, data) in &objects {
        let copied = std::fs::read(s3.dir.join("media/backups").join(key)).unwrap();
        assert!(copied == data[..], "{key} differs");
    }
    worker.stop().await;
    env.cleanup().await;
}

/// Objects under `dir` of the s3s-fs server, as paths relative to it.
fn objects_under(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().is_dir() {
                todo.push(e.path());
            } else {
                found.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_source_and_destination_are_refused_before_any_copy() {
    let s3 = S3Server::start("media");
    std::fs::create_dir_all(s3.dir.join("mirror")).unwrap();
    for name in ["a.bin", "b/c.bin"] {
        let path = s3.dir.join("media/site").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, name).unwrap();
    }
    let store = |name: &str, url: &str, public: &str| {
        format!(
            "[stores.{name}]\nurl = \"{url}\"\nendpoint = \"{}\"\naccess_key_id = \"{ACCESS_KEY}\"\n\
             secret_access_key = \"{SECRET_KEY}\"\npublic_url = \"{public}\"\n",
            s3.endpoint()
        )
    };
    let env = TestEnv::new(
        &[
            store("site", "s3://media/site", "https://cdn.example.com/site"),
            // Inside `site` in the same bucket.
            store("inner", "s3://media/site/moved", "https://new.example.com"),
            // Another bucket, but served under `site`'s public URL.
            store(
                "mirror",
                "s3://mirror",
                "https://CDN.example.com/site/mirror/",
            ),
        ]
        .concat(),
    )
    .await;
    let originals = objects_under(&s3.dir.join("media"));
    assert_eq!(originals.len(), 2, "{originals:?}");

    // The CLI refuses before enqueueing; the message names both and what to do.
    for (from, to, says) in [
        (
            "site",
            "inner",
            "the destination \"site/moved\" lies inside the source \"site\"",
        ),
        (
            "inner",
            "site",
            "the source \"site/moved\" lies inside the destination \"site\"",
        ),
        ("site:b", "site:b", "both are \"site/b\""),
        ("mirror", "site", "public URLs nest"),
    ] {
        let out = env.ferry(&["files", "migrate", "--from", from, "--to", to]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{from} -> {to}: {err}");
        assert!(err.contains(says), "{from} -> {to}: {err}");
        assert!(
            err.contains(&format!("{from:?}")) && err.contains(&format!("{to:?}")),
            "{err}"
        );
        assert!(
            err.contains("Choose a destination outside the source"),
            "{err}"
        );
    }
    // So does any enqueue of the kind (the API's path: the registry checks the arguments).
    let out = env.ferry(&[
        "enqueue",
        "files.migrate",
        "--args",
        r#"{"from": "site", "to": "mirror"}"#,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("public URLs nest"),
        "{}",
        stderr(&out)
    );
    // Prefixes that only share letters are apart.
    assert!(
        env.registry
            .get("files.migrate")
            .unwrap()
            .validate(r#"{"from": "site:b", "to": "site:bb"}"#)
            .is_ok()
    );
    assert_eq!(env.count("files.migrate", "waiting").await, 0);

    // Jobs enqueued under an earlier config reach the worker: refused when they start.
    let worker = env.start_worker();
    for to in ["inner", "mirror"] {
        let args = format!(r#"{{"from": "site", "to": "{to}"}}"#);
        let job = NewJob::new("files.migrate", &args, 5);
        let id = env.queue.enqueue("files", &[job]).await.unwrap()[0].0;
        let job = env
            .wait_for(id, Duration::from_secs(60), |j| j.state.is_final())
            .await;
        assert_eq!((job.state, job.attempts), (JobState::Dead, 1), "{job:?}");
        let error = job.last_error.unwrap_or_default();
        assert!(error.contains("overlap"), "{error}");
    }
    worker.stop().await;
    assert!(objects_under(&s3.dir.join("mirror")).is_empty());
    assert_eq!(objects_under(&s3.dir.join("media")), originals);
    assert!(copied_rows(&env).await.is_empty());
    env.cleanup().await;
}

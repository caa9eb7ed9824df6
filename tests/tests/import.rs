//! import against real Postgres and the MongoDB stand-in: a Mongoose-style fixture with a
//! planted fault of every reject class, checked by an independent script
//! (tests/check_import.py), plus re-runs, dry runs, refusals of bad config and a SIGKILL.

use std::{path::PathBuf, process::Command, time::Duration};

use bson::{Bson, DateTime, Decimal128, Document, doc, oid::ObjectId};
use ferry_tests::{TestEnv, database_url, mongodb_uri, signal};

const CONFIG: &str = r#"
[import]
schema = "{schema}"
batch_size = 7
docs_per_chunk = 40
[[import.collection]]
name = "users"
table = "users"
columns = { id = "_id", full_name = "profile.name", organization_id = { path = "org", ref = "organizations" }, created_at = "createdAt" }
[[import.collection]]
name = "organizations"
table = "organizations"
[[import.collection]]
name = "courses"
table = "courses"
columns = { instructor_id = { path = "instructor", ref = "users" }, starts_on = "startsOn" }
[[import.collection.child]]
path = "lessons"
table = "lessons"
parent = "course_id"
columns = { position = "$index", title = "title", duration_min = "durationMin" }
[[import.collection]]
name = "enrollments"
table = "enrollments"
columns = { user_id = { path = "user", ref = "users" }, course_id = { path = "course", ref = "courses" }, enrolled_at = "enrolledAt" }
"#;

/// Ids ordered like their numbers: collection tag in byte 4, number in the last bytes.
fn oid(tag: u8, n: u32) -> ObjectId {
    let mut b = [0u8; 12];
    b[0] = 0x65;
    b[4] = tag;
    b[8..].copy_from_slice(&n.to_be_bytes());
    ObjectId::from_bytes(b)
}

fn user(n: u32) -> ObjectId {
    oid(2, n)
}
fn org(n: u32) -> ObjectId {
    oid(1, n)
}
fn course(n: u32) -> ObjectId {
    oid(3, n)
}
fn enrollment(n: u32) -> ObjectId {
    oid(4, n)
}

fn dec(s: &str) -> Bson {
    Bson::Decimal128(s.parse::<Decimal128>().unwrap())
}

fn day(n: u32) -> DateTime {
    DateTime::from_millis(1_700_000_000_000 + i64::from(n) * 86_400_000 + i64::from(n % 997) * 1000)
}

fn midnight(n: u32) -> DateTime {
    DateTime::from_millis((1_700_000_000_000 / 86_400_000 + i64::from(n)) * 86_400_000)
}

/// Planted faults: (collection, id, what the reason must mention).
fn faults() -> Vec<(&'static str, ObjectId, &'static str)> {
    vec![
        ("organizations", org(100), "name is missing or null"),
        ("users", user(10_001), "email is missing or null"),
        ("users", user(10_002), "is a string"),
        ("users", user(10_003), "\"superuser\" is not a value"),
        ("users", user(10_005), "would be rounded"),
        ("users", user(10_006), "does not exist"),
        ("users", user(10_007), "was rejected"),
        ("courses", course(20_001), "lessons.1"),
        ("courses", course(20_002), "does not exist"),
        ("courses", course(20_003), "was rejected"),
        ("courses", course(20_004), "time of day"),
        ("enrollments", enrollment(30_001), "was rejected"),
    ]
}

/// `users` normal users (and a course and an enrollment for every few), then the faults.
async fn load_fixture(env: &TestEnv, users: u32) {
    env.sql(&std::fs::read_to_string(fixture_path("fixtures/import.sql")).unwrap())
        .await;
    let mongo = env.mongo().await;
    let mut orgs: Vec<Document> = (1..=5)
        .map(|n| {
            doc! {"_id": org(n), "name": format!("Org {n}"), "plan": if n % 2 == 0 { Bson::String("pro".into()) } else { Bson::Null },
                  "settings": {"theme": "dark", "limits": {"seats": n as i32 * 10, "ratio": 0.5}}, "createdAt": day(n)}
        })
        .collect();
    orgs.push(doc! {"_id": org(100), "plan": "free", "createdAt": day(1)});
    let mut people: Vec<Document> = (1..=users)
        .map(|n| {
            let mut d = doc! {
                "_id": user(n), "email": format!("user{n}@example.com"), "profile": {"name": format!("User {n}"), "bio": "x"},
                "role": if n % 10 == 0 { "instructor" } else { "student" }, "org": org(n % 5 + 1),
                "balance": dec(&format!("{}.{:02}", n, n % 100)), "createdAt": day(n), "__v": 0,
            };
            if n % 3 == 0 {
                d.insert("tags", vec!["new", "trial \"x\""]);
            }
            // Mongoose stores numbers as doubles unless told otherwise.
            d.insert("logins", if n % 2 == 0 { Bson::Double(f64::from(n % 50)) } else { Bson::Int32((n % 50) as i32) });
            d
        })
        .collect();
    let base = |n: u32| {
        doc! {"_id": user(n), "email": format!("fault{n}@example.com"), "role": "student", "createdAt": day(n), "logins": 1}
    };
    let mut f = base(10_001);
    f.remove("email");
    people.push(f);
    let mut f = base(10_002);
    f.insert("logins", "seven");
    people.push(f);
    let mut f = base(10_003);
    f.insert("role", "superuser");
    people.push(f);
    let mut f = base(10_004);
    f.insert("email", "user1@example.com");
    people.push(f);
    let mut f = base(10_005);
    f.insert("balance", dec("10.555"));
    people.push(f);
    let mut f = base(10_006);
    f.insert("org", org(99));
    people.push(f);
    let mut f = base(10_007);
    f.insert("org", org(100));
    people.push(f);
    let instructors: Vec<u32> = (1..=users).filter(|n| n % 10 == 0).collect();
    let mut courses: Vec<Document> = instructors
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let i = i as u32 + 1;
            let lessons: Vec<Document> = (0..i % 4)
                .map(|l| doc! {"title": format!("Lesson {l}"), "durationMin": 10 + l as i32})
                .collect();
            doc! {"_id": course(i), "title": format!("Course {i}"), "instructor": user(*n), "price": dec("49.90"),
                  "published": i.is_multiple_of(2), "startsOn": midnight(i), "lessons": lessons}
        })
        .collect();
    let first = user(instructors[0]);
    courses.push(
        doc! {"_id": course(20_001), "title": "Bad lesson", "instructor": first, "published": true,
        "lessons": [{"title": "ok", "durationMin": 5}, {"durationMin": 7}]},
    );
    courses.push(doc! {"_id": course(20_002), "title": "Ghost", "instructor": user(99_999), "published": true});
    courses.push(doc! {"_id": course(20_003), "title": "Orphan", "instructor": user(10_001), "published": true});
    courses.push(
        doc! {"_id": course(20_004), "title": "Noon", "instructor": first, "published": true,
        "startsOn": DateTime::from_millis(midnight(3).timestamp_millis() + 13 * 3_600_000)},
    );
    let n_courses = courses.len() as u32 - 4;
    let mut enrollments: Vec<Document> = (1..=users)
        .filter(|n| n % 2 == 1)
        .map(|n| {
            doc! {"_id": enrollment(n), "user": user(n), "course": course(n % n_courses.max(1) + 1),
            "enrolledAt": day(n), "progress": f64::from(n % 100) / 3.0}
        })
        .collect();
    enrollments.push(doc! {"_id": enrollment(30_001), "user": user(3), "course": course(20_003), "enrolledAt": day(1)});
    for (name, docs) in [
        ("organizations", orgs),
        ("users", people),
        ("courses", courses),
        ("enrollments", enrollments),
    ] {
        // Inserted in reverse so the import cannot rely on natural order.
        let docs: Vec<Document> = docs.into_iter().rev().collect();
        for part in docs.chunks(1000) {
            mongo
                .collection::<Document>(name)
                .insert_many(part.to_vec())
                .await
                .unwrap();
        }
    }
}

fn fixture_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The independent check; returns exit code and output.
fn check(env: &TestEnv) -> (i32, String) {
    let out = Command::new("python3")
        .arg(fixture_path("check_import.py"))
        .args(["--pg-url", &database_url(), "--schema", &env.app_schema()])
        .args([
            "--record-schema",
            &env.name,
            "--mongo-uri",
            &mongodb_uri(),
            "--mongo-db",
            &env.name,
        ])
        .output()
        .expect("python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(out: &std::process::Output) -> String {
    let t = text(out);
    assert!(out.status.success(), "exit {:?}: {t}", out.status.code());
    t
}

/// Every row's `xmin` and every reject's time: equal snapshots mean nothing was written.
async fn snapshot(env: &TestEnv) -> String {
    let s = env.app_schema();
    let sql = format!(
        "SELECT concat_ws('|', (SELECT string_agg(id::text || ':' || xmin::text, ',' ORDER BY id) FROM \"{s}\".organizations),
           (SELECT string_agg(id::text || ':' || xmin::text, ',' ORDER BY id) FROM \"{s}\".users),
           (SELECT string_agg(id::text || ':' || xmin::text, ',' ORDER BY id) FROM \"{s}\".courses),
           (SELECT string_agg(id::text || ':' || xmin::text, ',' ORDER BY id) FROM \"{s}\".lessons),
           (SELECT string_agg(id::text || ':' || xmin::text, ',' ORDER BY id) FROM \"{s}\".enrollments),
           (SELECT string_agg(source_id || ':' || at::text, ',' ORDER BY source_id) FROM import_rejects))"
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(env.record.pool())
        .await
        .unwrap()
}

async fn reject_reason(env: &TestEnv, collection: &str, id: &ObjectId) -> Option<String> {
    sqlx::query_scalar("SELECT reason FROM import_rejects WHERE collection = $1 AND source_id = $2")
        .bind(collection)
        .bind(id.to_hex())
        .fetch_optional(env.record.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_document_becomes_one_equal_row_or_one_reject() {
    let env = TestEnv::new(CONFIG).await;
    load_fixture(&env, 120).await;

    // The plan names the order, the sources and the column with none.
    let plan = ok(&env.ferry(&["import", "plan"]));
    let pos = |s: &str| {
        plan.find(s)
            .unwrap_or_else(|| panic!("{s} not in plan: {plan}"))
    };
    assert!(pos("organizations") < pos("2. users"), "{plan}");
    assert!(
        plan.contains("profile.name")
            && plan.contains("imported_note")
            && plan.contains("snake_case"),
        "{plan}"
    );

    // A dry run reports and writes nothing.
    let before = snapshot(&env).await;
    let dry = ok(&env.ferry(&["--json", "import", "run", "--dry-run"]));
    let report: serde_json::Value = serde_json::from_str(&dry).unwrap();
    let users = &report["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["collection"] == "users")
        .unwrap()["would"];
    assert_eq!(users["read"], 127, "{report:#}");
    assert!(
        users["inserted"].as_i64().unwrap() >= 120 && users["rejected"].as_i64().unwrap() >= 5,
        "{report:#}"
    );
    assert_eq!(snapshot(&env).await, before, "the dry run wrote something");

    let worker = env.start_worker();
    ok(&env.ferry(&["import", "run", "--wait"]));
    let (code, report) = check(&env);
    assert_eq!(code, 0, "{report}");
    for (collection, id, why) in faults() {
        let reason = reject_reason(&env, collection, &id).await;
        assert!(
            reason.as_deref().is_some_and(|r| r.contains(why)),
            "{collection} {id}: expected a reject mentioning {why:?}, got {reason:?}"
        );
    }
    // The duplicate email: whichever of the two came second is the reject.
    let dup = [user(1), user(10_004)];
    let mut dup_rejects = Vec::new();
    for id in &dup {
        dup_rejects.extend(reject_reason(&env, "users", id).await);
    }
    assert_eq!(dup_rejects.len(), 1, "{dup_rejects:?}");
    assert!(
        dup_rejects[0].contains("users_email_key"),
        "{dup_rejects:?}"
    );
    ok(&env.ferry(&["import", "verify", "--deep"]));

    // A second run writes nothing: no row and no reject changes.
    let first = snapshot(&env).await;
    ok(&env.ferry(&["import", "run", "--wait"]));
    assert_eq!(
        snapshot(&env).await,
        first,
        "a re-run changed rows or rejects"
    );

    // Fixing a rejected parent imports it, then what depended on it, and clears the rejects.
    env.mongo()
        .await
        .collection::<Document>("users")
        .update_one(
            doc! {"_id": user(10_001)},
            doc! {"$set": {"email": "fixed@example.com"}},
        )
        .await
        .unwrap();
    ok(&env.ferry(&["import", "run", "--wait"]));
    for (c, id) in [
        ("users", user(10_001)),
        ("courses", course(20_003)),
        ("enrollments", enrollment(30_001)),
    ] {
        assert_eq!(
            reject_reason(&env, c, &id).await,
            None,
            "{c} {id} still rejected"
        );
    }
    let (code, report) = check(&env);
    assert_eq!(code, 0, "{report}");

    // verify --deep names a row changed behind ferry's back.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE \"{}\".users SET logins = logins + 1 WHERE id = '{}'",
        env.app_schema(),
        ferry_jobs::import::ids::object_id_uuid(&user(7))
    )))
    .execute(env.record.pool())
    .await
    .unwrap();
    let out = env.ferry(&["import", "verify", "--deep"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(&user(7).to_hex()), "{}", text(&out));

    let rejects = ok(&env.ferry(&["--json", "import", "rejects", "--collection", "courses"]));
    let rejects: Vec<serde_json::Value> = serde_json::from_str(&rejects).unwrap();
    assert_eq!(rejects.len(), 3, "{rejects:#?}");
    assert!(
        rejects
            .iter()
            .all(|r| r["document"]["_id"]["$oid"] == r["source_id"] && r["reason"].is_string())
    );

    worker.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_is_refused_before_anything_is_written() {
    let env = TestEnv::new(CONFIG).await;
    load_fixture(&env, 12).await;
    let cases = [
        (
            "name = \"enrollments\"",
            "name = \"enrolments\"",
            "(enrolments).name",
            "no collection",
        ),
        (
            "table = \"courses\"",
            "table = \"course\"",
            "(courses).table",
            "does not exist",
        ),
        (
            "starts_on = \"startsOn\"",
            "starts = \"startsOn\"",
            "columns.starts",
            "has no column",
        ),
        (
            "\"profile.name\"",
            "\"profile.nmae\"",
            "columns.full_name",
            "occurs in none",
        ),
        (
            "ref = \"users\" }, starts_on",
            "ref = \"teachers\" }, starts_on",
            "instructor_id.ref",
            "not a configured collection",
        ),
    ];
    for (from, to, key, problem) in cases {
        assert!(CONFIG.contains(from), "{from}");
        std::fs::write(
            &env.config_path,
            std::fs::read_to_string(&env.config_path)
                .unwrap()
                .replacen(from, to, 1),
        )
        .unwrap();
        for args in [&["import", "plan"][..], &["import", "run", "--wait"]] {
            let out = env.ferry(args);
            let t = text(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?} {to}: {t}");
            assert!(
                t.contains(key) && t.contains(problem) && t.contains("fix"),
                "{to}: {t}"
            );
        }
        std::fs::write(
            &env.config_path,
            std::fs::read_to_string(&env.config_path)
                .unwrap()
                .replacen(to, from, 1),
        )
        .unwrap();
    }
    let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT (SELECT count(*) FROM \"{s}\".users) + (SELECT count(*) FROM \"{s}\".organizations) + (SELECT count(*) FROM import_rejects)",
        s = env.app_schema()
    )))
    .fetch_one(env.record.pool())
    .await
    .unwrap();
    assert_eq!(rows, 0);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_import_is_resumed_by_another() {
    let env = TestEnv::new(
        &CONFIG
            .replace("batch_size = 7", "batch_size = 50")
            .replace("docs_per_chunk = 40", "docs_per_chunk = 400"),
    )
    .await;
    load_fixture(&env, 3000).await;
    let mut first = env.spawn_worker_process("first");
    let out = env.ferry(&["--json", "import", "run"]);
    ok(&out);
    // stdout only: ok() joins stderr, where a log line would break the JSON.
    let id: uuid::Uuid = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // Kill once some documents, but not all, are in.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let done = env.record.run(id).await.unwrap().map_or(0, |r| r.done);
        if done >= 600 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the import made no progress"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(&first, "KILL");
    first.wait().unwrap();
    let run = env.record.run(id).await.unwrap().unwrap();
    assert!(
        run.done < run.total.unwrap(),
        "killed too late to test a resume: {run:?}"
    );
    let _second = env.spawn_worker_process("second");
    let job = env
        .wait_for(id, Duration::from_secs(300), |j| j.state.is_final())
        .await;
    assert_eq!(job.state, ferry_queue::JobState::Succeeded, "{job:?}");
    let (code, report) = check(&env);
    assert_eq!(code, 0, "{report}");
    ok(&env.ferry(&["import", "verify"]));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_starts_an_import_for_admins_only_and_reports_counts() {
    use ferry_tests::api::{ADMIN_TOKEN, API_CONFIG, ApiServer, ENQUEUE_TOKEN};
    let env = TestEnv::new(&format!("{API_CONFIG}{CONFIG}")).await;
    load_fixture(&env, 30).await;
    let api = ApiServer::start(env.config.clone()).await;
    let http = reqwest::Client::new();
    let post = |token: &'static str| {
        http.post(api.at("/v1/import/run"))
            .bearer_auth(token)
            .json(&serde_json::json!({}))
            .send()
    };
    assert_eq!(post(ENQUEUE_TOKEN).await.unwrap().status(), 403);
    let r = http
        .post(api.at("/v1/import/run"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"collections": ["nosuch"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "{}", r.text().await.unwrap());
    let worker = env.start_worker();
    let r = post(ADMIN_TOKEN).await.unwrap();
    assert_eq!(r.status(), 202);
    let id: uuid::Uuid = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let job = env
        .wait_for(id, Duration::from_secs(120), |j| j.state.is_final())
        .await;
    assert_eq!(job.state, ferry_queue::JobState::Succeeded, "{job:?}");
    let status: Vec<serde_json::Value> = http
        .get(api.at("/v1/import/status"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status.len(), 4, "{status:?}");
    for s in &status {
        assert_eq!(
            s["imported"].as_i64().unwrap() + s["rejected"].as_i64().unwrap(),
            s["source"].as_i64().unwrap(),
            "{s}"
        );
    }
    assert!(status.iter().any(|s| s["rejected"].as_i64() > Some(0)));
    worker.stop().await;
    api.stop().await;
    env.cleanup().await;
}

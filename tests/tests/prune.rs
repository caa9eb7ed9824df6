//! Retention of ferry's own record: `ferry prune --dry-run` counts and deletes nothing,
//! `ferry prune` deletes only rows past their retention (in small batches) and never the
//! newest verified backup's record, and the scheduler's built-in maintenance runs it.

use std::time::{Duration, Instant};

use ferry_tests::TestEnv;
use uuid::Uuid;

async fn dead_job(env: &TestEnv, days_ago: i32) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO dead_jobs (id, queue, kind, args, attempts, max_attempts, errors, last_error,
             enqueued_at, died_at, alerted_at)
         VALUES ($1, 'default', 'fail', '{}', 1, 1, '[]', 'boom',
             now() - make_interval(days => $2), now() - make_interval(days => $2), now())",
    )
    .bind(id)
    .bind(days_ago)
    .execute(env.record.pool())
    .await
    .unwrap();
    id
}

async fn backup(env: &TestEnv, verified: bool, created_days: i32, deleted_days: i32) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO backups (id, job_id, database, store, object_key, bytes, sha256, compression,
             server_version, pg_dump_version, started_at, created_at, duration_ms, row_counts,
             verified_at, deleted_at)
         VALUES ($1, $1, 'app', 'file:///tmp', 'k', 1, 'x', 'zstd', '16', '16',
             now() - make_interval(days => $2), now() - make_interval(days => $2), 1, '{}',
             CASE WHEN $3 THEN now() - make_interval(days => $2) END,
             now() - make_interval(days => $4))",
    )
    .bind(id)
    .bind(created_days)
    .bind(verified)
    .bind(deleted_days)
    .execute(env.record.pool())
    .await
    .unwrap();
    id
}

async fn ids(env: &TestEnv, sql: &str) -> Vec<Uuid> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(env.record.pool())
        .await
        .unwrap()
}

async fn count(env: &TestEnv, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(env.record.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn prune_deletes_only_rows_past_retention_and_the_scheduler_runs_it_daily() {
    // Batches of 2 rows, so the five old dead jobs take three statements.
    let env = TestEnv::new("[retention]\nbatch = 2\nschedule = \"*/2 * * * * *\"\n").await;
    let mut old_dead = Vec::new();
    for _ in 0..5 {
        old_dead.push(dead_job(&env, 40).await);
    }
    let recent_dead = dead_job(&env, 1).await;
    // The only verified backup, pruned long ago, is still the newest verified: kept.
    let newest_verified = backup(&env, true, 500, 400).await;
    let old_unverified = backup(&env, false, 450, 400).await;
    let recently_deleted = backup(&env, false, 20, 10).await;
    let live = backup(&env, false, 2, 0).await;
    sqlx::query("UPDATE backups SET deleted_at = NULL WHERE id = $1")
        .bind(live)
        .execute(env.record.pool())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO audit_log (at, actor, action) VALUES
             (now() - interval '400 days', 'cli:old', 'x'), (now(), 'cli:new', 'x')",
    )
    .execute(env.record.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO schedule_fires (schedule, fire_time, job_id, late, claimed_by, claimed_at)
         VALUES ('gone', now() - interval '40 days', gen_random_uuid(), false, 'x', now()),
                ('gone', now() - interval '35 days', gen_random_uuid(), false, 'x', now())",
    )
    .execute(env.record.pool())
    .await
    .unwrap();

    // Runs (30 days), deliveries (90 days), alerts (90 days): per table, the row past its
    // retention goes and the ones it must keep stay: a recent one, one still running or
    // queued (it stops a second send), a pending alert.
    sqlx::raw_sql(
        "INSERT INTO runs (id, kind, args, state, started_at, heartbeat_at, finished_at) VALUES
             ('00000000-0000-0000-0000-0000000000a1', 'noop', '{}', 'succeeded',
              now() - interval '41 days', now() - interval '40 days', now() - interval '40 days'),
             ('00000000-0000-0000-0000-0000000000a2', 'noop', '{}', 'succeeded',
              now() - interval '2 days', now() - interval '1 day', now() - interval '1 day'),
             ('00000000-0000-0000-0000-0000000000a3', 'noop', '{}', 'running',
              now() - interval '41 days', now() - interval '40 days', NULL);
         INSERT INTO notify_deliveries (key, job_id, template, state, created_at, updated_at) VALUES
             ('old-sent', gen_random_uuid(), 't', 'sent', now() - interval '100 days', now() - interval '100 days'),
             ('new-sent', gen_random_uuid(), 't', 'sent', now() - interval '80 days', now() - interval '80 days'),
             ('old-queued', gen_random_uuid(), 't', 'queued', now() - interval '100 days', now() - interval '100 days');
         INSERT INTO alerts (raised_at, topic, subject, title, message, hint, state) VALUES
             (now() - interval '100 days', 'job.dead', 'old', 't', 'm', 'h', 'sent'),
             (now() - interval '80 days', 'job.dead', 'new', 't', 'm', 'h', 'sent'),
             (now() - interval '100 days', 'job.dead', 'pending', 't', 'm', 'h', 'pending')",
    )
    .execute(env.record.pool())
    .await
    .unwrap();

    let out = env.ferry(&["--json", "prune", "--dry-run"]);
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = |table: &str| {
        report["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == table)
            .unwrap_or_else(|| panic!("{table} missing: {report}"))["rows"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        [
            rows("dead_jobs"),
            rows("backups"),
            rows("audit_log"),
            rows("schedule_fires"),
            rows("runs"),
            rows("notify_deliveries"),
            rows("alerts"),
        ],
        [5, 1, 1, 1, 1, 1, 1],
        "{report}"
    );
    assert_eq!(
        count(&env, "SELECT count(*) FROM dead_jobs").await,
        6,
        "a dry run deletes nothing"
    );

    let out = env.ferry(&["prune"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("dead_jobs") && text.contains("deleted"),
        "{text}"
    );
    assert_eq!(
        ids(&env, "SELECT id FROM dead_jobs").await,
        vec![recent_dead]
    );
    let mut kept = ids(&env, "SELECT id FROM backups ORDER BY id").await;
    kept.sort();
    let mut want = vec![newest_verified, recently_deleted, live];
    want.sort();
    assert_eq!(
        kept, want,
        "old unverified {old_unverified} goes, the rest stay"
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_log WHERE actor <> 'cli:old' AND action = 'x'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_log WHERE actor = 'cli:old'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM schedule_fires WHERE schedule = 'gone'"
        )
        .await,
        1,
        "the newest fire of a schedule stays"
    );
    assert_eq!(
        (
            ids(&env, "SELECT id FROM runs ORDER BY id").await,
            sqlx::query_scalar::<_, String>("SELECT key FROM notify_deliveries ORDER BY key")
                .fetch_all(env.record.pool())
                .await
                .unwrap(),
            sqlx::query_scalar::<_, String>("SELECT subject FROM alerts ORDER BY subject")
                .fetch_all(env.record.pool())
                .await
                .unwrap(),
        ),
        (
            vec![
                "00000000-0000-0000-0000-0000000000a2".parse().unwrap(),
                "00000000-0000-0000-0000-0000000000a3".parse().unwrap()
            ],
            vec!["new-sent".to_owned(), "old-queued".to_owned()],
            vec!["new".to_owned(), "pending".to_owned()],
        ),
        "runs, deliveries and alerts past retention go; recent, running, queued, pending stay"
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_log WHERE action = 'record.prune'"
        )
        .await,
        1,
        "the prune is audited"
    );

    // The scheduler's built-in maintenance schedule (every 2 s here) prunes on its own.
    let late = dead_job(&env, 31).await;
    let worker = env.start_worker();
    let scheduler = env.start_scheduler();
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&env, "SELECT count(*) FROM dead_jobs").await > 1 {
        assert!(
            Instant::now() < deadline,
            "the scheduled maintenance did not prune dead job {late}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        count(
            &env,
            "SELECT count(*) FROM schedule_fires WHERE schedule = 'ferry-maintenance'"
        )
        .await
            >= 1
    );
    assert_eq!(
        ids(&env, "SELECT id FROM dead_jobs").await,
        vec![recent_dead]
    );
    scheduler.stop().await;
    worker.stop().await;
    env.cleanup().await;
}

//! `ferry-bench listing`: how long `ferry jobs ls` and the dashboard's failed-jobs panel take
//! with a million finished jobs in Redis. Redis is filled directly, by a script that writes
//! what `finish.lua` leaves behind (the job hash, its entry in the state's index, the state
//! counter), because running a million jobs through a worker first would take minutes and
//! measure nothing more; dead jobs are also written to PostgreSQL, where they stay durable.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use uuid::Uuid;

use crate::services::Services;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Succeeded jobs written to Redis.
    #[arg(long, default_value_t = 1_000_000)]
    succeeded: usize,
    /// Dead jobs written to Redis (what retention keeps of them) and to PostgreSQL.
    #[arg(long, default_value_t = 10_000)]
    dead: usize,
    /// Timed calls per command.
    #[arg(long, default_value_t = 20)]
    calls: usize,
    #[command(flatten)]
    services: Services,
}

const SCHEMA: &str = "bench_listing";
/// Jobs per fill script call (Lua unpacks at most about 8,000 values, two per job).
const FILL_BATCH: usize = 2_000;

/// Writes finished jobs as `finish.lua` leaves them. ARGV: base, state, kind, finished_us
/// of the newest, error text, then ids (one µs apart, newest first).
const FILL: &str = r#"
local base, state, kind, newest, err = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local idx = {}
for i = 6, #ARGV do
  local id = ARGV[i]
  local t = newest - (i - 6)
  local tt = string.format('%d', t)
  local enq = string.format('%d', t - 2000)
  redis.call('HSET', base .. ':job:' .. id, 'kind', kind, 'args', '{}', 'attempts', 1, 'max', 10,
    'state', state, 'enq', enq, 'run_at', enq, 'key', '', 'co', '', 'owner', '',
    'started', string.format('%d', t - 1000), 'worker', 'bench-fill', 'finished', tt, 'eid', '',
    'cancel', '')
  if err ~= '' then redis.call('HSET', base .. ':job:' .. id, 'last_error', err) end
  idx[#idx + 1] = tt
  idx[#idx + 1] = id
end
redis.call('ZADD', base .. ':idx:' .. state, unpack(idx))
redis.call('HINCRBY', base .. ':stats', kind .. '|' .. state, #ARGV - 5)
return #ARGV - 5
"#;

pub async fn run(args: Args, ferry: PathBuf) {
    let prefix = crate::queue::prefix();
    let env = Env {
        ferry: &ferry,
        services: &args.services,
        prefix: &prefix,
    };
    crate::sql_exec(
        &args.services.database_url,
        &format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"),
    )
    .await;
    let migrated = env
        .command(&["migrate"])
        .stdout(Stdio::null())
        .status()
        .expect("ferry migrate");
    assert!(migrated.success(), "ferry migrate failed");

    let start = Instant::now();
    let base = format!("{prefix}:{{default}}");
    fill(
        &args.services.redis_url,
        &base,
        "succeeded",
        "noop",
        "",
        args.succeeded,
    )
    .await;
    fill(
        &args.services.redis_url,
        &base,
        "dead",
        "fail",
        "bench: failed on purpose",
        args.dead,
    )
    .await;
    crate::sql_exec(
        &args.services.database_url,
        &format!(
            "INSERT INTO {SCHEMA}.dead_jobs (id, queue, kind, args, attempts, max_attempts, errors, last_error, enqueued_at, died_at)
             SELECT gen_random_uuid(), 'default', 'fail', '{{}}', 1, 1, '[]', 'bench: failed on purpose',
                    now() - i * interval '1 ms', now() - i * interval '1 ms'
             FROM generate_series(1, {}) AS i",
            args.dead
        ),
    )
    .await;
    let held = redis_info(&args.services.redis_url).await;
    eprintln!(
        "listing: wrote {} succeeded and {} dead jobs in {:?}; Redis used_memory {} MB",
        args.succeeded,
        args.dead,
        start.elapsed(),
        held / 1_000_000
    );

    println!(
        "{:<48} {:>6} {:>9} {:>9} {:>9}",
        "call", "calls", "p50 ms", "max ms", "rows"
    );
    for cmd in [
        vec!["jobs", "ls", "--limit", "20"],
        vec!["jobs", "ls", "--limit", "20", "--state", "dead"],
        vec!["jobs", "ls", "--limit", "20", "--state", "succeeded"],
        vec!["jobs", "ls", "--limit", "20", "--kind", "noop"],
        vec![
            "jobs", "ls", "--limit", "20", "--kind", "fail", "--state", "dead",
        ],
        vec!["jobs", "ls", "--limit", "20", "--since", "1h"],
        vec!["stats"],
    ] {
        let mut rows = 0;
        let times = timed(args.calls, || {
            let out = env.command(&cmd).output().expect("run ferry");
            assert!(
                out.status.success(),
                "ferry {} failed: {}",
                cmd.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            rows = String::from_utf8_lossy(&out.stdout).lines().count();
        });
        report(&format!("ferry {}", cmd.join(" ")), &times, rows);
    }
    api(&env, args.calls).await;

    crate::queue::cleanup(&args.services.redis_url, &prefix).await;
    crate::sql_exec(
        &args.services.database_url,
        &format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"),
    )
    .await;
}

struct Env<'a> {
    ferry: &'a Path,
    services: &'a Services,
    prefix: &'a str,
}

impl Env<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.ferry);
        cmd.args(args)
            .env("REDIS_URL", &self.services.redis_url)
            .env("DATABASE_URL", &self.services.database_url)
            .env("FERRY_SCHEMA", SCHEMA)
            .env("FERRY_REDIS_PREFIX", self.prefix)
            .env("FERRY_LOG", "warn")
            .stdin(Stdio::null());
        cmd
    }
}

async fn fill(redis_url: &str, base: &str, state: &str, kind: &str, err: &str, n: usize) {
    let mut conn = crate::redis_conn(redis_url).await;
    let script = redis::Script::new(FILL);
    let newest = ferry_queue::now_us() - 1_000_000;
    let mut written = 0;
    while written < n {
        let batch = FILL_BATCH.min(n - written);
        let mut call = script.prepare_invoke();
        call.arg(base)
            .arg(state)
            .arg(kind)
            .arg(newest - written as i64)
            .arg(err);
        for _ in 0..batch {
            call.arg(Uuid::new_v4().to_string());
        }
        let _: i64 = call.invoke_async(&mut conn).await.expect("fill script");
        written += batch;
    }
}

async fn redis_info(redis_url: &str) -> u64 {
    crate::used_memory(&mut crate::redis_conn(redis_url).await).await
}

/// The dashboard's failed-jobs panel (what its page reloads every 2 s), the jobs API and
/// `/metrics`, each through `ferry serve` over HTTP with a signed-in session.
async fn api(env: &Env<'_>, calls: usize) {
    let token = format!("bench-admin-{:016x}", rand::random::<u64>());
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("port").port()
    };
    let origin = format!("http://127.0.0.1:{port}");
    let mut serve = env
        .command(&["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("FERRY_ADMIN_TOKEN", &token)
        .stdout(Stdio::null())
        .spawn()
        .expect("start ferry serve");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client");
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{origin}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "ferry serve did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let login = http
        .post(format!("{origin}/dashboard/login"))
        .header("origin", &origin)
        .form(&[("token", token.as_str())])
        .send()
        .await
        .expect("sign in");
    assert_eq!(login.status(), 303, "dashboard sign-in refused");
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    for (label, path, auth) in [
        (
            "GET /dashboard/panel/failed",
            "/dashboard/panel/failed",
            false,
        ),
        ("GET /v1/jobs?limit=20", "/v1/jobs?limit=20", true),
        (
            "GET /v1/jobs?limit=20&state=dead",
            "/v1/jobs?limit=20&state=dead",
            true,
        ),
        ("GET /metrics", "/metrics", true),
    ] {
        let mut times = Vec::new();
        let mut rows = 0;
        for _ in 0..calls {
            let mut req = http.get(format!("{origin}{path}"));
            req = if auth {
                req.bearer_auth(&token)
            } else {
                req.header("cookie", &cookie)
            };
            let t = Instant::now();
            let res = req.send().await.expect("request");
            let status = res.status();
            let body = res.text().await.expect("body");
            times.push(t.elapsed());
            assert!(status.is_success(), "{label}: {status}: {body}");
            rows = body.matches("<tr").count() + body.matches("\"id\"").count();
        }
        report(label, &times, rows);
    }
    crate::queue::stop(&mut serve);
}

fn timed(calls: usize, mut call: impl FnMut()) -> Vec<Duration> {
    // One unmeasured call: the first pays for cold caches (page cache of the binary).
    call();
    (0..calls)
        .map(|_| {
            let t = Instant::now();
            call();
            t.elapsed()
        })
        .collect()
}

fn report(label: &str, times: &[Duration], rows: usize) {
    let mut ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let p50 = ms[(ms.len() - 1) / 2];
    let max = ms.last().copied().unwrap_or(0.0);
    println!(
        "{label:<48} {:>6} {p50:>9.1} {max:>9.1} {rows:>9}",
        ms.len()
    );
}

//! The test harness: each test gets its own Postgres schema and Redis key prefix, so tests
//! run in parallel against the shared services and never depend on order.

pub mod api;
pub mod attempts;
pub mod hook;
pub mod smtp;
pub mod sync;

use std::{
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use ferry_config::{Config, Env};
use ferry_jobs::Registry;
use ferry_queue::{JobRecord, NewJob, Queue};
use ferry_record::Record;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub mod moto;
pub mod s3;

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/ferry".into())
}

pub fn mongodb_uri() -> String {
    std::env::var("MONGODB_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Worker timings shortened so crash and shutdown tests take seconds.
const FAST_WORKER: &str =
    "heartbeat = \"300ms\"\nreclaim_after = \"2s\"\nshutdown_grace = \"3s\"\n";

pub struct TestEnv {
    pub name: String,
    pub config: Arc<Config>,
    pub config_path: PathBuf,
    pub queue: Queue,
    pub record: Record,
    pub registry: Arc<Registry>,
}

impl TestEnv {
    /// A fresh schema and prefix; `toml` adds to [`FAST_WORKER`] settings.
    pub async fn new(toml: &str) -> Self {
        Self::on_redis(toml, &redis_url()).await
    }

    /// Like [`TestEnv::new`] on another Redis (a cluster's seed list, say).
    pub async fn on_redis(toml: &str, redis: &str) -> Self {
        Self::create(toml, redis, Env::empty()).await
    }

    /// Like [`TestEnv::new`], with configuration read from `vars` as if they were the
    /// environment (for secrets a config names by variable); child processes do not see them.
    pub async fn with_env(toml: &str, vars: &[(&str, &str)]) -> Self {
        Self::create(toml, &redis_url(), Env::from_pairs(vars.iter().copied())).await
    }

    async fn create(toml: &str, redis: &str, env: Env) -> Self {
        let name = format!("t{:012x}", rand::random::<u64>() >> 16);
        let toml = toml
            .replace("{schema}", &format!("{name}_app"))
            .replace("{database}", &format!("{name}_db"));
        let toml = if toml.contains("[worker]") {
            toml.replacen("[worker]\n", &format!("[worker]\n{FAST_WORKER}"), 1)
        } else {
            format!("[worker]\n{FAST_WORKER}{toml}")
        };
        let text = format!(
            "{toml}\n[postgres]\nurl = \"{}\"\nschema = \"{name}\"\nmax_connections = 4\n[redis]\nurl = \"{}\"\nprefix = \"{name}\"\n[mongodb]\nuri = \"{}\"\ndatabase = \"{name}\"\n",
            database_url(),
            redis,
            mongodb_uri()
        );
        let config_path = std::env::temp_dir().join(format!("ferry-{name}.toml"));
        std::fs::write(&config_path, &text).unwrap();
        let config = Arc::new(Config::from_toml_str(&text, &env).unwrap());
        let record = Record::connect(&config.postgres)
            .await
            .expect("Postgres must run for tests");
        record.migrate().await.unwrap();
        let queue = Queue::for_config(&config)
            .await
            .expect("Redis must run for tests");
        let registry = Arc::new(ferry_jobs::registry(&config).unwrap());
        Self {
            name,
            config,
            config_path,
            queue,
            record,
            registry,
        }
    }

    /// A job as `ferry enqueue` would build it.
    pub fn job(&self, kind: &str, args: &str) -> (String, NewJob) {
        use ferry_jobs::enqueue::{self, Keys, Origin};
        let p = enqueue::prepare(
            &self.registry,
            &Origin::Cli,
            kind,
            args,
            Keys::default(),
            None,
        )
        .unwrap_or_else(|e| panic!("{kind} {args}: {e}"));
        (p.queue, p.job)
    }

    pub async fn enqueue(&self, kind: &str, args: &str) -> Uuid {
        let (queue, job) = self.job(kind, args);
        self.queue.enqueue(&queue, &[job]).await.unwrap()[0].0
    }

    /// The job, on whichever queue its kind travels.
    pub async fn job_record(&self, id: Uuid) -> Option<JobRecord> {
        let queues: Vec<String> = self.registry.queues().into_iter().collect();
        self.queue.find(&queues, id).await.unwrap()
    }

    /// Polls until `done` holds for the job, or panics after `timeout`.
    pub async fn wait_for(
        &self,
        id: Uuid,
        timeout: Duration,
        done: impl Fn(&JobRecord) -> bool,
    ) -> JobRecord {
        let deadline = Instant::now() + timeout;
        loop {
            let job = self.job_record(id).await;
            if let Some(job) = &job
                && done(job)
            {
                return job.clone();
            }
            assert!(
                Instant::now() < deadline,
                "job {id} did not get there in {timeout:?}: {job:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls the per-kind counters until `kind` has `count` jobs in `state`.
    pub async fn wait_for_count(&self, kind: &str, state: &str, count: i64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.count(kind, state).await;
            if n >= count {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{kind} reached {n} {state} of {count} in {timeout:?}; {}",
                    self.whereabouts(kind).await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Where the jobs of `kind` are, for a failed wait: the count in each state, and the
    /// unfinished ones with their attempts and last error.
    async fn whereabouts(&self, kind: &str) -> String {
        let queue = self.queue_of(kind);
        let counts = self
            .queue
            .stats(&queue)
            .await
            .map(|s| s.by_kind.get(kind).cloned());
        let filter = ferry_queue::JobFilter {
            kind: Some(kind.to_owned()),
            limit: 1000,
            ..Default::default()
        };
        let unfinished: Vec<_> = match self.queue.list(&queue, &filter).await {
            Ok(jobs) => jobs
                .into_iter()
                .filter(|j| !j.state.is_final())
                .take(10)
                .map(|j| {
                    format!(
                        "{} {:?} attempt {}: {:?}",
                        j.id, j.state, j.attempts, j.last_error
                    )
                })
                .collect(),
            Err(e) => vec![e.to_string()],
        };
        format!("states {counts:?}; unfinished {unfinished:#?}")
    }

    /// The queue `kind` runs on (`[kinds.NAME] queue` applied).
    fn queue_of(&self, kind: &str) -> String {
        self.registry
            .get(kind)
            .map_or_else(|_| "default".to_owned(), |e| e.settings().queue.clone())
    }

    /// Jobs of `kind` in `state`, on the kind's own queue (`[kinds.NAME] queue` applied).
    pub async fn count(&self, kind: &str, state: &str) -> i64 {
        let stats = self.queue.stats(&self.queue_of(kind)).await.unwrap();
        stats
            .by_kind
            .get(kind)
            .and_then(|s| s.get(state))
            .copied()
            .unwrap_or(0)
    }

    /// A worker in this process; stop it with [`InProcessWorker::stop`].
    pub fn start_worker(&self) -> InProcessWorker {
        let token = CancellationToken::new();
        let run = ferry_worker::run(
            self.config.clone(),
            ferry_worker::Options::default(),
            token.clone(),
        );
        let join = tokio::spawn(async move { run.await.map_err(|e| e.to_string()) });
        InProcessWorker { token, join }
    }

    /// A scheduler (fires, change relay, reconciler) in this process; stop it like a worker.
    pub fn start_scheduler(&self) -> InProcessWorker {
        let token = CancellationToken::new();
        let run = ferry_scheduler::run(self.config.clone(), token.clone());
        let join = tokio::spawn(async move { run.await.map_err(|e| e.to_string()) });
        InProcessWorker { token, join }
    }

    /// `ferry scheduler` as a child process, like [`TestEnv::spawn_worker_process`].
    pub fn spawn_scheduler_process(&self, label: &str) -> WorkerProcess {
        self.spawn_process("scheduler", label)
    }

    /// Where a process spawned under `label` logs.
    pub fn log_path(&self, label: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("ferry-{}-{label}.log", self.name))
    }

    fn spawn_process(&self, command: &str, label: &str) -> WorkerProcess {
        self.spawn_with(&[command], label)
    }

    /// `ferry ARGS` as a child process logging to [`TestEnv::log_path`] (e.g. `--log-format
    /// json worker`, for a test that reads what the worker logged).
    pub fn spawn_with(&self, args: &[&str], label: &str) -> WorkerProcess {
        let command = args.join(" ");
        let log = std::fs::File::create(self.log_path(label)).unwrap();
        WorkerProcess(
            self.command(args)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("start ferry {command}: {e}")),
        )
    }

    /// `ferry worker` as a child process, logging to a file named after the test. Killed when
    /// dropped, so a failing test leaves no worker behind.
    pub fn spawn_worker_process(&self, label: &str) -> WorkerProcess {
        self.spawn_process("worker", label)
    }

    /// Runs the `ferry` command against this environment.
    pub fn ferry(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ferry")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(ferry_bin());
        cmd.arg("--config").arg(&self.config_path).args(args);
        for var in [
            "DATABASE_URL",
            "FERRY_DATABASE_URL",
            "FERRY_SCHEMA",
            "REDIS_URL",
            "FERRY_REDIS_PREFIX",
            "FERRY_CONFIG",
            "MONGODB_URI",
            "MONGODB_DATABASE",
            "SMTP_URL",
            "SMTP_FROM",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// The application schema sync mirrors (`{schema}` in a test's config).
    pub fn app_schema(&self) -> String {
        format!("{}_app", self.name)
    }

    /// This test's own database (`{database}` in its config), for whole-database work such as
    /// backups; created by [`TestEnv::create_database`], dropped by cleanup.
    pub fn database(&self) -> String {
        format!("{}_db", self.name)
    }

    /// The URL of database `name` on the test server.
    pub fn database_url_of(&self, name: &str) -> String {
        let mut url = url::Url::parse(&database_url()).unwrap();
        url.set_path(&format!("/{name}"));
        url.to_string()
    }

    /// Creates this test's database and runs `sql` in it.
    pub async fn create_database(&self, sql: &str) -> sqlx::PgPool {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {}",
            self.database()
        )))
        .execute(self.record.pool())
        .await
        .unwrap();
        let pool = sqlx::PgPool::connect(&self.database_url_of(&self.database()))
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
        pool
    }

    /// Runs SQL in this test's application schema.
    pub async fn sql(&self, sql: &str) {
        let schema = self.app_schema();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            // SET LOCAL: the pooled connection must not keep this search_path.
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\"; BEGIN; SET LOCAL search_path = \"{schema}\";\n{sql};\nCOMMIT;"
        )))
            .execute(self.record.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
    }

    /// Loads the school schema of `tests/fixtures/school.sql` into this test's schema.
    pub async fn load_school(&self) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/school.sql");
        self.sql(&std::fs::read_to_string(path).unwrap()).await;
    }

    pub async fn mongo(&self) -> mongodb::Database {
        mongodb::Client::with_uri_str(mongodb_uri())
            .await
            .unwrap()
            .database(&self.name)
    }

    /// The independent mirror check (`tests/check_mirror.py`); returns its exit code and output.
    pub fn check_mirror(&self, extra: &[&str]) -> (i32, String) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("check_mirror.py");
        let out = Command::new("python3")
            .arg(script)
            .args([
                "--pg-url",
                &database_url(),
                "--schema",
                &self.app_schema(),
                "--mongo-uri",
                &mongodb_uri(),
                "--mongo-db",
                &self.name,
            ])
            .args(extra)
            .output()
            .expect("python3");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    /// Drops this test's schema, database, keys and Mongo database.
    pub async fn cleanup(self) {
        if let Ok(client) = mongodb::Client::with_uri_str(mongodb_uri()).await {
            let _ = client.database(&self.name).drop().await;
        }
        let drop = format!(
            "DROP SCHEMA IF EXISTS \"{}\", \"{}\" CASCADE",
            self.name,
            self.app_schema()
        );
        let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
            .execute(self.record.pool())
            .await;
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database());
        let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
            .execute(self.record.pool())
            .await;
        let _ = self.delete_redis_keys().await;
        let _ = std::fs::remove_file(&self.config_path);
    }

    /// Deletes every Redis key of this test's install, as a flush or a failover without AOF
    /// would; other installs sharing the server keep theirs. Returns how many went.
    pub async fn forget_redis(&self) -> usize {
        self.delete_redis_keys()
            .await
            .expect("Redis must run for tests")
    }

    async fn delete_redis_keys(&self) -> redis::RedisResult<usize> {
        let client = redis::Client::open(redis_url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.name))
            .query_async(&mut conn)
            .await?;
        for chunk in keys.chunks(500) {
            let _: () = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await?;
        }
        Ok(keys.len())
    }
}

pub struct WorkerProcess(pub Child);

impl std::ops::Deref for WorkerProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for WorkerProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A worker or scheduler running in this process.
pub struct InProcessWorker {
    token: CancellationToken,
    join: JoinHandle<Result<(), String>>,
}

impl InProcessWorker {
    pub async fn stop(self) {
        self.token.cancel();
        self.join.await.unwrap().unwrap();
    }
}

/// The `ferry` binary: `FERRY_BIN`, or built once from this workspace.
pub fn ferry_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(bin) = std::env::var("FERRY_BIN") {
            return PathBuf::from(bin);
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "ferry-cli", "--bin", "ferry"])
            .current_dir(&root)
            .status()
            .expect("cargo build ferry");
        assert!(status.success(), "building the ferry binary failed");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join("target"));
        target.join("debug").join("ferry")
    })
    .clone()
}

/// Sends a signal to a child process.
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

//! The deployment files against the real thing: the configuration docker-compose.yml and the
//! Kubernetes manifests hand ferry loads, Postgres connections honour `sslmode` and Redis
//! speaks TLS with `rediss://` (managed services require TLS), and the container healthcheck
//! follows a real worker's heartbeat.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use ferry_config::{Config, Env};
use ferry_record::Record;
use ferry_tests::{TestEnv, WorkerProcess, database_url, ferry_bin, signal};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A python3 that has PyYAML: the first on PATH, or Debian's, which gets python3-yaml with the
/// docker-compose that scripts/check-deploy.sh (run first by scripts/test.sh) installs.
fn python() -> &'static str {
    ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", "import yaml"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .expect("no python3 with PyYAML: run scripts/check-deploy.sh first")
}

/// What `script` prints as JSON about the YAML documents on its stdin.
fn yaml_values(yaml: &[u8], script: &str) -> serde_json::Value {
    let mut child = Command::new(python())
        .args(["-c", &format!("import json, sys, yaml\n{script}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().unwrap().write_all(yaml).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python3 with PyYAML failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The environment docker-compose gives a service, with .env.example standing in for .env.
fn compose_env(service: &str) -> BTreeMap<String, String> {
    let out = Command::new("docker-compose")
        .current_dir(root())
        .args(["--env-file", ".env.example", "config"])
        .output()
        .expect("docker-compose (scripts/check-deploy.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = yaml_values(
        &out.stdout,
        &format!(
            "print(json.dumps(yaml.safe_load(sys.stdin)['services']['{service}']['environment']))"
        ),
    );
    serde_json::from_value(env).unwrap()
}

/// The environment the Kubernetes manifests give every role: ConfigMap ferry-env plus the
/// example Secret.
fn kubernetes_env() -> BTreeMap<String, String> {
    let mut yaml = Vec::new();
    for file in ["config.yaml", "secret.example.yaml"] {
        yaml.extend(std::fs::read(root().join("deploy/kubernetes").join(file)).unwrap());
        yaml.extend(b"\n---\n");
    }
    let env = yaml_values(
        &yaml,
        "env = {}\n\
         for d in yaml.safe_load_all(sys.stdin):\n\
         \x20   if d and d['metadata']['name'] in ('ferry-env', 'ferry-secrets'):\n\
         \x20       env.update(d.get('data') or d.get('stringData'))\n\
         print(json.dumps(env))",
    );
    serde_json::from_value(env).unwrap()
}

#[test]
fn the_shipped_config_loads_with_the_environment_compose_and_kubernetes_give() {
    let toml = std::fs::read_to_string(root().join("deploy/ferry.toml")).unwrap();
    for (source, vars) in [
        ("compose worker", compose_env("worker")),
        ("compose api", compose_env("api")),
        ("kubernetes", kubernetes_env()),
    ] {
        // The example values are placeholders; an operator replaces each one, as
        // `openssl rand -hex 32` would.
        let placeholder = Env::from_pairs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        // Placeholder tokens are refused (passwords are the services' own business).
        if vars
            .iter()
            .any(|(k, v)| k.ends_with("_TOKEN") && v.contains("CHANGE-ME"))
        {
            let e = Config::from_toml_str(&toml, &placeholder).unwrap_err();
            assert!(e.to_string().contains("openssl rand"), "{source}: {e}");
        }
        let vars: std::collections::BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| {
                let v = match v.contains("CHANGE-ME") {
                    true => v.replace("CHANGE-ME", &format!("{:x}", rand::random::<u128>())),
                    false => v.clone(),
                };
                (k.clone(), v)
            })
            .collect();
        let env = Env::from_pairs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let config = Config::from_toml_str(&toml, &env)
            .unwrap_or_else(|e| panic!("{source}: deploy/ferry.toml does not load: {e}"));
        // Each variable must be given (two absent values would compare equal) and read.
        let var = |name: &str| {
            Some(
                vars.get(name)
                    .unwrap_or_else(|| panic!("{source} does not set {name}"))
                    .as_str(),
            )
        };
        assert_eq!(
            config.postgres.url.as_deref(),
            var("DATABASE_URL"),
            "{source}"
        );
        assert_eq!(
            Some(config.redis.url.as_str()),
            var("REDIS_URL"),
            "{source}"
        );
        assert_eq!(
            config.http.secret.as_ref().map(|s| s.expose()),
            var("FERRY_HTTP_SECRET"),
            "{source}: webhook jobs are signed"
        );
        assert_eq!(
            config.mongodb.uri.as_deref(),
            var("MONGODB_URI"),
            "{source}"
        );
        assert_eq!(
            Some(config.mongodb.database.as_str()),
            var("MONGODB_DATABASE"),
            "{source}"
        );
        let store = config
            .store("backup.target", &config.backup.target)
            .unwrap_or_else(|e| panic!("{source}: backup target: {e}"));
        assert_eq!(store.endpoint.as_deref(), var("S3_ENDPOINT"), "{source}");
        assert_eq!(
            store.access_key_id.as_deref(),
            var("AWS_ACCESS_KEY_ID"),
            "{source}"
        );
        assert!(store.secret_access_key.is_some(), "{source}: no S3 secret");
        assert!(
            config.notify.smtp_url.is_some(),
            "{source}: SMTP_URL not read"
        );
    }
}

fn with_sslmode(url: &str, mode: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.query_pairs_mut().append_pair("sslmode", mode);
    url.to_string()
}

#[tokio::test]
async fn postgres_connections_use_tls_when_the_url_asks_for_it() {
    let env = TestEnv::new("").await;
    for (mode, tls) in [("require", true), ("disable", false)] {
        let url = with_sslmode(&database_url(), mode);
        let postgres = ferry_config::Postgres {
            url: Some(url.clone()),
            ..env.config.postgres.clone()
        };
        let record = Record::connect(&postgres)
            .await
            .unwrap_or_else(|e| panic!("sslmode={mode}: {e}"));
        let ssl: bool =
            sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(record.pool())
                .await
                .unwrap();
        assert_eq!(ssl, tls, "sslmode={mode}");
        let out = env
            .command(&["migrate"])
            .env("DATABASE_URL", &url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ferry migrate with sslmode={mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    env.cleanup().await;
}

/// `ferry healthcheck` as the image's HEALTHCHECK runs it: the role from FERRY_ROLE.
fn healthcheck(mut ferry: Command, role: &str) -> Output {
    ferry
        .arg("healthcheck")
        .env("FERRY_ROLE", role)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ferry_without_config() -> Command {
    let mut ferry = Command::new(ferry_bin());
    ferry
        .env_remove("FERRY_CONFIG")
        .current_dir(std::env::temp_dir());
    ferry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_healthcheck_follows_the_workers_heartbeat() {
    // The test workers heartbeat every 300 ms and count as dead after 2 s (reclaim_after).
    let env = TestEnv::new("").await;
    let check = || healthcheck(env.command(&[]), "worker");
    let before = check();
    assert_eq!(
        before.status.code(),
        Some(1),
        "healthy before any worker ran"
    );

    let mut worker = env.spawn_worker_process("health");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().status.success() {
        assert!(Instant::now() < deadline, "worker never became healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Killed without a chance to deregister: unhealthy once its heartbeat is too old.
    signal(&worker, "KILL");
    worker.wait().unwrap();
    let killed = Instant::now();
    let after = loop {
        let out = check();
        if !out.status.success() {
            break out;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "still healthy 5 s after SIGKILL"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(after.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&after.stderr).contains("no heartbeat from a worker"),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );
    env.cleanup().await;
}

/// Answers each of `replies` to one request on a free port, after reading the request's
/// head as an HTTP server does (closing with unread input would reset the connection).
fn http_server(replies: Vec<&'static str>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for reply in replies {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 256];
            while !head.ends_with(b"\r\n\r\n") {
                let n = conn.read(&mut buf).unwrap();
                assert!(n > 0, "request ended early: {head:?}");
                head.extend_from_slice(&buf[..n]);
            }
            assert!(head.starts_with(b"GET /healthz "), "{head:?}");
            conn.write_all(reply.as_bytes()).unwrap();
        }
    });
    port
}

#[test]
fn api_healthcheck_wants_200_from_healthz() {
    let port = http_server(vec![
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
    ])
    .to_string();
    let api = || {
        let mut ferry = ferry_without_config();
        ferry.env("FERRY_HEALTH_PORT", &port);
        healthcheck(ferry, "api")
    };
    let ok = api();
    assert!(ok.status.success(), "{:?}", ok);
    let unavailable = api();
    assert_eq!(unavailable.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unavailable.stderr).contains("answered 503"));

    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let mut ferry = ferry_without_config();
    ferry.env("FERRY_HEALTH_PORT", &port);
    let refused = healthcheck(ferry, "api");
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("nothing answers"));
}

/// A Redis of the test's own that speaks only TLS, with a certificate for `localhost` signed
/// by a CA made for the test. Stopped when dropped.
struct TlsRedis {
    server: WorkerProcess,
    port: u16,
    ca: PathBuf,
}

impl TlsRedis {
    fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let openssl = |args: &[&str]| {
            let status = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stderr(Stdio::null())
                .status()
                .expect("openssl");
            assert!(status.success(), "openssl {args:?}");
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let ca = [
            "-subj",
            "/CN=ferry test CA",
            "-days",
            "1",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ];
        openssl(&[&["req", "-x509"], &ec[..], &ca[..]].concat());
        let csr = [
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ];
        openssl(&[&["req"], &ec[..], &csr[..]].concat());
        std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ]);
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = WorkerProcess(
            Command::new("redis-server")
                .args([
                    "--port",
                    "0",
                    "--tls-port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                ])
                .args([
                    "--tls-cert-file",
                    "server.pem",
                    "--tls-key-file",
                    "server.key",
                ])
                .args(["--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no"])
                .args(["--save", "", "--appendonly", "no"])
                .current_dir(dir)
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "TLS redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            server,
            port,
            ca: dir.join("ca.pem"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_runs_jobs_and_checks_the_certificate() {
    let env = TestEnv::new("").await;
    let redis = TlsRedis::start(&std::env::temp_dir().join(format!("ferry-{}-tls", env.name)));
    let url = format!("rediss://localhost:{}", redis.port);
    let tls = |args: &[&str]| {
        let mut cmd = env.command(args);
        cmd.env("REDIS_URL", &url).env("SSL_CERT_FILE", &redis.ca);
        cmd
    };

    let worker = WorkerProcess(tls(&["worker"]).stderr(Stdio::null()).spawn().unwrap());
    let out = tls(&["enqueue", "noop", "--wait"]).output().unwrap();
    assert!(
        out.status.success(),
        "noop over TLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tls(&["stats", "--json"]).output().unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["by_kind"]["noop"]["succeeded"], 1, "{stats}");

    // The same server without its CA among the trusted roots: refused, not downgraded.
    let out = env
        .command(&["stats"])
        .env("REDIS_URL", &url)
        .env_remove("SSL_CERT_FILE")
        .output()
        .unwrap();
    assert!(!out.status.success(), "an unknown CA was accepted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
    drop(worker);
    drop(redis.server);
    env.cleanup().await;
}

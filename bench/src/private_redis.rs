//! A redis-server of the benchmark's own on a free loopback port, stopped when dropped: its
//! memory and commands are only ferry's, whatever else uses the shared Redis.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct PrivateRedis {
    child: Child,
    dir: PathBuf,
    pub port: u16,
}

impl PrivateRedis {
    /// A plain server, or with `cluster` a one-node Redis Cluster that serves all 16384 slots
    /// (the cluster code path of the client against the same server build).
    pub async fn start(cluster: bool) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("ferry-bench-redis-{port}"));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null());
        if cluster {
            cmd.args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(dir.join("nodes.conf"));
        }
        let child = cmd
            .spawn()
            .expect("start redis-server (apt-get install redis-server)");
        let this = Self { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut conn = loop {
            if let Ok(client) = redis::Client::open(this.url())
                && let Ok(conn) = client.get_multiplexed_async_connection().await
            {
                break conn;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on {port} did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if cluster {
            let _: () = redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(0)
                .arg(16383)
                .query_async(&mut conn)
                .await
                .expect("assign every slot to the one node");
            while !String::from_utf8_lossy(
                &redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async::<Vec<u8>>(&mut conn)
                    .await
                    .unwrap_or_default(),
            )
            .contains("cluster_state:ok")
            {
                assert!(
                    Instant::now() < deadline,
                    "one-node cluster on {port} not ok"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        this
    }

    /// The plain URL: the single-node client, also against a cluster node.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    l.local_addr().expect("port").port()
}

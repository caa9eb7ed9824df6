//! A private S3 server per test: `s3s-fs` (installed by `scripts/services.sh up s3`) on a free
//! port over a temporary directory, so a test can stop it mid-upload and look at what is left.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const ACCESS_KEY: &str = "ferry";
pub const SECRET_KEY: &str = "ferrysecret";

pub struct S3Server {
    pub port: u16,
    /// The server's root: one directory per bucket, multipart parts as `.upload_id-*` files.
    pub dir: PathBuf,
    child: Option<Child>,
    /// (size, bucket) when the server runs over a tmpfs of its own: see `start_on_tmpfs`.
    tmpfs: Option<(String, String)>,
}

fn binary() -> PathBuf {
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo"));
    let installed = home.join("bin/s3s-fs");
    if installed.exists() {
        installed
    } else {
        PathBuf::from("s3s-fs")
    }
}

/// Whether this process runs with effective uid 0 (the second field of `Uid:`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

impl S3Server {
    /// Starts a server holding one empty bucket.
    pub fn start(bucket: &str) -> Self {
        Self::start_with(bucket, None)
    }

    /// Starts a server holding one empty bucket on a file system of `size` bytes (`8m`), to
    /// fill up. The server runs in a mount namespace of its own (`unshare`) over a tmpfs
    /// mounted there: nothing mounted outside, the file system gone with the server (so a
    /// restart starts empty). Without root it also takes a user namespace, in which it may
    /// mount. Where neither is allowed the server does not start and the test fails, saying so.
    pub fn start_on_tmpfs(bucket: &str, size: &str) -> Self {
        Self::start_with(bucket, Some((size.to_owned(), bucket.to_owned())))
    }

    fn start_with(bucket: &str, tmpfs: Option<(String, String)>) -> Self {
        let dir = std::env::temp_dir().join(format!("ferry-s3-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(dir.join(bucket)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self {
            port,
            dir,
            child: None,
            tmpfs,
        };
        server.restart();
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A `[stores.NAME]` section pointing at `bucket` on this server.
    pub fn store_toml(&self, name: &str, bucket: &str, secret: &str) -> String {
        format!(
            "[stores.{name}]\nurl = \"s3://{bucket}/backups\"\nendpoint = \"{}\"\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{secret}\"\n",
            self.endpoint()
        )
    }

    /// (Re)starts the server on the same port and directory.
    pub fn restart(&mut self) {
        let mut command = match &self.tmpfs {
            None => Command::new(binary()),
            Some((size, bucket)) => {
                // unshare and sh exec in place, so the child is s3s-fs itself and kill() stops it.
                let mut c = Command::new("unshare");
                if !is_root() {
                    c.args(["--user", "--map-root-user"]);
                }
                c.args(["--mount", "sh", "-c"])
                    .arg(r#"mount -t tmpfs -o "size=$1" tmpfs "$2" && mkdir "$2/$3" && shift 3 && exec "$@""#)
                    .args(["sh", size])
                    .arg(&self.dir)
                    .arg(bucket)
                    .arg(binary());
                c
            }
        };
        let mut child = command
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs must be installed: bash scripts/services.sh up s3");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "s3s-fs exited ({status}){}",
                    match self.tmpfs {
                        Some(_) =>
                            " before listening: on a tmpfs it needs `unshare --mount` (without \
                             root also `--user --map-root-user`) and `mount -t tmpfs` to work",
                        None => "",
                    }
                );
            }
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// Freezes the server (SIGSTOP): nothing more is stored until it is killed or resumed.
    pub fn freeze(&self) {
        if let Some(child) = &self.child {
            crate::signal(child, "STOP");
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Parts of multipart uploads not completed or aborted.
    pub fn pending_parts(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(".upload_id-"))
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! A webhook receiver for alert tests: records each POSTed JSON body on a real socket.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// A webhook receiver on a free port: records each POSTed JSON body and answers 200, or,
/// when `hang`, accepts connections and never answers.
pub struct Hook {
    pub url: String,
    posts: Arc<Mutex<Vec<Value>>>,
}

impl Hook {
    pub async fn start(hang: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        // The path stands for the token a real webhook URL carries.
        let url = format!(
            "http://{}/hooks/secret-token-42",
            listener.local_addr().unwrap()
        );
        let posts = Arc::new(Mutex::new(Vec::new()));
        let seen = posts.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    if hang {
                        tokio::time::sleep(Duration::from_secs(120)).await;
                        return;
                    }
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let body = loop {
                        let n = socket.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length: usize = text[..end]
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse().ok())?
                                })
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + length {
                                break buf[end + 4..end + 4 + length].to_vec();
                            }
                        }
                    };
                    if let Ok(v) = serde_json::from_slice(&body) {
                        seen.lock().unwrap().push(v);
                    }
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        Self { url, posts }
    }

    pub fn posts(&self) -> Vec<Value> {
        self.posts.lock().unwrap().clone()
    }

    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let posts = self.posts();
            if posts.len() >= n {
                return posts;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} posts in {timeout:?}: {posts:#?}",
                posts.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

//! `ferry serve` in this process on a free port, for the API and dashboard tests.

use std::sync::Arc;

use ferry_config::Config;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The tokens of [`API_CONFIG`].
pub const ENQUEUE_TOKEN: &str = "enqueue-token-for-tests-0001";
pub const ADMIN_TOKEN: &str = "admin-token-for-tests-000001";

/// The `[api]` section giving both tokens; add it to a test's config. The enqueue token may
/// also enqueue the diagnostic kinds the API tests run (`tests/tests/trust.rs` tests the
/// default list); the failure limit is high because every test calls from 127.0.0.1; the
/// cookie has no `Secure` flag because tests serve plain http.
pub const API_CONFIG: &str = "[api]\ntoken = \"enqueue-token-for-tests-0001\"\nadmin_token = \"admin-token-for-tests-000001\"\nbody_limit = 4096\nenqueue_kinds = [\"noop\", \"sleep\", \"fail\", \"sync.entity\", \"notify.send\"]\nmax_auth_failures = 1000\ninsecure_cookies = true\n";

pub struct ApiServer {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    stop: CancellationToken,
    join: JoinHandle<Result<(), ferry_api::ServeError>>,
}

impl ApiServer {
    pub async fn start(config: Arc<Config>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let signal = stop.clone();
        let join = tokio::spawn(ferry_api::serve(config, listener, async move {
            signal.cancelled().await
        }));
        Self { url, stop, join }
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.join.await.unwrap().unwrap();
    }
}

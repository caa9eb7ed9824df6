//! One connection type for a single Redis and for a Redis Cluster, so workers, scheduler, API
//! and CLI talk to either without knowing which. `REDIS_URL` with several comma-separated
//! seed nodes means a cluster: the `redis` crate's cluster client learns the slot map from
//! them, follows MOVED and ASK, and re-learns the map when a replica takes over a primary.

use std::time::Duration;

use redis::{
    Cmd, Pipeline, RedisFuture, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection},
    cluster::{ClusterClient, ClusterConfig},
    cluster_async::ClusterConnection,
};

use crate::QueueError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where ferry's Redis is: one server, or a cluster known by its seed nodes.
// One per process, cloned rarely: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub(crate) enum Client {
    Single(redis::Client),
    Cluster(ClusterClient),
}

impl Client {
    /// Parses `REDIS_URL`: one URL, or seed nodes separated by commas.
    pub(crate) fn open(url: &str) -> Result<Self, QueueError> {
        let seeds: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if seeds.iter().any(|s| s.starts_with("rediss://")) {
            // redis's TLS asks rustls for the process-wide crypto provider, and with both ring
            // and aws-lc-rs in the dependency tree rustls picks none by itself. Err: another
            // was installed first, which serves as well.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        let bad = |e: redis::RedisError| QueueError::BadUrl(e.to_string());
        match seeds.as_slice() {
            [] => Err(QueueError::BadUrl(
                "REDIS_URL is empty; give redis://host:port, or several comma-separated seed nodes for a cluster".into(),
            )),
            [one] if !url.contains(',') => redis::Client::open(*one).map(Self::Single).map_err(bad),
            many => ClusterClient::builder(many.iter().copied())
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .build()
                .map(Self::Cluster)
                .map_err(bad),
        }
    }

    /// The connection every request of a process shares.
    pub(crate) async fn shared(&self) -> Result<Conn, QueueError> {
        let unreachable = |e: redis::RedisError| QueueError::Unreachable(e.to_string());
        match self {
            Self::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(2);
                client
                    .get_connection_manager_with_config(config)
                    .await
                    .map(Conn::Single)
                    .map_err(unreachable)
            }
            Self::Cluster(client) => client
                .get_async_connection()
                .await
                .map(|c| Conn::Cluster(Box::new(c)))
                .map_err(unreachable),
        }
    }

    /// A dedicated connection for commands that block (XREADGROUP BLOCK), which would stall
    /// every other request sharing a multiplexed connection.
    pub(crate) async fn blocking(&self, block: Duration) -> Result<Conn, QueueError> {
        let unreachable = |e: redis::RedisError| QueueError::Unreachable(e.to_string());
        let response = block + Duration::from_secs(5);
        match self {
            Self::Single(client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(response));
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(Conn::Blocking)
                    .map_err(unreachable)
            }
            Self::Cluster(client) => {
                let config = ClusterConfig::new()
                    .set_connection_timeout(CONNECT_TIMEOUT)
                    .set_response_timeout(response);
                client
                    .get_async_connection_with_config(config)
                    .await
                    .map(|c| Conn::Cluster(Box::new(c)))
                    .map_err(unreachable)
            }
        }
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

/// A connection to ferry's Redis, single server or cluster; reconnects by itself. Cheap to
/// clone: clones share the connection.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Blocking(MultiplexedConnection),
    Cluster(Box<ClusterConnection>),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Blocking(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Blocking(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Blocking(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Client;

    #[test]
    fn commas_mean_a_cluster() {
        assert!(!Client::open("redis://127.0.0.1:6379").unwrap().is_cluster());
        assert!(
            Client::open("redis://127.0.0.1:7000, redis://127.0.0.1:7001")
                .unwrap()
                .is_cluster()
        );
        let e = Client::open(" , ").err().unwrap().to_string();
        assert!(e.contains("REDIS_URL"), "{e}");
    }
}

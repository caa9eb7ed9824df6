/// What went wrong talking to the queue.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    #[error("the Redis URL is not valid: {0}")]
    BadUrl(String),
    #[error("cannot reach Redis ({0}); check REDIS_URL and that the server runs")]
    Unreachable(String),
    #[error("Redis failed to {what}: {source}")]
    Redis {
        what: &'static str,
        #[source]
        source: redis::RedisError,
    },
    #[error("job {id} holds data ferry cannot read: {message}")]
    Corrupt { id: String, message: String },
}

impl QueueError {
    pub(crate) fn redis(what: &'static str) -> impl FnOnce(redis::RedisError) -> Self {
        move |source| Self::Redis { what, source }
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable(_) => true,
            Self::Redis { source, .. } => {
                source.is_io_error() || source.is_timeout() || source.is_connection_dropped()
            }
            _ => false,
        }
    }
}

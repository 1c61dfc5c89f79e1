//! The store's own errors, mapped into [`session_core::Error`].

use std::time::Duration;

use deadpool_redis::redis::RedisError;

/// What can go wrong talking to Redis. Every variant means "the backend is
/// unavailable or misbehaving" and becomes [`session_core::Error::Backend`]
/// with `store: "redis"`, so the layer answers 503.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RedisStoreError {
    /// A command or script failed (connection refused or dropped, response
    /// timeout, server error).
    #[error(transparent)]
    Redis(#[from] RedisError),

    /// The pool could not hand out a connection (creating one failed, or the
    /// pool is closed).
    #[error("connection pool: {0}")]
    Pool(#[from] deadpool_redis::PoolError),

    /// No connection came out of the pool in time (pool exhausted, or Redis
    /// not answering).
    #[error("no Redis connection available after {0:?} (pool exhausted or Redis unreachable)")]
    PoolTimeout(Duration),

    /// A command on a cluster got no answer in time (see
    /// [`RedisStore::with_response_timeout`](crate::RedisStore::with_response_timeout)).
    #[error("no answer from the Redis Cluster within {0:?}")]
    ResponseTimeout(Duration),

    /// The Redis URL is not valid.
    #[error("invalid Redis configuration: {0}")]
    Config(#[from] deadpool_redis::ConfigError),

    /// Building the pool failed.
    #[error("building the Redis connection pool: {0}")]
    Build(#[from] deadpool_redis::BuildError),

    /// The OS random number generator failed (lock tokens).
    #[error("the OS random number generator failed: {0}")]
    Random(getrandom::Error),

    /// A script answered with something it never returns.
    #[error("unexpected reply from Redis: {0}")]
    UnexpectedReply(&'static str),

    /// Fewer replicas than [`RedisStore::with_replica_acks`](crate::RedisStore::with_replica_acks)
    /// asks for acknowledged a write in time. The primary has it; a failover
    /// before it reaches a replica may lose it.
    #[error("{acknowledged} of {wanted} replicas acknowledged the write within {timeout:?}")]
    NotReplicated {
        /// The replicas asked for.
        wanted: u32,
        /// The replicas that acknowledged.
        acknowledged: i64,
        /// How long the write waited for them.
        timeout: Duration,
    },
}

impl RedisStoreError {
    /// Whether Redis surely did not run the command: a cluster refusing it
    /// while its slot moves (`TRYAGAIN`: its keys are split between two
    /// nodes; `MOVED`/`ASK` left after the client's own redirects) or while
    /// it has no quorum (`CLUSTERDOWN`). Sending it again is safe, even a
    /// fenced save or a lock request.
    pub(crate) fn not_executed(&self) -> bool {
        let RedisStoreError::Redis(error) = self else { return false };
        matches!(error.code(), Some("TRYAGAIN" | "MOVED" | "ASK" | "CLUSTERDOWN"))
    }

    /// [`not_executed`](Self::not_executed) of the Redis error inside `error`.
    pub(crate) fn is_not_executed(error: &session_core::Error) -> bool {
        match error {
            session_core::Error::Backend { source, .. } => {
                source.downcast_ref::<Self>().is_some_and(Self::not_executed)
            }
            _ => false,
        }
    }
}

impl From<RedisStoreError> for session_core::Error {
    fn from(error: RedisStoreError) -> Self {
        Self::backend("redis", error)
    }
}

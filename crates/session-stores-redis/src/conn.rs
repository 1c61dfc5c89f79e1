//! One shared multiplexed connection, taken from the pool: a standalone
//! [`MultiplexedConnection`] or, with the `cluster` feature, a
//! [`ClusterConnection`] (which keeps one multiplexed connection per node
//! and follows `MOVED`/`ASK` redirects itself).
//!
//! A deadpool-redis pool checks every connection it hands out with a `PING`
//! (its recycle step): one extra round trip per checkout. A redis-rs
//! multiplexed connection is made to be shared by concurrent callers, so the
//! store checks one out, keeps it, and clones it for each operation. The pool
//! is used whenever a connection is needed: at first use, after a
//! connection-level failure, and after the connection sat idle for
//! [`IDLE_RECHECK`] (so a connection silently dropped by a firewall or by
//! Redis' `timeout` setting is re-checked with the pool's `PING` first).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
#[cfg(feature = "cluster")]
use deadpool_redis::redis::cluster_async::ClusterConnection;
use deadpool_redis::redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};

use crate::error::RedisStoreError;

/// How long the shared connection may sit unused before the pool checks it
/// again.
const IDLE_RECHECK: Duration = Duration::from_secs(30);

/// The pool a store takes its connections from.
pub(crate) enum Pool {
    /// One Redis (or a primary with replicas).
    Standalone(deadpool_redis::Pool),
    /// A Redis Cluster.
    #[cfg(feature = "cluster")]
    Cluster(crate::cluster::ClusterPool),
}

/// A connection checked out of a [`Pool`].
pub(crate) enum Pooled {
    Standalone(deadpool_redis::Connection),
    #[cfg(feature = "cluster")]
    Cluster(crate::cluster::PooledCluster),
}

/// A connection one operation sends its commands on: a clone of the shared
/// one, or a pooled one of its own ([`Pooled::connection`]).
#[derive(Clone)]
pub(crate) enum Connection {
    Standalone(MultiplexedConnection),
    #[cfg(feature = "cluster")]
    Cluster(ClusterConnection),
}

impl Pool {
    /// A connection, or an error once `timeout` has passed.
    pub(crate) async fn get(&self, timeout: Duration) -> Result<Pooled, RedisStoreError> {
        let pooled = match self {
            Pool::Standalone(pool) => {
                tokio::time::timeout(timeout, pool.get()).await.map(|r| r.map(Pooled::Standalone))
            }
            #[cfg(feature = "cluster")]
            Pool::Cluster(pool) => {
                tokio::time::timeout(timeout, pool.get()).await.map(|r| r.map(Pooled::Cluster))
            }
        };
        match pooled {
            Ok(Ok(pooled)) => Ok(pooled),
            Ok(Err(error)) => Err(error.into()),
            Err(_elapsed) => Err(RedisStoreError::PoolTimeout(timeout)),
        }
    }

    /// The pool's size and use, for `Debug`.
    pub(crate) fn status(&self) -> deadpool_redis::Status {
        match self {
            Pool::Standalone(pool) => pool.status(),
            #[cfg(feature = "cluster")]
            Pool::Cluster(pool) => pool.status(),
        }
    }
}

impl Pooled {
    /// A handle on this connection (a cheap clone sharing it).
    pub(crate) fn connection(&self) -> Connection {
        match self {
            Pooled::Standalone(pooled) => Connection::Standalone((**pooled).clone()),
            #[cfg(feature = "cluster")]
            Pooled::Cluster(pooled) => Connection::Cluster(pooled.connection()),
        }
    }

    /// Takes it out of the pool for good: dropped, it is closed instead of
    /// being handed out again.
    fn detach(self) {
        match self {
            Pooled::Standalone(pooled) => drop(deadpool_redis::Connection::take(pooled)),
            #[cfg(feature = "cluster")]
            Pooled::Cluster(pooled) => pooled.detach(),
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Standalone(connection) => connection.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Connection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Standalone(connection) => {
                connection.req_packed_commands(cmd, offset, count)
            }
            #[cfg(feature = "cluster")]
            Connection::Cluster(connection) => connection.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Standalone(connection) => connection.get_db(),
            #[cfg(feature = "cluster")]
            Connection::Cluster(connection) => connection.get_db(),
        }
    }
}

/// The pool and the connection currently shared by the store's clones.
pub(crate) struct Connections {
    pool: Pool,
    current: Mutex<Option<Current>>,
    generations: AtomicU64,
}

struct Current {
    generation: u64,
    pooled: Pooled,
    last_used: Instant,
}

/// A connection lent to one operation.
pub(crate) struct Lent {
    pub(crate) connection: Connection,
    generation: u64,
}

impl Connections {
    pub(crate) fn new(pool: Pool) -> Self {
        Self { pool, current: Mutex::new(None), generations: AtomicU64::new(0) }
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    fn current(&self) -> MutexGuard<'_, Option<Current>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The shared connection, or a new one from the pool within `timeout`.
    pub(crate) async fn get(&self, timeout: Duration) -> Result<Lent, RedisStoreError> {
        let stale = {
            let now = Instant::now();
            let mut current = self.current();
            match current.as_mut() {
                Some(shared) if now.saturating_duration_since(shared.last_used) < IDLE_RECHECK => {
                    shared.last_used = now;
                    return Ok(Lent {
                        connection: shared.pooled.connection(),
                        generation: shared.generation,
                    });
                }
                _ => current.take(),
            }
        };
        // Back to the pool, which pings it before handing it out again.
        drop(stale);
        // Boxed: the pool's future (connect, handshake) is kilobytes, and
        // every future awaiting `get` would otherwise carry that size on
        // the hot path, where it is moved and copied.
        Box::pin(self.connect(timeout)).await
    }

    /// The slow path of [`get`](Self::get): a connection from the pool.
    async fn connect(&self, timeout: Duration) -> Result<Lent, RedisStoreError> {
        let pooled = self.pool.get(timeout).await?;
        let mut current = self.current();
        if let Some(shared) = current.as_ref() {
            // Another caller got there first: share theirs, return ours.
            return Ok(Lent {
                connection: shared.pooled.connection(),
                generation: shared.generation,
            });
        }
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let lent = Lent { connection: pooled.connection(), generation };
        *current = Some(Current { generation, pooled, last_used: Instant::now() });
        Ok(lent)
    }

    /// Called with every failed command: a connection-level failure retires
    /// the connection it happened on, so the next operation gets a new one
    /// (this is how the store recovers once Redis is back).
    pub(crate) fn failed(&self, lent: &Lent, error: &RedisError) {
        if !is_connection_failure(error) {
            return;
        }
        let retired = {
            let mut current = self.current();
            match current.as_ref() {
                Some(shared) if shared.generation == lent.generation => current.take(),
                _ => None,
            }
        };
        if let Some(retired) = retired {
            tracing::debug!(%error, "dropping the Redis connection after a connection failure");
            // Detach it from the pool instead of returning a broken connection.
            retired.pooled.detach();
        }
    }
}

/// Whether the connection itself is unusable after `error`, as opposed to an
/// error reply from a healthy server (a script error, `WRONGTYPE`).
fn is_connection_failure(error: &RedisError) -> bool {
    error.is_io_error() || error.is_unrecoverable_error() || error.kind() == ErrorKind::Parse
}

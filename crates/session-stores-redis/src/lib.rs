//! A Redis session store for `session-axum`: [`RedisStore`].
//!
//! Sessions live in Redis, shared by every process of the app, and expire
//! there by themselves (each record's TTL follows its deadline). The store
//! implements [`SessionStore`](session_core::SessionStore) and a distributed
//! [`LockingStore`](session_core::LockingStore), so `session.lock()` serializes
//! read-modify-write across processes.
//!
//! On the hot path a request costs at most two round trips with the lock
//! (`lock_and_load`, then `save_and_release`, each one script call) and one
//! per operation without it (`load` is a single `GET`; `save` a single
//! script call). Each session is one Redis string, so a load answers with
//! one bulk string, and the two hot-path scripts run six commands inside
//! Redis between them (`SET NX PX` + `GET`; `GET` of the lock,
//! `SET XX GET EXAT`, `DEL`, `PUBLISH` of the release notice);
//! the user index is only written when a session's user or deadline
//! changes. Held locks' leases are renewed by one task per store. Needs
//! Redis 6.2 or later.
//!
//! A waiter for a busy lock waits behind the earlier waiters of its process
//! (only the first of them asks Redis), and is woken by the holder's release
//! through one pub/sub connection per store
//! ([`RedisStore::with_release_notices`], on with
//! [`RedisStore::from_url`]), polling only slowly as a safety net; on Redis
//! Cluster through sharded pub/sub, in the lock's own slot
//! (`RedisStore::with_cluster_release_notices`, on with `RedisStore::cluster`).
//!
//! Connections come from a [`deadpool_redis::Pool`] (re-exported here with
//! its `redis` crate). A Redis that is down, slow to accept connections or an
//! exhausted pool gives [`session_core::Error::Backend`] after
//! [`RedisStore::with_connect_timeout`], never a hang or a panic, and the same
//! store recovers once Redis is back: requests in flight when Redis goes
//! away fail, as does the first request on a connection Redis dropped while
//! it was idle; the next request reconnects through the pool.
//!
//! The store shares one multiplexed connection between all its requests
//! instead of checking one out of the pool per request, because a
//! deadpool-redis checkout pings the connection first (a second round trip).
//! The pool provides that connection and its replacements.
//!
//! ```rust,no_run
//! use session_stores_redis::RedisStore;
//!
//! # fn main() -> Result<(), session_core::Error> {
//! let store = RedisStore::from_url("redis://127.0.0.1:6379/")?.with_prefix("myapp:");
//! # let _ = store;
//! # Ok(()) }
//! ```
//!
//! With the `cluster` feature, `RedisStore::cluster(urls)` runs the same
//! store on Redis Cluster: a session's record and lock share a hash slot, so
//! every per-session operation is still one atomic script; a user's index
//! lives in a slot of its own and is kept in step by separate commands (see
//! `RedisStore::cluster` for what that changes).
//!
//! The `testing` feature adds `testing::PrivateRedis` and
//! `testing::PrivateRedisCluster`: a `redis-server` (or six, as a cluster)
//! of a test's own, to kill and start again in fault and failover tests.
//!
//! Not for direct use; see the `session-axum` crate.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "cluster")]
mod cluster;
mod conn;
mod error;
mod lock;
mod renewer;
mod scripts;
mod store;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod value;
mod wakeups;

#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub use cluster::DEFAULT_CLUSTER_RESPONSE_TIMEOUT;
pub use deadpool_redis;
/// The background task that deletes expired sessions (Redis expires records by
/// itself; the task prunes the per-user indexes): `store.spawn_cleanup(interval)`
/// through [`SpawnCleanup`], stopped through its [`CleanupHandle`].
pub use session_core::{CleanupHandle, SpawnCleanup};
pub use store::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_NOTICE_POLL, DEFAULT_PREFIX, RedisStore};

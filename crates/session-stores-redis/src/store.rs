//! [`RedisStore`]: construction, key layout and the [`SessionStore`] impl.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use std::io::Write as _;

#[cfg(feature = "cluster")]
use deadpool_redis::redis::aio::ConnectionLike as _;
use deadpool_redis::redis::{
    self, Cmd, ErrorKind, RedisError, RedisWrite as _, ServerErrorKind, Value,
};
use deadpool_redis::{Config, Runtime};
use session_core::{
    Codec, Error, JsonCodec, Record, SessionStore, StorageKey, Timestamp, async_trait,
};

use crate::conn::{Connection, Connections, Pool};
use crate::error::RedisStoreError;
use crate::renewer::Locks;
use crate::scripts::{self, Lua};
use crate::value::{self, Corrupt};
use crate::wakeups::{Notices, Wakeups};

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "session:";

/// The default for [`RedisStore::with_connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The default for [`RedisStore::with_notice_poll`]: what a lost release
/// notice costs a waiter at most.
pub const DEFAULT_NOTICE_POLL: Duration = Duration::from_millis(250);

/// How many keys one `SCAN` step of [`SessionStore::delete_expired`] asks for.
pub(crate) const SCAN_COUNT: usize = 200;

/// A session store on Redis, through a [`deadpool_redis::Pool`].
///
/// - Each session is one Redis string under `<prefix>{<64 hex digits>}` (the
///   hex of its [`StorageKey`], never anything from the request): a short
///   text head (deadlines, user, version) and the encoded data, expiring at
///   the session's deadline, so Redis expires sessions by itself.
/// - Each user with sessions has a set under `<prefix>user:{<hex of the user
///   id>}` listing them, kept in step by `create`, `save` and `delete`.
/// - `load` is one `GET`; `create`, `save`, `touch`, `delete` and the lock
///   operations are one Lua script call each (one round trip).
/// - Needs Redis 6.2 or later (`SET ... EXAT`, `SET ... XX GET`).
/// - The per-session lock ([`LockingStore`](session_core::LockingStore)) works
///   across processes: `SET NX PX` with a random token, a lease renewed while
///   the guard lives, released by compare-and-delete.
///
/// Cloning is cheap; clones share the pool and the connection.
///
/// On one Redis (or a primary with replicas) the scripts keep the user
/// index in the same atomic step as the record. On Redis Cluster
/// ([`RedisStore::cluster`], feature `cluster`) every script touches only
/// the keys it is given, all in one slot (the `{…}` in the names are hash
/// tags), and the index is updated by separate commands: see
/// [`RedisStore::cluster`] for what that changes.
///
/// ```rust,no_run
/// use std::time::Duration;
/// use session_stores_redis::RedisStore;
///
/// # fn main() -> Result<(), session_core::Error> {
/// let store = RedisStore::from_url("redis://127.0.0.1:6379/")?
///     .with_prefix("myapp:session:")
///     .with_connect_timeout(Duration::from_secs(1));
/// # let _ = store;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) connections: Arc<Connections>,
    pub(crate) locks: Arc<Locks>,
    /// Release notices for waiters ([`RedisStore::with_release_notices`]).
    pub(crate) wakeups: Option<Arc<Wakeups>>,
    pub(crate) notice_poll: Duration,
    prefix: Arc<str>,
    codec: Arc<dyn Codec>,
    connect_timeout: Duration,
    replica_acks: Option<ReplicaAcks>,
    /// Bounds every command ([`RedisStore::with_response_timeout`]). Set by
    /// default on a cluster, whose client has no response timeout of its own
    /// (and retries redirects and reconnects for minutes); `None` by default
    /// on one Redis, where the client has one.
    pub(crate) response_timeout: Option<Duration>,
}

/// What [`RedisStore::with_replica_acks`] asks of every write.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplicaAcks {
    replicas: u32,
    pub(crate) timeout: Duration,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("codec", &self.codec)
            .field("connect_timeout", &self.connect_timeout)
            .field("replica_acks", &self.replica_acks)
            .field("cluster", &self.on_cluster())
            .field("pool", &self.connections.pool().status())
            .finish()
    }
}

impl RedisStore {
    /// A store on an existing pool, with the prefix [`DEFAULT_PREFIX`].
    ///
    /// Getting a connection from the pool is bounded by
    /// [`with_connect_timeout`](Self::with_connect_timeout) whatever the
    /// pool's own timeouts are, so a dead Redis or an exhausted pool fails
    /// fast with [`Error::Backend`].
    ///
    /// Waiters for a busy lock poll this store's Redis; with
    /// [`from_url`](Self::from_url) (or
    /// [`with_release_notices`](Self::with_release_notices)) they are woken
    /// by the release instead.
    ///
    /// ```rust,no_run
    /// use session_stores_redis::{RedisStore, deadpool_redis};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = deadpool_redis::Config::from_url("redis://127.0.0.1:6379/")
    ///     .create_pool(Some(deadpool_redis::Runtime::Tokio1))?;
    /// let store = RedisStore::new(pool);
    /// # let _ = store;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn new(pool: deadpool_redis::Pool) -> Self {
        Self::on(Pool::Standalone(pool), None)
    }

    /// A store on `pool`; `response_timeout` bounds each command (see the
    /// field).
    pub(crate) fn on(pool: Pool, response_timeout: Option<Duration>) -> Self {
        Self {
            connections: Arc::new(Connections::new(pool)),
            locks: Arc::new(Locks::new()),
            wakeups: None,
            notice_poll: DEFAULT_NOTICE_POLL,
            prefix: Arc::from(DEFAULT_PREFIX),
            codec: Arc::new(JsonCodec),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            replica_acks: None,
            response_timeout,
        }
    }

    /// Whether the store runs on Redis Cluster, where the scripts do not
    /// keep the user index (see `crate::scripts`).
    pub(crate) fn on_cluster(&self) -> bool {
        match self.connections.pool() {
            Pool::Standalone(_) => false,
            #[cfg(feature = "cluster")]
            Pool::Cluster(_) => true,
        }
    }

    /// The `index` argument of the record scripts: `1` where they keep the
    /// user index themselves.
    pub(crate) fn index_flag(&self) -> &'static str {
        if self.on_cluster() { "0" } else { "1" }
    }

    /// A store with a pool of its own for the Redis at `url`
    /// (`redis://[user:password@]host[:port][/db]`, or `rediss://` when the
    /// TLS features of `deadpool-redis` are enabled).
    ///
    /// No connection is made here: an app can start while Redis is down, and
    /// its requests get [`Error::Backend`] until Redis is back. The pool's
    /// wait, create and recycle timeouts are set to
    /// [`DEFAULT_CONNECT_TIMEOUT`].
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] if `url` is not a valid Redis URL.
    pub fn from_url(url: &str) -> Result<Self, Error> {
        let pool = Config::from_url(url)
            .builder()
            .map_err(RedisStoreError::from)?
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(DEFAULT_CONNECT_TIMEOUT))
            .create_timeout(Some(DEFAULT_CONNECT_TIMEOUT))
            .recycle_timeout(Some(DEFAULT_CONNECT_TIMEOUT))
            .build()
            .map_err(RedisStoreError::from)?;
        let client = redis::Client::open(url).map_err(RedisStoreError::from)?;
        Ok(Self::new(pool).with_release_notices(client))
    }

    /// Wakes waiters for a busy lock when it is released instead of having
    /// them poll: releases publish a notice (an empty message on the lock
    /// key), and the store keeps one pub/sub connection through `client`
    /// (opened when a first waiter needs it) for all of its waiters. A
    /// notice that is lost costs a waiter at most
    /// [`with_notice_poll`](Self::with_notice_poll), the slow poll it keeps
    /// as a safety net. [`from_url`](Self::from_url) turns this on; every
    /// process on the store's Redis and prefix should have it on (a store
    /// without it neither publishes nor listens). On Redis Cluster, see
    /// `with_cluster_release_notices` (feature `cluster`); a store on a
    /// cluster ignores this.
    ///
    /// ```rust,no_run
    /// use session_stores_redis::{RedisStore, deadpool_redis};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let url = "redis://127.0.0.1:6379/";
    /// let pool = deadpool_redis::Config::from_url(url)
    ///     .create_pool(Some(deadpool_redis::Runtime::Tokio1))?;
    /// let client = deadpool_redis::redis::Client::open(url)?;
    /// let store = RedisStore::new(pool).with_release_notices(client);
    /// # let _ = store;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_release_notices(mut self, client: redis::Client) -> Self {
        if !self.on_cluster() {
            self.wakeups = Some(Arc::new(Wakeups::new(Notices::Standalone(client))));
        }
        self
    }

    /// The `SAVE`/`RELEASE` scripts' notice flag: how a release tells the
    /// waiters, if at all.
    pub(crate) fn notice_flag(&self) -> &'static str {
        self.wakeups.as_ref().map_or("0", |wakeups| wakeups.publish_flag())
    }

    /// How often a waiter that listens for release notices still tries the
    /// lock on its own, in case a notice was lost (default
    /// [`DEFAULT_NOTICE_POLL`]).
    #[must_use]
    pub fn with_notice_poll(mut self, every: Duration) -> Self {
        self.notice_poll = every;
        self
    }

    /// Sets the prefix of every key this store writes (default
    /// [`DEFAULT_PREFIX`]). Stores with different prefixes on one Redis do
    /// not see each other's sessions.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// Bounds how long an operation waits for a connection from the pool
    /// (pool exhausted, Redis not accepting connections) before failing with
    /// [`Error::Backend`]. Default [`DEFAULT_CONNECT_TIMEOUT`]. Commands
    /// themselves are bounded by the redis client's response timeout (500 ms
    /// by default for pools built by [`RedisStore::from_url`]).
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Makes every write of session data (create, save, touch, delete, "log
    /// out everywhere") wait until at least `replicas` replicas have
    /// acknowledged it (Redis `WAIT`), for at most `timeout`. A write they
    /// did not acknowledge in time fails with [`Error::Backend`], so the
    /// request answers the error response (503 by default) instead of
    /// success: a save the application acknowledged survives the loss of its
    /// primary, as long as a replica that acknowledged it takes over.
    ///
    /// The write itself is not undone when the acknowledgement fails: the
    /// primary has it, and a retry overwrites it. Lock operations do not
    /// wait: a lock lost in a failover cannot let a late save through (see
    /// [`Error::LockLost`](session_core::Error::LockLost)).
    ///
    /// Each acknowledged write runs on a connection of its own from the pool
    /// (`WAIT` holds the connection it runs on, so the shared connection that
    /// reads use is never held up), and costs the pool's `PING` and the
    /// `WAIT` round trip on top of the write. Keep `timeout` below the
    /// connection's response timeout, or a slow acknowledgement fails as
    /// that timeout instead (also a 503).
    ///
    /// ```rust,no_run
    /// use std::time::Duration;
    /// use session_stores_redis::RedisStore;
    ///
    /// # fn main() -> Result<(), session_core::Error> {
    /// let store = RedisStore::from_url("redis://primary.internal:6379/")?
    ///     .with_replica_acks(1, Duration::from_millis(200));
    /// # let _ = store;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_replica_acks(mut self, replicas: u32, timeout: Duration) -> Self {
        self.replica_acks = (replicas > 0).then_some(ReplicaAcks { replicas, timeout });
        self
    }

    /// Bounds every command: past `timeout` without an answer, the operation
    /// fails with [`Error::Backend`]. On a cluster the default is
    /// `DEFAULT_CLUSTER_RESPONSE_TIMEOUT` (one second), since the cluster
    /// client has no response timeout of its own and retries redirects and
    /// reconnects for minutes; on one Redis there is none beyond the redis
    /// client's own (500 ms for pools built by [`RedisStore::from_url`]).
    ///
    /// ```rust,no_run
    /// use std::time::Duration;
    /// use session_stores_redis::RedisStore;
    ///
    /// # fn main() -> Result<(), session_core::Error> {
    /// let store = RedisStore::from_url("redis://127.0.0.1:6379/")?
    ///     .with_response_timeout(Duration::from_millis(250));
    /// # let _ = store;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = Some(timeout);
        self
    }

    /// How long an operation waits for a connection.
    #[cfg(feature = "cluster")]
    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Sets the codec for session data (default [`JsonCodec`]).
    #[must_use]
    pub fn with_codec(mut self, codec: impl Codec) -> Self {
        self.codec = Arc::new(codec);
        self
    }

    /// The pool this store takes connections from; `None` on a cluster (see
    /// `cluster_pool`).
    #[must_use]
    pub fn pool(&self) -> Option<&deadpool_redis::Pool> {
        match self.connections.pool() {
            Pool::Standalone(pool) => Some(pool),
            #[cfg(feature = "cluster")]
            Pool::Cluster(_) => None,
        }
    }

    /// The key prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>{<hex>}`: where the record lives, as one command argument.
    /// The scripts build the same name in Lua (`record_of`).
    pub(crate) fn record_key_arg(&self, command: &mut Cmd, key: &StorageKey) {
        let mut arg = command.writer_for_next_arg();
        // Writing to a command's buffer cannot fail.
        let _ = arg.write_all(self.prefix.as_bytes());
        let _ = arg.write_all(b"{");
        let _ = arg.write_all(&hex(key));
        let _ = arg.write_all(b"}");
    }

    /// `<prefix>{<hex>}`, as [`record_key_arg`](Self::record_key_arg) writes it.
    #[cfg(feature = "testing")]
    pub(crate) fn record_key(&self, key: &StorageKey) -> Vec<u8> {
        tagged(&self.prefix, b"", &hex(key))
    }

    /// `<prefix>lock:{<hex>}`: the session's lock, in its record's slot.
    pub(crate) fn lock_key(&self, key: &StorageKey) -> Vec<u8> {
        tagged(&self.prefix, b"lock:", &hex(key))
    }

    /// `<prefix>user:{<hex of the user id>}`: the user's index. The scripts
    /// build the same name in Lua (`index_key`).
    pub(crate) fn index_key(&self, user: &[u8]) -> Vec<u8> {
        let mut user_hex = Vec::with_capacity(2 * user.len());
        for &byte in user {
            user_hex
                .extend_from_slice(&[HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]]);
        }
        tagged(&self.prefix, b"user:", &user_hex)
    }

    /// Runs one command on the shared connection. For an `EVALSHA` built by
    /// [`evalsha`], pass its script: a `NOSCRIPT` reply (a Redis that
    /// restarted or flushed its scripts) loads it and sends the command again.
    pub(crate) async fn run(
        &self,
        command: &Cmd,
        script: Option<&Lua>,
    ) -> Result<Value, RedisStoreError> {
        let mut lent = self.connections.get(self.connect_timeout).await?;
        let result = match self.response_timeout {
            None => send(&mut lent.connection, command, script).await,
            // Boxed: kept out of the size of the standalone hot path's future.
            Some(_) => Box::pin(self.bounded(send(&mut lent.connection, command, script))).await?,
        };
        match result {
            Ok(value) => Ok(value),
            Err(error) => {
                self.connections.failed(&lent, &error);
                Err(error.into())
            }
        }
    }

    /// `reply`, bounded by the response timeout on a cluster.
    pub(crate) async fn bounded<T>(
        &self,
        reply: impl Future<Output = T>,
    ) -> Result<T, RedisStoreError> {
        match self.response_timeout {
            None => Ok(reply.await),
            Some(timeout) => tokio::time::timeout(timeout, reply)
                .await
                .map_err(|_elapsed| RedisStoreError::ResponseTimeout(timeout)),
        }
    }

    /// Runs a script that answers with an integer.
    pub(crate) async fn run_for_int(
        &self,
        command: &Cmd,
        script: &Lua,
        operation: &'static str,
    ) -> Result<i64, RedisStoreError> {
        int_reply(self.run(command, Some(script)).await?, operation)
    }

    /// [`write`](Self::write) for a script that answers with an integer.
    pub(crate) async fn write_for_int(
        &self,
        command: &Cmd,
        script: &Lua,
        operation: &'static str,
    ) -> Result<i64, RedisStoreError> {
        int_reply(self.write(command, script).await?, operation)
    }

    /// Runs a script that writes session data: with
    /// [`with_replica_acks`](Self::with_replica_acks), on a connection of its
    /// own, followed by `WAIT`.
    pub(crate) async fn write(
        &self,
        command: &Cmd,
        script: &Lua,
    ) -> Result<Value, RedisStoreError> {
        let Some(acks) = self.replica_acks else {
            return self.run(command, Some(script)).await;
        };
        let pooled = self.connections.pool().get(self.connect_timeout).await?;
        let mut connection = pooled.connection();
        let written = self.bounded(send(&mut connection, command, Some(script))).await??;
        let mut wait = Cmd::with_capacity(3, 32);
        wait.arg("WAIT").arg(acks.replicas).arg(millis(acks.timeout));
        let acknowledged = match &mut connection {
            Connection::Standalone(connection) => {
                int_reply(connection.send_packed_command(&wait).await?, "wait")?
            }
            #[cfg(feature = "cluster")]
            Connection::Cluster(connection) => {
                crate::cluster::wait_where_written(self, connection, command, wait, acks).await?
            }
        };
        if acknowledged < i64::from(acks.replicas) {
            tracing::warn!(
                acknowledged,
                wanted = acks.replicas,
                "a session write was not acknowledged by enough replicas in time"
            );
            return Err(RedisStoreError::NotReplicated {
                wanted: acks.replicas,
                acknowledged,
                timeout: acks.timeout,
            });
        }
        Ok(written)
    }

    /// `save`, optionally fenced by a held lock (see `scripts::SAVE`).
    /// Returns the script's answer: 1 saved, 0 gone, -1 lock not ours.
    pub(crate) async fn save_script(
        &self,
        record: &Record,
        lock: Option<LockedSave<'_>>,
    ) -> Result<i64, Error> {
        let mut command = evalsha(&scripts::SAVE, if lock.is_some() { 2 } else { 1 });
        self.record_key_arg(&mut command, &record.key);
        if let Some(lock) = &lock {
            command.arg(lock.key);
        }
        let head_len =
            value::encode(record, self.codec.as_ref(), &mut command.writer_for_next_arg())?;
        command
            .arg(value::expire_at(record))
            .arg(head_len)
            .arg(self.prefix.as_bytes())
            .arg(self.index_flag());
        if let Some(lock) = &lock {
            command.arg(lock.token).arg(flag(lock.release)).arg(self.notice_flag());
        }
        #[cfg(feature = "cluster")]
        if self.on_cluster() {
            crate::cluster::index_before_write(self, record).await?;
        }
        Ok(self.write_for_int(&command, &scripts::SAVE, "save").await?)
    }

    /// Reads a record from a stored value: `None` if it is corrupt (logged)
    /// or expired at `now`.
    pub(crate) fn record_from_value(
        &self,
        key: &StorageKey,
        stored: &[u8],
        now: Timestamp,
    ) -> Option<Record> {
        match value::decode(*key, stored, self.codec.as_ref()) {
            Ok(record) => (!record.is_expired(now)).then_some(record),
            Err(corrupt) => {
                log_corrupt(key, corrupt);
                None
            }
        }
    }

    /// The record an index entry of `user` names, from the entry (`member`)
    /// and the record key's value (`stored`): `Ok(None)` if the record is
    /// gone, expired, unreadable or another user's now (a stale entry, which
    /// the caller may prune); `Err` if `member` is not a storage key's hex.
    pub(crate) fn user_record(
        &self,
        user: &str,
        member: &[u8],
        stored: Value,
        now: Timestamp,
    ) -> Result<Option<Record>, NotAMember> {
        let key = std::str::from_utf8(member)
            .ok()
            .and_then(|hex| hex.parse::<StorageKey>().ok())
            .ok_or_else(|| {
            tracing::warn!("user index entry is not a session key; skipping it");
            NotAMember
        })?;
        Ok(match stored {
            Value::BulkString(stored) => self
                .record_from_value(&key, &stored, now)
                .filter(|record| record.user.as_deref() == Some(user)),
            Value::Nil => None,
            _ => {
                log_corrupt(&key, Corrupt("the key does not hold a string"));
                None
            }
        })
    }

    pub(crate) fn scan_pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.prefix.len() + 6);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push_str("user:*");
        pattern
    }
}

/// An index entry that is not the hex of a storage key (logged where found).
#[derive(Debug)]
pub(crate) struct NotAMember;

/// Sends one command. For an `EVALSHA` built by [`evalsha`], pass its
/// script: after a `NOSCRIPT` reply (a Redis that restarted or flushed its
/// scripts, a cluster node that never ran it) the command goes again as an
/// `EVAL` with the source, which also caches the script on that node.
pub(crate) async fn send(
    connection: &mut Connection,
    command: &Cmd,
    script: Option<&Lua>,
) -> Result<Value, RedisError> {
    let result = send_once(connection, command).await;
    match (result, script) {
        (Err(error), Some(script))
            if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) =>
        {
            let eval = script.eval_instead(command);
            // Boxed: rare, and kept out of the size of every `run` future.
            Box::pin(send_once(connection, &eval)).await
        }
        (result, _) => result,
    }
}

async fn send_once(connection: &mut Connection, command: &Cmd) -> Result<Value, RedisError> {
    match connection {
        // The inherent method: `ConnectionLike` would box its future, an
        // allocation per command on the hot path.
        Connection::Standalone(connection) => connection.send_packed_command(command).await,
        #[cfg(feature = "cluster")]
        Connection::Cluster(connection) => connection.req_packed_command(command).await,
    }
    .and_then(Value::extract_error)
}

pub(crate) fn int_reply(reply: Value, operation: &'static str) -> Result<i64, RedisStoreError> {
    match reply {
        Value::Int(n) => Ok(n),
        _ => Err(RedisStoreError::UnexpectedReply(operation)),
    }
}

/// Whole milliseconds, saturating: what `PX` and `WAIT` take.
/// The lock that fences a save (see `scripts::SAVE`): its key, its holder's
/// token, and whether the save releases it.
pub(crate) struct LockedSave<'a> {
    pub(crate) key: &'a [u8],
    pub(crate) token: &'a str,
    pub(crate) release: bool,
}

/// A boolean script argument.
pub(crate) fn flag(on: bool) -> &'static str {
    if on { "1" } else { "0" }
}

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `EVALSHA <sha1 of script> <keys>`: the start of a script call; keys and
/// arguments follow.
pub(crate) fn evalsha(script: &Lua, keys: usize) -> Cmd {
    let mut command = Cmd::with_capacity(8, 256);
    command.arg("EVALSHA").arg(script.hash()).arg(keys);
    command
}

/// `<prefix><kind>{<tag>}`: a key whose hash slot is the slot of `tag`.
fn tagged(prefix: &str, kind: &[u8], tag: &[u8]) -> Vec<u8> {
    let mut name = Vec::with_capacity(prefix.len() + kind.len() + tag.len() + 2);
    name.extend_from_slice(prefix.as_bytes());
    name.extend_from_slice(kind);
    name.push(b'{');
    name.extend_from_slice(tag);
    name.push(b'}');
    name
}

pub(crate) const HEX: &[u8; 16] = b"0123456789abcdef";

/// The 64 lowercase hex digits of a storage key, without allocating.
pub(crate) fn hex(key: &StorageKey) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (pair, byte) in out.chunks_exact_mut(2).zip(key.as_bytes()) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
    out
}

/// Logs a record that cannot be read; the session is treated as absent.
pub(crate) fn log_corrupt(key: &StorageKey, corrupt: Corrupt) {
    tracing::warn!(
        session = ?key,
        reason = corrupt.0,
        "corrupt session record in Redis; treating the session as absent"
    );
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(&self, record: &Record) -> Result<(), Error> {
        let mut command = evalsha(&scripts::CREATE, 1);
        self.record_key_arg(&mut command, &record.key);
        value::encode(record, self.codec.as_ref(), &mut command.writer_for_next_arg())?;
        command.arg(value::expire_at(record)).arg(self.prefix.as_bytes()).arg(self.index_flag());
        #[cfg(feature = "cluster")]
        if self.on_cluster() {
            crate::cluster::index_before_write(self, record).await?;
        }
        match self.write_for_int(&command, &scripts::CREATE, "create").await? {
            1 => Ok(()),
            0 => Err(Error::IdCollision),
            _ => Err(RedisStoreError::UnexpectedReply("create").into()),
        }
    }

    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, Error> {
        let mut command = Cmd::with_capacity(2, 128);
        command.arg("GET");
        self.record_key_arg(&mut command, key);
        match self.run(&command, None).await {
            Ok(Value::BulkString(stored)) => Ok(self.record_from_value(key, &stored, now)),
            Ok(Value::Nil) => Ok(None),
            Ok(_) => Err(RedisStoreError::UnexpectedReply("load").into()),
            Err(RedisStoreError::Redis(error)) if error.code() == Some("WRONGTYPE") => {
                log_corrupt(key, Corrupt("the key does not hold a string"));
                Ok(None)
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn save(&self, record: &Record) -> Result<(), Error> {
        match self.save_script(record, None).await? {
            1 => Ok(()),
            0 => Err(Error::NotFound),
            _ => Err(RedisStoreError::UnexpectedReply("save").into()),
        }
    }

    async fn delete(&self, key: &StorageKey) -> Result<(), Error> {
        let mut command = evalsha(&scripts::DELETE, 1);
        self.record_key_arg(&mut command, key);
        command.arg(self.prefix.as_bytes()).arg(self.index_flag());
        let deleted = self.write(&command, &scripts::DELETE).await?;
        #[cfg(feature = "cluster")]
        if self.on_cluster()
            && let Value::BulkString(user) = deleted
        {
            crate::cluster::index_remove(self, &user, &[hex(key)]).await;
        }
        #[cfg(not(feature = "cluster"))]
        let _ = deleted;
        Ok(())
    }

    async fn touch(&self, record: &Record) -> Result<(), Error> {
        let mut command = evalsha(&scripts::TOUCH, 1);
        self.record_key_arg(&mut command, &record.key);
        command
            .arg(value::expire_at(record))
            .arg(record.last_seen.unix_seconds())
            .arg(record.idle_deadline.unix_seconds())
            .arg(self.prefix.as_bytes())
            .arg(self.index_flag());
        #[cfg(feature = "cluster")]
        if self.on_cluster() {
            crate::cluster::index_before_write(self, record).await?;
        }
        match self.write_for_int(&command, &scripts::TOUCH, "touch").await? {
            1 => Ok(()),
            0 => Err(Error::NotFound),
            _ => Err(RedisStoreError::UnexpectedReply("touch").into()),
        }
    }

    /// Redis expires records itself, so this removes no records and returns
    /// 0. It prunes user-index entries whose record is gone (on a cluster, on
    /// every primary).
    async fn delete_expired(&self, _now: Timestamp) -> Result<u64, Error> {
        #[cfg(feature = "cluster")]
        if self.on_cluster() {
            crate::cluster::prune_indexes(self).await?;
            return Ok(0);
        }
        let pattern = self.scan_pattern();
        let mut cursor: u64 = 0;
        let mut pruned: u64 = 0;
        loop {
            let command = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .to_owned();
            let reply = self.run(&command, None).await?;
            let (next, indexes): (u64, Vec<Vec<u8>>) = redis::from_redis_value(reply)
                .map_err(|_| RedisStoreError::UnexpectedReply("scan"))?;
            if !indexes.is_empty() {
                let mut command = evalsha(&scripts::PRUNE_INDEXES, indexes.len());
                for index in &indexes {
                    command.arg(index.as_slice());
                }
                command.arg(self.prefix.as_bytes());
                let removed =
                    self.run_for_int(&command, &scripts::PRUNE_INDEXES, "delete_expired").await?;
                pruned += removed.unsigned_abs();
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        if pruned > 0 {
            tracing::debug!(pruned, "removed stale user-index entries");
        }
        Ok(0)
    }

    async fn list_for_user(&self, user: &str, now: Timestamp) -> Result<Vec<Record>, Error> {
        #[cfg(feature = "cluster")]
        if self.on_cluster() {
            return Ok(crate::cluster::list_for_user(self, user, now).await?);
        }
        let mut command = evalsha(&scripts::LIST_FOR_USER, 1);
        command.arg(self.index_key(user.as_bytes())).arg(self.prefix.as_bytes());
        let Value::Array(reply) = self.run(&command, Some(&scripts::LIST_FOR_USER)).await? else {
            return Err(RedisStoreError::UnexpectedReply("list_for_user").into());
        };
        let mut records = Vec::with_capacity(reply.len() / 2);
        let mut items = reply.into_iter();
        while let (Some(member), Some(stored)) = (items.next(), items.next()) {
            let Value::BulkString(member) = member else {
                tracing::warn!("user index entry is not a session key; skipping it");
                continue;
            };
            if let Ok(Some(record)) = self.user_record(user, &member, stored, now) {
                records.push(record);
            }
        }
        Ok(records)
    }

    async fn delete_for_user(&self, user: &str) -> Result<u64, Error> {
        #[cfg(feature = "cluster")]
        if self.on_cluster() {
            return Ok(crate::cluster::delete_for_user(self, user).await?);
        }
        let mut command = evalsha(&scripts::DELETE_FOR_USER, 1);
        command.arg(self.index_key(user.as_bytes())).arg(self.prefix.as_bytes()).arg(user);
        let deleted =
            self.write_for_int(&command, &scripts::DELETE_FOR_USER, "delete_for_user").await?;
        Ok(deleted.unsigned_abs())
    }
}

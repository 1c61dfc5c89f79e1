//! [`RedisStore`]: construction, key layout and the [`SessionStore`] impl.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis::{self, FromRedisValue, ScriptInvocation, Value};
use deadpool_redis::{Config, Pool, Runtime};
use session_core::{
    Codec, Error, JsonCodec, Record, SessionStore, StorageKey, Timestamp, async_trait,
};

use crate::conn::Connections;
use crate::error::RedisStoreError;
use crate::fields::{self, Corrupt};
use crate::scripts;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "session:";

/// The default for [`RedisStore::with_connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How many keys one `SCAN` step of [`SessionStore::delete_expired`] asks for.
const SCAN_COUNT: usize = 200;

/// A session store on Redis, through a [`deadpool_redis::Pool`].
///
/// - Each session is a Redis hash under `<prefix><64 hex digits>` (the hex of
///   its [`StorageKey`], never anything from the request), with its TTL at
///   the session's deadline, so Redis expires sessions by itself.
/// - Each user with sessions has a set under `<prefix>user:<hex of the user
///   id>` listing them, kept in step by `create`, `save` and `delete`.
/// - `load` is one `HGETALL`; `create`, `save`, `touch`, `delete` and the
///   lock operations are one Lua script call each (one round trip).
/// - The per-session lock ([`SessionLock`](session_core::SessionLock)) works
///   across processes: `SET NX PX` with a random token, a lease renewed while
///   the guard lives, released by compare-and-delete.
///
/// Cloning is cheap; clones share the pool and the connection. A standalone
/// Redis (or a primary with replicas) is required: the scripts touch keys
/// they are not given, which Redis Cluster does not allow.
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
    prefix: Arc<str>,
    codec: Arc<dyn Codec>,
    connect_timeout: Duration,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("codec", &self.codec)
            .field("connect_timeout", &self.connect_timeout)
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
    pub fn new(pool: Pool) -> Self {
        Self {
            connections: Arc::new(Connections::new(pool)),
            prefix: Arc::from(DEFAULT_PREFIX),
            codec: Arc::new(JsonCodec),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
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
        Ok(Self::new(pool))
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

    /// Sets the codec for session data (default [`JsonCodec`]).
    #[must_use]
    pub fn with_codec(mut self, codec: impl Codec) -> Self {
        self.codec = Arc::new(codec);
        self
    }

    /// The pool this store takes connections from.
    #[must_use]
    pub fn pool(&self) -> &Pool {
        self.connections.pool()
    }

    /// The key prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix><hex>`: where the record lives.
    pub(crate) fn record_key(&self, key: &StorageKey) -> String {
        let mut name = String::with_capacity(self.prefix.len() + 64);
        name.push_str(&self.prefix);
        name.push_str(&key.to_hex());
        name
    }

    /// `<prefix>lock:<hex>`: the session's lock.
    pub(crate) fn lock_key(&self, key: &StorageKey) -> String {
        format!("{}lock:{}", self.prefix, key.to_hex())
    }

    /// `<prefix>user:<hex of the user id>`: the user's index. The scripts
    /// build the same name in Lua (`index_key`).
    fn index_key(&self, user: &str) -> String {
        use std::fmt::Write as _;
        let mut name = String::with_capacity(self.prefix.len() + 5 + 2 * user.len());
        name.push_str(&self.prefix);
        name.push_str("user:");
        for byte in user.bytes() {
            let _ = write!(name, "{byte:02x}");
        }
        name
    }

    /// Runs one script call on the shared connection.
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, RedisStoreError> {
        let mut lent = self.connections.get(self.connect_timeout).await?;
        match invocation.invoke_async(&mut lent.connection).await {
            Ok(value) => Ok(value),
            Err(error) => {
                self.connections.failed(&lent, &error);
                Err(error.into())
            }
        }
    }

    /// Runs one command on the shared connection.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        command: &redis::Cmd,
    ) -> Result<T, RedisStoreError> {
        let mut lent = self.connections.get(self.connect_timeout).await?;
        match command.query_async(&mut lent.connection).await {
            Ok(value) => Ok(value),
            Err(error) => {
                self.connections.failed(&lent, &error);
                Err(error.into())
            }
        }
    }

    /// Adds the arguments every record writer takes after the prefix and
    /// member: expire-at, has-user, user.
    fn record_args(invocation: &mut ScriptInvocation<'_>, record: &Record) {
        invocation.arg(fields::expire_at(record));
        match &record.user {
            Some(user) => invocation.arg("1").arg(user.as_str()),
            None => invocation.arg("0").arg(""),
        };
    }

    /// `save`, optionally with the lock release (see `scripts::SAVE`).
    /// Returns the script's answer: 1 saved, 0 gone, -1 lock not ours.
    pub(crate) async fn save_script(
        &self,
        record: &Record,
        lock: Option<(&str, &str)>,
    ) -> Result<i64, Error> {
        let fields = fields::encode(record, self.codec.as_ref())?;
        let mut invocation = scripts::SAVE.prepare_invoke();
        invocation.key(self.record_key(&record.key));
        if let Some((lock_key, _)) = lock {
            invocation.key(lock_key);
        }
        invocation.arg(&*self.prefix).arg(record.key.to_hex());
        Self::record_args(&mut invocation, record);
        invocation.arg(lock.map_or("", |(_, token)| token));
        for (name, value) in &fields {
            invocation.arg(*name).arg(value.as_slice());
        }
        Ok(self.invoke(&invocation).await?)
    }

    /// Reads a record from an `HGETALL` reply: `None` if there is none, if it
    /// is corrupt (logged) or if it is expired at `now`.
    pub(crate) fn record_from_reply(
        &self,
        key: &StorageKey,
        reply: Value,
        now: Timestamp,
    ) -> Option<Record> {
        if fields::is_empty(&reply) {
            return None;
        }
        match fields::decode(*key, reply, self.codec.as_ref()) {
            Ok(record) => (!record.is_expired(now)).then_some(record),
            Err(corrupt) => {
                log_corrupt(key, corrupt);
                None
            }
        }
    }

    fn scan_pattern(&self) -> String {
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
        let fields = fields::encode(record, self.codec.as_ref())?;
        let mut invocation = scripts::CREATE.prepare_invoke();
        invocation.key(self.record_key(&record.key)).arg(&*self.prefix).arg(record.key.to_hex());
        Self::record_args(&mut invocation, record);
        for (name, value) in &fields {
            invocation.arg(*name).arg(value.as_slice());
        }
        match self.invoke::<i64>(&invocation).await? {
            1 => Ok(()),
            0 => Err(Error::IdCollision),
            _ => Err(RedisStoreError::UnexpectedReply("create").into()),
        }
    }

    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, Error> {
        let command = redis::cmd("HGETALL").arg(self.record_key(key)).to_owned();
        match self.query::<Value>(&command).await {
            Ok(reply) => Ok(self.record_from_reply(key, reply, now)),
            Err(RedisStoreError::Redis(error)) if error.code() == Some("WRONGTYPE") => {
                log_corrupt(key, Corrupt("the key does not hold a hash"));
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
        let mut invocation = scripts::DELETE.prepare_invoke();
        invocation.key(self.record_key(key)).arg(&*self.prefix).arg(key.to_hex());
        self.invoke::<i64>(&invocation).await?;
        Ok(())
    }

    async fn touch(&self, record: &Record) -> Result<(), Error> {
        let mut invocation = scripts::TOUCH.prepare_invoke();
        invocation
            .key(self.record_key(&record.key))
            .arg(&*self.prefix)
            .arg(record.key.to_hex())
            .arg(fields::expire_at(record))
            .arg(record.last_seen.unix_seconds())
            .arg(record.idle_deadline.unix_seconds());
        match self.invoke::<i64>(&invocation).await? {
            1 => Ok(()),
            0 => Err(Error::NotFound),
            _ => Err(RedisStoreError::UnexpectedReply("touch").into()),
        }
    }

    /// Redis expires records itself, so this removes no records and returns
    /// 0. It prunes user-index entries whose record is gone.
    async fn delete_expired(&self, _now: Timestamp) -> Result<u64, Error> {
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
            let (next, indexes): (u64, Vec<Vec<u8>>) = self.query(&command).await?;
            if !indexes.is_empty() {
                let mut invocation = scripts::PRUNE_INDEXES.prepare_invoke();
                for index in &indexes {
                    invocation.key(index.as_slice());
                }
                invocation.arg(&*self.prefix);
                pruned += self.invoke::<u64>(&invocation).await?;
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
        let mut invocation = scripts::LIST_FOR_USER.prepare_invoke();
        invocation.key(self.index_key(user)).arg(&*self.prefix);
        let reply: Vec<Value> = self.invoke(&invocation).await?;
        let mut records = Vec::with_capacity(reply.len() / 2);
        let mut items = reply.into_iter();
        while let (Some(member), Some(hash)) = (items.next(), items.next()) {
            let key = match &member {
                Value::BulkString(bytes) => {
                    std::str::from_utf8(bytes).ok().and_then(|hex| hex.parse::<StorageKey>().ok())
                }
                _ => None,
            };
            let Some(key) = key else {
                tracing::warn!("user index entry is not a session key; skipping it");
                continue;
            };
            if matches!(hash, Value::Nil) {
                log_corrupt(&key, Corrupt("the key does not hold a hash"));
                continue;
            }
            if let Some(record) = self.record_from_reply(&key, hash, now)
                && record.user.as_deref() == Some(user)
            {
                records.push(record);
            }
        }
        Ok(records)
    }

    async fn delete_for_user(&self, user: &str) -> Result<u64, Error> {
        let mut invocation = scripts::DELETE_FOR_USER.prepare_invoke();
        invocation.key(self.index_key(user)).arg(&*self.prefix).arg(user);
        Ok(self.invoke::<u64>(&invocation).await?)
    }
}

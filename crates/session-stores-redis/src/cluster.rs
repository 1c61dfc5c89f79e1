//! Redis Cluster (feature `cluster`): [`RedisStore::cluster`], and the
//! user-index steps that the scripts cannot take there.
//!
//! On a cluster a script may only touch the keys it is given, and all of
//! them must hash to one slot. A session's record and its lock share a
//! slot (their names carry the same `{<hex>}` hash tag), so everything about
//! one session stays one atomic script, as on a single Redis: lock and
//! load, the fenced save and release, touch, delete. A user's index lives
//! in the slot of `{<hex of the user id>}`, usually on another node, so it
//! is kept in step by separate commands, ordered so that the index can only
//! ever hold too much, never too little:
//!
//! - before any write of a record with a user (create, save, touch), the
//!   record's entry is added to its user's index and the index's expiry is
//!   pushed to the record's deadline. If the record write then fails, the
//!   entry is extra; if the index step fails, nothing was written;
//! - after a delete, the entry is removed (best effort: if that fails, the
//!   entry is extra);
//! - "log out everywhere" reads the index, deletes each listed record that
//!   still belongs to the user (one script per record, in its slot), then
//!   removes exactly the entries it handled: a session created meanwhile
//!   keeps its entry;
//! - readers never trust an entry: listing and "log out everywhere" check
//!   the record's own user, and entries whose record is gone are pruned
//!   when read and by [`SessionStore::delete_expired`](session_core::SessionStore::delete_expired).
//!
//! So every live session with a user is in that user's index, as on one
//! Redis, and each step is safe to retry.

use deadpool_redis::redis::cluster_async::ClusterConnection;
use deadpool_redis::redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use deadpool_redis::redis::{self, Arg, Cmd, Value};
use deadpool_redis::{Runtime, cluster};
use session_core::{Error, Record, StorageKey, Timestamp};
use std::time::Duration;

use crate::RedisStore;
use crate::conn::Pool;
use crate::error::RedisStoreError;
use crate::scripts;
use crate::store::{DEFAULT_CONNECT_TIMEOUT, ReplicaAcks, SCAN_COUNT, evalsha, hex, int_reply};
use crate::value;
use crate::wakeups::{Notices, Wakeups};
use std::sync::Arc;

/// The default for [`RedisStore::with_response_timeout`] on a cluster.
pub const DEFAULT_CLUSTER_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

impl RedisStore {
    /// A store on the Redis Cluster that `urls` lead to
    /// (`redis://host:port/`, any one or more of its nodes; the client
    /// learns the rest), with a pool of its own.
    ///
    /// Behaves as on one Redis: the same key layout, one atomic script per
    /// operation on a session (its record and its lock share a hash slot),
    /// the same fenced lock. What differs, because a user's index lives in
    /// another slot than the user's sessions:
    ///
    /// - a write of a logged-in session costs one more round trip (the
    ///   index update, to the index's node), so a locked request of a
    ///   logged-in user takes three instead of two;
    /// - the index update is not atomic with the record write. It is made
    ///   first, so a live session is always in its user's index ("log out
    ///   everywhere" never misses one); an entry left over by a failed step
    ///   is ignored by readers and pruned when read;
    /// - listing a user's sessions and "log out everywhere" take one round
    ///   trip per session in the index.
    ///
    /// Each command is bounded by [`DEFAULT_CLUSTER_RESPONSE_TIMEOUT`]
    /// ([`with_response_timeout`](Self::with_response_timeout)): during a
    /// failover, requests get [`Error::Backend`] (503) until the cluster has
    /// promoted a replica, then the same store carries on.
    ///
    /// While a session's slot migrates to another node, its requests wait
    /// for the move instead of failing: the client follows `MOVED` and `ASK`
    /// and retries `TRYAGAIN` (a script whose keys the migration has split
    /// between the two nodes) within milliseconds, and a lock request or a
    /// fenced save that is still refused when the client gives up is sent
    /// again by the store, within the lock's wait timeout and lease
    /// respectively (it surely did not run, so a retry is safe). A session's
    /// record and lock share one slot, so they move together.
    ///
    /// Waiters for a busy lock are woken by its release through sharded
    /// pub/sub ([`with_cluster_release_notices`](Self::with_cluster_release_notices)).
    ///
    /// No connection is made here.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] if a URL is not valid.
    ///
    /// ```rust,no_run
    /// use session_stores_redis::RedisStore;
    ///
    /// # fn main() -> Result<(), session_core::Error> {
    /// let store = RedisStore::cluster([
    ///     "redis://10.0.0.1:6379/",
    ///     "redis://10.0.0.2:6379/",
    ///     "redis://10.0.0.3:6379/",
    /// ])?
    /// .with_prefix("myapp:");
    /// # let _ = store;
    /// # Ok(()) }
    /// ```
    pub fn cluster<I>(urls: I) -> Result<Self, Error>
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let urls: Vec<String> = urls.into_iter().map(Into::into).collect();
        let commands = client_builder(&urls).build().map_err(RedisStoreError::from)?;
        let notices = client_builder(&urls)
            .use_protocol(redis::ProtocolVersion::RESP3)
            .build()
            .map_err(RedisStoreError::from)?;
        let pool = deadpool::managed::Pool::builder(ClusterManager { client: commands })
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(DEFAULT_CONNECT_TIMEOUT))
            .create_timeout(Some(DEFAULT_CONNECT_TIMEOUT))
            .recycle_timeout(Some(DEFAULT_CONNECT_TIMEOUT))
            .build()
            .map_err(RedisStoreError::from)?;
        let store = Self::on(
            Pool::Cluster(ClusterPool::Tuned(pool)),
            Some(DEFAULT_CLUSTER_RESPONSE_TIMEOUT),
        );
        Ok(store.with_cluster_release_notices(notices))
    }

    /// A store on an existing cluster pool (see [`RedisStore::cluster`]).
    ///
    /// ```rust,no_run
    /// use session_stores_redis::{RedisStore, deadpool_redis};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = deadpool_redis::cluster::Config::from_urls(vec![
    ///     "redis://10.0.0.1:6379/".to_owned(),
    /// ])
    /// .create_pool(Some(deadpool_redis::Runtime::Tokio1))?;
    /// let store = RedisStore::from_cluster_pool(pool);
    /// # let _ = store;
    /// # Ok(()) }
    /// ```
    ///
    /// Its client's retry settings apply: with deadpool-redis' defaults,
    /// a command that a slot migration answers `TRYAGAIN` is retried no
    /// sooner than 1.28 s later, so a locked request on a migrating slot
    /// waits for the migration in steps of over a second (and each step
    /// outlasts the default response timeout). [`RedisStore::cluster`]
    /// retries within milliseconds. Waiters poll unless
    /// [`with_cluster_release_notices`](Self::with_cluster_release_notices)
    /// is set.
    #[must_use]
    pub fn from_cluster_pool(pool: cluster::Pool) -> Self {
        Self::on(Pool::Cluster(ClusterPool::Given(pool)), Some(DEFAULT_CLUSTER_RESPONSE_TIMEOUT))
    }

    /// Wakes waiters for a busy lock when it is released, as
    /// [`with_release_notices`](Self::with_release_notices) does on one
    /// Redis, through sharded pub/sub: a release publishes on the lock
    /// key's shard channel (`SPUBLISH`), which stays in the lock's slot, on
    /// its primary and replicas, instead of reaching every node of the
    /// cluster; the store keeps one cluster connection through `client`
    /// for every waiter's subscription (`SSUBSCRIBE`), which follows a slot
    /// to its new node after a migration or failover. `client` must speak
    /// RESP3 (`ClusterClientBuilder::use_protocol`), which pushes the
    /// notices. [`RedisStore::cluster`] turns this on; a store on one Redis
    /// ignores it.
    ///
    /// ```rust,no_run
    /// use session_stores_redis::{RedisStore, deadpool_redis};
    /// use deadpool_redis::redis::{ProtocolVersion, cluster::ClusterClientBuilder};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let urls = vec!["redis://10.0.0.1:6379/".to_owned()];
    /// let pool = deadpool_redis::cluster::Config::from_urls(urls.clone())
    ///     .create_pool(Some(deadpool_redis::Runtime::Tokio1))?;
    /// let notices = ClusterClientBuilder::new(urls).use_protocol(ProtocolVersion::RESP3).build()?;
    /// let store = RedisStore::from_cluster_pool(pool).with_cluster_release_notices(notices);
    /// # let _ = store;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_cluster_release_notices(mut self, client: redis::cluster::ClusterClient) -> Self {
        if self.on_cluster() {
            self.wakeups = Some(Arc::new(Wakeups::new(Notices::Cluster(Box::new(client)))));
        }
        self
    }

    /// The cluster pool this store was made with by
    /// [`from_cluster_pool`](Self::from_cluster_pool); `None` on one Redis
    /// (see [`pool`](Self::pool)) and for [`RedisStore::cluster`], whose
    /// pool is of its own kind.
    #[must_use]
    pub fn cluster_pool(&self) -> Option<&cluster::Pool> {
        match self.connections.pool() {
            Pool::Cluster(ClusterPool::Given(pool)) => Some(pool),
            Pool::Cluster(ClusterPool::Tuned(_)) | Pool::Standalone(_) => None,
        }
    }
}

/// How [`RedisStore::cluster`]'s client retries a command that the cluster
/// answered `TRYAGAIN` (a script whose keys a slot migration has split
/// between two nodes) or `CLUSTERDOWN`. redis-rs waits at least 1.28 s
/// between such retries by default: longer than the response timeout, which
/// then cuts the retries short with a 503. Here the first retries follow
/// within milliseconds and none waits over 100 ms, so all of them fit in
/// the response timeout (at most about 0.6 s together); a migration that
/// lasts longer is waited out by the lock's own retries (`lock.rs`).
const RETRIES: u32 = 8;
const RETRY_MIN_WAIT_MS: u64 = 2;
const RETRY_MAX_WAIT_MS: u64 = 100;

/// The client builder of [`RedisStore::cluster`].
fn client_builder(urls: &[String]) -> redis::cluster::ClusterClientBuilder {
    redis::cluster::ClusterClientBuilder::new(urls.iter().map(String::as_str))
        .connection_timeout(DEFAULT_CONNECT_TIMEOUT)
        .retries(RETRIES)
        .min_retry_wait(RETRY_MIN_WAIT_MS)
        .max_retry_wait(RETRY_MAX_WAIT_MS)
}

/// The pool of a store on Redis Cluster: of [`RedisStore::cluster`]'s tuned
/// client, or one the application made.
pub(crate) enum ClusterPool {
    Tuned(deadpool::managed::Pool<ClusterManager>),
    Given(cluster::Pool),
}

/// A connection checked out of a [`ClusterPool`].
pub(crate) enum PooledCluster {
    Tuned(deadpool::managed::Object<ClusterManager>),
    Given(cluster::Connection),
}

impl ClusterPool {
    pub(crate) async fn get(&self) -> Result<PooledCluster, deadpool_redis::PoolError> {
        match self {
            ClusterPool::Tuned(pool) => pool.get().await.map(PooledCluster::Tuned),
            ClusterPool::Given(pool) => pool.get().await.map(PooledCluster::Given),
        }
    }

    pub(crate) fn status(&self) -> deadpool_redis::Status {
        match self {
            ClusterPool::Tuned(pool) => pool.status(),
            ClusterPool::Given(pool) => pool.status(),
        }
    }
}

impl PooledCluster {
    pub(crate) fn connection(&self) -> ClusterConnection {
        match self {
            PooledCluster::Tuned(pooled) => (**pooled).clone(),
            PooledCluster::Given(pooled) => (**pooled).clone(),
        }
    }

    pub(crate) fn detach(self) {
        match self {
            PooledCluster::Tuned(pooled) => drop(deadpool::managed::Object::take(pooled)),
            PooledCluster::Given(pooled) => drop(cluster::Connection::take(pooled)),
        }
    }
}

/// deadpool-redis' cluster manager with a client of our own making
/// (deadpool-redis builds its client from URLs alone, with the default
/// retry waits).
pub(crate) struct ClusterManager {
    client: redis::cluster::ClusterClient,
}

impl deadpool::managed::Manager for ClusterManager {
    type Type = ClusterConnection;
    type Error = redis::RedisError;

    async fn create(&self) -> Result<ClusterConnection, redis::RedisError> {
        self.client.get_async_connection().await
    }

    /// A `PING` answered, as deadpool-redis checks its connections.
    async fn recycle(
        &self,
        connection: &mut ClusterConnection,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<redis::RedisError> {
        redis::cmd("PING").query_async::<()>(connection).await?;
        Ok(())
    }
}

/// Adds `record` to its user's index before the record is written.
pub(crate) async fn index_before_write(
    store: &RedisStore,
    record: &Record,
) -> Result<(), RedisStoreError> {
    let Some(user) = record.user.as_deref() else { return Ok(()) };
    let mut command = evalsha(&scripts::INDEX_ADD, 1);
    command
        .arg(store.index_key(user.as_bytes()))
        .arg(&hex(&record.key)[..])
        .arg(value::expire_at(record));
    store.write_for_int(&command, &scripts::INDEX_ADD, "index_add").await?;
    Ok(())
}

/// Removes `members` from `user`'s index, best effort: an entry left behind
/// is ignored by readers and pruned later.
pub(crate) async fn index_remove(store: &RedisStore, user: &[u8], members: &[[u8; 64]]) {
    if let Err(error) = remove_members(store, &store.index_key(user), members).await {
        tracing::debug!(%error, "removing user-index entries failed; they are pruned when read");
    }
}

/// `SREM` of `members` from `index`; nothing to send when there are none.
async fn remove_members(
    store: &RedisStore,
    index: &[u8],
    members: &[[u8; 64]],
) -> Result<(), RedisStoreError> {
    if members.is_empty() {
        return Ok(());
    }
    let mut command = Cmd::with_capacity(2 + members.len(), 80 * members.len());
    command.arg("SREM").arg(index);
    for member in members {
        command.arg(&member[..]);
    }
    store.run(&command, None).await?;
    Ok(())
}

/// The entries of an index, with the storage key each names. Entries that
/// are not a storage key's hex are logged and left out.
async fn members(
    store: &RedisStore,
    index: &[u8],
) -> Result<Vec<([u8; 64], StorageKey)>, RedisStoreError> {
    let reply = store.run(redis::cmd("SMEMBERS").arg(index), None).await;
    let members: Vec<Vec<u8>> = match reply {
        Ok(reply) => redis::from_redis_value(reply)
            .map_err(|_| RedisStoreError::UnexpectedReply("smembers"))?,
        // Something planted under an index's name is no index.
        Err(RedisStoreError::Redis(error)) if error.code() == Some("WRONGTYPE") => Vec::new(),
        Err(error) => return Err(error),
    };
    Ok(members
        .into_iter()
        .filter_map(|member| {
            let key = std::str::from_utf8(&member).ok()?.parse::<StorageKey>().ok();
            let Some(key) = key else {
                tracing::warn!("user index entry is not a session key; skipping it");
                return None;
            };
            Some((hex(&key), key))
        })
        .collect())
}

/// `GET` of a record; a key holding another type reads as a corrupt value.
async fn get_record(store: &RedisStore, key: &StorageKey) -> Result<Value, RedisStoreError> {
    let mut command = Cmd::with_capacity(2, 128);
    command.arg("GET");
    store.record_key_arg(&mut command, key);
    match store.run(&command, None).await {
        Err(RedisStoreError::Redis(error)) if error.code() == Some("WRONGTYPE") => Ok(Value::Okay),
        reply => reply,
    }
}

/// The user's live sessions; prunes entries whose record is gone.
pub(crate) async fn list_for_user(
    store: &RedisStore,
    user: &str,
    now: Timestamp,
) -> Result<Vec<Record>, RedisStoreError> {
    let index = store.index_key(user.as_bytes());
    let mut records = Vec::new();
    let mut gone = Vec::new();
    for (member, key) in members(store, &index).await? {
        let stored = get_record(store, &key).await?;
        if stored == Value::Nil {
            gone.push(member);
            continue;
        }
        if let Ok(Some(record)) = store.user_record(user, &member, stored, now) {
            records.push(record);
        }
    }
    index_remove(store, user.as_bytes(), &gone).await;
    Ok(records)
}

/// Deletes the user's sessions (those whose record still names the user),
/// then the entries it handled.
pub(crate) async fn delete_for_user(
    store: &RedisStore,
    user: &str,
) -> Result<u64, RedisStoreError> {
    let index = store.index_key(user.as_bytes());
    let mut deleted = 0;
    let mut handled = Vec::new();
    for (member, key) in members(store, &index).await? {
        let mut command = evalsha(&scripts::DELETE, 1);
        store.record_key_arg(&mut command, &key);
        command.arg(store.prefix().as_bytes()).arg(store.index_flag()).arg(user);
        if matches!(store.write(&command, &scripts::DELETE).await?, Value::BulkString(_)) {
            deleted += 1;
        }
        handled.push(member);
    }
    index_remove(store, user.as_bytes(), &handled).await;
    Ok(deleted)
}

/// Prunes every index on every primary of entries whose record is gone.
pub(crate) async fn prune_indexes(store: &RedisStore) -> Result<(), RedisStoreError> {
    let pattern = store.scan_pattern();
    let mut pruned = 0usize;
    for (host, port) in primaries(store).await? {
        let mut cursor: u64 = 0;
        loop {
            let mut scan = Cmd::with_capacity(6, 64);
            scan.arg("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(SCAN_COUNT);
            let node = SingleNodeRoutingInfo::ByAddress { host: host.clone(), port };
            let reply = route(store, scan, RoutingInfo::SingleNode(node)).await?;
            let (next, indexes): (u64, Vec<Vec<u8>>) = redis::from_redis_value(reply)
                .map_err(|_| RedisStoreError::UnexpectedReply("scan"))?;
            for index in indexes {
                let mut gone = Vec::new();
                for (member, key) in members(store, &index).await? {
                    let mut exists = Cmd::with_capacity(2, 128);
                    exists.arg("EXISTS");
                    store.record_key_arg(&mut exists, &key);
                    if int_reply(store.run(&exists, None).await?, "exists")? == 0 {
                        gone.push(member);
                    }
                }
                pruned += gone.len();
                remove_members(store, &index, &gone).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    if pruned > 0 {
        tracing::debug!(pruned, "removed stale user-index entries");
    }
    Ok(())
}

/// The address of every primary that is not marked failed, from
/// `CLUSTER NODES`.
async fn primaries(store: &RedisStore) -> Result<Vec<(String, u16)>, RedisStoreError> {
    let mut nodes = Cmd::with_capacity(2, 32);
    nodes.arg("CLUSTER").arg("NODES");
    let reply = route(store, nodes, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random)).await?;
    let text: String = redis::from_redis_value(reply)
        .map_err(|_| RedisStoreError::UnexpectedReply("cluster nodes"))?;
    Ok(parse_primaries(&text))
}

/// The `host:port` of each healthy primary in a `CLUSTER NODES` reply
/// (`<id> <host:port@bus[,hostname]> <flags> ...` per line).
fn parse_primaries(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = fields.nth(1)?;
            let flags = fields.next()?;
            let flags: Vec<&str> = flags.split(',').collect();
            if !flags.contains(&"master") || flags.iter().any(|f| f.starts_with("fail")) {
                return None;
            }
            let host_port = address.split('@').next()?;
            let (host, port) = host_port.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

/// Sends `command` where `routing` says, on the shared connection.
async fn route(
    store: &RedisStore,
    command: Cmd,
    routing: RoutingInfo,
) -> Result<Value, RedisStoreError> {
    let lent = store.connections.get(store.connect_timeout()).await?;
    let crate::conn::Connection::Cluster(mut connection) = lent.connection.clone() else {
        return Err(RedisStoreError::UnexpectedReply("a cluster command on one Redis"));
    };
    match store.bounded(connection.route_command(command, routing)).await? {
        Ok(value) => Ok(value),
        Err(error) => {
            store.connections.failed(&lent, &error);
            Err(error.into())
        }
    }
}

/// `WAIT` on the primary that took `written` (an `EVALSHA` built by
/// [`evalsha`], whose first key routes it): `WAIT` counts the replicas that
/// have this connection's writes to that node.
pub(crate) async fn wait_where_written(
    store: &RedisStore,
    connection: &mut ClusterConnection,
    written: &Cmd,
    wait: Cmd,
    acks: ReplicaAcks,
) -> Result<i64, RedisStoreError> {
    let Some(Arg::Simple(first_key)) = written.args_iter().nth(3) else {
        return Err(RedisStoreError::UnexpectedReply("a write without a key"));
    };
    let node = SingleNodeRoutingInfo::SpecificNode(Route::with_key(first_key, SlotAddr::Master));
    let bound = acks.timeout.saturating_add(store.response_timeout.unwrap_or(acks.timeout));
    match tokio::time::timeout(bound, connection.route_command(wait, RoutingInfo::SingleNode(node)))
        .await
    {
        Ok(reply) => int_reply(reply?, "wait"),
        Err(_elapsed) => Err(RedisStoreError::ResponseTimeout(bound)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primaries_are_the_masters_not_failed() {
        let nodes = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master,fail - 1426238317741 1426238316232 3 disconnected 10923-16383
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
";
        assert_eq!(
            parse_primaries(nodes),
            vec![("127.0.0.1".to_owned(), 30002), ("127.0.0.1".to_owned(), 30001)]
        );
    }

    #[test]
    fn a_garbled_line_is_skipped() {
        assert!(parse_primaries("abc\n\nid host master\n").is_empty());
    }
}

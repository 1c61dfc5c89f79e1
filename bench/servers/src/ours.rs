//! Our rows: `session-axum` on each store.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::Router;
use axum::routing::get;
use session_axum::auth::AuthRejection;
use session_axum::memory::MemoryStore;
use session_axum::{
    Auth, AuthLayer, AuthUser, CurrentUser, Session, SessionError, SessionLayer, UserLoader,
    login_required,
};
use session_core::{
    CookieFormat, ExpiryPolicy, LockingStore, SessionId, SessionStore as _, Timestamp,
};
use session_stores_cookie::{AeadFormat, FernetFormat, JwtFormat, Key, Keyring, SignedFormat};
use session_stores_fs::FsStore;
use session_stores_mysql::{MySqlPoolOptions, MySqlStore};
use session_stores_postgres::{LockMode, PgPoolOptions, PostgresStore};
use session_stores_redis::RedisStore;
use session_stores_sqlite::SqliteStore;

use crate::{Options, Result};

/// Whether the handler takes the session lock first.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Locking {
    /// `session.lock()`, then read and write: no lost updates.
    Lock,
    /// Plain get + insert: last writer wins.
    NoLock,
}

/// Read, add one, save: the work of every row.
async fn bump(session: &Session) -> Result<String, SessionError> {
    let n = session.get::<u64>("n").await?.unwrap_or(0) + 1;
    session.insert("n", n).await?;
    Ok(n.to_string())
}

async fn count_locked(session: Session) -> Result<String, SessionError> {
    let locked = session.lock().await?;
    bump(&locked).await
}

async fn count_unlocked(session: Session) -> Result<String, SessionError> {
    bump(&session).await
}

/// The router of a server-side row on `store`.
fn counter(store: impl LockingStore, locking: Locking) -> Router {
    let handler = match locking {
        Locking::Lock => get(count_locked),
        Locking::NoLock => get(count_unlocked),
    };
    Router::new()
        .route("/", handler.clone())
        .route("/start", handler)
        .layer(SessionLayer::new(store))
}

/// The router of a client-side row: the whole session sealed in the cookie
/// by `format`. There is nothing to lock, so the handler does not.
fn client_side(format: impl CookieFormat) -> Router {
    Router::new()
        .route("/", get(count_unlocked))
        .route("/start", get(count_unlocked))
        .layer(SessionLayer::client_side(format))
}

/// `ours-memory` and `ours-memory-nolock`.
pub(crate) async fn memory(options: &Options, locking: Locking) -> Router {
    let store = MemoryStore::new();
    prefill(&store, options.prefill).await;
    counter(store, locking)
}

/// `ours-redis`: the Redis store and its distributed lock.
pub(crate) fn redis() -> Result<Router> {
    let url = crate::env("REDIS_URL")?;
    let store = RedisStore::from_url(&url)
        .map_err(|e| format!("redis: {e}"))?
        .with_prefix(format!("bench:{}:", std::process::id()));
    Ok(counter(store, Locking::Lock))
}

/// `ours-redis-cluster`: the Redis store and its lock on the local Redis
/// Cluster.
pub(crate) fn redis_cluster() -> Result<Router> {
    let urls = crate::env("REDIS_CLUSTER_URLS")?;
    let store = RedisStore::cluster(urls.split(','))
        .map_err(|e| format!("redis cluster: {e}"))?
        .with_prefix(format!("bench:{}:", std::process::id()));
    Ok(counter(store, Locking::Lock))
}

/// `ours-postgres`: the PostgreSQL store and its advisory lock.
pub(crate) async fn postgres() -> Result<Router> {
    postgres_store("DATABASE_URL", "bench_sessions", LockMode::Advisory).await
}

/// `ours-postgres-pgbouncer`: the PostgreSQL store through PgBouncer in
/// transaction pooling, with the lease lock that mode needs.
pub(crate) async fn postgres_pgbouncer() -> Result<Router> {
    postgres_store("PGBOUNCER_URL", "bench_sessions_lease", LockMode::Lease).await
}

/// A counter on a [`PostgresStore`] reached at the URL in `url_var`.
async fn postgres_store(url_var: &str, table: &str, mode: LockMode) -> Result<Router> {
    let url = crate::env(url_var)?;
    let pool = PgPoolOptions::new()
        .max_connections(crate::PG_POOL)
        .connect(&url)
        .await
        .map_err(|e| format!("postgres: {e}"))?;
    let store = PostgresStore::new(pool)
        .with_table_name(table)
        .map_err(|e| format!("postgres: {e}"))?
        .with_lock_mode(mode);
    store.migrate().await.map_err(|e| format!("postgres: {e}"))?;
    Ok(counter(store, Locking::Lock))
}

/// `ours-mysql`: the MySQL store and its `GET_LOCK` lock, on MariaDB.
pub(crate) async fn mysql() -> Result<Router> {
    let pool = MySqlPoolOptions::new()
        .max_connections(crate::PG_POOL)
        .connect(&crate::env("MYSQL_URL")?)
        .await
        .map_err(|e| format!("mysql: {e}"))?;
    let store = MySqlStore::new(pool)
        .with_table_name("bench_sessions")
        .map_err(|e| format!("mysql: {e}"))?;
    store.migrate().await.map_err(|e| format!("mysql: {e}"))?;
    Ok(counter(store, Locking::Lock))
}

/// `ours-sqlite`: a SQLite file and the store's in-process lock.
pub(crate) async fn sqlite() -> Result<Router> {
    let dir = crate::data_dir("ours-sqlite")?;
    let store =
        SqliteStore::open(dir.join("sessions.db")).await.map_err(|e| format!("sqlite: {e}"))?;
    Ok(counter(store, Locking::Lock))
}

/// `ours-fs`: one file per session, `flock` locks.
pub(crate) fn fs() -> Result<Router> {
    let dir = crate::data_dir("ours-fs")?;
    let store = FsStore::new(dir.join("sessions")).map_err(|e| format!("fs: {e}"))?;
    Ok(counter(store, Locking::Lock))
}

/// A fixed keyring: the benchmark needs no secrecy, only the same work.
fn keyring() -> Keyring {
    Keyring::new(Key::from_bytes([7; 32]))
}

/// `ours-aead`: AES-256-GCM encrypted and authenticated cookie.
pub(crate) fn aead() -> Router {
    client_side(AeadFormat::new(keyring()))
}

/// `ours-fernet`: encrypted and authenticated cookie.
pub(crate) fn fernet() -> Router {
    client_side(FernetFormat::new(keyring()))
}

/// `ours-jwt`: HS256-signed JWT cookie.
pub(crate) fn jwt() -> Router {
    client_side(JwtFormat::hs256(keyring()))
}

/// `ours-signed`: base64url JSON + HMAC-SHA256 cookie.
pub(crate) fn signed() -> Router {
    client_side(SignedFormat::new(keyring()))
}

/// Fills `store` with `count` live sessions holding a counter, as the layer
/// would have created them.
pub(crate) async fn prefill(store: &MemoryStore, count: u64) {
    let now = Timestamp::now();
    let policy = ExpiryPolicy::default();
    for _ in 0..count {
        let mut record = policy.new_record(SessionId::random().storage_key(), now);
        // A u64 always has a JSON form, and a random id does not collide.
        let _ = record.data.insert("n", 0_u64);
        record.version = 1;
        let _ = store.create(&record).await;
    }
}

/// The one user of the login rows.
#[derive(Debug, Clone)]
pub(crate) struct User {
    id: u64,
    password_hash: Vec<u8>,
}

impl AuthUser for User {
    type Id = u64;

    fn id(&self) -> u64 {
        self.id
    }

    fn session_auth_hash(&self) -> &[u8] {
        &self.password_hash
    }
}

/// The user loader: an in-memory map, like the tower-sessions row's backend.
#[derive(Debug, Clone)]
pub(crate) struct Users(HashMap<u64, User>);

impl Default for Users {
    fn default() -> Self {
        let user = User { id: 1, password_hash: b"$argon2id$bench".to_vec() };
        Self(HashMap::from([(1, user)]))
    }
}

impl UserLoader<User> for Users {
    type Error = Infallible;

    async fn load(&self, id: &u64) -> Result<Option<User>, Infallible> {
        Ok(self.0.get(id).cloned())
    }
}

/// Logs user 1 in and starts the counter.
async fn login_start(auth: Auth<User>, session: Session) -> Result<String, AuthRejection> {
    let user = Users::default().0.remove(&1);
    if let Some(user) = user {
        auth.login(&user).await?;
    }
    Ok(bump(&session).await?)
}

/// The protected counter: the current user, then the counter under the lock.
async fn login_count(user: CurrentUser<User>, session: Session) -> Result<String, SessionError> {
    let _ = user.id;
    let locked = session.lock().await?;
    bump(&locked).await
}

/// `ours-login`: `login_required` + `CurrentUser` on the memory store.
pub(crate) fn login() -> Router {
    Router::new()
        .route("/", get(login_count))
        .route_layer(login_required::<User>())
        .route("/start", get(login_start))
        .layer(AuthLayer::new(Users::default()))
        .layer(SessionLayer::new(MemoryStore::new()))
}

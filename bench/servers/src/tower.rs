//! The rows we compare against: tower-sessions 0.14 and axum-login 0.18.

use std::collections::HashMap;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use axum_login::{AuthManagerLayerBuilder, AuthSession, AuthnBackend, UserId, login_required};
use tower_sessions::session::{Id, Record};
use tower_sessions::{MemoryStore, Session, SessionManagerLayer, SessionStore as _};

use crate::{Options, Result};

/// Read, add one, save: the work of every row.
async fn bump(session: &Session) -> Result<String, StatusCode> {
    let error = |_| StatusCode::INTERNAL_SERVER_ERROR;
    let n = session.get::<u64>("n").await.map_err(error)?.unwrap_or(0) + 1;
    session.insert("n", n).await.map_err(error)?;
    Ok(n.to_string())
}

async fn count(session: Session) -> Result<String, StatusCode> {
    bump(&session).await
}

/// `tower-sessions-memory`: `MemoryStore`, `Session::get` + `insert`.
pub(crate) async fn memory(options: &Options) -> Router {
    let store = MemoryStore::default();
    prefill(&store, options.prefill).await;
    Router::new()
        .route("/", get(count))
        .route("/start", get(count))
        .layer(SessionManagerLayer::new(store))
}

/// `tower-sessions-redis`: tower-sessions-redis-store 0.16 (fred), one
/// multiplexed connection like ours.
pub(crate) async fn redis() -> Result<Router> {
    use tower_sessions_redis_store::RedisStore;
    use tower_sessions_redis_store::fred::prelude::{ClientLike as _, Config};
    let url = crate::env("REDIS_URL")?;
    let config = Config::from_url(&url).map_err(|e| format!("redis: {e}"))?;
    let client = tower_sessions_redis_store::fred::clients::Client::new(config, None, None, None);
    // The connection task runs for the life of the server.
    let _task = client.connect();
    client.wait_for_connect().await.map_err(|e| format!("redis: {e}"))?;
    Ok(Router::new()
        .route("/", get(count))
        .route("/start", get(count))
        .layer(SessionManagerLayer::new(RedisStore::new(client))))
}

/// `tower-sessions-postgres`: tower-sessions-sqlx-store 0.15 (sqlx 0.8), the
/// same pool size as ours.
pub(crate) async fn postgres() -> Result<Router> {
    use tower_sessions_sqlx_store::PostgresStore;
    use tower_sessions_sqlx_store::sqlx::postgres::PgPoolOptions;
    let url = crate::env("DATABASE_URL")?;
    let pool = PgPoolOptions::new()
        .max_connections(crate::PG_POOL)
        .connect(&url)
        .await
        .map_err(|e| format!("postgres: {e}"))?;
    let store = PostgresStore::new(pool);
    store.migrate().await.map_err(|e| format!("postgres: {e}"))?;
    Ok(Router::new()
        .route("/", get(count))
        .route("/start", get(count))
        .layer(SessionManagerLayer::new(store)))
}

/// `tower-sessions-mysql`: tower-sessions-sqlx-store 0.15 (sqlx 0.8) on
/// MariaDB, the same pool size as ours.
pub(crate) async fn mysql() -> Result<Router> {
    use tower_sessions_sqlx_store::MySqlStore;
    use tower_sessions_sqlx_store::sqlx::mysql::MySqlPoolOptions;
    let url = crate::env("MYSQL_URL")?;
    let pool = MySqlPoolOptions::new()
        .max_connections(crate::PG_POOL)
        .connect(&url)
        .await
        .map_err(|e| format!("mysql: {e}"))?;
    let store = MySqlStore::new(pool);
    store.migrate().await.map_err(|e| format!("mysql: {e}"))?;
    Ok(Router::new()
        .route("/", get(count))
        .route("/start", get(count))
        .layer(SessionManagerLayer::new(store)))
}

/// Fills `store` with `count` live sessions holding a counter.
async fn prefill(store: &MemoryStore, count: u64) {
    let expiry_date = time::OffsetDateTime::now_utc() + time::Duration::weeks(2);
    for _ in 0..count {
        let data = HashMap::from([("n".to_owned(), serde_json::Value::from(0))]);
        let mut record = Record { id: Id::default(), data, expiry_date };
        // The memory store cannot fail.
        let _ = store.create(&mut record).await;
    }
}

/// The one user of the login rows.
#[derive(Debug, Clone)]
pub(crate) struct User {
    id: u64,
    password_hash: Vec<u8>,
}

impl axum_login::AuthUser for User {
    type Id = u64;

    fn id(&self) -> u64 {
        self.id
    }

    fn session_auth_hash(&self) -> &[u8] {
        &self.password_hash
    }
}

/// axum-login's user backend: an in-memory map, like ours.
#[derive(Debug, Clone)]
pub(crate) struct Backend {
    users: HashMap<u64, User>,
}

impl Default for Backend {
    fn default() -> Self {
        let user = User { id: 1, password_hash: b"$argon2id$bench".to_vec() };
        Self { users: HashMap::from([(1, user)]) }
    }
}

impl AuthnBackend for Backend {
    type User = User;
    type Credentials = u64;
    type Error = std::convert::Infallible;

    async fn authenticate(&self, id: u64) -> Result<Option<User>, Self::Error> {
        Ok(self.users.get(&id).cloned())
    }

    async fn get_user(&self, id: &UserId<Self>) -> Result<Option<User>, Self::Error> {
        Ok(self.users.get(id).cloned())
    }
}

/// Logs user 1 in and starts the counter.
async fn login_start(mut auth: AuthSession<Backend>) -> Result<String, StatusCode> {
    let error = |_| StatusCode::INTERNAL_SERVER_ERROR;
    let user = auth.authenticate(1).await.map_err(error)?.ok_or(StatusCode::UNAUTHORIZED)?;
    auth.login(&user).await.map_err(error)?;
    bump(&auth.session).await
}

/// The protected counter: the user is loaded, then the counter bumped.
async fn login_count(auth: AuthSession<Backend>) -> Result<String, StatusCode> {
    if auth.user.is_none() {
        return Err(StatusCode::UNAUTHORIZED);
    }
    bump(&auth.session).await
}

/// `tower-sessions-login`: axum-login's `login_required!` around the counter.
pub(crate) fn login() -> Router {
    let sessions = SessionManagerLayer::new(MemoryStore::default());
    let auth = AuthManagerLayerBuilder::new(Backend::default(), sessions).build();
    Router::new()
        .route("/", get(login_count))
        .route_layer(login_required!(Backend))
        .route("/start", get(login_start))
        .layer(auth)
}

#![doc = include_str!("guide.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
// The guide links every store; without all features some links have no target.
#![cfg_attr(
    not(all(
        feature = "memory",
        feature = "sqlite",
        feature = "redis",
        feature = "postgres",
        feature = "mysql",
        feature = "fs",
        feature = "cookie-aead",
        feature = "cookie-fernet",
        feature = "cookie-jwt",
        feature = "cookie-signed"
    )),
    allow(rustdoc::broken_intra_doc_links)
)]

pub mod auth;
pub mod config;
mod cookie;
pub mod csrf;
mod extract;
pub mod flash;
mod kind;
mod layer;
pub mod rejection;
mod save;
pub mod service;
mod session;
#[cfg(feature = "test-util")]
pub mod test_util;

pub use auth::{
    Auth, AuthLayer, AuthUser, CurrentUser, UserLoader, login_required, permission_required,
};
pub use config::SessionConfig;
pub use kind::{DefaultSession, SessionKind};
pub use layer::SessionLayer;
pub use rejection::SessionError;
pub use session::{LockedSession, Session};

/// The store-independent core: ids, records, the store and lock traits,
/// expiry, clocks, [`Mirrored`](core::Mirrored) and the store conformance
/// suite, for store authors and for tests (say, `core::ManualClock`).
pub use session_core as core;

/// The README's examples, compiled as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

/// The migration guide's example, compiled as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/coming-from-tower-sessions.md")]
struct MigrationGuideDoctests;
/// The in-process store.
#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub mod memory {
    #[doc(inline)]
    pub use session_stores_memory::{CleanupHandle, MemoryStore};
}

/// The SQLite store: embedded and persistent. On Linux its lock reaches every
/// process on the same database file; elsewhere, and for an in-memory
/// database, it excludes within one process only.
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite {
    #[doc(inline)]
    pub use session_stores_sqlite::{
        CleanupHandle, DEFAULT_CLEANUP_BATCH_SIZE, DEFAULT_TABLE_NAME, InvalidTableName,
        SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteStore,
    };
}

/// The Redis store, with a distributed per-session lock; on Redis Cluster
/// with the `redis-cluster` feature (`RedisStore::cluster`).
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis {
    #[doc(inline)]
    #[cfg(feature = "redis-cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis-cluster")))]
    pub use session_stores_redis::DEFAULT_CLUSTER_RESPONSE_TIMEOUT;
    #[doc(inline)]
    pub use session_stores_redis::{
        DEFAULT_CONNECT_TIMEOUT, DEFAULT_PREFIX, RedisStore, deadpool_redis,
    };
}

/// The PostgreSQL store, with advisory locks, or lease locks for PgBouncer's
/// transaction pooling ([`LockMode`](postgres::LockMode)).
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres {
    #[doc(inline)]
    pub use session_stores_postgres::{
        CleanupHandle, DEFAULT_CLEANUP_BATCH_SIZE, DEFAULT_TABLE_NAME, InvalidTableName, LockMode,
        PgConnectOptions, PgPool, PgPoolOptions, PostgresStore,
    };
}

/// The MySQL and MariaDB store, with `GET_LOCK` session locks held by a
/// pooled connection.
#[cfg(feature = "mysql")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
pub mod mysql {
    #[doc(inline)]
    pub use session_stores_mysql::{
        CleanupHandle, DEFAULT_CLEANUP_BATCH_SIZE, DEFAULT_TABLE_NAME, InvalidTableName,
        MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlStore,
    };
}

/// The filesystem store: one file per session, OS file locks.
#[cfg(feature = "fs")]
#[cfg_attr(docsrs, doc(cfg(feature = "fs")))]
pub mod fs {
    #[doc(inline)]
    pub use session_stores_fs::{CleanupHandle, FsStore};
}

/// Client-side session formats for [`SessionLayer::client_side`]: the whole
/// session travels in the cookie, sealed with a [`Keyring`](cookie_store::Keyring).
///
/// An application that has an `axum_extra::extract::cookie::Key` for its
/// `PrivateCookieJar` can build the keyring from it with the `cookie-key`
/// feature: `Keyring::from(&key)` derives a separate key from its secret.
#[cfg(any(
    feature = "cookie-aead",
    feature = "cookie-fernet",
    feature = "cookie-jwt",
    feature = "cookie-signed"
))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(
        feature = "cookie-aead",
        feature = "cookie-fernet",
        feature = "cookie-jwt",
        feature = "cookie-signed"
    )))
)]
pub mod cookie_store {
    #[doc(inline)]
    pub use session_stores_cookie::*;
}

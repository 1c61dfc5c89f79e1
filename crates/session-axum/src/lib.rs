//! Sessions for axum.
//!
//! ```
//! use axum::{Router, routing::get};
//! use session_axum::{Session, SessionError, SessionLayer, memory::MemoryStore};
//!
//! async fn handler(session: Session) -> Result<String, SessionError> {
//!     let locked = session.lock().await?;
//!     let n: u64 = locked.get("n").await?.unwrap_or(0);
//!     locked.insert("n", n + 1).await?;
//!     Ok(n.to_string())
//! }
//!
//! let app: Router = Router::new()
//!     .route("/", get(handler))
//!     .layer(SessionLayer::new(MemoryStore::new()));
//! ```
//!
//! - [`SessionLayer`] loads nothing up front. The [`Session`] extractor
//!   loads the session on first use and the layer saves it after the handler,
//!   only if it changed (or its idle deadline is due a refresh), and never for
//!   a 5xx response. A failed save turns into the configured error response
//!   (503 by default), never a silent drop.
//! - [`Session::lock`] serializes read-modify-write across concurrent
//!   requests, through the store's lock, so nothing is lost.
//! - Session ids are 128 random bits, strictly parsed, hashed before they
//!   reach a store, and never adopted when unknown.
//! - Cookies default to `Secure`, `HttpOnly`, `SameSite=Lax`, `Path=/`.
//!
//! # Stores
//!
//! Cargo features pick the stores, each re-exported in a module of its name:
//!
//! | feature | store | lock |
//! | --- | --- | --- |
//! | `memory` (default) | `memory::MemoryStore`, in-process | per-session async mutex |
//! | `sqlite` | `sqlite::SqliteStore`, embedded, persistent | in-process (one process per file) |
//! | `redis` | `redis::RedisStore` (deadpool-redis) | `SET NX PX` with lease renewal, across processes |
//! | `postgres` | `postgres::PostgresStore` (sqlx) | advisory lock, across processes |
//! | `fs` | `fs::FsStore`, one file per session (Unix) | OS file lock, across processes on one host |
//! | `cookie-fernet`, `cookie-jwt`, `cookie-signed` | `cookie_store::{FernetFormat, JwtFormat, SignedFormat}` for [`SessionLayer::client_side`] | none: last writer wins |
//!
//! [`Mirrored`](core::Mirrored) combines a primary with replicas.
#![cfg_attr(docsrs, feature(doc_cfg))]

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

/// The SQLite store: embedded, persistent, one process per database file.
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite {
    #[doc(inline)]
    pub use session_stores_sqlite::{
        CleanupHandle, DEFAULT_CLEANUP_BATCH_SIZE, DEFAULT_TABLE_NAME, InvalidTableName,
        SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteStore,
    };
}

/// The Redis store, with a distributed per-session lock.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis {
    #[doc(inline)]
    pub use session_stores_redis::{
        DEFAULT_CONNECT_TIMEOUT, DEFAULT_PREFIX, RedisStore, deadpool_redis,
    };
}

/// The PostgreSQL store, with advisory locks.
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres {
    #[doc(inline)]
    pub use session_stores_postgres::{
        CleanupHandle, DEFAULT_CLEANUP_BATCH_SIZE, DEFAULT_TABLE_NAME, InvalidTableName,
        PgConnectOptions, PgPool, PgPoolOptions, PostgresStore,
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
#[cfg(any(feature = "cookie-fernet", feature = "cookie-jwt", feature = "cookie-signed"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "cookie-fernet", feature = "cookie-jwt", feature = "cookie-signed")))
)]
pub mod cookie_store {
    #[doc(inline)]
    pub use session_stores_cookie::*;
}

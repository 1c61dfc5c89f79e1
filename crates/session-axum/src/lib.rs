//! Sessions for axum.
//!
//! ```
//! use axum::{Router, routing::get};
//! use session_axum::{Session, SessionConfig, SessionError, SessionLayer, memory::MemoryStore};
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
//!     .layer(SessionLayer::new(MemoryStore::new()).with_config(SessionConfig::default()));
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
//! Cargo features pick the stores: `memory` (default) re-exports
//! [`memory::MemoryStore`].
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod auth;
mod client;
mod config;
mod cookie;
mod extract;
mod kind;
mod layer;
mod rejection;
mod save;
mod session;

pub use auth::{
    Auth, AuthLayer, AuthUser, CurrentUser, UserLoader, login_required, permission_required,
    safe_next,
};
pub use config::{DefaultErrorResponder, ErrorResponder, MAX_COOKIE_BYTES, SessionConfig};
pub use kind::{DefaultSession, SessionKind};
pub use layer::{ResponseFuture, SessionLayer, SessionService};
pub use rejection::{MissingSessionLayer, SessionError};
pub use session::{LockedSession, Session};

#[doc(no_inline)]
pub use ::cookie::SameSite;
#[doc(inline)]
pub use session_core::{
    self as core, Clock, CookieFormat, Error, ExpiryPolicy, LockOptions, ManualClock,
    SessionExpiry, SessionLock, SessionStore, SystemClock,
};

/// The in-process store.
#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub mod memory {
    #[doc(inline)]
    pub use session_stores_memory::{MemoryStore, SweeperHandle};
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

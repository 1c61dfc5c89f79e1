//! The SQLite session store: [`SqliteStore`], on [sqlx]. The embedded,
//! persistent default: sessions survive restarts with no server to run.
//!
//! ```rust,no_run
//! use std::time::Duration;
//! use session_stores_sqlite::{SpawnCleanup, SqliteStore};
//!
//! # async fn demo() -> Result<(), session_core::Error> {
//! // Creates the file and the table if they are missing.
//! let store = SqliteStore::open("sessions.db").await?;
//! let cleanup = store.spawn_cleanup(Duration::from_secs(600));
//! // hand `store` to the session layer
//! # drop(cleanup);
//! # Ok(()) }
//! ```
//!
//! Sessions live in one table keyed by the SHA-256 of the session id (the raw
//! id is never stored):
//!
//! - `create` is one `INSERT ... ON CONFLICT DO NOTHING`, so an id collision
//!   is detected atomically; `save` and `touch` are `UPDATE`s that never
//!   bring back a deleted session.
//! - Expired sessions never load; [`SpawnCleanup::spawn_cleanup`] deletes
//!   them in bounded batches in the background.
//! - A row whose data is not valid JSON is logged and treated as no session.
//! - Errors (unwritable file, database busy beyond the busy timeout, pool
//!   exhausted) are [`session_core::Error::Backend`] with `store: "sqlite"`,
//!   which the layer answers with 503.
//!
//! # Locking: one process owns the file
//!
//! [`lock`](session_core::LockingStore::lock) is an async mutex per session
//! inside this process, shared by every `SqliteStore` on the same file. That
//! is the right lock for an embedded database: it needs no database round
//! trip and never keeps a SQLite write transaction open while a handler
//! runs (which would stall every other write to the file).
//!
//! **Several processes sharing one database file are not supported for
//! locking.** SQLite itself keeps the file consistent across processes, so
//! plain reads and writes stay safe, but `session.lock()` in one process does
//! not exclude another process: concurrent read-modify-write across
//! processes can lose updates, and two processes moving one session at once
//! (a login or `cycle_id` each) can copy its data to both new ids. Ending a
//! session (logout, "log out everywhere") stays final across processes, as
//! it rests on SQLite's transactions. Run one process per file, or use the
//! PostgreSQL, Redis or filesystem store when several processes share
//! sessions.
//!
//! Not for direct use; see the `session-axum` crate.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod driver;
mod error;
mod lock;
mod store;
mod table;

/// The background task that deletes expired sessions: `store.spawn_cleanup(interval)`
/// through [`SpawnCleanup`], stopped through its [`CleanupHandle`].
pub use session_core::{CleanupHandle, SpawnCleanup};
pub use session_stores_sql::{DEFAULT_CLEANUP_BATCH_SIZE, DEFAULT_TABLE_NAME, InvalidTableName};
pub use store::SqliteStore;

// The pool, its options and connect options, so applications need no direct
// sqlx dependency (and cannot pick a mismatched sqlx version).
#[doc(inline)]
pub use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

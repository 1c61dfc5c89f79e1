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
//! # Locking, within a process and across processes
//!
//! [`lock`](session_core::LockingStore::lock) is exclusive per session across
//! every store on the database file:
//!
//! - within this process, an async mutex per session, shared by every
//!   `SqliteStore` on the same file (fair, no polling, no round trip);
//! - on Linux, for a database in a file, also a byte-range lock of the
//!   operating system (`F_OFD_SETLK`) on one byte of `<database>-locks`, so
//!   that several processes on one file (workers of one server, or the old
//!   and the new process during a restart) exclude each other. The system
//!   ends it when the holder closes the file or dies; a waiter blocks in the
//!   system's lock queue (`F_OFD_SETLKW` on a blocking thread, at most
//!   [`MAX_BLOCKING_WAITS`](session_core::MAX_BLOCKING_WAITS) per process;
//!   past that it polls with a jittered backoff of 2 to 25 ms), so the
//!   holder's release wakes it at once.
//!
//! Neither holds a SQLite write transaction open while a handler runs (which
//! would stall every other write to the file). On other platforms, and for
//! in-memory databases, the lock is the in-process half only: run one process
//! per file there, or use the PostgreSQL or Redis store.
//!
//! Not for direct use; see the `session-axum` crate.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(target_os = "linux")]
mod cross_process;
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

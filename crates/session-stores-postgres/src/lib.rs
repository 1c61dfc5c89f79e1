//! The PostgreSQL session store: [`PostgresStore`], on [sqlx].
//!
//! Sessions live in one table keyed by the SHA-256 of the session id (the raw
//! id is never stored), created by [`PostgresStore::migrate`]. Several app
//! processes and machines can share it:
//!
//! - `create` is one `INSERT ... ON CONFLICT DO NOTHING`, so an id collision
//!   is detected atomically; `save` and `touch` are `UPDATE`s that never
//!   bring back a deleted session.
//! - [`lock`](session_core::LockingStore::lock) takes a lock on the session,
//!   exclusive across every process using the database, so read-modify-write
//!   under `session.lock()` loses no update. [`LockMode`] picks how: a
//!   PostgreSQL advisory lock (the default, for direct connections), or a
//!   lease row fenced by a random token, for PgBouncer in transaction
//!   pooling mode (see [below](#behind-pgbouncer)).
//! - Expired sessions never load; [`SpawnCleanup::spawn_cleanup`] deletes
//!   them in bounded batches in the background. Running it in several
//!   processes at once is fine.
//! - A row whose data is not valid JSON is logged and treated as no session.
//! - Errors (database down, pool exhausted) are
//!   [`session_core::Error::Backend`] with `store: "postgres"`, which the
//!   layer answers with 503; the pool reconnects when the database is back.
//!
//! ```rust,no_run
//! use std::time::Duration;
//! use session_stores_postgres::{PgPoolOptions, PostgresStore, SpawnCleanup};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = PgPoolOptions::new()
//!     .max_connections(20)
//!     .acquire_timeout(Duration::from_secs(3))
//!     .connect("postgres://app@localhost/app")
//!     .await?;
//! let store = PostgresStore::new(pool).with_table_name("sessions")?;
//! store.migrate().await?;
//! let cleanup = store.spawn_cleanup(Duration::from_secs(600));
//! // hand `store` to the session layer
//! # drop(cleanup);
//! # Ok(()) }
//! ```
//!
//! # Behind PgBouncer
//!
//! With PgBouncer in transaction pooling mode in front of the database, the
//! advisory lock does not work (it belongs to a server connection that
//! PgBouncer hands to other clients between transactions), and neither do
//! sqlx's prepared statements. [`LockMode::Lease`] locks with a lease row
//! instead, and sends every statement of the store as a simple query with
//! no prepared statement. The pool needs sqlx's `extra_float_digits`
//! startup parameter off (PgBouncer 1.18 refuses it), which the store does
//! itself for connections opened after
//! [`with_lock_mode`](PostgresStore::with_lock_mode); set it before
//! connecting if the pool connects eagerly:
//!
//! ```rust,no_run
//! use session_stores_postgres::{LockMode, PgConnectOptions, PgPoolOptions, PostgresStore};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let options: PgConnectOptions = "postgres://app@pgbouncer.internal:6432/app".parse()?;
//! let pool = PgPoolOptions::new()
//!     .max_connections(20)
//!     .connect_with(options.extra_float_digits(None))
//!     .await?;
//! let store = PostgresStore::new(pool).with_lock_mode(LockMode::Lease);
//! store.migrate().await?;
//! # Ok(()) }
//! ```
//!
//! TLS is not enabled in this crate's sqlx build; connect over a trusted
//! network or a Unix socket.
//!
//! The `testing` feature adds `testing::PrivatePostgres`: a PostgreSQL
//! cluster of a test's own, to kill and start again in fault tests.
//!
//! Not for direct use; see the `session-axum` crate.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod driver;
mod error;
mod inline;
mod lease;
mod lock;
mod mode;
mod store;
mod table;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use mode::LockMode;
/// The background task that deletes expired sessions: `store.spawn_cleanup(interval)`
/// through [`SpawnCleanup`], stopped through its [`CleanupHandle`].
pub use session_core::{CleanupHandle, SpawnCleanup};
pub use session_stores_sql::{DEFAULT_CLEANUP_BATCH_SIZE, DEFAULT_TABLE_NAME, InvalidTableName};
pub use store::PostgresStore;

// The pool, its options and connect options, so applications need no direct
// sqlx dependency (and cannot pick a mismatched sqlx version).
#[doc(inline)]
pub use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

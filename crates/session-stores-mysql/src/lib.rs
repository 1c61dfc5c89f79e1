//! The MySQL and MariaDB session store: [`MySqlStore`], on [sqlx].
//!
//! Sessions live in one table keyed by the SHA-256 of the session id (the raw
//! id is never stored), created by [`MySqlStore::migrate`]. Several app
//! processes and machines can share it:
//!
//! - `create` is one plain `INSERT`: an id collision fails on the primary
//!   key, atomically, and never overwrites; `save` and `touch` are `UPDATE`s
//!   that never bring back a deleted session.
//! - [`lock`](session_core::LockingStore::lock) takes a lock on the session,
//!   exclusive across every process using the server, so read-modify-write
//!   under `session.lock()` loses no update: a user-level lock (`GET_LOCK`)
//!   held by a pooled connection (see [below](#the-lock)).
//! - Expired sessions never load; [`SpawnCleanup::spawn_cleanup`] deletes
//!   them in bounded batches in the background. Running it in several
//!   processes at once is fine.
//! - User ids are bytes: any string, a NUL included, compared byte for byte.
//! - A row whose data is not valid JSON is logged and treated as no session.
//! - Errors (server down, pool exhausted) are
//!   [`session_core::Error::Backend`] with `store: "mysql"`, which the layer
//!   answers with 503; the pool reconnects when the server is back.
//!
//! ```rust,no_run
//! use std::time::Duration;
//! use session_stores_mysql::{MySqlPoolOptions, MySqlStore, SpawnCleanup};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = MySqlPoolOptions::new()
//!     .max_connections(20)
//!     .acquire_timeout(Duration::from_secs(3))
//!     .connect("mysql://app:secret@localhost/app")
//!     .await?;
//! let store = MySqlStore::new(pool).with_table_name("sessions")?;
//! store.migrate().await?;
//! let cleanup = store.spawn_cleanup(Duration::from_secs(600));
//! // hand `store` to the session layer
//! # drop(cleanup);
//! # Ok(()) }
//! ```
//!
//! # The lock
//!
//! A session's lock is `GET_LOCK` on a name derived from the table and the
//! session's storage key (a hash of the table name, then 160 bits of the key
//! in hex: 57 characters, within MySQL's limit of 64), on a connection the
//! lock keeps until it is released. A waiter waits in the server's own lock
//! queue, for what is left of its wait, and the holder's `RELEASE_LOCK` wakes
//! it at once: no polling. Waiters of one store in one process queue in
//! front of it, so only the first of them holds a connection.
//!
//! What a crashed holder costs: the server releases a user-level lock when
//! the connection holding it closes. A process that crashes or is killed has
//! its connections closed by the operating system, and the next request gets
//! the lock at once. A machine that vanishes (power, network) closes
//! nothing: the lock lasts until the server notices the dead connection, by
//! TCP keepalive or its `wait_timeout` (8 hours by default). Lower
//! `wait_timeout` for the app's user, or enable TCP keepalives on the
//! server, where that matters. Requests for that session wait for at most
//! their wait timeout and answer 503 meanwhile; no other session is
//! affected.
//!
//! A late save is refused: saves under the lock run on the lock's own
//! connection, so a holder whose connection died (and with it the lock)
//! cannot save at all, and the save's `UPDATE` also checks that its
//! connection still holds the lock (`IS_USED_LOCK(name) = CONNECTION_ID()`),
//! so a statement that reached another server connection writes nothing and
//! answers [`Error::LockLost`](session_core::Error::LockLost).
//!
//! # Where it works
//!
//! The lock lives in one server connection, so whatever stands between the
//! app and the server must keep each of the app's connections on one server
//! connection, at least from its `GET_LOCK` on:
//!
//! | between the app and the server | the lock |
//! |---|---|
//! | nothing: TCP or a Unix socket, MySQL 5.7+ or MariaDB 10.2+ | works |
//! | a TCP proxy (HAProxy and the like) | works |
//! | ProxySQL | works: ProxySQL stops multiplexing a client connection for good once it runs `GET_LOCK` (its documented rule), so each pooled connection that ever locked keeps a server connection of its own; size its server connections for the app's pool. A read/write split must send `SELECT GET_LOCK`, `RELEASE_LOCK` and `IS_USED_LOCK` to the writer, not to a replica |
//! | a pooler that moves a client between server connections whatever it ran | does not work: the lock would stay on a server connection the app no longer talks to. Nothing is lost: the fenced saves answer [`Error::LockLost`](session_core::Error::LockLost) (503) rather than write |
//! | a Galera cluster (MariaDB Galera Cluster, Percona XtraDB Cluster) | only with every process writing through one node: user-level locks are not shared between nodes |
//!
//! The fenced `UPDATE` reads the lock in its `WHERE`, which makes it unsafe
//! for statement-based replication: replicate with row-based or mixed binary
//! logging (`binlog_format = ROW`, MySQL 8's default, or `MIXED`,
//! MariaDB's), never `STATEMENT`.
//!
//! # Connecting
//!
//! TLS is not enabled in this crate's sqlx build: connect over a trusted
//! network or a Unix socket (`mysql://app@localhost/app?socket=/run/mysqld/mysqld.sock`).
//! Nor is RSA: MySQL 8's default `caching_sha2_password` logs a user in
//! over plain TCP only once the server has cached its password (after a
//! login over TLS or a socket); give the app's user `mysql_native_password`,
//! or connect through the socket. MariaDB is not concerned.
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
pub use store::MySqlStore;

// The pool, its options and connect options, so applications need no direct
// sqlx dependency (and cannot pick a mismatched sqlx version).
#[doc(inline)]
pub use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};

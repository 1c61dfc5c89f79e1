//! What the SQL session stores (`session-stores-postgres`,
//! `session-stores-mysql`, `session-stores-sqlite`) share, independent of
//! the driver:
//!
//! - [`Driver`], what a store crate tells this one: its sqlx database, the
//!   few places its SQL dialect differs, its error type;
//! - [`SessionTable`], the statements of the
//!   [`SessionStore`](session_core::SessionStore) operations in a driver's
//!   dialect, their binds (records as [`Encoded`] columns, in [`COLUMNS`]
//!   order), rows read back into records (a corrupt row logged and treated
//!   as an absent session), and [`Write::outcome`], what a write that changed
//!   no row means;
//! - [`impl_session_store!`], a store's `SessionStore` impl as its table's
//!   operations on its pool, and the defaults [`DEFAULT_TABLE_NAME`] and
//!   [`DEFAULT_CLEANUP_BATCH_SIZE`];
//! - [`ConnectionLock`] and [`LockConnection`], a session lock that one
//!   pooled connection holds ([`SessionLevelLock`]: PostgreSQL's advisory
//!   lock, MySQL's `GET_LOCK`), never pooled again while it may hold it;
//! - table names: [`QualifiedName`] and [`check_identifier`], [`quote`] and
//!   the error [`InvalidTableName`], which the stores re-export; [`fnv1a64`],
//!   a stable hash for names derived from them.
//!
//! The table's DDL, how a lock is taken and anything else one database does
//! its own way stay in the driver crates.
//!
//! Not for direct use; see the `session-axum` crate.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod driver;
mod held;
mod ident;
mod row;
mod store;
mod table;

pub use driver::{Cleanup, Driver, Insert, Parameters, UserIds, ValueTypes, Write, trusted_sql};
pub use held::{ConnectionLock, LockConnection, SessionLevelLock};
pub use ident::{InvalidTableName, MAX_IDENT, QualifiedName, check_identifier, fnv1a64, quote};
pub use row::{Bound, COLUMNS, Encoded, RECORD_COLUMNS, UPDATED_COLUMNS};
pub use store::{DEFAULT_CLEANUP_BATCH_SIZE, DEFAULT_TABLE_NAME};
pub use table::{SessionTable, update_statement};

/// For [`impl_session_store!`]: core, as the store crates see it.
#[doc(hidden)]
pub use session_core as __core;

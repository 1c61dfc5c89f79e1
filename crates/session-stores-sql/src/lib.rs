//! What the SQL session stores (`session-stores-postgres`,
//! `session-stores-sqlite`) share, independent of the driver:
//!
//! - the column list and [`Encoded`], a record as bindable column values;
//! - [`decode_row`], a row back into a record for any sqlx driver, with a
//!   corrupt row logged and treated as an absent session;
//! - table name checks: [`check_identifier`], [`quote`] and the error
//!   [`InvalidTableName`], which the stores re-export.
//!
//! The queries themselves stay in the driver crates: placeholders, column
//! types and locking differ, and sqlx has no driver-independent way to read
//! affected row counts.
//!
//! Not for direct use; see the `session-axum` crate.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod ident;
mod row;

pub use ident::{InvalidTableName, MAX_IDENT, check_identifier, quote};
pub use row::{COLUMNS, Encoded, decode_row};

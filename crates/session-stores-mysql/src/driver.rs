//! [`MySql`]: what the SQL code shared with PostgreSQL and SQLite needs to
//! know about MySQL and MariaDB.

use session_stores_sql::{Cleanup, Driver, Insert, Parameters, UserIds, ValueTypes};
use sqlx::mysql::MySqlQueryResult;

use crate::error::{STORE, backend};

/// The MySQL dialect of the shared session statements.
pub(crate) struct MySql;

impl Driver for MySql {
    type Database = sqlx::MySql;
    const STORE: &'static str = STORE;
    const PARAMETERS: Parameters = Parameters::Positional;
    // No `ON CONFLICT`; `INSERT IGNORE` would store a value cut to fit its
    // column, so a taken key is the duplicate-key error of a plain insert.
    const INSERT: Insert = Insert::Plain;
    const CLEANUP: Cleanup = Cleanup::DeleteLimit;
    // Every column has one type: a value of another means a table this crate
    // did not make.
    const VALUE_TYPES: ValueTypes = ValueTypes::PerColumn { fix: "run `MySqlStore::migrate`" };
    // Binary, so a user id may hold any character (NUL included) and compares
    // byte for byte: a text column's collation would match `"a"` with `"A"`
    // or `"a "`.
    const USER_IDS: UserIds = UserIds::Bytes;

    fn rows_affected(done: &MySqlQueryResult) -> u64 {
        // sqlx connects with `CLIENT_FOUND_ROWS`: an `UPDATE` counts the rows
        // it matched, also those it left as they were.
        done.rows_affected()
    }

    fn backend(error: sqlx::Error) -> session_core::Error {
        backend(error)
    }
}

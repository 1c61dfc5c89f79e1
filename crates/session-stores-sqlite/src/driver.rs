//! [`Sqlite`]: what the SQL code shared with PostgreSQL needs to know about
//! SQLite.

use session_stores_sql::{Cleanup, Driver, Insert, Parameters, UserIds, ValueTypes};
use sqlx::sqlite::SqliteQueryResult;

use crate::error::{STORE, backend};

/// The SQLite dialect of the shared session statements.
pub(crate) struct Sqlite;

impl Driver for Sqlite {
    type Database = sqlx::Sqlite;
    const STORE: &'static str = STORE;
    const PARAMETERS: Parameters = Parameters::Numbered("?");
    const INSERT: Insert = Insert::OnConflictDoNothing;
    // SQLite serializes writers: there are no row locks to skip.
    const CLEANUP: Cleanup = Cleanup::Subquery { lock: "" };
    // A column's declared type does not bind its values: a value of another
    // type is a damaged row, read as no session.
    const VALUE_TYPES: ValueTypes = ValueTypes::PerValue;
    const USER_IDS: UserIds = UserIds::Text;

    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }

    fn backend(error: sqlx::Error) -> session_core::Error {
        backend(error)
    }
}

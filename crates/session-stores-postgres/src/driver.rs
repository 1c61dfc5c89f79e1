//! [`Pg`]: what the SQL code shared with SQLite needs to know about
//! PostgreSQL.

use session_stores_sql::{Cleanup, Driver, Insert, Parameters, UserIds, ValueTypes};
use sqlx::postgres::PgQueryResult;

use crate::error::{STORE, backend};

/// The PostgreSQL dialect of the shared session statements.
pub(crate) struct Pg;

impl Driver for Pg {
    type Database = sqlx::Postgres;
    const STORE: &'static str = STORE;
    const PARAMETERS: Parameters = Parameters::Numbered("$");
    const INSERT: Insert = Insert::OnConflictDoNothing;
    const CLEANUP: Cleanup = Cleanup::Subquery { lock: "FOR UPDATE SKIP LOCKED" };
    // Every column has one type: a value of another means a table made by an
    // older version of this crate.
    const VALUE_TYPES: ValueTypes = ValueTypes::PerColumn { fix: "run `PostgresStore::migrate`" };
    // TEXT refuses NUL, which a user id may contain.
    const USER_IDS: UserIds = UserIds::Bytes;

    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }

    fn backend(error: sqlx::Error) -> session_core::Error {
        backend(error)
    }
}

//! What a driver crate tells the shared code: its sqlx database, its SQL
//! dialect where the shared statements differ, and its error type.

use std::sync::Arc;

use session_core::Error;
use sqlx::{AssertSqlSafe, Database, SqlSafeStr, SqlStr};

/// One SQL store's driver, as the shared statements and row code need it.
///
/// Implemented once per store crate on a unit type; everything else in this
/// crate is generic over it.
///
/// ```
/// use session_stores_sql::{Cleanup, Driver, Insert, Parameters, UserIds, ValueTypes};
///
/// struct Sqlite;
///
/// impl Driver for Sqlite {
///     type Database = sqlx::Sqlite;
///     const STORE: &'static str = "sqlite";
///     const PARAMETERS: Parameters = Parameters::Numbered("?");
///     const INSERT: Insert = Insert::OnConflictDoNothing;
///     const CLEANUP: Cleanup = Cleanup::Subquery { lock: "" };
///     const VALUE_TYPES: ValueTypes = ValueTypes::PerValue;
///     const USER_IDS: UserIds = UserIds::Text;
///
///     fn rows_affected(done: &sqlx::sqlite::SqliteQueryResult) -> u64 {
///         done.rows_affected()
///     }
///
///     fn backend(error: sqlx::Error) -> session_core::Error {
///         session_core::Error::backend(Self::STORE, error)
///     }
/// }
/// # let _ = Sqlite;
/// ```
pub trait Driver: Send + Sync + 'static {
    /// The sqlx database.
    type Database: Database;

    /// The store name in [`Error::Backend`] and in log lines.
    const STORE: &'static str;

    /// How statements write their parameters.
    const PARAMETERS: Parameters;

    /// How `create` inserts a session without overwriting one under the
    /// same key.
    const INSERT: Insert;

    /// How the cleanup deletes one batch of expired sessions.
    const CLEANUP: Cleanup;

    /// Whether a value's type is the column's or the value's own.
    const VALUE_TYPES: ValueTypes;

    /// How the `user_id` column holds a user id.
    const USER_IDS: UserIds;

    /// The rows a statement changed (sqlx has no driver-independent way to
    /// read it).
    fn rows_affected(done: &<Self::Database as Database>::QueryResult) -> u64;

    /// A driver error as this store's [`Error::Backend`].
    fn backend(error: sqlx::Error) -> Error;
}

/// How a driver's statements write their parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parameters {
    /// A prefix and the parameter's 1-based number (`$1` in PostgreSQL, `?1`
    /// in SQLite): the statements bind `session_key` first wherever it stands.
    Numbered(&'static str),
    /// A bare `?` each, bound in the order they stand in the statement
    /// (MySQL): an `UPDATE` binds its new values first and `session_key`,
    /// which its `WHERE` names, last.
    Positional,
}

impl Parameters {
    /// Parameter `n` (1-based) as the statement writes it.
    ///
    /// ```
    /// use session_stores_sql::Parameters;
    ///
    /// assert_eq!(Parameters::Numbered("$").nth(3), "$3");
    /// assert_eq!(Parameters::Positional.nth(3), "?");
    /// ```
    #[must_use]
    pub fn nth(self, n: usize) -> String {
        match self {
            Self::Numbered(prefix) => format!("{prefix}{n}"),
            Self::Positional => "?".to_owned(),
        }
    }

    /// Whether an `UPDATE` binds `session_key` before its new values.
    #[must_use]
    pub fn key_first(self) -> bool {
        matches!(self, Self::Numbered(_))
    }
}

/// How `create` keeps a taken key from being overwritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// `INSERT ... ON CONFLICT (session_key) DO NOTHING`: a taken key
    /// changes no row.
    OnConflictDoNothing,
    /// A plain `INSERT`, which a taken key fails with the database's
    /// duplicate-key error (MySQL: its `INSERT IGNORE` would also turn a value
    /// that does not fit its column into a warning and store it cut short).
    Plain,
}

/// How the cleanup deletes one batch of expired sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// `DELETE ... WHERE session_key IN (SELECT ... LIMIT n <lock>)`. `lock`
    /// ends the inner `SELECT` so that rows another transaction holds are
    /// skipped rather than waited for (PostgreSQL: `FOR UPDATE SKIP LOCKED`,
    /// so several instances clean up at once without queueing behind each
    /// other or behind a request's `UPDATE`); empty where writes are
    /// serialized anyway (SQLite).
    Subquery {
        /// The inner `SELECT`'s locking clause, or nothing.
        lock: &'static str,
    },
    /// `DELETE ... WHERE expires_at <= ? LIMIT n` (MySQL, which refuses both
    /// a `LIMIT` inside `IN (...)` and a subquery on the table it deletes
    /// from).
    DeleteLimit,
}

/// Where a value's SQL type comes from, which decides what a value of an
/// unexpected type means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueTypes {
    /// Every value has its column's type (PostgreSQL): a value of another
    /// type means the table is not the one this store creates (it predates a
    /// migration), an error of the schema rather than of the row.
    PerColumn {
        /// How to fix the schema, for the error message (say, "run
        /// `PostgresStore::migrate`").
        fix: &'static str,
    },
    /// Each value carries its own type (SQLite): a value of another type is a
    /// corrupt row, read as an absent session like any other.
    PerValue,
}

/// How the `user_id` column holds a user id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserIds {
    /// As text.
    Text,
    /// As its UTF-8 bytes (where text cannot hold every string a user id
    /// may be: PostgreSQL `TEXT` refuses NUL).
    Bytes,
}

/// What a write statement expects to change: one row, the session's.
///
/// ```
/// use session_core::Error;
/// use session_stores_sql::Write;
///
/// assert!(Write::Insert.outcome(1).is_ok());
/// assert!(matches!(Write::Insert.outcome(0), Err(Error::IdCollision)));
/// assert!(matches!(Write::Update.outcome(0), Err(Error::NotFound)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// An `INSERT` of a new session that changes no row where the key is
    /// taken (see [`Insert`](crate::Insert) for the form that fails instead).
    Insert,
    /// An `UPDATE` of an existing session (save, touch), which never brings
    /// back a deleted one.
    Update,
}

impl Write {
    /// The store's answer for a write that changed `rows_affected` rows.
    ///
    /// # Errors
    ///
    /// When no row changed: [`Error::IdCollision`] for an insert (the key is
    /// taken), [`Error::NotFound`] for an update (the session is gone:
    /// deleted, or expired and cleaned up).
    pub fn outcome(self, rows_affected: u64) -> Result<(), Error> {
        match (self, rows_affected) {
            (Self::Insert, 0) => Err(Error::IdCollision),
            (Self::Update, 0) => Err(Error::NotFound),
            _ => Ok(()),
        }
    }
}

/// `text` as a statement sqlx accepts.
///
/// Only for SQL built from constant text and validated, quoted identifiers
/// (see [`check_identifier`](crate::check_identifier) and
/// [`quote`](crate::quote)); values are always bound, never formatted in.
///
/// ```
/// let statement = session_stores_sql::trusted_sql(format!("DELETE FROM {}", "\"t\""));
/// assert_eq!(statement.as_str(), r#"DELETE FROM "t""#);
/// ```
#[must_use]
pub fn trusted_sql(text: String) -> SqlStr {
    // An `Arc` so that cloning the statement for each query is cheap.
    AssertSqlSafe(Arc::<str>::from(text)).into_sql_str()
}

//! [`SessionTable`]: the statements both SQL stores run, and running them.

use std::fmt;
use std::marker::PhantomData;

use session_core::{Error, Record, StorageKey, Timestamp};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, SqlStr, Type};

use crate::driver::{Cleanup, Driver, Insert, Write, trusted_sql};
use crate::row::{Bound, COLUMNS, Encoded, RECORD_COLUMNS, UPDATED_COLUMNS, bind_user, decode_row};

/// A sessions table's statements in `D`'s dialect, built once, and the
/// [`SessionStore`](session_core::SessionStore) operations on them.
///
/// Every statement binds its values in one place here, next to the SQL that
/// numbers them, so the column order cannot drift between a store's SQL and
/// its binds. What differs between stores (the table's DDL, locks, stored
/// procedures) stays in the store crate.
///
/// ```
/// # use session_stores_sql::{Cleanup, Driver, Insert, Parameters, UserIds, ValueTypes};
/// # struct Sqlite;
/// # impl Driver for Sqlite {
/// #     type Database = sqlx::Sqlite;
/// #     const STORE: &'static str = "sqlite";
/// #     const PARAMETERS: Parameters = Parameters::Numbered("?");
/// #     const INSERT: Insert = Insert::OnConflictDoNothing;
/// #     const CLEANUP: Cleanup = Cleanup::Subquery { lock: "" };
/// #     const VALUE_TYPES: ValueTypes = ValueTypes::PerValue;
/// #     const USER_IDS: UserIds = UserIds::Text;
/// #     fn rows_affected(done: &sqlx::sqlite::SqliteQueryResult) -> u64 { done.rows_affected() }
/// #     fn backend(error: sqlx::Error) -> session_core::Error {
/// #         session_core::Error::backend(Self::STORE, error)
/// #     }
/// # }
/// use session_stores_sql::SessionTable;
///
/// let table = SessionTable::<Sqlite>::new("\"sessions\"", "sessions", 500);
/// assert_eq!(table.batch_size(), 500);
/// assert_eq!(format!("{table:?}"), r#"SessionTable { table: "sessions", batch_size: 500, .. }"#);
/// ```
pub struct SessionTable<D> {
    /// The table name as given, for log lines.
    shown: String,
    batch_size: u32,
    create: SqlStr,
    load: SqlStr,
    save: SqlStr,
    delete: SqlStr,
    touch: SqlStr,
    delete_expired: SqlStr,
    list_for_user: SqlStr,
    delete_for_user: SqlStr,
    driver: PhantomData<fn() -> D>,
}

impl<D: Driver> SessionTable<D> {
    /// The statements on the table `quoted` (valid, quoted identifiers: see
    /// [`check_identifier`](crate::check_identifier)), named `shown` in log
    /// lines, whose cleanup deletes at most `batch_size` rows a statement.
    ///
    /// The table has the columns [`COLUMNS`] and a column `expires_at` with
    /// the earlier of the two deadlines.
    #[must_use]
    pub fn new(quoted: &str, shown: impl fmt::Display, batch_size: u32) -> Self {
        let t = quoted;
        let p = |n: usize| D::PARAMETERS.nth(n);
        let values: Vec<String> = (1..=COLUMNS.split(',').count()).map(p).collect();
        let values = values.join(", ");
        let on_conflict = match D::INSERT {
            Insert::OnConflictDoNothing => " ON CONFLICT (session_key) DO NOTHING",
            Insert::Plain => "",
        };
        let (p1, p2) = (p(1), p(2));
        // Positional parameters bind in the order they stand: the new values,
        // then the key of the `WHERE`.
        let (touch_key, last_seen, idle_deadline) =
            if D::PARAMETERS.key_first() { (p(1), p(2), p(3)) } else { (p(3), p(1), p(2)) };
        let delete_expired = match D::CLEANUP {
            Cleanup::Subquery { lock } => {
                let lock = if lock.is_empty() { String::new() } else { format!(" {lock}") };
                format!(
                    "DELETE FROM {t} WHERE session_key IN (\
                     SELECT session_key FROM {t} WHERE expires_at <= {p1} LIMIT {p2}{lock})"
                )
            }
            Cleanup::DeleteLimit => format!("DELETE FROM {t} WHERE expires_at <= {p1} LIMIT {p2}"),
        };
        Self {
            shown: shown.to_string(),
            batch_size,
            create: trusted_sql(format!(
                "INSERT INTO {t} ({COLUMNS}) VALUES ({values}){on_conflict}"
            )),
            load: trusted_sql(format!(
                "SELECT {RECORD_COLUMNS} FROM {t} WHERE session_key = {p1} AND expires_at > {p2}"
            )),
            save: trusted_sql(update_statement::<D>(t, "")),
            delete: trusted_sql(format!("DELETE FROM {t} WHERE session_key = {p1}")),
            touch: trusted_sql(format!(
                "UPDATE {t} SET last_seen = {last_seen}, idle_deadline = {idle_deadline} \
                 WHERE session_key = {touch_key}"
            )),
            delete_expired: trusted_sql(delete_expired),
            list_for_user: trusted_sql(format!(
                "SELECT {COLUMNS} FROM {t} WHERE user_id = {p1} AND expires_at > {p2}"
            )),
            delete_for_user: trusted_sql(format!("DELETE FROM {t} WHERE user_id = {p1}")),
            driver: PhantomData,
        }
    }

    /// The most rows one cleanup statement deletes.
    #[must_use]
    pub fn batch_size(&self) -> u32 {
        self.batch_size
    }
}

/// The `UPDATE` of [`SessionTable::save`] on the table `quoted`, in `D`'s
/// dialect, with `and` (unless empty) as one more condition of its `WHERE`.
/// Its parameters are bound by [`SessionTable::bind`] with [`Write::Update`];
/// those of `and` follow them (numbered from 9, or positional after the key).
///
/// For a save fenced by a lock in the same statement:
///
/// ```
/// # use session_stores_sql::{Cleanup, Driver, Insert, Parameters, UserIds, ValueTypes};
/// # struct MySql;
/// # impl Driver for MySql {
/// #     type Database = sqlx::Sqlite;
/// #     const STORE: &'static str = "mysql";
/// #     const PARAMETERS: Parameters = Parameters::Positional;
/// #     const INSERT: Insert = Insert::Plain;
/// #     const CLEANUP: Cleanup = Cleanup::DeleteLimit;
/// #     const VALUE_TYPES: ValueTypes = ValueTypes::PerValue;
/// #     const USER_IDS: UserIds = UserIds::Bytes;
/// #     fn rows_affected(done: &sqlx::sqlite::SqliteQueryResult) -> u64 { done.rows_affected() }
/// #     fn backend(error: sqlx::Error) -> session_core::Error {
/// #         session_core::Error::backend(Self::STORE, error)
/// #     }
/// # }
/// let fenced = session_stores_sql::update_statement::<MySql>("`s`", "IS_USED_LOCK(?) = CONNECTION_ID()");
/// assert!(fenced.starts_with("UPDATE `s` SET data = ?, last_seen = ?"));
/// assert!(fenced.ends_with("WHERE session_key = ? AND IS_USED_LOCK(?) = CONNECTION_ID()"));
/// ```
#[must_use]
pub fn update_statement<D: Driver>(quoted: &str, and: &str) -> String {
    let p = |n: usize| D::PARAMETERS.nth(n);
    // Numbered: `session_key` is parameter 1 and the updated columns follow in
    // order; positional: the columns first, in order, then the key.
    let (key, first) =
        if D::PARAMETERS.key_first() { (1, 2) } else { (UPDATED_COLUMNS.len() + 1, 1) };
    let set: Vec<String> = UPDATED_COLUMNS
        .iter()
        .zip(first..)
        .map(|(column, n)| format!("{column} = {}", p(n)))
        .collect();
    let and = if and.is_empty() { String::new() } else { format!(" AND {and}") };
    format!("UPDATE {quoted} SET {} WHERE session_key = {}{and}", set.join(", "), p(key))
}

impl<D> fmt::Debug for SessionTable<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTable")
            .field("table", &self.shown)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

// The value types the statements bind and read, and running them on a pool:
// what every sqlx driver has, spelled out because sqlx cannot name it once.
impl<D> SessionTable<D>
where
    D: Driver,
    for<'c> &'c mut <D::Database as Database>::Connection: Executor<'c, Database = D::Database>,
    <D::Database as Database>::Arguments: IntoArguments<D::Database>,
    usize: ColumnIndex<<D::Database as Database>::Row>,
    for<'v> &'v [u8]: Encode<'v, D::Database> + Type<D::Database>,
    for<'v> &'v str: Encode<'v, D::Database> + Type<D::Database>,
    for<'v> Option<&'v str>: Encode<'v, D::Database> + Type<D::Database>,
    for<'v> Option<&'v [u8]>: Encode<'v, D::Database> + Type<D::Database>,
    for<'v> i64: Encode<'v, D::Database> + Decode<'v, D::Database> + Type<D::Database>,
    for<'v> Option<i64>: Encode<'v, D::Database> + Type<D::Database>,
    for<'v> Vec<u8>: Decode<'v, D::Database> + Type<D::Database>,
    for<'v> String: Decode<'v, D::Database> + Type<D::Database>,
{
    /// Binds the columns `write` writes to `query`: for an insert every
    /// column, in [`COLUMNS`] order as parameters 1 to 9; for an update
    /// `session_key`, then [`UPDATED_COLUMNS`] in order, as parameters 1 to 8
    /// ([`Parameters::Numbered`](crate::Parameters::Numbered)), or the
    /// columns first and the key last, in the order [`update_statement`]
    /// writes them ([`Parameters::Positional`](crate::Parameters::Positional)).
    pub fn bind<'q>(
        write: Write,
        query: Bound<'q, D::Database>,
        row: &Encoded<'_>,
    ) -> Bound<'q, D::Database> {
        let key_first = write == Write::Insert || D::PARAMETERS.key_first();
        let mut query = if key_first { query.bind(row.key) } else { query };
        query = query.bind(row.data.as_str());
        if write == Write::Insert {
            query = query.bind(row.created_at);
        }
        let query = query
            .bind(row.last_seen)
            .bind(row.idle_deadline)
            .bind(row.absolute_deadline)
            .bind(row.expiry.as_deref());
        let query = bind_user::<D>(query, row.user).bind(row.version);
        if key_first { query } else { query.bind(row.key) }
    }

    /// The record in `row` from column `first` on: [`RECORD_COLUMNS`],
    /// preceded by `session_key` when `key` is `None` (so [`COLUMNS`]).
    ///
    /// A corrupt row (bad JSON, a key of the wrong length, a value the column
    /// type cannot hold) is logged as a warning naming the store, the table,
    /// the key and what is wrong, and read as `None`, so it never fails other
    /// sessions.
    ///
    /// # Errors
    ///
    /// `D`'s [`Error::Backend`] if the row lacks the columns asked for, or
    /// (with [`ValueTypes::PerColumn`](crate::ValueTypes::PerColumn)) a column
    /// has another type: a wrong query or schema, not a wrong row.
    pub fn decode(
        &self,
        row: &<D::Database as Database>::Row,
        first: usize,
        key: Option<StorageKey>,
    ) -> Result<Option<Record>, Error> {
        decode_row::<D>(row, first, key, &self.shown)
    }

    /// Inserts `record` unless its key is taken (which changes no row, or
    /// fails with a duplicate-key error: see [`Insert`]).
    ///
    /// # Errors
    ///
    /// [`Error::IdCollision`] if the key is taken, [`Error::Codec`] if the
    /// data cannot be written as JSON, or `D`'s [`Error::Backend`].
    pub async fn create(&self, pool: &Pool<D::Database>, record: &Record) -> Result<(), Error> {
        let row = Encoded::new(record)?;
        let done = match Self::bind(Write::Insert, sqlx::query(self.create.clone()), &row)
            .execute(pool)
            .await
        {
            Ok(done) => done,
            // A plain `INSERT` (`Insert::Plain`) on a taken key.
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                return Err(Error::IdCollision);
            }
            Err(error) => return Err(D::backend(error)),
        };
        Write::Insert.outcome(D::rows_affected(&done))
    }

    /// The session stored under `key`, unless it expired by `now` (or its
    /// row is corrupt), through a pool or one connection (a lock's own).
    ///
    /// # Errors
    ///
    /// `D`'s [`Error::Backend`].
    pub async fn load<'e, E>(
        &self,
        executor: E,
        key: &StorageKey,
        now: Timestamp,
    ) -> Result<Option<Record>, Error>
    where
        E: sqlx::Executor<'e, Database = D::Database>,
    {
        let row = sqlx::query(self.load.clone())
            .bind(key.as_bytes().as_slice())
            .bind(now.unix_seconds())
            .fetch_optional(executor)
            .await
            .map_err(D::backend)?;
        match row {
            Some(row) => self.decode(&row, 0, Some(*key)),
            None => Ok(None),
        }
    }

    /// Replaces the stored session with `record`, never bringing back a
    /// deleted one, through a pool or one connection (a lock's own).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is no such session, [`Error::Codec`] if
    /// the data cannot be written as JSON, or `D`'s [`Error::Backend`].
    pub async fn save<'e, E>(&self, executor: E, record: &Record) -> Result<(), Error>
    where
        E: sqlx::Executor<'e, Database = D::Database>,
    {
        let row = Encoded::new(record)?;
        let done = Self::bind(Write::Update, sqlx::query(self.save.clone()), &row)
            .execute(executor)
            .await
            .map_err(D::backend)?;
        Write::Update.outcome(D::rows_affected(&done))
    }

    /// Deletes the session stored under `key`, if any.
    ///
    /// # Errors
    ///
    /// `D`'s [`Error::Backend`].
    pub async fn delete(&self, pool: &Pool<D::Database>, key: &StorageKey) -> Result<(), Error> {
        sqlx::query(self.delete.clone())
            .bind(key.as_bytes().as_slice())
            .execute(pool)
            .await
            .map_err(D::backend)?;
        Ok(())
    }

    /// Writes `record`'s `last_seen` and idle deadline only.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is no such session, or `D`'s
    /// [`Error::Backend`].
    pub async fn touch(&self, pool: &Pool<D::Database>, record: &Record) -> Result<(), Error> {
        let key = record.key.as_bytes().as_slice();
        let query = sqlx::query(self.touch.clone());
        let query = if D::PARAMETERS.key_first() { query.bind(key) } else { query };
        let query =
            query.bind(record.last_seen.unix_seconds()).bind(record.idle_deadline.unix_seconds());
        let query = if D::PARAMETERS.key_first() { query } else { query.bind(key) };
        let done = query.execute(pool).await.map_err(D::backend)?;
        Write::Update.outcome(D::rows_affected(&done))
    }

    /// Deletes the sessions expired by `now`, [`batch_size`](Self::batch_size)
    /// rows a statement so no statement holds its locks for long, and returns
    /// how many it deleted.
    ///
    /// # Errors
    ///
    /// `D`'s [`Error::Backend`]; the batches deleted before stay deleted.
    pub async fn delete_expired(
        &self,
        pool: &Pool<D::Database>,
        now: Timestamp,
    ) -> Result<u64, Error> {
        let batch = self.batch_size;
        let mut total = 0;
        loop {
            let done = sqlx::query(self.delete_expired.clone())
                .bind(now.unix_seconds())
                .bind(i64::from(batch))
                .execute(pool)
                .await
                .map_err(D::backend)?;
            let deleted = D::rows_affected(&done);
            total += deleted;
            // A short batch means nothing expired is left.
            if deleted < u64::from(batch) {
                return Ok(total);
            }
        }
    }

    /// The live sessions of `user`; corrupt rows are left out (and logged).
    ///
    /// # Errors
    ///
    /// `D`'s [`Error::Backend`].
    pub async fn list_for_user(
        &self,
        pool: &Pool<D::Database>,
        user: &str,
        now: Timestamp,
    ) -> Result<Vec<Record>, Error> {
        let rows = bind_user::<D>(sqlx::query(self.list_for_user.clone()), Some(user))
            .bind(now.unix_seconds())
            .fetch_all(pool)
            .await
            .map_err(D::backend)?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(record) = self.decode(row, 0, None)? {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Deletes every session of `user`, expired, corrupt or not, and returns
    /// how many.
    ///
    /// # Errors
    ///
    /// `D`'s [`Error::Backend`].
    pub async fn delete_for_user(
        &self,
        pool: &Pool<D::Database>,
        user: &str,
    ) -> Result<u64, Error> {
        let done = bind_user::<D>(sqlx::query(self.delete_for_user.clone()), Some(user))
            .execute(pool)
            .await
            .map_err(D::backend)?;
        Ok(D::rows_affected(&done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Parameters, UserIds, ValueTypes};

    /// MySQL's dialect, on SQLite's types (only the SQL text is looked at).
    struct Positional;

    impl Driver for Positional {
        type Database = sqlx::Sqlite;
        const STORE: &'static str = "positional";
        const PARAMETERS: Parameters = Parameters::Positional;
        const INSERT: Insert = Insert::Plain;
        const CLEANUP: Cleanup = Cleanup::DeleteLimit;
        const VALUE_TYPES: ValueTypes = ValueTypes::PerValue;
        const USER_IDS: UserIds = UserIds::Bytes;

        fn rows_affected(done: &sqlx::sqlite::SqliteQueryResult) -> u64 {
            done.rows_affected()
        }

        fn backend(error: sqlx::Error) -> Error {
            Error::backend(Self::STORE, error)
        }
    }

    #[test]
    fn positional_statements_bind_in_the_order_they_stand() {
        let table = SessionTable::<Positional>::new("`s`", "s", 10);
        assert_eq!(
            table.create.as_str(),
            format!("INSERT INTO `s` ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        );
        assert_eq!(
            table.save.as_str(),
            "UPDATE `s` SET data = ?, last_seen = ?, idle_deadline = ?, absolute_deadline = ?, \
             expiry = ?, user_id = ?, version = ? WHERE session_key = ?"
        );
        assert_eq!(
            table.touch.as_str(),
            "UPDATE `s` SET last_seen = ?, idle_deadline = ? WHERE session_key = ?"
        );
        assert_eq!(table.delete_expired.as_str(), "DELETE FROM `s` WHERE expires_at <= ? LIMIT ?");
    }
}

//! Rows back into records, by column position.
//!
//! Every query that returns a record selects [`RECORD_COLUMNS`] in this
//! order (after the session key when the caller does not know it), so rows
//! are read by index: no column-name lookups, and the locked load's
//! procedure can return the same shape through its output parameters.

use session_core::{Error, Record, SessionData, SessionExpiry, StorageKey, Timestamp};
use sqlx::postgres::{PgRow, PgValueRef};
use sqlx::{Decode, Postgres, Row, Type, TypeInfo as _, ValueRef as _};

use crate::error::{STORE, backend};
use crate::table::TableName;

/// The record's columns in the order [`decode`] reads them.
pub(crate) const RECORD_COLUMNS: &str =
    "data, created_at, last_seen, idle_deadline, absolute_deadline, expiry, user_id, version";

/// Why a row could not be read.
enum RowError {
    /// The row's contents cannot be turned into a record.
    Corrupt(String),
    /// The query or the schema is wrong, not the row (a column of another
    /// type: the table predates a migration).
    Backend(sqlx::Error),
}

fn column<'r, T>(row: &'r PgRow, index: usize) -> Result<T, RowError>
where
    T: Decode<'r, Postgres> + Type<Postgres>,
{
    let value: PgValueRef<'r> = row.try_get_raw(index).map_err(RowError::Backend)?;
    if !value.is_null() {
        let found = value.type_info();
        if !found.is_null() && !T::compatible(&found) {
            return Err(RowError::Backend(sqlx::Error::ColumnDecode {
                index: index.to_string(),
                source: format!(
                    "column {index} is {}, expected {} (run `PostgresStore::migrate`)",
                    found.name(),
                    T::type_info().name()
                )
                .into(),
            }));
        }
    }
    T::decode(value).map_err(|error| RowError::Corrupt(format!("column {index}: {error}")))
}

fn corrupt(what: impl std::fmt::Display) -> RowError {
    RowError::Corrupt(what.to_string())
}

/// [`RECORD_COLUMNS`] from `row`, starting at column `first`.
fn try_decode(row: &PgRow, first: usize, key: StorageKey) -> Result<Record, RowError> {
    let data: String = column(row, first)?;
    let data: SessionData = serde_json::from_str(&data).map_err(corrupt)?;
    let expiry: Option<String> = column(row, first + 5)?;
    let expiry: Option<SessionExpiry> =
        expiry.as_deref().map(serde_json::from_str).transpose().map_err(corrupt)?;
    let user: Option<Vec<u8>> = column(row, first + 6)?;
    let user = user
        .map(String::from_utf8)
        .transpose()
        .map_err(|_| corrupt("a user id that is not UTF-8"))?;
    let absolute_deadline: Option<i64> = column(row, first + 4)?;
    let version: i64 = column(row, first + 7)?;
    Ok(Record {
        key,
        data,
        created_at: Timestamp::from_unix_seconds(column(row, first + 1)?),
        last_seen: Timestamp::from_unix_seconds(column(row, first + 2)?),
        idle_deadline: Timestamp::from_unix_seconds(column(row, first + 3)?),
        absolute_deadline: absolute_deadline.map(Timestamp::from_unix_seconds),
        user,
        expiry,
        // Bit-for-bit: BIGINT is signed, the version is not.
        version: version.cast_unsigned(),
    })
}

/// Reads the record at `first` of `row`: the columns [`RECORD_COLUMNS`],
/// preceded by `session_key` when `key` is `None`.
///
/// A corrupt row is logged as a warning and read as `None`, so it never fails
/// other sessions; a column of the wrong type (a schema older than this
/// crate: run [`migrate`](crate::PostgresStore::migrate)) is an error.
pub(crate) fn decode(
    row: &PgRow,
    first: usize,
    key: Option<StorageKey>,
    table: &TableName,
) -> Result<Option<Record>, Error> {
    let mut known = key;
    let result = match key {
        Some(key) => try_decode(row, first, key),
        None => column::<Vec<u8>>(row, first).and_then(|bytes| {
            let bytes: [u8; 32] = bytes
                .try_into()
                .map_err(|bytes: Vec<u8>| corrupt(format!("a key of {} bytes", bytes.len())))?;
            let key = StorageKey::from_bytes(bytes);
            known = Some(key);
            try_decode(row, first + 1, key)
        }),
    };
    match result {
        Ok(record) => Ok(Some(record)),
        Err(RowError::Corrupt(reason)) => {
            tracing::warn!(
                store = STORE,
                %table,
                key = ?known,
                %reason,
                "corrupt session row; treating the session as absent",
            );
            Ok(None)
        }
        Err(RowError::Backend(error)) => Err(backend(error)),
    }
}

//! Records to rows and back.

use session_core::{Error, Record, SessionData, SessionExpiry, StorageKey, Timestamp};
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Row, Sqlite, Type};

use crate::error::backend;
use crate::table::TableName;

/// The columns `SELECT`ed for a record, in the order [`decode`] reads them.
pub(crate) const COLUMNS: &str = "session_key, data, created_at, last_seen, idle_deadline, \
     absolute_deadline, expiry, user_id, version";

/// A record in column form, ready to bind.
pub(crate) struct Encoded<'a> {
    pub(crate) key: &'a [u8],
    pub(crate) data: String,
    pub(crate) created_at: i64,
    pub(crate) last_seen: i64,
    pub(crate) idle_deadline: i64,
    pub(crate) absolute_deadline: Option<i64>,
    pub(crate) expiry: Option<String>,
    pub(crate) user: Option<&'a str>,
    pub(crate) version: i64,
}

impl<'a> Encoded<'a> {
    pub(crate) fn new(record: &'a Record) -> Result<Self, Error> {
        Ok(Self {
            key: record.key.as_bytes(),
            data: serde_json::to_string(&record.data)?,
            created_at: record.created_at.unix_seconds(),
            last_seen: record.last_seen.unix_seconds(),
            idle_deadline: record.idle_deadline.unix_seconds(),
            absolute_deadline: record.absolute_deadline.map(Timestamp::unix_seconds),
            expiry: record.expiry.as_ref().map(serde_json::to_string).transpose()?,
            user: record.user.as_deref(),
            // Bit-for-bit: INTEGER is signed, the version is not.
            version: record.version.cast_signed(),
        })
    }
}

enum RowError {
    /// The row's contents cannot be turned into a record.
    Corrupt(String),
    /// The query or the schema is wrong, not the row.
    Backend(sqlx::Error),
}

fn get<'r, T>(row: &'r SqliteRow, column: &str) -> Result<T, RowError>
where
    T: Decode<'r, Sqlite> + Type<Sqlite>,
{
    row.try_get(column).map_err(|error| match error {
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            RowError::Corrupt(error.to_string())
        }
        other => RowError::Backend(other),
    })
}

fn corrupt(what: impl std::fmt::Display) -> RowError {
    RowError::Corrupt(what.to_string())
}

fn try_decode(row: &SqliteRow, key: &mut Option<StorageKey>) -> Result<Record, RowError> {
    let key_bytes: Vec<u8> = get(row, "session_key")?;
    let key_bytes: [u8; 32] = key_bytes
        .try_into()
        .map_err(|bytes: Vec<u8>| corrupt(format!("a session key of {} bytes", bytes.len())))?;
    let record_key = StorageKey::from_bytes(key_bytes);
    *key = Some(record_key);

    let data: String = get(row, "data")?;
    let data: SessionData = serde_json::from_str(&data).map_err(corrupt)?;
    let expiry: Option<String> = get(row, "expiry")?;
    let expiry: Option<SessionExpiry> =
        expiry.as_deref().map(serde_json::from_str).transpose().map_err(corrupt)?;
    let absolute_deadline: Option<i64> = get(row, "absolute_deadline")?;
    let version: i64 = get(row, "version")?;
    Ok(Record {
        key: record_key,
        data,
        created_at: Timestamp::from_unix_seconds(get(row, "created_at")?),
        last_seen: Timestamp::from_unix_seconds(get(row, "last_seen")?),
        idle_deadline: Timestamp::from_unix_seconds(get(row, "idle_deadline")?),
        absolute_deadline: absolute_deadline.map(Timestamp::from_unix_seconds),
        user: get(row, "user_id")?,
        expiry,
        version: version.cast_unsigned(),
    })
}

/// The record in `row`, or `None` (logged) if the row is corrupt.
///
/// # Errors
///
/// A backend error if the row does not have the expected columns.
pub(crate) fn decode(row: &SqliteRow, table: &TableName) -> Result<Option<Record>, Error> {
    let mut key = None;
    match try_decode(row, &mut key) {
        Ok(record) => Ok(Some(record)),
        Err(RowError::Corrupt(reason)) => {
            tracing::warn!(
                store = crate::error::STORE,
                %table,
                ?key,
                %reason,
                "corrupt session row; treating the session as absent",
            );
            Ok(None)
        }
        Err(RowError::Backend(error)) => Err(backend(error)),
    }
}

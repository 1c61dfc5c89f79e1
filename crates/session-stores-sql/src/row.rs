//! Records to rows and back, for any sqlx driver.

use std::fmt::Display;

use session_core::{Error, Record, SessionData, SessionExpiry, StorageKey, Timestamp};
use sqlx::{ColumnIndex, Database, Decode, Row, Type};

/// The columns `SELECT`ed for a record, as [`decode_row`] reads them.
pub const COLUMNS: &str = "session_key, data, created_at, last_seen, idle_deadline, \
     absolute_deadline, expiry, user_id, version";

/// A record in column form, ready to bind.
#[derive(Debug)]
pub struct Encoded<'a> {
    /// `session_key`: the storage key's 32 bytes.
    pub key: &'a [u8],
    /// `data`: the session dict as JSON.
    pub data: String,
    /// `created_at`, Unix seconds.
    pub created_at: i64,
    /// `last_seen`, Unix seconds.
    pub last_seen: i64,
    /// `idle_deadline`, Unix seconds.
    pub idle_deadline: i64,
    /// `absolute_deadline`, Unix seconds.
    pub absolute_deadline: Option<i64>,
    /// `expiry`: the per-session expiry as JSON.
    pub expiry: Option<String>,
    /// `user_id`.
    pub user: Option<&'a str>,
    /// `version`, bit-for-bit as a signed integer.
    pub version: i64,
}

impl<'a> Encoded<'a> {
    /// The columns of `record`.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if the data cannot be written as JSON.
    pub fn new(record: &'a Record) -> Result<Self, Error> {
        Ok(Self {
            key: record.key.as_bytes(),
            data: serde_json::to_string(&record.data)?,
            created_at: record.created_at.unix_seconds(),
            last_seen: record.last_seen.unix_seconds(),
            idle_deadline: record.idle_deadline.unix_seconds(),
            absolute_deadline: record.absolute_deadline.map(Timestamp::unix_seconds),
            expiry: record.expiry.as_ref().map(serde_json::to_string).transpose()?,
            user: record.user.as_deref(),
            // Bit-for-bit: BIGINT/INTEGER is signed, the version is not.
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

fn get<'r, R, T>(row: &'r R, column: &'static str) -> Result<T, RowError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get(column).map_err(|error| match error {
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            RowError::Corrupt(error.to_string())
        }
        other => RowError::Backend(other),
    })
}

fn corrupt(what: impl Display) -> RowError {
    RowError::Corrupt(what.to_string())
}

fn try_decode<'r, R, DB>(row: &'r R, key: &mut Option<StorageKey>) -> Result<Record, RowError>
where
    R: Row<Database = DB>,
    DB: Database,
    &'static str: ColumnIndex<R>,
    Vec<u8>: Decode<'r, DB> + Type<DB>,
    String: Decode<'r, DB> + Type<DB>,
    i64: Decode<'r, DB> + Type<DB>,
{
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

/// The record in `row` (selected with [`COLUMNS`]), or `None` if the row is
/// corrupt: that is logged as a warning naming `store` and `table`, and the
/// session is treated as absent so it never fails other sessions.
///
/// # Errors
///
/// The driver's error if the row does not have the expected columns or
/// types (a wrong query or schema, not a wrong row).
pub fn decode_row<'r, R, DB>(
    row: &'r R,
    store: &'static str,
    table: &dyn Display,
) -> Result<Option<Record>, sqlx::Error>
where
    R: Row<Database = DB>,
    DB: Database,
    &'static str: ColumnIndex<R>,
    Vec<u8>: Decode<'r, DB> + Type<DB>,
    String: Decode<'r, DB> + Type<DB>,
    i64: Decode<'r, DB> + Type<DB>,
{
    let mut key = None;
    match try_decode(row, &mut key) {
        Ok(record) => Ok(Some(record)),
        Err(RowError::Corrupt(reason)) => {
            tracing::warn!(
                store,
                %table,
                ?key,
                %reason,
                "corrupt session row; treating the session as absent",
            );
            Ok(None)
        }
        Err(RowError::Backend(error)) => Err(error),
    }
}

//! Records to rows and back, for any sqlx driver.

use std::fmt::Display;

use session_core::{Error, Record, SessionData, SessionExpiry, StorageKey, Timestamp};
use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, Row, Type, TypeInfo as _, ValueRef as _};

use crate::driver::{Driver, UserIds, ValueTypes};

/// A record's columns but its key, in the order the record is read: what a
/// query selects when it already knows the key.
pub const RECORD_COLUMNS: &str =
    "data, created_at, last_seen, idle_deadline, absolute_deadline, expiry, user_id, version";

/// All of a record's columns, `session_key` first, in the order the record is
/// read and inserted.
pub const COLUMNS: &str = "session_key, data, created_at, last_seen, idle_deadline, \
     absolute_deadline, expiry, user_id, version";

/// The columns an update writes, bound after `session_key` in this order:
/// [`COLUMNS`] but the key and `created_at`, which never change.
pub const UPDATED_COLUMNS: [&str; 7] =
    ["data", "last_seen", "idle_deadline", "absolute_deadline", "expiry", "user_id", "version"];

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

/// A query with sqlx's default argument list, as every shared statement is.
pub type Bound<'q, DB> = Query<'q, DB, <DB as Database>::Arguments>;

/// Binds a user id the way `D` stores it. `Some(user)` binds exactly like
/// `user` would.
pub(crate) fn bind_user<'q, D: Driver>(
    query: Bound<'q, D::Database>,
    user: Option<&str>,
) -> Bound<'q, D::Database>
where
    for<'u> Option<&'u str>: Encode<'u, D::Database> + Type<D::Database>,
    for<'u> Option<&'u [u8]>: Encode<'u, D::Database> + Type<D::Database>,
{
    match D::USER_IDS {
        UserIds::Text => query.bind(user),
        UserIds::Bytes => query.bind(user.map(str::as_bytes)),
    }
}

/// Why a row could not be read.
enum RowError {
    /// The row's contents cannot be turned into a record.
    Corrupt(String),
    /// The query or the schema is wrong, not the row.
    Backend(sqlx::Error),
}

fn corrupt(what: impl Display) -> RowError {
    RowError::Corrupt(what.to_string())
}

/// Column `index` of `row` as a `T`. A value of another type than `T` is
/// judged by `D::VALUE_TYPES`; a value `T` cannot hold (a NULL where none is
/// allowed, bytes that are not text) is a corrupt row.
fn column<'r, D, T>(row: &'r <D::Database as Database>::Row, index: usize) -> Result<T, RowError>
where
    D: Driver,
    usize: ColumnIndex<<D::Database as Database>::Row>,
    T: Decode<'r, D::Database> + Type<D::Database>,
{
    let value = row.try_get_raw(index).map_err(RowError::Backend)?;
    if !value.is_null() {
        let found = value.type_info();
        if !found.is_null() && !T::compatible(&found) {
            let mismatch =
                format!("column {index} is {}, expected {}", found.name(), T::type_info().name());
            return Err(match D::VALUE_TYPES {
                ValueTypes::PerColumn { fix } => RowError::Backend(sqlx::Error::ColumnDecode {
                    index: index.to_string(),
                    source: format!("{mismatch} ({fix})").into(),
                }),
                ValueTypes::PerValue => RowError::Corrupt(mismatch),
            });
        }
    }
    T::decode(value).map_err(|error| RowError::Corrupt(format!("column {index}: {error}")))
}

/// [`RECORD_COLUMNS`] of `row` from column `first` on.
fn try_decode<'r, D>(
    row: &'r <D::Database as Database>::Row,
    first: usize,
    key: StorageKey,
) -> Result<Record, RowError>
where
    D: Driver,
    usize: ColumnIndex<<D::Database as Database>::Row>,
    Vec<u8>: Decode<'r, D::Database> + Type<D::Database>,
    String: Decode<'r, D::Database> + Type<D::Database>,
    i64: Decode<'r, D::Database> + Type<D::Database>,
{
    let data: String = column::<D, _>(row, first)?;
    let data: SessionData = serde_json::from_str(&data).map_err(corrupt)?;
    let expiry: Option<String> = column::<D, _>(row, first + 5)?;
    let expiry: Option<SessionExpiry> =
        expiry.as_deref().map(serde_json::from_str).transpose().map_err(corrupt)?;
    let user = match D::USER_IDS {
        UserIds::Text => column::<D, Option<String>>(row, first + 6)?,
        UserIds::Bytes => column::<D, Option<Vec<u8>>>(row, first + 6)?
            .map(String::from_utf8)
            .transpose()
            .map_err(|_| corrupt("a user id that is not UTF-8"))?,
    };
    let absolute_deadline: Option<i64> = column::<D, _>(row, first + 4)?;
    let version: i64 = column::<D, _>(row, first + 7)?;
    Ok(Record {
        key,
        data,
        created_at: Timestamp::from_unix_seconds(column::<D, _>(row, first + 1)?),
        last_seen: Timestamp::from_unix_seconds(column::<D, _>(row, first + 2)?),
        idle_deadline: Timestamp::from_unix_seconds(column::<D, _>(row, first + 3)?),
        absolute_deadline: absolute_deadline.map(Timestamp::from_unix_seconds),
        user,
        expiry,
        // Bit-for-bit: BIGINT/INTEGER is signed, the version is not.
        version: version.cast_unsigned(),
    })
}

/// The record in `row` from column `first` on: [`RECORD_COLUMNS`], preceded
/// by `session_key` when `key` is `None` (so [`COLUMNS`]).
///
/// A corrupt row is logged as a warning naming the store, `table`, the key
/// and what is wrong, and read as `None`, so it never fails other sessions.
///
/// # Errors
///
/// `D`'s [`Error::Backend`] if the row does not have the columns asked for,
/// or (with [`ValueTypes::PerColumn`]) a column has another type: a wrong
/// query or schema, not a wrong row.
pub(crate) fn decode_row<'r, D>(
    row: &'r <D::Database as Database>::Row,
    first: usize,
    key: Option<StorageKey>,
    table: &dyn Display,
) -> Result<Option<Record>, Error>
where
    D: Driver,
    usize: ColumnIndex<<D::Database as Database>::Row>,
    Vec<u8>: Decode<'r, D::Database> + Type<D::Database>,
    String: Decode<'r, D::Database> + Type<D::Database>,
    i64: Decode<'r, D::Database> + Type<D::Database>,
{
    let mut known = key;
    let result = match key {
        Some(key) => try_decode::<D>(row, first, key),
        None => column::<D, Vec<u8>>(row, first).and_then(|bytes| {
            let bytes: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| {
                corrupt(format!("a session key of {} bytes", bytes.len()))
            })?;
            let key = StorageKey::from_bytes(bytes);
            known = Some(key);
            try_decode::<D>(row, first + 1, key)
        }),
    };
    match result {
        Ok(record) => Ok(Some(record)),
        Err(RowError::Corrupt(reason)) => {
            tracing::warn!(
                store = D::STORE,
                %table,
                key = ?known,
                %reason,
                "corrupt session row; treating the session as absent",
            );
            Ok(None)
        }
        Err(RowError::Backend(error)) => Err(D::backend(error)),
    }
}

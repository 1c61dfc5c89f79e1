//! A record as the fields of a Redis hash.
//!
//! | field     | value                                            |
//! |-----------|--------------------------------------------------|
//! | `data`    | the session data, encoded by the store's codec   |
//! | `created` | `created_at`, Unix seconds                       |
//! | `seen`    | `last_seen`, Unix seconds                        |
//! | `idle`    | `idle_deadline`, Unix seconds                    |
//! | `abs`     | `absolute_deadline`, Unix seconds (if any)       |
//! | `user`    | the user id (if any)                             |
//! | `expiry`  | the per-session expiry override as JSON (if any) |
//! | `version` | the record version                               |
//!
//! The data has a field of its own so `touch` can move the deadlines without
//! reading or rewriting it. Unknown fields are ignored when reading.

use deadpool_redis::redis::Value;
use session_core::{Codec, Error, Record, SessionExpiry, StorageKey, Timestamp};

/// The latest `EXPIREAT` argument we send (9999-12-31); Redis refuses
/// timestamps that overflow its millisecond clock.
const MAX_EXPIRE_AT: i64 = 253_402_300_799;

/// Why a stored record could not be read. Carries no stored content, only
/// what is wrong, so it is safe to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Corrupt(pub(crate) &'static str);

/// The field/value pairs for `HSET`.
pub(crate) fn encode(
    record: &Record,
    codec: &dyn Codec,
) -> Result<Vec<(&'static str, Vec<u8>)>, Error> {
    let number = |n: i64| n.to_string().into_bytes();
    let mut fields = Vec::with_capacity(8);
    fields.push(("data", codec.encode(&record.data)?));
    fields.push(("created", number(record.created_at.unix_seconds())));
    fields.push(("seen", number(record.last_seen.unix_seconds())));
    fields.push(("idle", number(record.idle_deadline.unix_seconds())));
    if let Some(absolute) = record.absolute_deadline {
        fields.push(("abs", number(absolute.unix_seconds())));
    }
    if let Some(user) = &record.user {
        fields.push(("user", user.clone().into_bytes()));
    }
    if let Some(expiry) = &record.expiry {
        fields.push(("expiry", serde_json::to_vec(expiry)?));
    }
    fields.push(("version", record.version.to_string().into_bytes()));
    Ok(fields)
}

/// The `EXPIREAT` argument for a record: its deadline, clamped to what Redis
/// accepts. A deadline in the past makes Redis drop the key at once.
pub(crate) fn expire_at(record: &Record) -> i64 {
    record.expires_at().unix_seconds().clamp(1, MAX_EXPIRE_AT)
}

/// Reads a record from the reply of `HGETALL` (a flat array in RESP2, a map
/// in RESP3).
pub(crate) fn decode(key: StorageKey, reply: Value, codec: &dyn Codec) -> Result<Record, Corrupt> {
    let pairs = pairs(reply).ok_or(Corrupt("not a hash of strings"))?;
    let mut data = None;
    let mut created = None;
    let mut seen = None;
    let mut idle = None;
    let mut absolute = None;
    let mut user = None;
    let mut expiry = None;
    let mut version = None;
    for (name, value) in pairs {
        match name.as_slice() {
            b"data" => data = Some(value),
            b"created" => created = Some(timestamp(&value)?),
            b"seen" => seen = Some(timestamp(&value)?),
            b"idle" => idle = Some(timestamp(&value)?),
            b"abs" => absolute = Some(timestamp(&value)?),
            b"user" => {
                user = Some(String::from_utf8(value).map_err(|_| Corrupt("user is not UTF-8"))?);
            }
            b"expiry" => {
                expiry = Some(
                    serde_json::from_slice::<SessionExpiry>(&value)
                        .map_err(|_| Corrupt("expiry is not a valid expiry"))?,
                );
            }
            b"version" => {
                version = Some(parse::<u64>(&value).ok_or(Corrupt("version is not a number"))?)
            }
            _ => {}
        }
    }
    let data = data.ok_or(Corrupt("no data field"))?;
    let data = codec.decode(&data).map_err(|_| Corrupt("data does not decode"))?;
    Ok(Record {
        key,
        data,
        created_at: created.ok_or(Corrupt("no created field"))?,
        last_seen: seen.ok_or(Corrupt("no seen field"))?,
        idle_deadline: idle.ok_or(Corrupt("no idle field"))?,
        absolute_deadline: absolute,
        user,
        expiry,
        version: version.ok_or(Corrupt("no version field"))?,
    })
}

fn timestamp(value: &[u8]) -> Result<Timestamp, Corrupt> {
    parse::<i64>(value)
        .map(Timestamp::from_unix_seconds)
        .ok_or(Corrupt("a timestamp is not a number"))
}

fn parse<T: std::str::FromStr>(value: &[u8]) -> Option<T> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The field/value pairs of a hash reply.
fn pairs(reply: Value) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    match reply {
        Value::Array(items) => {
            if items.len() % 2 != 0 {
                return None;
            }
            let mut items = items.into_iter();
            let mut pairs = Vec::with_capacity(items.len() / 2);
            while let (Some(name), Some(value)) = (items.next(), items.next()) {
                pairs.push((bytes(name)?, bytes(value)?));
            }
            Some(pairs)
        }
        Value::Map(entries) => {
            entries.into_iter().map(|(name, value)| Some((bytes(name)?, bytes(value)?))).collect()
        }
        _ => None,
    }
}

fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.into_bytes()),
        _ => None,
    }
}

/// Whether a reply is an empty hash (`HGETALL` of a missing key).
pub(crate) fn is_empty(reply: &Value) -> bool {
    match reply {
        Value::Array(items) => items.is_empty(),
        Value::Map(entries) => entries.is_empty(),
        Value::Nil => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use session_core::{JsonCodec, SessionId};

    use super::*;

    fn reply(fields: &[(&str, &[u8])]) -> Value {
        Value::Array(
            fields
                .iter()
                .flat_map(|(name, value)| {
                    [Value::BulkString(name.as_bytes().to_vec()), Value::BulkString(value.to_vec())]
                })
                .collect(),
        )
    }

    fn record() -> Record {
        let now = Timestamp::from_unix_seconds(1_000);
        let mut record = Record::new(
            SessionId::random().storage_key(),
            now,
            now + Duration::from_secs(60),
            Some(now + Duration::from_secs(600)),
        );
        record.data.insert_value("n", 3.into());
        record.user = Some("ada\n:*".to_owned());
        record.expiry = Some(SessionExpiry::BrowserSession);
        record.version = 9;
        record.data.mark_unchanged();
        record
    }

    #[test]
    fn round_trips() {
        let record = record();
        let fields = encode(&record, &JsonCodec).unwrap();
        let fields: Vec<(&str, &[u8])> = fields.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        let decoded = decode(record.key, reply(&fields), &JsonCodec).unwrap();
        assert_eq!(decoded, record);
        assert!(!decoded.data.is_changed());
    }

    #[test]
    fn corrupt_contents_are_reported_not_panicked_on() {
        let key = SessionId::random().storage_key();
        let good: [(&str, &[u8]); 5] =
            [("data", b"{}"), ("created", b"1"), ("seen", b"1"), ("idle", b"2"), ("version", b"0")];
        assert!(decode(key, reply(&good), &JsonCodec).is_ok());
        for (field, bad) in [
            ("data", &b"{\"a\":"[..]),
            ("data", b"[1,2]"),
            ("created", b"yesterday"),
            ("idle", b"99999999999999999999999"),
            ("version", b"-1"),
            ("user", b"\xff\xfe"),
            ("expiry", b"{\"kind\":\"forever\"}"),
        ] {
            let mut fields: Vec<(&str, &[u8])> =
                good.iter().filter(|(n, _)| *n != field).copied().collect();
            fields.push((field, bad));
            assert!(decode(key, reply(&fields), &JsonCodec).is_err(), "{field}={bad:?}");
        }
        for missing in ["data", "created", "seen", "idle", "version"] {
            let fields: Vec<(&str, &[u8])> =
                good.iter().filter(|(n, _)| *n != missing).copied().collect();
            assert!(decode(key, reply(&fields), &JsonCodec).is_err(), "without {missing}");
        }
        assert!(decode(key, Value::Array(vec![Value::Int(1)]), &JsonCodec).is_err());
        assert!(decode(key, Value::Int(1), &JsonCodec).is_err());
    }

    #[test]
    fn expire_at_is_clamped() {
        let mut record = record();
        record.idle_deadline = Timestamp::MAX;
        record.absolute_deadline = None;
        assert_eq!(expire_at(&record), MAX_EXPIRE_AT);
        record.idle_deadline = Timestamp::from_unix_seconds(-5);
        assert_eq!(expire_at(&record), 1);
    }
}

//! The compact form a record is kept in: one heap allocation per session.
//!
//! A [`Record`] with its `HashMap` of JSON values costs several hundred bytes
//! of heap per session. The store instead keeps one byte string per session:
//! the fixed fields at fixed offsets, then the rare optional fields, then the
//! session data as the JSON of [`session_core::JsonCodec`], decoded on load.
//!
//! ```text
//! 0   created_at          i64 LE, Unix seconds
//! 8   last_seen           i64 LE
//! 16  idle_deadline       i64 LE
//! 24  absolute_deadline   i64 LE (0 unless ABSOLUTE)
//! 32  version             u64 LE
//! 40  flags               u8
//! 41  keys                u32 LE, the number of keys in the data
//! 45  [user]              u64 LE length + UTF-8 bytes, if USER
//!     [expiry]            idle timeout, then absolute timeout if EXPIRY_ABSOLUTE,
//!                         each u64 LE seconds + u32 LE nanoseconds, if PERSISTENT
//!     data                the JSON object, to the end
//! ```
//!
//! The key count lets [`Packed::decode`] allocate the data's map at its
//! final size.
//!
//! Only [`encode`] writes these bytes, so decoding cannot fail in practice;
//! it still never panics and reports malformed bytes as [`Corrupt`].

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use serde::Deserializer as _;
use serde::de::{MapAccess, Visitor};
use serde_json::Value;
use session_core::{Error, Record, SessionData, SessionExpiry, StorageKey, Timestamp};

use crate::error::Corrupt;

const LAST_SEEN: usize = 8;
const IDLE_DEADLINE: usize = 16;
const ABSOLUTE_DEADLINE: usize = 24;
const VERSION: usize = 32;
const FLAGS: usize = 40;
const KEYS: usize = 41;
const HEADER: usize = 45;

const ABSOLUTE: u8 = 1;
const USER: u8 = 1 << 1;
const PERSISTENT: u8 = 1 << 2;
const BROWSER_SESSION: u8 = 1 << 3;
const EXPIRY_ABSOLUTE: u8 = 1 << 4;

/// Writes `record` in the compact form into `out` (cleared first). The data
/// is JSON exactly as [`session_core::JsonCodec`] writes it, without its `Vec`.
pub(crate) fn encode(record: &Record, out: &mut Vec<u8>) -> Result<(), Error> {
    out.clear();
    let mut flags = 0;
    out.extend_from_slice(&record.created_at.unix_seconds().to_le_bytes());
    out.extend_from_slice(&record.last_seen.unix_seconds().to_le_bytes());
    out.extend_from_slice(&record.idle_deadline.unix_seconds().to_le_bytes());
    let absolute = record.absolute_deadline.map_or(0, |deadline| {
        flags |= ABSOLUTE;
        deadline.unix_seconds()
    });
    out.extend_from_slice(&absolute.to_le_bytes());
    out.extend_from_slice(&record.version.to_le_bytes());
    if record.user.is_some() {
        flags |= USER;
    }
    match record.expiry {
        None => {}
        Some(SessionExpiry::BrowserSession) => flags |= BROWSER_SESSION,
        Some(SessionExpiry::Persistent { absolute_timeout, .. }) => {
            flags |= PERSISTENT;
            if absolute_timeout.is_some() {
                flags |= EXPIRY_ABSOLUTE;
            }
        }
    }
    out.push(flags);
    out.extend_from_slice(&u32::try_from(record.data.len()).unwrap_or(u32::MAX).to_le_bytes());
    if let Some(user) = &record.user {
        out.extend_from_slice(&(user.len() as u64).to_le_bytes());
        out.extend_from_slice(user.as_bytes());
    }
    if let Some(SessionExpiry::Persistent { idle_timeout, absolute_timeout }) = record.expiry {
        for duration in std::iter::once(idle_timeout).chain(absolute_timeout) {
            out.extend_from_slice(&duration.as_secs().to_le_bytes());
            out.extend_from_slice(&duration.subsec_nanos().to_le_bytes());
        }
    }
    serde_json::to_writer(&mut *out, &record.data)?;
    Ok(())
}

/// One stored record in the compact form.
pub(crate) struct Packed(Box<[u8]>);

impl Packed {
    /// A copy of bytes written by [`encode`].
    pub(crate) fn new(bytes: &[u8]) -> Self {
        Self(bytes.into())
    }

    /// Replaces the record with `bytes` (from [`encode`]), in place when the
    /// size did not change.
    pub(crate) fn overwrite(&mut self, bytes: &[u8]) {
        if self.0.len() == bytes.len() {
            self.0.copy_from_slice(bytes);
        } else {
            self.0 = bytes.into();
        }
    }

    /// Moves `last_seen` and the idle deadline, leaving everything else.
    pub(crate) fn touch(&mut self, last_seen: Timestamp, idle_deadline: Timestamp) {
        for (at, value) in [(LAST_SEEN, last_seen), (IDLE_DEADLINE, idle_deadline)] {
            if let Some(slot) = self.0.get_mut(at..at + 8) {
                slot.copy_from_slice(&value.unix_seconds().to_le_bytes());
            }
        }
    }

    /// Whether the record is over at `now` ([`Record::is_expired`]). Malformed
    /// bytes count as expired, so `delete_expired` removes them.
    pub(crate) fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at().is_none_or(|deadline| now >= deadline)
    }

    fn expires_at(&self) -> Option<Timestamp> {
        let idle = Timestamp::from_unix_seconds(i64_at(&self.0, IDLE_DEADLINE)?);
        if self.flags()? & ABSOLUTE == 0 {
            return Some(idle);
        }
        let absolute = Timestamp::from_unix_seconds(i64_at(&self.0, ABSOLUTE_DEADLINE)?);
        Some(absolute.min(idle))
    }

    /// The stored [`Record::version`].
    pub(crate) fn version(&self) -> Option<u64> {
        array_at(&self.0, VERSION).map(u64::from_le_bytes)
    }

    fn flags(&self) -> Option<u8> {
        self.0.get(FLAGS).copied()
    }

    /// The user's name as stored, if the record has one.
    pub(crate) fn user(&self) -> Option<&[u8]> {
        if self.flags()? & USER == 0 {
            return None;
        }
        let mut reader = Reader(self.0.get(HEADER..)?);
        reader.string()
    }

    /// The user, as a string (see [`Packed::user`]).
    pub(crate) fn user_str(&self) -> Option<&str> {
        self.user().and_then(|user| std::str::from_utf8(user).ok())
    }

    /// The record, with its data decoded and marked unchanged.
    pub(crate) fn decode(&self, key: StorageKey) -> Result<Record, Corrupt> {
        let bytes = &self.0;
        let timestamp = |at| {
            i64_at(bytes, at).map(Timestamp::from_unix_seconds).ok_or_else(|| Corrupt::Malformed)
        };
        let flags = self.flags().ok_or_else(|| Corrupt::Malformed)?;
        let keys =
            array_at(bytes, KEYS).map(u32::from_le_bytes).ok_or_else(|| Corrupt::Malformed)?;
        let mut reader = Reader(bytes.get(HEADER..).unwrap_or_default());
        let user = if flags & USER == 0 {
            None
        } else {
            let user = reader.string().ok_or_else(|| Corrupt::Malformed)?;
            Some(String::from_utf8(user.to_vec()).map_err(|_| Corrupt::Malformed)?)
        };
        let expiry = if flags & PERSISTENT != 0 {
            let idle_timeout = reader.duration().ok_or_else(|| Corrupt::Malformed)?;
            let absolute_timeout = if flags & EXPIRY_ABSOLUTE == 0 {
                None
            } else {
                Some(reader.duration().ok_or_else(|| Corrupt::Malformed)?)
            };
            Some(SessionExpiry::Persistent { idle_timeout, absolute_timeout })
        } else if flags & BROWSER_SESSION != 0 {
            Some(SessionExpiry::BrowserSession)
        } else {
            None
        };
        let keys = usize::try_from(keys).unwrap_or(usize::MAX);
        let data = decode_data(reader.0, keys).map_err(|error| Corrupt::Data(error.into()))?;
        Ok(Record {
            key,
            data,
            created_at: timestamp(0)?,
            last_seen: timestamp(LAST_SEEN)?,
            idle_deadline: timestamp(IDLE_DEADLINE)?,
            absolute_deadline: if flags & ABSOLUTE == 0 {
                None
            } else {
                Some(timestamp(ABSOLUTE_DEADLINE)?)
            },
            user,
            expiry,
            version: array_at(bytes, VERSION)
                .map(u64::from_le_bytes)
                .ok_or_else(|| Corrupt::Malformed)?,
        })
    }
}

/// Decodes session data: what [`session_core::JsonCodec`] does (the same JSON,
/// the same errors), with the map allocated for `keys` entries up front
/// instead of grown from empty.
fn decode_data(json: &[u8], keys: usize) -> Result<SessionData, serde_json::Error> {
    struct Entries {
        capacity: usize,
    }

    impl<'de> Visitor<'de> for Entries {
        type Value = HashMap<String, Value>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Self::Value, A::Error> {
            let mut values = HashMap::with_capacity(self.capacity);
            while let Some((key, value)) = entries.next_entry()? {
                values.insert(key, value);
            }
            Ok(values)
        }
    }

    // Every entry takes at least four bytes (`"":0`), which bounds the
    // allocation whatever the stored count says.
    let capacity = keys.min(json.len() / 4);
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let values = deserializer.deserialize_map(Entries { capacity })?;
    deserializer.end()?;
    Ok(SessionData::from_map(values))
}

fn array_at<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn i64_at(bytes: &[u8], at: usize) -> Option<i64> {
    array_at(bytes, at).map(i64::from_le_bytes)
}

/// Reads the variable part after the header, front to back.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(len)?;
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(u64::from_le_bytes(self.array()?)).ok()?;
        self.take(len)
    }

    fn duration(&mut self) -> Option<Duration> {
        let secs = u64::from_le_bytes(self.array()?);
        let nanos = u32::from_le_bytes(self.array()?);
        // Below one second of nanoseconds `Duration::new` cannot overflow.
        (nanos < 1_000_000_000).then(|| Duration::new(secs, nanos))
    }
}

#[cfg(test)]
mod tests {
    use session_core::{Codec as _, ExpiryPolicy, JsonCodec, SessionId};

    use super::*;

    fn packed(record: &Record) -> Packed {
        let mut bytes = Vec::new();
        encode(record, &mut bytes).unwrap();
        Packed::new(&bytes)
    }

    fn sample() -> Record {
        let now = Timestamp::from_unix_seconds(1_700_000_000);
        let mut record = ExpiryPolicy::default().new_record(SessionId::random().storage_key(), now);
        record.data.insert("n", 41).unwrap();
        record.data.mark_unchanged();
        record.version = 9;
        record
    }

    #[test]
    fn round_trips_every_field() {
        let mut record = sample();
        assert_eq!(packed(&record).decode(record.key).unwrap(), record);

        record.user = Some("ädä ✓".to_owned());
        record.absolute_deadline = None;
        record.expiry = Some(SessionExpiry::BrowserSession);
        record.created_at = Timestamp::from_unix_seconds(-5);
        record.last_seen = Timestamp::MAX;
        record.idle_deadline = Timestamp::from_unix_seconds(i64::MIN);
        record.version = u64::MAX;
        record.data.insert("nested", serde_json::json!({"a": [1, null, "\u{0}"]})).unwrap();
        record.data.mark_unchanged();
        assert_eq!(packed(&record).decode(record.key).unwrap(), record);

        for absolute_timeout in [None, Some(Duration::new(u64::MAX, 999_999_999))] {
            record.expiry = Some(SessionExpiry::Persistent {
                idle_timeout: Duration::new(30, 5),
                absolute_timeout,
            });
            record.absolute_deadline = Some(Timestamp::MAX);
            record.user = Some(String::new());
            assert_eq!(packed(&record).decode(record.key).unwrap(), record);
        }
    }

    #[test]
    fn data_is_the_json_codecs_encoding() {
        let record = sample();
        let mut bytes = Vec::new();
        encode(&record, &mut bytes).unwrap();
        let json = JsonCodec.encode(&record.data).unwrap();
        assert!(bytes.ends_with(&json));
        assert_eq!(bytes.len(), HEADER + json.len(), "no user, no expiry: header and data only");
    }

    #[test]
    fn header_fields_read_without_decoding() {
        let mut record = sample();
        record.user = Some("ada".to_owned());
        record.absolute_deadline = Some(record.idle_deadline - Duration::from_secs(1));
        let mut stored = packed(&record);
        assert_eq!(stored.version(), Some(9));
        assert_eq!(stored.user(), Some(&b"ada"[..]));
        assert_eq!(stored.user_str(), Some("ada"));
        let deadline = record.expires_at();
        assert!(!stored.is_expired(deadline - Duration::from_secs(1)));
        assert!(stored.is_expired(deadline));

        record.absolute_deadline = None;
        record.last_seen = record.last_seen + Duration::from_secs(5);
        record.idle_deadline = record.idle_deadline + Duration::from_secs(5);
        stored.touch(record.last_seen, record.idle_deadline);
        let touched = stored.decode(record.key).unwrap();
        assert_eq!(
            (touched.last_seen, touched.idle_deadline),
            (record.last_seen, record.idle_deadline)
        );
        assert_eq!(packed(&sample()).user(), None);
    }

    #[test]
    fn overwrite_reuses_or_replaces() {
        let mut record = sample();
        let mut stored = packed(&record);
        record.data.insert("n", 42).unwrap();
        stored.overwrite(&packed_bytes(&record));
        assert_eq!(stored.decode(record.key).unwrap().data.get::<u64>("n").unwrap(), Some(42));
        record.data.insert("n", 1000).unwrap();
        stored.overwrite(&packed_bytes(&record));
        assert_eq!(stored.decode(record.key).unwrap().data.get::<u64>("n").unwrap(), Some(1000));
    }

    fn packed_bytes(record: &Record) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode(record, &mut bytes).unwrap();
        bytes
    }

    #[test]
    fn malformed_bytes_never_panic() {
        let record = sample();
        let mut full = packed_bytes(&{
            let mut record = record.clone();
            record.user = Some("ada".to_owned());
            record.expiry = Some(SessionExpiry::Persistent {
                idle_timeout: Duration::from_secs(1),
                absolute_timeout: Some(Duration::from_secs(2)),
            });
            record
        });
        for len in 0..full.len() {
            let stored = Packed::new(&full[..len]);
            assert!(stored.decode(record.key).is_err(), "{len} bytes");
            let _ = (stored.user(), stored.is_expired(Timestamp::now()));
        }
        // A user length beyond the end, and nanoseconds out of range.
        full[HEADER..HEADER + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Packed::new(&full).decode(record.key).is_err());
        assert_eq!(Packed::new(&full).user(), None);
        let mut bad_nanos = packed_bytes(&{
            let mut record = record.clone();
            record.expiry = Some(SessionExpiry::Persistent {
                idle_timeout: Duration::from_secs(u64::MAX),
                absolute_timeout: None,
            });
            record
        });
        bad_nanos[HEADER + 8..HEADER + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Packed::new(&bad_nanos).decode(record.key).is_err());
        let mut bad_json = packed_bytes(&record);
        let last = bad_json.len() - 1;
        bad_json[last] = b',';
        assert!(matches!(Packed::new(&bad_json).decode(record.key), Err(Corrupt::Data(_))));
        assert!(Packed::new(&[]).is_expired(Timestamp::from_unix_seconds(i64::MIN)));
    }

    #[test]
    fn data_decodes_like_the_json_codec() {
        let inputs: [&[u8]; 16] = [
            br#"{}"#,
            br#"{"n":0}"#,
            br#" { "a" : [1, 2.5, null, true], "b": {"c": "d"}, "e": "\u00e9" } "#,
            br#"{"dup":1,"dup":2}"#,
            br#"{"big":18446744073709551615,"neg":-1,"f":1e300}"#,
            b"",
            b"{",
            b"null",
            b"[]",
            b"42",
            b"\"s\"",
            br#"{"a":1"#,
            br#"{"a":1} x"#,
            br#"{"a":1}{}"#,
            br#"{1:2}"#,
            b"\xff\xfe",
        ];
        for input in inputs {
            let codec = JsonCodec.decode(input);
            for keys in [0, 1, 3, 1000, usize::MAX] {
                let ours = decode_data(input, keys);
                match (&codec, &ours) {
                    (Ok(codec), Ok(ours)) => assert_eq!(codec, ours),
                    (Err(_), Err(_)) => {}
                    _ => panic!(
                        "{:?}: codec {codec:?}, ours {ours:?}",
                        String::from_utf8_lossy(input)
                    ),
                }
            }
        }
        assert!(!decode_data(br#"{"a":1}"#, 1).unwrap().is_changed());
    }
}

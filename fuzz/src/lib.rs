//! Helpers shared by the fuzz targets: an input reader, the fixed keys, and
//! the properties every client-side cookie format must keep on any input.
//!
//! The properties checked after `open` (see [`check_opened`]):
//! - an opened session is live at `now`;
//! - it does not open under another cookie name;
//! - sealing the opened session again and opening that gives back the same
//!   deadlines, user, expiry override and data keys.

use std::time::Duration;

use session_core::{
    CookieFormat, Key, Keyring, Opened, Record, SessionExpiry, StorageKey, Timestamp,
};

/// The cookie name the fuzzed values are opened under.
pub const COOKIE: &str = "id";
/// Another cookie name: nothing sealed for [`COOKIE`] may open under it.
pub const OTHER_COOKIE: &str = "other";

/// The keyring's primary key.
pub const PRIMARY: [u8; 32] = [1; 32];
/// The keyring's fallback key.
pub const FALLBACK: [u8; 32] = [2; 32];
/// A key the keyring does not hold: nothing it seals may open.
pub const STRANGER: [u8; 32] = [3; 32];

/// Primary and fallback key.
#[must_use]
pub fn keyring() -> Keyring {
    Keyring::new(Key::from_bytes(PRIMARY)).with_fallback(Key::from_bytes(FALLBACK))
}

/// Which key a forged value is authenticated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// The primary key: opens, no reseal.
    Primary,
    /// The fallback key: opens with `needs_reseal`.
    Fallback,
    /// An unknown key: never opens.
    Stranger,
}

impl Signer {
    /// From one input byte.
    #[must_use]
    pub fn from_byte(byte: u8) -> Self {
        match byte % 3 {
            0 => Self::Primary,
            1 => Self::Fallback,
            _ => Self::Stranger,
        }
    }

    /// The key bytes.
    #[must_use]
    pub fn key(self) -> [u8; 32] {
        match self {
            Self::Primary => PRIMARY,
            Self::Fallback => FALLBACK,
            Self::Stranger => STRANGER,
        }
    }
}

/// Reads fixed-size values off the front of the fuzz input; missing bytes
/// read as zero.
#[derive(Debug)]
pub struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    /// Wraps the fuzz input.
    #[must_use]
    pub fn new(data: &'a [u8]) -> Self {
        Self(data)
    }

    /// One byte.
    pub fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&first, rest)) => {
                self.0 = rest;
                first
            }
            None => 0,
        }
    }

    /// Eight bytes, big-endian.
    pub fn u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        for byte in &mut bytes {
            *byte = self.byte();
        }
        u64::from_be_bytes(bytes)
    }

    /// An `i64`, usually small, sometimes extreme.
    pub fn i64(&mut self) -> i64 {
        self.u64() as i64
    }

    /// A time: mostly around a realistic "now", sometimes anywhere.
    pub fn timestamp(&mut self) -> Timestamp {
        match self.byte() % 4 {
            0 => Timestamp::from_unix_seconds(self.i64()),
            _ => Timestamp::from_unix_seconds(1_700_000_000 + i64::from(self.byte() as i8) * 100),
        }
    }

    /// A duration in seconds: small, or anything.
    pub fn seconds(&mut self) -> Duration {
        match self.byte() % 4 {
            0 => Duration::from_secs(self.u64()),
            _ => Duration::from_secs(u64::from(self.byte()) * 60),
        }
    }

    /// Everything not read yet.
    #[must_use]
    pub fn rest(self) -> &'a [u8] {
        self.0
    }
}

/// A record built from the input, with deadlines relative to `now`.
pub fn record(input: &mut Input<'_>, now: Timestamp) -> Record {
    let created = now - input.seconds();
    let idle = match input.byte() % 3 {
        0 => now - input.seconds(),
        _ => now + input.seconds(),
    };
    let absolute = match input.byte() % 3 {
        0 => None,
        1 => Some(created + input.seconds()),
        _ => Some(Timestamp::from_unix_seconds(input.i64())),
    };
    let mut record = Record::new(StorageKey::from_bytes([0; 32]), created, idle, absolute);
    record.last_seen = match input.byte() % 3 {
        0 => created,
        1 => now,
        _ => Timestamp::from_unix_seconds(input.i64()),
    };
    record.user = match input.byte() % 3 {
        0 => None,
        1 => Some("alice".to_owned()),
        _ => {
            Some(String::from_utf8_lossy(&[input.byte(), input.byte(), input.byte()]).into_owned())
        }
    };
    record.expiry = match input.byte() % 3 {
        0 => None,
        1 => Some(SessionExpiry::BrowserSession),
        _ => Some(SessionExpiry::Persistent {
            idle_timeout: input.seconds(),
            absolute_timeout: Some(input.seconds()),
        }),
    };
    for index in 0..input.byte() % 4 {
        let value = match input.byte() % 4 {
            0 => serde_json::Value::from(input.i64()),
            1 => serde_json::Value::from(String::from_utf8_lossy(&[input.byte(); 3]).into_owned()),
            2 => serde_json::json!({ "nested": [input.byte(), null, true] }),
            _ => serde_json::Value::from(input.u64() as f64 / 7.0),
        };
        record.data.insert_value(&format!("k{index}"), value);
    }
    record.data.mark_unchanged();
    record
}

/// Whether `format` must open what it sealed from `record` at `now`: the
/// record is live and nothing in it is from the future.
#[must_use]
pub fn should_open(record: &Record, now: Timestamp) -> bool {
    let skew = now + Duration::from_secs(60);
    !record.is_expired(now)
        && record.created_at <= skew
        && record.last_seen <= skew
        && record.last_seen.unix_seconds() >= 0
        && now.unix_seconds() >= 0
}

/// The properties every opened value keeps (see the crate docs).
pub fn check_opened(format: &dyn CookieFormat, value: &str, now: Timestamp, opened: &Opened) {
    let record = &opened.record;
    assert!(!record.is_expired(now), "opened a session expired at {now:?}: {record:?}");
    assert_eq!(record.version, 0, "opened records have version 0");
    assert!(!record.data.is_changed(), "opened data starts unchanged");
    assert!(
        format.open(OTHER_COOKIE, value, now).is_none(),
        "a value sealed for `{COOKIE}` opened under `{OTHER_COOKIE}`"
    );
    let Ok(resealed) = format.seal(COOKIE, record) else {
        return;
    };
    if resealed.len() > 4096 {
        // Re-serialized JSON can be longer (`1e5` becomes `100000.0`).
        return;
    }
    let Some(reopened) = format.open(COOKIE, &resealed, now) else {
        panic!("an opened session, sealed again, does not open: {record:?}");
    };
    let again = &reopened.record;
    assert!(!reopened.needs_reseal, "resealed with the primary key");
    assert_eq!(again.created_at, record.created_at);
    assert_eq!(again.last_seen, record.last_seen);
    assert_eq!(again.idle_deadline, record.idle_deadline);
    assert_eq!(again.absolute_deadline, record.absolute_deadline);
    assert_eq!(again.user, record.user);
    assert_eq!(again.expiry, record.expiry);
    let mut keys: Vec<_> = record.data.keys().collect();
    let mut keys_again: Vec<_> = again.data.keys().collect();
    keys.sort_unstable();
    keys_again.sort_unstable();
    assert_eq!(keys, keys_again);
}

/// Flips bits of one byte of `value` (position and mask from the input),
/// keeping it a string. Returns `None` when nothing changed.
pub fn tamper(input: &mut Input<'_>, value: &str) -> Option<String> {
    let mut bytes = value.as_bytes().to_vec();
    if bytes.is_empty() {
        return None;
    }
    let position = usize::from(input.byte()) << 8 | usize::from(input.byte());
    let position = position % bytes.len();
    let mask = input.byte();
    if mask == 0 {
        return None;
    }
    bytes[position] ^= mask;
    String::from_utf8(bytes).ok()
}

/// Opens `value` and checks the properties; for a `tampered` value, also that
/// it does not open at all (a changed byte must break the MAC or signature).
pub fn open_and_check(
    format: &dyn CookieFormat,
    value: &str,
    now: Timestamp,
    tampered: bool,
) -> Option<Opened> {
    let opened = format.open(COOKIE, value, now)?;
    assert!(!tampered, "a value with a changed byte still opens: {value:?}");
    check_opened(format, value, now, &opened);
    Some(opened)
}

/// Mode "raw": the rest of the input is the cookie value. Nothing the
/// fuzzer makes up may open: only sealed values do, and it cannot forge one.
pub fn open_raw(format: &dyn CookieFormat, input: Input<'_>, now: Timestamp) {
    if let Ok(value) = std::str::from_utf8(input.rest())
        && let Some(opened) = format.open(COOKIE, value, now)
    {
        panic!("a raw input opened: {opened:?}");
    }
}

/// Mode "sealed": a session built from the input is sealed by `format`,
/// maybe with one byte changed, then opened. A changed value must not open;
/// an unchanged one must if it is live and fits in a cookie, unless
/// `may_refuse_live` (a format with a TTL of its own).
pub fn open_sealed(
    format: &dyn CookieFormat,
    input: &mut Input<'_>,
    now: Timestamp,
    may_refuse_live: bool,
) {
    let record = record(input, now);
    let Ok(value) = format.seal(COOKIE, &record) else { return };
    match tamper(input, &value) {
        Some(changed) => {
            open_and_check(format, &changed, now, true);
        }
        None => {
            let opened = open_and_check(format, &value, now, false);
            if !may_refuse_live && value.len() <= 4096 && should_open(&record, now) {
                assert!(opened.is_some(), "a live sealed session does not open: {record:?}");
            }
        }
    }
}

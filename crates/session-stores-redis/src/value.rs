//! A record as one Redis string.
//!
//! ```text
//! s1 <at> <user> <created> <seen> <idle> <abs> <version> <expiry> <data>
//! ```
//!
//! Fields are separated by one space:
//!
//! | field     | value                                                        |
//! |-----------|--------------------------------------------------------------|
//! | `s1`      | the format tag                                               |
//! | `at`      | the key's `EXAT` (the record's deadline, clamped), decimal   |
//! | `user`    | `-`, or `<byte length>:<user id>`                            |
//! | `created` | `created_at`, Unix seconds                                   |
//! | `seen`    | `last_seen`, Unix seconds                                    |
//! | `idle`    | `idle_deadline`, Unix seconds                                |
//! | `abs`     | `-`, or `absolute_deadline`, Unix seconds                    |
//! | `version` | the record version                                           |
//! | `expiry`  | `-`, or `<byte length>:<the per-session expiry as JSON>`     |
//! | `data`    | the session data, encoded by the store's codec, to the end   |
//!
//! One value means one bulk string per load and one `SET` per save. The
//! scripts read only the head (`s1 <at> <user> `): the save script compares
//! it with the new value's head to learn whether the user index needs any
//! work; `touch` rewrites `at`, `seen` and `idle` in place and copies the
//! rest, data included, unchanged. Anything else under a record key (an
//! older layout, a hash, a truncated string) is not a record: loads treat it
//! as absent and writers as missing.

use std::io::Write;

use session_core::{Codec, Error, Record, SessionExpiry, StorageKey, Timestamp};

/// The format tag every record value starts with (the scripts check it too).
pub(crate) const TAG: &[u8] = b"s1 ";

/// The latest `EXAT` we send (9999-12-31); Redis refuses timestamps that
/// overflow its millisecond clock.
const MAX_EXPIRE_AT: i64 = 253_402_300_799;

/// Why a stored record could not be read. Carries no stored content, only
/// what is wrong, so it is safe to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Corrupt(pub(crate) &'static str);

/// The `EXAT` argument for a record: its deadline, clamped to what Redis
/// accepts. A deadline in the past makes Redis drop the key at once.
pub(crate) fn expire_at(record: &Record) -> i64 {
    record.expires_at().unix_seconds().clamp(1, MAX_EXPIRE_AT)
}

/// Writes the value of `record` to `out`, which receives exactly one
/// argument's bytes. Returns the length of the head (`s1 <at> <user> `).
pub(crate) fn encode(
    record: &Record,
    codec: &dyn Codec,
    out: &mut impl Write,
) -> Result<usize, Error> {
    let data = codec.encode(&record.data)?;
    let expiry = record.expiry.as_ref().map(serde_json::to_vec).transpose()?;
    let mut out = Staged { out, buf: [0; 128], len: 0, written: 0, failed: None };
    let mut digits = Digits::default();
    out.put(TAG);
    out.put(digits.unsigned(expire_at(record).unsigned_abs()));
    out.put(b" ");
    out.optional_bytes(record.user.as_deref().map(str::as_bytes));
    let head_len = out.written;
    for timestamp in [record.created_at, record.last_seen, record.idle_deadline] {
        out.put(digits.signed(timestamp.unix_seconds()));
        out.put(b" ");
    }
    match record.absolute_deadline {
        Some(absolute) => out.put(digits.signed(absolute.unix_seconds())),
        None => out.put(b"-"),
    }
    out.put(b" ");
    out.put(digits.unsigned(record.version));
    out.put(b" ");
    out.optional_bytes(expiry.as_deref());
    out.put(&data);
    out.flush();
    match out.failed {
        // Writing to a command's buffer or a `Vec` cannot fail; an error
        // from another writer is reported as a backend error.
        Some(error) => Err(Error::backend("redis", error)),
        None => Ok(head_len),
    }
}

/// Collects the many small pieces of a value on the stack and passes them
/// on in a few writes (a `BufWriter` without the heap); counts the bytes
/// and keeps the first write error for the end.
struct Staged<'a, W> {
    out: &'a mut W,
    buf: [u8; 128],
    len: usize,
    written: usize,
    failed: Option<std::io::Error>,
}

impl<W: Write> Staged<'_, W> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.written += bytes.len();
        let end = self.len + bytes.len();
        if let Some(staged) = self.buf.get_mut(self.len..end) {
            staged.copy_from_slice(bytes);
            self.len = end;
            return;
        }
        self.flush();
        match self.buf.get_mut(..bytes.len()) {
            Some(staged) => {
                staged.copy_from_slice(bytes);
                self.len = bytes.len();
            }
            None => self.write(bytes),
        }
    }

    fn flush(&mut self) {
        let staged = std::mem::take(&mut self.len);
        if let Err(error) = self.out.write_all(&self.buf[..staged]) {
            self.failed.get_or_insert(error);
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        if let Err(error) = self.out.write_all(bytes) {
            self.failed.get_or_insert(error);
        }
    }

    /// `- `, or `<length>:<bytes> `.
    fn optional_bytes(&mut self, bytes: Option<&[u8]>) {
        match bytes {
            Some(bytes) => {
                self.put(Digits::default().unsigned(bytes.len() as u64));
                self.put(b":");
                self.put(bytes);
            }
            None => self.put(b"-"),
        }
        self.put(b" ");
    }
}

/// Reads a record from its stored value.
pub(crate) fn decode(key: StorageKey, value: &[u8], codec: &dyn Codec) -> Result<Record, Corrupt> {
    let mut input = Input(value.strip_prefix(TAG).ok_or(Corrupt("not a record of this format"))?);
    input.unsigned("expire-at is not a number")?;
    let user = input
        .optional_bytes("malformed user field")?
        .map(|user| {
            std::str::from_utf8(user).map(str::to_owned).map_err(|_| Corrupt("user is not UTF-8"))
        })
        .transpose()?;
    let created = input.timestamp("created is not a number")?;
    let seen = input.timestamp("seen is not a number")?;
    let idle = input.timestamp("idle is not a number")?;
    let absolute = match input.dash() {
        true => None,
        false => Some(input.timestamp("abs is not a number")?),
    };
    let version = input.unsigned("version is not a number")?;
    let expiry = input
        .optional_bytes("malformed expiry field")?
        .map(|json| {
            serde_json::from_slice::<SessionExpiry>(json)
                .map_err(|_| Corrupt("expiry is not a valid expiry"))
        })
        .transpose()?;
    let data = codec.decode(input.0).map_err(|_| Corrupt("data does not decode"))?;
    Ok(Record {
        key,
        data,
        created_at: created,
        last_seen: seen,
        idle_deadline: idle,
        absolute_deadline: absolute,
        user,
        expiry,
        version,
    })
}

/// What is left of a value being read, one space-terminated field at a time.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    /// The next field, up to its terminating space.
    fn field(&mut self, what: &'static str) -> Result<&'a [u8], Corrupt> {
        let end = self.0.iter().position(|&b| b == b' ').ok_or(Corrupt(what))?;
        let field = &self.0[..end];
        self.0 = &self.0[end + 1..];
        Ok(field)
    }

    fn unsigned(&mut self, what: &'static str) -> Result<u64, Corrupt> {
        parse_unsigned(self.field(what)?).ok_or(Corrupt(what))
    }

    fn signed(&mut self, what: &'static str) -> Result<i64, Corrupt> {
        let field = self.field(what)?;
        let parsed = match field.strip_prefix(b"-") {
            Some(digits) => parse_unsigned(digits).and_then(|n| 0i64.checked_sub_unsigned(n)),
            None => parse_unsigned(field).and_then(|n| i64::try_from(n).ok()),
        };
        parsed.ok_or(Corrupt(what))
    }

    fn timestamp(&mut self, what: &'static str) -> Result<Timestamp, Corrupt> {
        self.signed(what).map(Timestamp::from_unix_seconds)
    }

    /// Consumes a `- ` (an absent optional field) if it comes next.
    fn dash(&mut self) -> bool {
        match self.0.strip_prefix(b"- ") {
            Some(rest) => {
                self.0 = rest;
                true
            }
            None => false,
        }
    }

    /// `-` or `<length>:<bytes>`, then a space.
    fn optional_bytes(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, Corrupt> {
        if self.dash() {
            return Ok(None);
        }
        let colon = self.0.iter().position(|&b| b == b':').ok_or(Corrupt(what))?;
        let len = parse_unsigned(&self.0[..colon])
            .and_then(|len| usize::try_from(len).ok())
            .ok_or(Corrupt(what))?;
        let rest = &self.0[colon + 1..];
        if rest.len() <= len || rest[len] != b' ' {
            return Err(Corrupt(what));
        }
        self.0 = &rest[len + 1..];
        Ok(Some(&rest[..len]))
    }
}

/// A non-empty run of decimal digits that fits a `u64` (no sign, no
/// spaces).
fn parse_unsigned(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &digit| {
        let digit = digit.checked_sub(b'0').filter(|digit| *digit <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Decimal digits of integers without going through `fmt`.
#[derive(Default)]
struct Digits([u8; 21]);

impl Digits {
    fn unsigned(&mut self, n: u64) -> &[u8] {
        let start = self.fill(n);
        &self.0[start..]
    }

    fn signed(&mut self, n: i64) -> &[u8] {
        let mut start = self.fill(n.unsigned_abs());
        if n < 0 {
            start -= 1;
            self.0[start] = b'-';
        }
        &self.0[start..]
    }

    /// Writes the digits of `n` at the end of the buffer; returns where
    /// they start (at least 1: there is room for a sign).
    fn fill(&mut self, mut n: u64) -> usize {
        let mut at = self.0.len();
        loop {
            at -= 1;
            self.0[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                return at;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use session_core::{JsonCodec, SessionId};

    use super::*;

    fn record() -> Record {
        let now = Timestamp::from_unix_seconds(1_000);
        let mut record = Record::new(
            SessionId::random().storage_key(),
            now,
            now + Duration::from_secs(60),
            Some(now + Duration::from_secs(600)),
        );
        record.data.insert_value("n", 3.into());
        record.data.insert_value("text", "a b:c - s1 \n".into());
        record.user = Some("ada 7:x - \n:*".to_owned());
        record.expiry = Some(SessionExpiry::BrowserSession);
        record.version = 9;
        record.data.mark_unchanged();
        record
    }

    fn encoded(record: &Record) -> (Vec<u8>, usize) {
        let mut out = Vec::new();
        let head_len = encode(record, &JsonCodec, &mut out).unwrap();
        (out, head_len)
    }

    #[test]
    fn round_trips() {
        let mut record = record();
        for variant in 0..4 {
            match variant {
                1 => record.user = Some(String::new()),
                2 => {
                    record.user = None;
                    record.expiry = None;
                    record.absolute_deadline = None;
                }
                3 => {
                    record.created_at = Timestamp::from_unix_seconds(i64::MIN);
                    record.last_seen = Timestamp::from_unix_seconds(-1);
                    record.idle_deadline = Timestamp::MAX;
                    record.version = u64::MAX;
                }
                _ => {}
            }
            let (value, _) = encoded(&record);
            let decoded = decode(record.key, &value, &JsonCodec).unwrap();
            assert_eq!(decoded, record, "{}", String::from_utf8_lossy(&value));
            assert!(!decoded.data.is_changed());
        }
    }

    #[test]
    fn long_fields_pass_the_stage_buffer() {
        let mut record = record();
        record.user = Some("u".repeat(127));
        record.data.insert_value("big", "x".repeat(5000).into());
        record.data.mark_unchanged();
        for user_len in [0, 1, 80, 127, 128, 129, 300] {
            record.user = Some("ü".repeat(user_len / 2) + &"u".repeat(user_len % 2));
            let (value, head_len) = encoded(&record);
            let user = record.user.clone().unwrap();
            let head = format!("s1 {} {}:{user} ", expire_at(&record), user.len());
            assert_eq!(&value[..head_len], head.as_bytes());
            assert_eq!(decode(record.key, &value, &JsonCodec).unwrap(), record);
        }
    }

    #[test]
    fn writer_errors_are_reported() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("broken"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        assert!(matches!(
            encode(&record(), &JsonCodec, &mut Broken),
            Err(Error::Backend { store: "redis", .. })
        ));
    }

    #[test]
    fn head_is_tag_expire_at_and_user() {
        let mut record = record();
        let (value, head_len) = encoded(&record);
        let at = expire_at(&record);
        let user = record.user.clone().unwrap();
        let head = format!("s1 {at} {}:{user} ", user.len());
        assert_eq!(&value[..head_len], head.as_bytes());

        record.user = None;
        let (value, head_len) = encoded(&record);
        assert_eq!(&value[..head_len], format!("s1 {at} - ").as_bytes());
        assert_eq!(
            String::from_utf8(value).unwrap(),
            format!(
                "s1 {at} - 1000 1000 1060 1600 9 {}:{} {}",
                br#"{"kind":"browser_session"}"#.len(),
                serde_json::to_string(&SessionExpiry::BrowserSession).unwrap(),
                serde_json::to_string(&record.data).unwrap(),
            )
        );
    }

    #[test]
    fn corrupt_values_are_reported_not_panicked_on() {
        let key = SessionId::random().storage_key();
        assert!(decode(key, b"s1 5 - 1 1 2 - 0 - {}", &JsonCodec).is_ok());
        assert!(decode(key, b"s1 5 3:bob 1 1 2 9 0 2:{} {}", &JsonCodec).is_err(), "bad expiry");
        for bad in [
            &b""[..],
            b"s1",
            b"s1 ",
            b"s2 5 - 1 1 2 - 0 - {}",
            b"{\"data\":{}}",
            b"s1 x - 1 1 2 - 0 - {}",
            b"s1 5 - 1 1 2 - 0 - {\"n\":",
            b"s1 5 - 1 1 2 - 0 - [1,2]",
            b"s1 5 - 1 1 2 - 0 - \xff\xfe",
            b"s1 5 - 1 1 2 - 0 -",
            b"s1 5 - yesterday 1 2 - 0 - {}",
            b"s1 5 - 1 1 99999999999999999999999 - 0 - {}",
            b"s1 5 - 1 1 2 - -1 - {}",
            b"s1 5 - 1 1 2 x 0 - {}",
            b"s1 5 3:bo 1 1 2 - 0 - {}",
            b"s1 5 9:bob 1 1 2 - 0 - {}",
            b"s1 5 99999999999999999999999:bob 1 1 2 - 0 - {}",
            b"s1 5 +3:bob 1 1 2 - 0 - {}",
            b"s1 5 3bob 1 1 2 - 0 - {}",
            b"s1 5 2:\xff\xfe 1 1 2 - 0 - {}",
            b"s1 5 - 1 1 2 - 0 5:{\"kin 1 {}",
            b"s1 5 - 1 1 2 - 0 7:\"never\" {}",
            b"s1 5 - 1 1 2 - 0",
        ] {
            assert!(decode(key, bad, &JsonCodec).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        // Every truncation of a good value is refused too.
        let (value, _) = encoded(&record());
        for end in 0..value.len() {
            assert!(decode(key, &value[..end], &JsonCodec).is_err(), "cut at {end}");
        }
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

    #[test]
    fn numbers_are_parsed_strictly() {
        assert_eq!(parse_unsigned(b"0"), Some(0));
        assert_eq!(parse_unsigned(b"007"), Some(7));
        assert_eq!(parse_unsigned(b"18446744073709551615"), Some(u64::MAX));
        for bad in [&b""[..], b"-", b"+1", b"-1", b" 1", b"1 ", b"1a", b"18446744073709551616"] {
            assert_eq!(parse_unsigned(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        let signed = |text: &str| Input(format!("{text} ").as_bytes()).signed("n").ok();
        assert_eq!(signed("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(signed("9223372036854775807"), Some(i64::MAX));
        assert_eq!(signed("-0"), Some(0));
        for bad in ["9223372036854775808", "-9223372036854775809", "--1", "-", ""] {
            assert_eq!(signed(bad), None, "{bad}");
        }
    }

    #[test]
    fn digits() {
        let mut digits = Digits::default();
        for n in [0, 1, 9, 10, 1_000, i64::MAX, -1, -10, i64::MIN] {
            assert_eq!(digits.signed(n), n.to_string().as_bytes());
        }
        for n in [0, 7, 100, u64::MAX] {
            assert_eq!(digits.unsigned(n), n.to_string().as_bytes());
        }
    }
}

//! What every format seals: the one definition of the authenticated payload,
//! and the checks every format runs after it authenticated a value.
//!
//! The payload is a JSON object. Short names keep cookies small; the JWT
//! format uses the registered claims `aud`, `iat`, `exp` and `nbf` as JWT
//! defines them:
//!
//! | name  | meaning                                                    |
//! |-------|------------------------------------------------------------|
//! | `aud` | the cookie name: a value opens only under the name it was sealed for |
//! | `iat` | when the session was created (`Record::created_at`)        |
//! | `lst` | when the session was last used (`Record::last_seen`)       |
//! | `exp` | when the session ends: the earlier of the two deadlines (checked) |
//! | `idl` | the sliding idle deadline                                  |
//! | `abs` | the absolute deadline, absent if none                      |
//! | `usr` | the user the session belongs to, absent if none            |
//! | `xpy` | the per-session expiry override, absent if none            |
//! | `dat` | the session data                                           |
//! | `nbf` | (only read) not valid before; never written by these formats |
//!
//! Times are Unix seconds (JSON integers).
//!
//! The AEAD format seals the same fields in a compact form (see
//! [`SealedClaims::write_compact`]): the times as fixed-width integers, then
//! a JSON object with `usr`, `xpy` and `dat`. The cookie name is its
//! associated data rather than a field, and `exp` is not sealed but
//! computed. Opened, it goes through the same checks.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use session_core::{Error, Record, SessionData, SessionExpiry, StorageKey, Timestamp};

/// Values longer than this are refused before any decoding: browsers do not
/// store larger cookies, so a longer value is not one of ours.
pub(crate) const MAX_VALUE_BYTES: usize = 4096;

/// How far in the future an issue time may be (clock skew between servers),
/// as in the Fernet specification.
pub(crate) const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The payload as sealed, borrowing from the record.
#[derive(Serialize)]
pub(crate) struct SealedClaims<'a> {
    aud: &'a str,
    iat: Timestamp,
    lst: Timestamp,
    exp: Timestamp,
    idl: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    abs: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usr: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    xpy: Option<SessionExpiry>,
    dat: &'a SessionData,
}

impl<'a> SealedClaims<'a> {
    /// What `record` seals to under `cookie_name`. The record's key and
    /// version are not sealed.
    pub(crate) fn new(cookie_name: &'a str, record: &'a Record) -> Self {
        Self {
            aud: cookie_name,
            iat: record.created_at,
            lst: record.last_seen,
            exp: record.expires_at(),
            idl: record.idle_deadline,
            abs: record.absolute_deadline,
            usr: record.user.as_deref(),
            xpy: record.expiry,
            dat: &record.data,
        }
    }

    /// The payload as JSON bytes.
    #[cfg(any(feature = "fernet", feature = "jwt", feature = "signed"))]
    pub(crate) fn to_json(&self) -> Result<Vec<u8>, Error> {
        // The deadlines alone take about 100 bytes; start past serde_json's
        // default of 128 so a typical session is written without regrowing.
        let mut json = Vec::with_capacity(256);
        serde_json::to_writer(&mut json, self)?;
        Ok(json)
    }

    /// Appends the payload in its compact form to `out`:
    ///
    /// | bytes | |
    /// |---|---|
    /// | 1 | flags: `0x01` if there is an absolute deadline; no other bit is set |
    /// | 8 | `iat`, big-endian two's complement Unix seconds |
    /// | 8 | `lst` |
    /// | 8 | `idl` |
    /// | 8 | `abs`, zero when there is none |
    /// | rest | JSON: `{"usr":..,"xpy":..,"dat":{..}}`, `usr` and `xpy` absent when none |
    ///
    /// Parsing six decimal times and their names was most of what opening a
    /// small session cost (measured with callgrind: 5.2k instructions of
    /// 9.7k), and the names and digits half of the cookie's length.
    #[cfg(feature = "aead")]
    pub(crate) fn write_compact(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        out.push(if self.abs.is_some() { HAS_ABSOLUTE } else { 0 });
        let absolute = self.abs.map_or(0, Timestamp::unix_seconds);
        for seconds in
            [self.iat.unix_seconds(), self.lst.unix_seconds(), self.idl.unix_seconds(), absolute]
        {
            out.extend_from_slice(&seconds.to_be_bytes());
        }
        let rest = SealedRest { usr: self.usr, xpy: self.xpy, dat: self.dat };
        serde_json::to_writer(out, &rest)?;
        Ok(())
    }
}

/// Flags byte of the compact form: an absolute deadline is sealed.
#[cfg(feature = "aead")]
const HAS_ABSOLUTE: u8 = 0x01;

/// Length of the compact form's fixed part: flags and four times.
#[cfg(feature = "aead")]
const COMPACT_TIMES: usize = 1 + 4 * 8;

/// What the compact form seals as JSON after the times.
#[cfg(feature = "aead")]
#[derive(Serialize)]
struct SealedRest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    usr: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    xpy: Option<SessionExpiry>,
    dat: &'a SessionData,
}

/// The compact form's JSON as opened: exactly these fields, `dat` required.
#[cfg(feature = "aead")]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rest {
    usr: Option<String>,
    xpy: Option<SessionExpiry>,
    dat: SessionData,
}

/// The key of every opened record: all zeros. Client-side sessions have no
/// id and no store key ([`CookieFormat`](session_core::CookieFormat): "the
/// opened record's `key` is not meaningful"), and the layer gives new
/// client-side sessions this same key. (Nothing reads it; deriving one per
/// value, as a hash of the value, cost more than the rest of `open`.)
fn no_store_key() -> StorageKey {
    StorageKey::from_bytes([0; 32])
}

/// The payload as opened. Every field but the optional ones is required, with
/// its exact type: a value of another shape does not open.
#[derive(Deserialize)]
pub(crate) struct Claims<'a> {
    /// Borrowed from the JSON unless it holds escapes: it is only compared.
    #[serde(borrow)]
    aud: Cow<'a, str>,
    iat: Timestamp,
    lst: Timestamp,
    exp: Timestamp,
    idl: Timestamp,
    abs: Option<Timestamp>,
    usr: Option<String>,
    xpy: Option<SessionExpiry>,
    dat: SessionData,
    nbf: Option<Timestamp>,
}

impl<'a> Claims<'a> {
    /// Parses an authenticated payload; `None` (logged) if it has the wrong shape.
    #[cfg(any(feature = "fernet", feature = "jwt", feature = "signed"))]
    pub(crate) fn from_json(format: &'static str, json: &'a [u8]) -> Option<Self> {
        match serde_json::from_slice(json) {
            Ok(claims) => Some(claims),
            Err(_) => reject(format, "authenticated payload is not session claims"),
        }
    }

    /// Parses an authenticated payload in the compact form (see
    /// [`SealedClaims::write_compact`]) whose cookie name, `aud`, was
    /// authenticated apart from it; `None` (logged) if it has the wrong
    /// shape. `exp` is the earlier of the two deadlines.
    #[cfg(feature = "aead")]
    pub(crate) fn from_compact(format: &'static str, bytes: &[u8], aud: &'a str) -> Option<Self> {
        let Some((times, json)) = bytes.split_first_chunk::<COMPACT_TIMES>() else {
            return reject(format, "authenticated payload is shorter than its times");
        };
        let [flags, times @ ..] = times;
        let time = |index: usize| {
            let mut seconds = [0u8; 8];
            seconds.copy_from_slice(&times[index * 8..index * 8 + 8]);
            Timestamp::from_unix_seconds(i64::from_be_bytes(seconds))
        };
        // One encoding per session: no unknown flag, no stray absolute time.
        let abs = match *flags {
            HAS_ABSOLUTE => Some(time(3)),
            0 if time(3) == Timestamp::from_unix_seconds(0) => None,
            _ => return reject(format, "authenticated payload has unknown flags"),
        };
        let Ok(rest) = serde_json::from_slice::<Rest>(json) else {
            return reject(format, "authenticated payload is not session claims");
        };
        let idl = time(2);
        Some(Self {
            aud: Cow::Borrowed(aud),
            iat: time(0),
            lst: time(1),
            exp: abs.map_or(idl, |abs| abs.min(idl)),
            idl,
            abs,
            usr: rest.usr,
            xpy: rest.xpy,
            dat: rest.dat,
            nbf: None,
        })
    }

    /// The session, if these claims were sealed for `cookie_name` and are
    /// valid at `now`. Its key is all zeros and its version 0.
    pub(crate) fn into_record(
        self,
        format: &'static str,
        cookie_name: &str,
        now: Timestamp,
    ) -> Option<Record> {
        if self.aud != cookie_name {
            return reject(format, "sealed for another cookie name");
        }
        if self.nbf.is_some_and(|nbf| now < nbf) {
            return reject(format, "not valid yet (nbf)");
        }
        let latest_issue = now + MAX_CLOCK_SKEW;
        if self.iat > latest_issue || self.lst > latest_issue {
            return reject(format, "issued in the future");
        }
        if now >= self.exp {
            return reject(format, "expired (exp)");
        }
        let record = Record {
            key: no_store_key(),
            data: self.dat,
            created_at: self.iat,
            last_seen: self.lst,
            idle_deadline: self.idl,
            absolute_deadline: self.abs,
            user: self.usr,
            expiry: self.xpy,
            version: 0,
        };
        if record.expires_at() != self.exp {
            return reject(format, "exp is not the earlier of the sealed deadlines");
        }
        if record.is_expired(now) {
            return reject(format, "expired");
        }
        Some(record)
    }
}

/// Refuses values too long to be a cookie, before anything reads them.
pub(crate) fn check_length(format: &'static str, value: &str) -> Option<()> {
    if value.len() > MAX_VALUE_BYTES {
        return reject(format, "longer than 4096 bytes; not read");
    }
    Some(())
}

/// Logs why a cookie value was not opened, and returns `None`. A bad cookie
/// is client noise, not a server problem: debug level, and nothing of the
/// value is logged.
pub(crate) fn reject<T>(format: &'static str, reason: &'static str) -> Option<T> {
    tracing::debug!(format, reason, "session cookie not opened");
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_unix_seconds(seconds)
    }

    fn record() -> Record {
        let mut record =
            Record::new(StorageKey::from_bytes([9; 32]), t(1_000), t(2_000), Some(t(5_000)));
        record.data.insert("n", 1).unwrap();
        record.user = Some("alice".into());
        record
    }

    /// Whether `json` parses as claims.
    fn parses(json: &serde_json::Value) -> bool {
        Claims::from_json("test", json.to_string().as_bytes()).is_some()
    }

    #[test]
    fn seals_every_field_but_key_and_version() {
        let json = SealedClaims::new("id", &record()).to_json().unwrap();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "aud": "id", "iat": 1000, "lst": 1000, "exp": 2000, "idl": 2000, "abs": 5000,
                "usr": "alice", "dat": {"n": 1}
            })
        );
    }

    #[test]
    fn opens_into_an_unchanged_record_without_a_store_key() {
        let json = SealedClaims::new("id", &record()).to_json().unwrap();
        let opened =
            Claims::from_json("test", &json).unwrap().into_record("test", "id", t(1_500)).unwrap();
        assert!(!opened.data.is_changed());
        assert_eq!(opened.data.as_map(), record().data.as_map());
        assert_eq!((opened.created_at, opened.idle_deadline), (t(1_000), t(2_000)));
        assert_eq!(opened.key, StorageKey::from_bytes([0; 32]));
        assert_eq!(opened.version, 0);
    }

    /// The layout byte by byte and its strictness are tested through the
    /// AEAD format (`aead.rs`, `tests/aead_format.rs`); here, that every
    /// field survives it.
    #[test]
    fn the_compact_form_keeps_every_field_and_computes_exp() {
        let mut other = record();
        other.absolute_deadline = None;
        other.user = None;
        other.expiry = Some(SessionExpiry::BrowserSession);
        for sealed in [record(), other] {
            let mut bytes = Vec::new();
            SealedClaims::new("id", &sealed).write_compact(&mut bytes).unwrap();
            let claims = Claims::from_compact("test", &bytes, "id").unwrap();
            assert_eq!(
                (claims.exp, claims.nbf, claims.aud.as_ref()),
                (sealed.expires_at(), None, "id")
            );
            let opened = claims.into_record("test", "id", t(1_500)).unwrap();
            assert_eq!(opened.data.as_map(), sealed.data.as_map());
            assert_eq!(
                (opened.created_at, opened.last_seen),
                (sealed.created_at, sealed.last_seen)
            );
            assert_eq!(
                (opened.idle_deadline, opened.absolute_deadline),
                (sealed.idle_deadline, sealed.absolute_deadline)
            );
            assert_eq!((opened.user, opened.expiry), (sealed.user, sealed.expiry));
        }
    }

    #[test]
    fn an_escaped_audience_still_matches() {
        let json = br#"{"aud":"i\u0064","iat":1,"lst":1,"exp":9,"idl":9,"dat":{}}"#;
        let claims = Claims::from_json("test", json).unwrap();
        assert!(matches!(claims.aud, Cow::Owned(_)));
        assert!(claims.into_record("test", "id", t(2)).is_some());
        let plain = br#"{"aud":"id","iat":1,"lst":1,"exp":9,"idl":9,"dat":{}}"#;
        assert!(matches!(Claims::from_json("test", plain).unwrap().aud, Cow::Borrowed("id")));
    }

    #[test]
    fn wrong_shapes_do_not_open() {
        let good =
            serde_json::json!({"aud": "id", "iat": 1, "lst": 1, "exp": 9, "idl": 9, "dat": {}});
        assert!(parses(&good));
        for (field, bad) in [
            ("exp", serde_json::json!("9")),
            ("exp", serde_json::json!(1e30)),
            ("exp", serde_json::json!(u64::MAX)),
            ("exp", serde_json::Value::Null),
            ("iat", serde_json::json!(1.5)),
            ("dat", serde_json::json!([1, 2])),
            ("aud", serde_json::json!(["id"])),
            ("xpy", serde_json::json!({"kind": "forever"})),
        ] {
            let mut json = good.clone();
            json[field] = bad.clone();
            assert!(!parses(&json), "{field} = {bad}");
        }
        let mut missing = good.clone();
        missing.as_object_mut().unwrap().remove("exp");
        assert!(!parses(&missing));
        assert!(Claims::from_json("test", br#"{"aud":"id","aud":"id"}"#).is_none());
        assert!(Claims::from_json("test", b"not json").is_none());
    }

    #[test]
    fn time_checks_saturate_and_reject() {
        let at = |json: serde_json::Value, now: i64| {
            let json = json.to_string();
            Claims::from_json("test", json.as_bytes())
                .unwrap()
                .into_record("test", "id", t(now))
                .is_some()
        };
        let base = serde_json::json!({"aud": "id", "iat": 100, "lst": 100, "exp": 200, "idl": 200, "dat": {}});
        assert!(at(base.clone(), 199));
        assert!(!at(base.clone(), 200), "valid strictly before the deadline");
        assert!(!at(base.clone(), i64::MAX));
        assert!(at(base.clone(), 40), "issued 60 s ahead is within the skew");
        assert!(!at(base.clone(), 39), "issued 61 s ahead is not");

        let mut nbf = base.clone();
        nbf["nbf"] = serde_json::json!(150);
        assert!(!at(nbf.clone(), 149));
        assert!(at(nbf, 150));

        let mut negative = base.clone();
        negative["exp"] = serde_json::json!(-1);
        assert!(!at(negative, 150));

        let mut exp_beyond_idle = base.clone();
        exp_beyond_idle["exp"] = serde_json::json!(i64::MAX);
        assert!(!at(exp_beyond_idle, 150), "exp must be the sealed deadline");
        let mut idle_beyond_exp = base;
        idle_beyond_exp["idl"] = serde_json::json!(i64::MAX);
        assert!(!at(idle_beyond_exp, 150), "exp must be the sealed deadline");
    }
}

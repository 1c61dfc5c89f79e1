//! `FernetFormat`: the session encrypted and authenticated as a Fernet token.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use fernet::Fernet;
use session_core::{CookieFormat, Error, Keyring, Opened, Record, Timestamp};

use crate::claims::{self, Claims, MAX_CLOCK_SKEW, SealedClaims};
use crate::error::FormatError;

const FORMAT: &str = "fernet";

/// The version byte of every Fernet token.
const VERSION: u8 = 0x80;
/// Version, timestamp, IV and HMAC: a token is this plus whole AES blocks.
const OVERHEAD: usize = 1 + 8 + 16 + 32;
/// AES block size.
const BLOCK: usize = 16;

/// Encrypted cookies: the client can neither read nor forge the session.
///
/// A value is a standard [Fernet](https://github.com/fernet/spec/blob/master/Spec.md)
/// token (AES-128-CBC, then HMAC-SHA256 over version, timestamp, IV and
/// ciphertext; base64url with padding) whose plaintext is the session as JSON
/// (data, deadlines, user, expiry override and the cookie name, so a token
/// opens only under the cookie name it was sealed for).
///
/// Keys come from a [`Keyring`]: the primary key encrypts; opening tries
/// every key, primary first (like Python's `MultiFernet`, any number of
/// keys), and a token opened by a fallback key opens with
/// [`Opened::needs_reseal`] set. Keyring keys are Fernet keys: a key from
/// Python's `Fernet.generate_key()` parses with [`Key::from_base64`](session_core::Key::from_base64).
///
/// Time: the token's timestamp is the session's `last_seen` when it was
/// sealed. Opening authenticates the token first and only then reads that
/// timestamp, with saturating arithmetic: a timestamp more than 60 s ahead of
/// the server's clock is refused, and so is a token older than the optional
/// [`with_ttl`](Self::with_ttl). The session's own idle and absolute
/// deadlines, sealed inside, always apply.
///
/// The cookie grows with the session: about 4/3 of the JSON, rounded up to
/// whole AES blocks, plus 76 bytes.
///
/// ```
/// use std::time::Duration;
/// use session_core::{CookieFormat, Key, Keyring, Record, StorageKey, Timestamp};
/// use session_stores_cookie::FernetFormat;
///
/// let keyring = Keyring::new(Key::generate());
/// let format = FernetFormat::new(keyring).with_ttl(Duration::from_secs(24 * 3600));
/// let now = Timestamp::from_unix_seconds(1_700_000_000);
/// let mut record = Record::new(StorageKey::from_bytes([0; 32]), now, now + Duration::from_secs(60), None);
/// record.data.insert("cart", vec![1, 2, 3])?;
///
/// let value = format.seal("session", &record)?;
/// let opened = format.open("session", &value, now).unwrap();
/// assert_eq!(opened.record.data.get::<Vec<u32>>("cart")?, Some(vec![1, 2, 3]));
/// assert!(!opened.needs_reseal);
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Clone)]
pub struct FernetFormat {
    /// One per keyring key, primary first. `Fernet::new` accepts every
    /// 32-byte key, so none is `None` in practice.
    fernets: Vec<Option<Fernet>>,
    ttl: Option<Duration>,
}

impl FernetFormat {
    /// A format encrypting with `keyring`'s primary key and opening with all
    /// of its keys. No TTL: the session's deadlines decide.
    #[must_use]
    pub fn new(keyring: Keyring) -> Self {
        let fernets = keyring.keys().map(|key| Fernet::new(&key.to_base64())).collect();
        Self { fernets, ttl: None }
    }

    /// Also refuses tokens whose timestamp (the last time the session was
    /// sealed) is `ttl` or more in the past, like Fernet's TTL, whatever
    /// deadlines are sealed inside. Useful to shorten the life of cookies
    /// already issued.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

impl fmt::Debug for FernetFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FernetFormat")
            .field("keys", &self.fernets.len())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl CookieFormat for FernetFormat {
    fn seal(&self, cookie_name: &str, record: &Record) -> Result<String, Error> {
        let plaintext = SealedClaims::new(cookie_name, record).to_json()?;
        let primary =
            self.fernets.first().and_then(Option::as_ref).ok_or(FormatError::FernetKey)?;
        let timestamp = u64::try_from(record.last_seen.unix_seconds()).unwrap_or(0);
        Ok(primary.encrypt_at_time(&plaintext, timestamp))
    }

    fn open(&self, cookie_name: &str, value: &str, now: Timestamp) -> Option<Opened> {
        claims::check_length(FORMAT, value)?;
        // Strict, canonical base64url with padding: one token, one text.
        let Ok(token) = URL_SAFE.decode(value) else {
            return claims::reject(FORMAT, "not base64url");
        };
        if token.len() < OVERHEAD + BLOCK || !(token.len() - OVERHEAD).is_multiple_of(BLOCK) {
            return claims::reject(FORMAT, "not the length of a Fernet token");
        }
        if token[0] != VERSION {
            return claims::reject(FORMAT, "wrong version byte");
        }
        // `decrypt_at_time` without a TTL checks the HMAC (constant time) and
        // decrypts; its only time check is `now + 60 < timestamp`, which
        // cannot overflow for a `now` below `i64::MAX`. (`decrypt_with_ttl`
        // is never used: it adds the TTL to the unauthenticated timestamp.)
        let now_secs = u64::try_from(now.unix_seconds()).unwrap_or(0);
        let opened = self.fernets.iter().enumerate().find_map(|(index, fernet)| {
            let plaintext = fernet.as_ref()?.decrypt_at_time(value, None, now_secs).ok()?;
            Some((index, plaintext))
        });
        let Some((index, plaintext)) = opened else {
            return claims::reject(FORMAT, "no key opens the token");
        };
        // The HMAC covered the timestamp; read it only now.
        let mut timestamp = [0u8; 8];
        timestamp.copy_from_slice(&token[1..9]);
        if let Err(reason) = check_timestamp(u64::from_be_bytes(timestamp), now_secs, self.ttl) {
            return claims::reject(FORMAT, reason);
        }
        let record =
            Claims::from_json(FORMAT, &plaintext)?.into_record(FORMAT, cookie_name, value, now)?;
        Some(Opened { record, needs_reseal: index != 0 })
    }
}

/// Checks an authenticated token timestamp against `now`, saturating.
fn check_timestamp(timestamp: u64, now: u64, ttl: Option<Duration>) -> Result<(), &'static str> {
    if timestamp > now.saturating_add(MAX_CLOCK_SKEW.as_secs()) {
        return Err("timestamp more than 60 s in the future");
    }
    if let Some(ttl) = ttl
        && now >= timestamp.saturating_add(ttl.as_secs())
    {
        return Err("older than the TTL");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_checks_saturate() {
        let day = Some(Duration::from_secs(86_400));
        assert_eq!(check_timestamp(1_000, 1_000, None), Ok(()));
        assert_eq!(check_timestamp(1_060, 1_000, None), Ok(()));
        assert!(check_timestamp(1_061, 1_000, None).is_err());
        assert!(check_timestamp(u64::MAX, 1_000, day).is_err());
        assert!(check_timestamp(u64::MAX, u64::MAX, None).is_ok());
        assert!(check_timestamp(u64::MAX - 1, u64::MAX - 1, Some(Duration::MAX)).is_ok());
        assert!(check_timestamp(0, u64::MAX, day).is_err());
        assert!(check_timestamp(1_000, 1_000 + 86_399, day).is_ok());
        assert!(check_timestamp(1_000, 1_000 + 86_400, day).is_err(), "at the TTL: refused");
    }

    #[test]
    fn debug_shows_no_keys() {
        let key = session_core::Key::from_bytes([3; 32]);
        let format = FernetFormat::new(Keyring::new(key.clone()));
        let debug = format!("{format:?}");
        assert_eq!(debug, "FernetFormat { keys: 1, ttl: None, .. }");
        assert!(!debug.contains(&key.to_base64()[..6]));
        assert!(format.fernets.iter().all(Option::is_some));
    }
}

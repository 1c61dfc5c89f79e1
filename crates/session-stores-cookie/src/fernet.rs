//! `FernetFormat`: the session encrypted and authenticated as a Fernet token.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
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
        let timestamp = match token_head(value) {
            Ok(timestamp) => timestamp,
            Err(reason) => return claims::reject(FORMAT, reason),
        };
        // `decrypt_at_time` without a TTL checks the HMAC (constant time) and
        // decrypts; its only time check is `now + 60 < timestamp`, which
        // cannot overflow for a `now` below `i64::MAX`. (`decrypt_with_ttl`
        // is never used: it adds the TTL to the unauthenticated timestamp.)
        // It also decodes the whole token, refusing any character outside
        // the base64url alphabet and non-canonical trailing bits.
        let now_secs = u64::try_from(now.unix_seconds()).unwrap_or(0);
        let opened = self.fernets.iter().enumerate().find_map(|(index, fernet)| {
            let plaintext = fernet.as_ref()?.decrypt_at_time(value, None, now_secs).ok()?;
            Some((index, plaintext))
        });
        let Some((index, plaintext)) = opened else {
            return claims::reject(FORMAT, "no key opens the token");
        };
        // The HMAC covered the timestamp; act on it only now.
        if let Err(reason) = check_timestamp(timestamp, now_secs, self.ttl) {
            return claims::reject(FORMAT, reason);
        }
        let record =
            Claims::from_json(FORMAT, &plaintext)?.into_record(FORMAT, cookie_name, now)?;
        Some(Opened { record, needs_reseal: index != 0 })
    }
}

/// Checks what can be checked of a token without decoding all of it: that
/// its text is padded base64url of the length of a Fernet token (version,
/// timestamp, IV, whole AES blocks, HMAC) with exactly the padding that
/// length takes, and that its version byte is right. Returns its timestamp,
/// not yet authenticated.
///
/// The `fernet` crate decodes the whole token again (it takes text), so
/// decoding only the first 12 characters here spares a second decoding and
/// a copy of every value. Together the two checks accept exactly the
/// canonical padded base64url of a token (one token, one text).
fn token_head(value: &str) -> Result<u64, &'static str> {
    let text = value.as_bytes();
    let padding = text.iter().rev().take_while(|&&b| b == b'=').count();
    // Padded base64 comes in groups of 4 characters; the last group holds 1
    // or 2 bytes (2 or 1 padding characters) or 3 (none).
    if !text.len().is_multiple_of(4) || padding > 2 {
        return Err("not padded base64url");
    }
    let len = text.len() / 4 * 3 - padding;
    let canonical_padding = (3 - len % 3) % 3;
    if padding != canonical_padding {
        return Err("not padded base64url");
    }
    if len < OVERHEAD + BLOCK || !(len - OVERHEAD).is_multiple_of(BLOCK) {
        return Err("not the length of a Fernet token");
    }
    // 12 characters are exactly the 9 bytes of version and timestamp.
    let mut head = [0u8; 9];
    match URL_SAFE_NO_PAD.decode_slice(&text[..12], &mut head) {
        Ok(9) => {}
        _ => return Err("not base64url"),
    }
    if head[0] != VERSION {
        return Err("wrong version byte");
    }
    let mut timestamp = [0u8; 8];
    timestamp.copy_from_slice(&head[1..]);
    Ok(u64::from_be_bytes(timestamp))
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

    /// The strict check `open` used to make: decode all of it, canonically.
    fn strict(value: &str) -> Option<u64> {
        use base64::engine::general_purpose::URL_SAFE;
        let token = URL_SAFE.decode(value).ok()?;
        let sized =
            token.len() >= OVERHEAD + BLOCK && (token.len() - OVERHEAD).is_multiple_of(BLOCK);
        (sized && token[0] == VERSION).then(|| u64::from_be_bytes(token[1..9].try_into().unwrap()))
    }

    /// `token_head`, then the `fernet` crate's own decoding.
    fn ours(value: &str) -> Option<u64> {
        let timestamp = token_head(value).ok()?;
        URL_SAFE_NO_PAD.decode(value.trim_end_matches('=')).ok()?;
        Some(timestamp)
    }

    #[test]
    fn token_head_and_the_crate_accept_exactly_canonical_tokens() {
        let format = FernetFormat::new(Keyring::new(session_core::Key::from_bytes([3; 32])));
        let mut record = session_core::Record::new(
            session_core::StorageKey::from_bytes([0; 32]),
            Timestamp::from_unix_seconds(1_700_000_000),
            Timestamp::from_unix_seconds(1_700_000_060),
            None,
        );
        let mut values = Vec::new();
        // Every padding length: plaintexts whose token length is 0, 1 or 2 mod 3.
        for size in 0..40 {
            record.data.insert("k", "x".repeat(size)).unwrap();
            values.push(format.seal("id", &record).unwrap());
        }
        let mut variants = Vec::new();
        for value in &values {
            let unpadded = value.trim_end_matches('=');
            variants.extend([
                value.clone(),
                unpadded.to_owned(),
                format!("{value}="),
                format!("{value}=="),
                format!("{unpadded}="),
                format!("{unpadded}=="),
                format!("{unpadded}==="),
                format!("{value}AAAA"),
                value[..value.len() - 4].to_owned(),
                value[4..].to_owned(),
                value.replacen('A', "+", 1),
                value.replacen('-', "+", 1),
                value.replacen('_', "/", 1),
                format!("{}={}", &value[..20], &value[21..]),
                format!("{}ä{}", &value[..10], &value[12..]),
                format!("{}{}", &value[..value.len() - 5], "B===="),
            ]);
            // Each character of the last group, replaced (non-canonical bits).
            for at in value.len() - 4..value.len() {
                for c in ['A', 'B', 'Q', 'g', '_', '='] {
                    let mut changed = value.clone();
                    changed.replace_range(at..=at, &c.to_string());
                    variants.push(changed);
                }
            }
        }
        for bad in ["", "=", "==", "===", "====", "gAAAAA==", "AA==", "gA=="] {
            variants.push(bad.to_owned());
        }
        for variant in &variants {
            assert_eq!(ours(variant), strict(variant), "{variant}");
        }
        assert!(values.iter().all(|value| strict(value) == Some(1_700_000_000)));
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

//! `SignedFormat`: the session as base64url JSON, with an HMAC-SHA256 tag.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use session_core::{CookieFormat, Error, Keyring, Opened, Record, Timestamp};

use crate::claims::{self, Claims, SealedClaims};
use crate::mac::{self, KeyedMac, TAG_CHARS};

const FORMAT: &str = "signed";

/// Signed cookies: readable by the client, not forgeable.
///
/// A value is `base64url(payload) "." base64url(tag)` (no padding), where the
/// payload is the session as JSON (data, deadlines, user, expiry override and
/// the cookie name, see the crate docs) and
/// `tag = HMAC-SHA256(key, cookie_name || 0x00 || payload)`.
///
/// **Not encrypted**: anyone holding the cookie can base64-decode it and read
/// the session data. Use the Fernet format (feature `fernet`) when the data
/// must stay secret.
///
/// The primary key of the [`Keyring`] signs; every key verifies, in
/// constant time, primary first. A value verified by a fallback key opens
/// with [`Opened::needs_reseal`] set.
///
/// The cookie grows with the session: about 4/3 of the JSON plus 44 bytes.
///
/// ```
/// use session_core::{CookieFormat, Key, Keyring, Record, StorageKey, Timestamp};
/// use session_stores_cookie::SignedFormat;
///
/// let format = SignedFormat::new(Keyring::new(Key::generate()));
/// let now = Timestamp::from_unix_seconds(1_700_000_000);
/// let mut record = Record::new(StorageKey::from_bytes([0; 32]), now, now + std::time::Duration::from_secs(60), None);
/// record.data.insert("theme", "dark")?;
///
/// let value = format.seal("session", &record)?;
/// let opened = format.open("session", &value, now).unwrap();
/// assert_eq!(opened.record.data.get::<String>("theme")?.as_deref(), Some("dark"));
/// assert!(format.open("other", &value, now).is_none());
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Clone)]
pub struct SignedFormat {
    /// One keyed MAC per keyring key, primary first.
    macs: Vec<KeyedMac>,
}

impl SignedFormat {
    /// A format signing with `keyring`'s primary key and verifying with all
    /// of its keys.
    #[must_use]
    pub fn new(keyring: Keyring) -> Self {
        Self { macs: keyring.keys().map(KeyedMac::new).collect() }
    }

    /// What the tag covers: the cookie name, a NUL, the payload.
    fn signed<'a>(cookie_name: &'a str, payload: &'a [u8]) -> [&'a [u8]; 3] {
        [cookie_name.as_bytes(), &[0], payload]
    }
}

impl fmt::Debug for SignedFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedFormat").field("keys", &self.macs.len()).finish_non_exhaustive()
    }
}

impl CookieFormat for SignedFormat {
    fn seal(&self, cookie_name: &str, record: &Record) -> Result<String, Error> {
        let payload = SealedClaims::new(cookie_name, record).to_json()?;
        let tag = self.macs[0].tag(&Self::signed(cookie_name, &payload));
        let mut value = String::with_capacity(payload.len().div_ceil(3) * 4 + 1 + TAG_CHARS);
        URL_SAFE_NO_PAD.encode_string(&payload, &mut value);
        value.push('.');
        URL_SAFE_NO_PAD.encode_string(tag, &mut value);
        Ok(value)
    }

    fn open(&self, cookie_name: &str, value: &str, now: Timestamp) -> Option<Opened> {
        claims::check_length(FORMAT, value)?;
        let Some((payload, tag)) = value.split_once('.') else {
            return claims::reject(FORMAT, "no tag");
        };
        // Canonical base64url only, so every payload has exactly one value.
        let Some(tag) = mac::decode_tag(tag) else {
            return claims::reject(FORMAT, "tag is not 32 bytes of base64url");
        };
        let Ok(payload) = URL_SAFE_NO_PAD.decode(payload) else {
            return claims::reject(FORMAT, "not base64url");
        };
        let signed = Self::signed(cookie_name, &payload);
        let Some(index) = self.macs.iter().position(|mac| mac.verify(&signed, &tag)) else {
            return claims::reject(FORMAT, "no key verifies the tag");
        };
        let record = Claims::from_json(FORMAT, &payload)?.into_record(FORMAT, cookie_name, now)?;
        Some(Opened { record, needs_reseal: index != 0 })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hmac::{Hmac, Mac};
    use session_core::{Key, StorageKey};
    use sha2::Sha256;

    use super::*;

    #[test]
    fn tag_is_hmac_of_name_nul_payload() {
        let key = Key::from_bytes([5; 32]);
        let format = SignedFormat::new(Keyring::new(key.clone()));
        let now = Timestamp::from_unix_seconds(10);
        let record =
            Record::new(StorageKey::from_bytes([0; 32]), now, now + Duration::from_secs(5), None);
        let value = format.seal("sid", &record).unwrap();
        let (payload, tag) = value.split_once('.').unwrap();
        let payload = URL_SAFE_NO_PAD.decode(payload).unwrap();

        let mut expected = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
        expected.update(b"sid\0");
        expected.update(&payload);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(tag).unwrap(),
            expected.finalize().into_bytes().as_slice()
        );
        assert!(format!("{format:?}").starts_with("SignedFormat { keys: 1"));
    }
}

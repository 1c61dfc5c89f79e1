//! Secret keys for client-side sessions, and the keyring that rotates them.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Number of bytes in a [`Key`].
const KEY_BYTES: usize = 32;

/// Accepts `=` padding or its absence; still rejects non-canonical last characters.
const PADDING_OPTIONAL: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, PADDING_OPTIONAL);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, PADDING_OPTIONAL);

/// A 256-bit secret key for sealing client-side sessions.
///
/// Every cookie format uses keys of exactly 32 bytes: Fernet splits one into
/// its 128-bit signing and 128-bit encryption keys (which is why Fernet keys
/// are 32 bytes), and HMAC-SHA256 (the signed format, JWT `HS256`) uses all
/// 32 bytes.
///
/// Keys are written as base64url, 44 characters with padding, the same text
/// as a Fernet key (Python's `Fernet.generate_key()` output parses here).
/// Parsing accepts padding or none, and the standard base64 alphabet too
/// (`openssl rand -base64 32`), ignoring surrounding whitespace.
///
/// `Debug` prints `Key(REDACTED)`, and parse errors never contain key
/// material.
///
/// ```
/// use session_core::Key;
///
/// let key = Key::generate();
/// let text = key.to_base64(); // put this in your configuration
/// assert_eq!(text.len(), 44);
/// let parsed: Key = text.parse()?;
/// assert_eq!(parsed.as_bytes(), key.as_bytes());
/// assert_eq!(format!("{key:?}"), "Key(REDACTED)");
/// # Ok::<(), session_core::InvalidKey>(())
/// ```
#[derive(Clone)]
pub struct Key([u8; KEY_BYTES]);

impl Key {
    /// Length of a key in bytes.
    pub const LEN: usize = KEY_BYTES;

    /// A fresh key from the OS CSPRNG.
    ///
    /// # Panics
    ///
    /// Panics if the operating system cannot provide randomness: there is no
    /// safe key without it.
    #[must_use]
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_BYTES];
        #[allow(clippy::expect_used)] // No input involved; without an OS RNG no key is safe.
        getrandom::fill(&mut bytes).expect("the OS random number generator failed");
        Self(bytes)
    }

    /// A key from raw bytes. They must come from a CSPRNG (never a password).
    #[must_use]
    pub const fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        Self(bytes)
    }

    /// Parses a key from base64url (or standard base64), with or without
    /// padding. Same as [`str::parse`].
    ///
    /// # Errors
    ///
    /// [`InvalidKey`] if the text is not base64 or does not decode to exactly
    /// 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, InvalidKey> {
        let text = text.trim();
        // 32 bytes are at most 44 characters; refuse anything far longer unread.
        if text.len() > 4 * KEY_BYTES {
            return Err(InvalidKey::WrongLength { len: text.len() / 4 * 3 });
        }
        let decoded = URL_SAFE_LENIENT
            .decode(text)
            .or_else(|_| STANDARD_LENIENT.decode(text))
            .map_err(|_| InvalidKey::NotBase64)?;
        let bytes: [u8; KEY_BYTES] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| InvalidKey::WrongLength { len: decoded.len() })?;
        Ok(Self(bytes))
    }

    /// The key as 44 characters of base64url with padding (a valid Fernet
    /// key). Treat the result as a secret.
    #[must_use]
    pub fn to_base64(&self) -> String {
        URL_SAFE.encode(self.0)
    }

    /// The raw key bytes, for the cookie formats. Treat them as a secret.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }
}

/// The label that separates our key from the other uses of a `cookie::Key`'s
/// master secret. Never change it: every derived key would change with it.
#[cfg(feature = "cookie-key")]
const COOKIE_KEY_LABEL: &[u8] = b"session-axum client-side session key v1";

/// Derives a key from the `cookie` crate's `Key`, the one
/// `axum_extra::extract::cookie::Key` re-exports: what an application with a
/// `PrivateCookieJar` or `SignedCookieJar` already keeps in its
/// configuration, so it needs no second secret.
///
/// The key is HMAC-SHA256 of a fixed label under the 64-byte master secret,
/// never the master's bytes themselves: the cookie jars' AES-GCM and HMAC
/// keys come from the same master, and one secret must not serve two
/// algorithms. The same `cookie::Key` always gives the same key, so sessions
/// survive restarts; rotating it is rotating this key (keep the old one as a
/// [`Keyring`] fallback).
///
/// Needs the `cookie-key` feature (in `session-axum`: `cookie-key`).
///
/// ```
/// use session_core::{Key, Keyring};
///
/// // What `PrivateCookieJar` users hold: `axum_extra::extract::cookie::Key`
/// // is this type.
/// let jar_key = cookie::Key::generate();
///
/// let keyring = Keyring::from(&jar_key);
/// assert_eq!(keyring.primary().as_bytes(), Key::from(&jar_key).as_bytes());
/// assert_ne!(&keyring.primary().as_bytes()[..], &jar_key.master()[..32]);
/// ```
#[cfg(feature = "cookie-key")]
#[cfg_attr(docsrs, doc(cfg(feature = "cookie-key")))]
impl From<&cookie::Key> for Key {
    fn from(key: &cookie::Key) -> Self {
        use hmac::{Hmac, Mac as _};

        // Any key length is valid for HMAC: this cannot fail.
        let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key.master()) else {
            unreachable!("HMAC takes keys of any length")
        };
        mac.update(COOKIE_KEY_LABEL);
        Self(mac.finalize().into_bytes().into())
    }
}

/// A keyring with the key derived from a `cookie::Key` (see
/// [`Key`'s `From<&cookie::Key>`](Key#impl-From%3C%26Key%3E-for-Key)) as its primary.
#[cfg(feature = "cookie-key")]
#[cfg_attr(docsrs, doc(cfg(feature = "cookie-key")))]
impl From<&cookie::Key> for Keyring {
    fn from(key: &cookie::Key) -> Self {
        Self::new(Key::from(key))
    }
}

impl FromStr for Key {
    type Err = InvalidKey;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_base64(text)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(REDACTED)")
    }
}

/// Why a string is not a [`Key`]. Carries nothing of the key's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidKey {
    /// Not base64url or base64 (with or without padding).
    #[error("session key is not base64url text")]
    NotBase64,
    /// Decoded to the wrong number of bytes.
    #[error(
        "session key decodes to {len} bytes; keys are 32 bytes (44 characters of base64url, \
         see `Key::generate`)"
    )]
    WrongLength {
        /// How many bytes the text decoded to (approximately, for very long text).
        len: usize,
    },
}

/// One primary key and any number of fallback keys.
///
/// The primary key seals; every key opens, primary first. A value opened by
/// a fallback key should be resealed with the primary (the session layer
/// does this on the next response), so rotating a key is: add the new key as
/// primary, keep the old one as a fallback until the sessions sealed with it
/// have expired, then remove it. Removing a key invalidates every value it
/// sealed.
///
/// `Debug` shows how many keys there are, never the keys.
///
/// ```
/// use session_core::{Key, Keyring};
///
/// let old = Key::from_bytes([1; 32]);
/// let new = Key::from_bytes([2; 32]);
/// let keyring = Keyring::new(new).with_fallback(old);
///
/// // Which key opens a value? Here: the fallback at index 1.
/// let found = keyring.open(|key| (key.as_bytes()[0] == 1).then_some("opened")).unwrap();
/// assert_eq!(found.index, 1);
/// assert!(!found.is_primary());
/// assert_eq!(found.value, "opened");
/// ```
#[derive(Clone)]
pub struct Keyring {
    /// Never empty; index 0 is the primary.
    keys: Vec<Key>,
}

impl Keyring {
    /// A keyring with `primary` and no fallbacks.
    #[must_use]
    pub fn new(primary: Key) -> Self {
        Self { keys: vec![primary] }
    }

    /// Adds a fallback key, tried after the primary and earlier fallbacks.
    #[must_use]
    pub fn with_fallback(mut self, key: Key) -> Self {
        self.keys.push(key);
        self
    }

    /// Adds several fallback keys, in order.
    #[must_use]
    pub fn with_fallbacks(mut self, keys: impl IntoIterator<Item = Key>) -> Self {
        self.keys.extend(keys);
        self
    }

    /// The key that seals.
    #[must_use]
    pub fn primary(&self) -> &Key {
        &self.keys[0]
    }

    /// Every key, primary first; a key's position is its index.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &Key> {
        self.keys.iter()
    }

    /// Number of keys, primary included (at least 1).
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a keyring has a primary key. Here for API symmetry.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Tries `open` with each key, primary first, and returns the first
    /// success with the index of the key that produced it.
    pub fn open<T>(&self, mut open: impl FnMut(&Key) -> Option<T>) -> Option<KeyMatch<T>> {
        self.keys
            .iter()
            .enumerate()
            .find_map(|(index, key)| open(key).map(|value| KeyMatch { value, index }))
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("primary", self.primary())
            .field("fallbacks", &(self.keys.len() - 1))
            .finish()
    }
}

/// What [`Keyring::open`] found: the opened value and which key opened it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyMatch<T> {
    /// What the key opened.
    pub value: T,
    /// The key's index in the keyring: 0 is the primary.
    pub index: usize,
}

impl<T> KeyMatch<T> {
    /// Whether the primary key opened it. If not, reseal it with the primary
    /// ([`Opened::needs_reseal`](crate::Opened::needs_reseal)).
    #[must_use]
    pub fn is_primary(&self) -> bool {
        self.index == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Fernet key as Python's `Fernet.generate_key()` writes it.
    const FERNET_KEY: &str = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";

    /// Pinned with Python's `hmac` module: a change of the derivation would
    /// log out every user of a `cookie::Key`.
    #[cfg(feature = "cookie-key")]
    #[test]
    fn derives_a_stable_key_from_a_cookie_key() {
        let jar_key = cookie::Key::from(&[7; 64]);
        assert_eq!(Key::from(&jar_key).to_base64(), "rI-dYNFlcK4k_sGt2oJloN2L-RRfhvRri-BfhL2HJP0=");
        let keyring = Keyring::from(&jar_key);
        assert_eq!(
            (keyring.len(), keyring.primary().to_base64()),
            (1, Key::from(&jar_key).to_base64())
        );
        let other = cookie::Key::from(&[8; 64]);
        assert_ne!(Key::from(&other).as_bytes(), Key::from(&jar_key).as_bytes());
    }

    #[test]
    fn parses_base64url_with_and_without_padding() {
        let padded: Key = FERNET_KEY.parse().unwrap();
        let unpadded: Key = FERNET_KEY.trim_end_matches('=').parse().unwrap();
        assert_eq!(padded.as_bytes(), unpadded.as_bytes());
        assert_eq!(padded.to_base64(), FERNET_KEY);
        let spaced: Key = format!("  {FERNET_KEY}\n").parse().unwrap();
        assert_eq!(spaced.as_bytes(), padded.as_bytes());
    }

    #[test]
    fn parses_the_standard_alphabet() {
        let bytes = [0xfb; 32]; // encodes to '+' and '/' in standard base64
        let standard = base64::engine::general_purpose::STANDARD.encode(bytes);
        assert!(standard.contains('+') || standard.contains('/'));
        assert_eq!(standard.parse::<Key>().unwrap().as_bytes(), &bytes);
    }

    #[test]
    fn round_trips_through_text() {
        let key = Key::generate();
        let text = key.to_base64();
        assert_eq!(text.len(), 44);
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b)));
        assert_eq!(Key::from_base64(&text).unwrap().as_bytes(), key.as_bytes());
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(Key::generate().as_bytes(), Key::generate().as_bytes());
    }

    #[test]
    fn rejects_text_that_is_not_base64() {
        for bad in [
            "",
            "!!!",
            "not a key at all, with spaces",
            "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4==",
        ] {
            let err = bad.parse::<Key>().unwrap_err();
            assert!(
                matches!(err, InvalidKey::NotBase64 | InvalidKey::WrongLength { .. }),
                "{bad:?}"
            );
        }
        assert_eq!("!!!!".parse::<Key>().unwrap_err(), InvalidKey::NotBase64);
        // A non-canonical last character (trailing bits set) is not a key either.
        let mut text = FERNET_KEY.to_owned();
        text.replace_range(42..43, "f");
        assert_eq!(text.parse::<Key>().unwrap_err(), InvalidKey::NotBase64);
    }

    #[test]
    fn rejects_wrong_lengths() {
        let short = URL_SAFE.encode([7u8; 16]);
        assert_eq!(short.parse::<Key>().unwrap_err(), InvalidKey::WrongLength { len: 16 });
        let long = URL_SAFE.encode([7u8; 33]);
        assert_eq!(long.parse::<Key>().unwrap_err(), InvalidKey::WrongLength { len: 33 });
        let huge = "A".repeat(1 << 20);
        assert!(matches!(huge.parse::<Key>().unwrap_err(), InvalidKey::WrongLength { .. }));
    }

    #[test]
    fn errors_and_debug_never_show_key_material() {
        let key: Key = FERNET_KEY.parse().unwrap();
        assert_eq!(format!("{key:?}"), "Key(REDACTED)");
        let keyring = Keyring::new(key.clone()).with_fallback(Key::generate());
        let debug = format!("{keyring:?}");
        assert_eq!(debug, "Keyring { primary: Key(REDACTED), fallbacks: 1 }");
        assert!(!debug.contains(&FERNET_KEY[..8]));

        let almost = &FERNET_KEY[..40];
        for text in [almost, "secret-but-not-a-key!"] {
            let err = text.parse::<Key>().unwrap_err();
            for shown in [err.to_string(), format!("{err:?}")] {
                assert!(!shown.contains(&text[..8]), "{shown}");
            }
        }
    }

    #[test]
    fn primary_opens_first_then_fallbacks_in_order() {
        let a = Key::from_bytes([1; 32]);
        let b = Key::from_bytes([2; 32]);
        let c = Key::from_bytes([3; 32]);
        let keyring = Keyring::new(a).with_fallbacks([b, c]);
        assert_eq!(keyring.len(), 3);
        assert!(!keyring.is_empty());
        assert_eq!(keyring.primary().as_bytes(), &[1; 32]);
        let order: Vec<u8> = keyring.keys().map(|key| key.as_bytes()[0]).collect();
        assert_eq!(order, [1, 2, 3]);

        let opened_by =
            |wanted: u8| keyring.open(|key| (key.as_bytes()[0] == wanted).then_some(wanted));
        let primary = opened_by(1).unwrap();
        assert_eq!((primary.index, primary.is_primary()), (0, true));
        let fallback = opened_by(3).unwrap();
        assert_eq!((fallback.value, fallback.index, fallback.is_primary()), (3, 2, false));
        assert_eq!(opened_by(4), None);

        let mut tried = Vec::new();
        let _ = keyring.open(|key| {
            tried.push(key.as_bytes()[0]);
            None::<()>
        });
        assert_eq!(tried, [1, 2, 3]);
    }
}

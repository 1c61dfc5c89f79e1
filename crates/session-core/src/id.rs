//! Session ids and the keys stores file them under.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Number of random bytes in a session id (128 bits).
const ID_BYTES: usize = 16;

/// Length of a session id written as unpadded base64url.
pub const SESSION_ID_LEN: usize = 22;

/// A session id: 128 bits from the operating system's CSPRNG.
///
/// The only string form is 22 characters of unpadded base64url, produced by
/// [`SessionId::expose`] for the cookie. Parsing is strict: anything that is not
/// exactly that (wrong length, other alphabet, padding, whitespace, a
/// non-canonical last character) is not an id.
///
/// `Debug` and `Display` print a short hash of the id, never the id itself,
/// so ids can be logged without handing out live sessions.
///
/// ```
/// use session_core::SessionId;
///
/// let id = SessionId::random();
/// let cookie_value = id.expose();
/// assert_eq!(cookie_value.len(), 22);
/// assert_eq!(cookie_value.parse::<SessionId>().unwrap(), id);
///
/// assert!("../../etc/passwd".parse::<SessionId>().is_err());
/// assert!(!format!("{id}").contains(&cookie_value));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; ID_BYTES]);

impl SessionId {
    /// A fresh id from the OS CSPRNG.
    ///
    /// # Panics
    ///
    /// Panics if the operating system cannot provide randomness: there is no
    /// safe way to issue a session id without it.
    #[must_use]
    pub fn random() -> Self {
        let mut bytes = [0u8; ID_BYTES];
        #[allow(clippy::expect_used)] // No input involved; without an OS RNG no id is safe.
        getrandom::fill(&mut bytes).expect("the OS random number generator failed");
        Self(bytes)
    }

    /// The id as it travels in the cookie. Treat the result as a secret.
    #[must_use]
    pub fn expose(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The key stores file this session under: a SHA-256 hash of the id, so a
    /// leaked database or key listing does not hand out live sessions and store
    /// lookups do not compare secrets.
    #[must_use]
    pub fn storage_key(&self) -> StorageKey {
        StorageKey(Sha256::digest(self.0).into())
    }

    /// Builds an id from raw bytes. Meant for deterministic test id generators.
    #[cfg(any(test, feature = "testing"))]
    #[must_use]
    pub fn from_bytes(bytes: [u8; ID_BYTES]) -> Self {
        Self(bytes)
    }
}

/// Why a string is not a session id. Deliberately carries nothing of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a session id")]
pub struct InvalidSessionId;

impl FromStr for SessionId {
    type Err = InvalidSessionId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The length check comes first so oversized input is never decoded.
        if s.len() != SESSION_ID_LEN
            || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(InvalidSessionId);
        }
        let mut bytes = [0u8; ID_BYTES];
        // The default engine rejects non-canonical trailing bits, so every id has
        // exactly one string form.
        match URL_SAFE_NO_PAD.decode_slice(s, &mut bytes) {
            Ok(ID_BYTES) => Ok(Self(bytes)),
            _ => Err(InvalidSessionId),
        }
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.storage_key().short())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.storage_key().short())
    }
}

/// The at-rest key of a session: SHA-256 of its id.
///
/// Stores use [`StorageKey::to_hex`] (64 lowercase hex characters) as a row key,
/// a Redis key suffix or a file name. It is derived, never parsed from a
/// request, so it is always safe in all three places.
///
/// ```
/// use session_core::SessionId;
///
/// let key = SessionId::random().storage_key();
/// assert_eq!(key.to_hex().len(), 64);
/// assert_eq!(key.to_hex().parse::<session_core::StorageKey>().unwrap(), key);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageKey([u8; 32]);

impl StorageKey {
    /// The raw 32 bytes, for stores with binary keys.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Builds a key from stored bytes (for example a `BYTEA` column).
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// 64 lowercase hex characters.
    #[must_use]
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        out
    }

    /// The first 64 bits of the key, e.g. for Postgres advisory locks.
    #[must_use]
    pub fn prefix_u64(&self) -> u64 {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(first)
    }

    /// Eight hex characters: enough to tell sessions apart in logs.
    fn short(&self) -> String {
        self.to_hex()[..8].to_owned()
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageKey({}..)", self.short())
    }
}

impl fmt::Display for StorageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why a string is not a storage key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a storage key (expected 64 lowercase hex characters)")]
pub struct InvalidStorageKey;

impl FromStr for StorageKey {
    type Err = InvalidStorageKey;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.as_bytes();
        if digits.len() != 64 {
            return Err(InvalidStorageKey);
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err(InvalidStorageKey),
        };
        let mut bytes = [0u8; 32];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            bytes[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Ok(Self(bytes))
    }
}

impl serde::Serialize for StorageKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for StorageKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Issues session ids. The layer asks it for every new session.
///
/// The default, [`RandomIds`], draws from the OS CSPRNG. Tests plug in a
/// generator that repeats itself to prove that an id collision never hands an
/// existing session to someone else.
pub trait IdGenerator: fmt::Debug + Send + Sync + 'static {
    /// The next id.
    fn generate(&self) -> SessionId;
}

/// The production [`IdGenerator`]: [`SessionId::random`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

impl IdGenerator for RandomIds {
    fn generate(&self) -> SessionId {
        SessionId::random()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_string_form() {
        for _ in 0..100 {
            let id = SessionId::random();
            assert_eq!(id.expose().parse::<SessionId>(), Ok(id));
        }
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(SessionId::random(), SessionId::random());
    }

    #[test]
    fn rejects_everything_that_is_not_exactly_an_id() {
        let valid = SessionId::random().expose();
        let too_long = format!("{valid}A");
        let with_space = format!("{} ", &valid[..21]);
        let with_newline = format!("{}\n", &valid[..21]);
        let with_padding = format!("{}=", &valid[..21]);
        let standard_alphabet = format!("{}+", &valid[..21]);
        let bad = [
            "",
            "!!!",
            &valid[..21],
            &too_long,
            &with_space,
            &with_newline,
            &with_padding,
            &standard_alphabet,
            "../../etc/passwd",
            "..%2f..%2f..%2fetc%2fpass",
            "a\\b",
            "/etc/passwd",
            "NUL",
            "CON",
            "' OR 1=1--",
            "\"AAAAAAAAAAAAAAAAAAAAAA\"",
            "AAAAAAAAAAAAAAAAAAAAA\0",
            "ÄAAAAAAAAAAAAAAAAAAAA",
        ];
        for input in bad {
            assert_eq!(input.parse::<SessionId>(), Err(InvalidSessionId), "{input:?}");
        }
    }

    #[test]
    fn rejects_non_canonical_trailing_bits() {
        // 16 bytes leave 4 unused bits in the 22nd character; only one spelling is valid.
        let canonical = SessionId::from_bytes([0; 16]).expose();
        assert_eq!(canonical, "AAAAAAAAAAAAAAAAAAAAAA");
        assert!("AAAAAAAAAAAAAAAAAAAAAB".parse::<SessionId>().is_err());
    }

    #[test]
    fn logs_never_show_the_id() {
        let id = SessionId::random();
        let exposed = id.expose();
        assert!(!format!("{id}").contains(&exposed));
        assert!(!format!("{id:?}").contains(&exposed));
        assert!(!format!("{id:?}").contains(&id.storage_key().to_hex()));
    }

    #[test]
    fn storage_key_is_a_hash_not_the_id() {
        let id = SessionId::from_bytes([7; 16]);
        assert_eq!(id.storage_key(), SessionId::from_bytes([7; 16]).storage_key());
        assert_ne!(id.storage_key(), SessionId::from_bytes([8; 16]).storage_key());
        assert_eq!(id.storage_key().to_hex().parse::<StorageKey>(), Ok(id.storage_key()));
        assert!("ABCDEF".repeat(11)[..64].parse::<StorageKey>().is_err());
    }
}

//! `AeadFormat`: the session encrypted and authenticated with AES-256-GCM.

use std::fmt;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use session_core::{CookieFormat, Error, Key, Keyring, Opened, Record, Timestamp};

use crate::claims::{self, Claims, SealedClaims};
use crate::error::FormatError;
use crate::mac::KeyedMac;

const FORMAT: &str = "aead";

/// The first byte of every value: the layout and key derivation below.
const VERSION: u8 = 1;
/// AES-GCM's 96-bit nonce.
const NONCE_BYTES: usize = 12;
/// AES-GCM's full 128-bit tag.
const TAG_BYTES: usize = 16;
/// Version and nonce: the plaintext is sealed right after them.
const HEADER: usize = 1 + NONCE_BYTES;
/// What a value adds to the plaintext, before base64.
const OVERHEAD: usize = HEADER + TAG_BYTES;
/// Values that decode to at most this many bytes are decoded on the stack.
const SMALL_DECODED: usize = 480;
/// What to reserve for a sealed session: overhead, the times, and room for
/// a typical session's JSON (user, expiry override, a few keys) without
/// regrowing.
const SEALED_CAPACITY: usize = 256;

/// HKDF-Expand's `info` for this format's key (RFC 5869, one block: the
/// HMAC of `info || 0x01`). Never change it: every key would change with it.
///
/// The other formats that take a keyring key use it as an HMAC-SHA256 key
/// themselves, over inputs that never end in the byte 0x01 (the signed
/// format's ends with its JSON's `}`, a JWT's with a base64url character),
/// so no value they make under the same keyring key is this format's key.
const KEY_INFO: &[u8] = b"session-stores-cookie AES-256-GCM cookie key v1";

/// Encrypted cookies with AES-256-GCM: the client can neither read nor
/// forge the session. The default choice for new sites.
///
/// A value is `base64url(version || nonce || ciphertext || tag)` without
/// padding: the version byte `0x01`, a 12-byte nonce drawn from the OS
/// CSPRNG for every seal, the session encrypted with AES-256-GCM, and its
/// 16-byte tag. The cookie name is the associated data, so a value opens
/// only under the name it was sealed for.
///
/// The plaintext is compact: a flags byte and the creation time, last use,
/// idle deadline and absolute deadline as big-endian 64-bit Unix seconds,
/// then a JSON object with the user (`usr`), the expiry override (`xpy`)
/// and the data (`dat`). It carries what the other formats' JSON carries,
/// and opening checks the same (see the crate docs), but the fixed-width
/// times cost nothing to parse: six decimal times and their names were half
/// of what opening a small session cost, and half of its cookie.
///
/// # Keys
///
/// Keys come from a [`Keyring`]: the primary key seals; opening tries every
/// key, primary first (any number of keys), and a value opened by a
/// fallback key opens with [`Opened::needs_reseal`] set. The AES key is not
/// the keyring key itself but HKDF-Expand (SHA-256) of it with a label of
/// this format's own, computed once in [`new`](Self::new): one keyring used
/// for this format and another never gives the same key to two algorithms.
///
/// # Why AES-256-GCM
///
/// It is what the `cookie` crate's private jar (axum-extra's
/// `PrivateCookieJar`) and Rails' encrypted cookie store use, through the
/// same crate and release line as the jar (`aes-gcm` 0.10), so an
/// application with both compiles one copy. On servers with AES and
/// carry-less multiply instructions (x86-64 AES-NI/PCLMULQDQ, ARMv8 crypto
/// extensions) it is the cheapest authenticated encryption there is: one
/// pass over the plaintext, where Fernet makes two (AES-CBC, then
/// HMAC-SHA256 over base64 of the whole token). XChaCha20-Poly1305 would
/// allow more random nonces per key (below) but is slower where AES runs in
/// hardware and would add a second cipher to the tree of every axum-extra
/// user.
///
/// The price of AES-GCM's 96-bit random nonces: one key must not seal more
/// than 2³² values (NIST SP 800-38D), which keeps the chance of a repeated
/// nonce below one in 2³². That is 136 years at 1000 seals per second;
/// a site sealing far more, rotate the key (make a new one primary, keep
/// the old as a fallback) long before it gets there.
///
/// The cookie grows with the session: about 4/3 of the data's JSON (and of
/// the user) plus 94 bytes.
///
/// ```
/// use std::time::Duration;
/// use session_core::{CookieFormat, Key, Keyring, Record, StorageKey, Timestamp};
/// use session_stores_cookie::AeadFormat;
///
/// let old = Key::generate();
/// let format = AeadFormat::new(Keyring::new(old.clone()));
/// let now = Timestamp::from_unix_seconds(1_700_000_000);
/// let mut record = Record::new(StorageKey::from_bytes([0; 32]), now, now + Duration::from_secs(60), None);
/// record.data.insert("cart", vec![1, 2, 3])?;
///
/// let value = format.seal("session", &record)?;
/// let opened = format.open("session", &value, now).unwrap();
/// assert_eq!(opened.record.data.get::<Vec<u32>>("cart")?, Some(vec![1, 2, 3]));
/// assert!(format.open("other", &value, now).is_none(), "bound to its cookie name");
///
/// // Rotation: a new primary seals, the old key still opens (and asks for a reseal).
/// let rotated = AeadFormat::new(Keyring::new(Key::generate()).with_fallback(old));
/// assert!(rotated.open("session", &value, now).unwrap().needs_reseal);
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Clone)]
pub struct AeadFormat {
    /// One keyed cipher per keyring key, primary first: the AES key
    /// schedule and the GHASH key are computed once here, not per value.
    ciphers: Vec<Aes256Gcm>,
}

impl AeadFormat {
    /// A format sealing with `keyring`'s primary key and opening with all of
    /// its keys.
    #[must_use]
    pub fn new(keyring: Keyring) -> Self {
        Self {
            ciphers: keyring.keys().map(|key| Aes256Gcm::new(&derive_key(key).into())).collect(),
        }
    }
}

/// This format's AES-256 key for a keyring key: HKDF-Expand(SHA-256) with
/// the keyring key as the pseudorandom key (it is 32 uniformly random
/// bytes, so the Extract step adds nothing), [`KEY_INFO`], 32 bytes.
fn derive_key(key: &Key) -> [u8; 32] {
    KeyedMac::new(key).tag(&[KEY_INFO, &[1]])
}

impl fmt::Debug for AeadFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AeadFormat").field("keys", &self.ciphers.len()).finish_non_exhaustive()
    }
}

impl CookieFormat for AeadFormat {
    fn seal(&self, cookie_name: &str, record: &Record) -> Result<String, Error> {
        // One buffer: version and nonce, then the session written straight
        // after them and encrypted where it lies, then the tag.
        let mut sealed = Vec::with_capacity(SEALED_CAPACITY);
        sealed.push(VERSION);
        sealed.extend_from_slice(&[0; NONCE_BYTES]);
        SealedClaims::new(cookie_name, record).write_compact(&mut sealed)?;
        let (header, plaintext) = sealed.split_at_mut(HEADER);
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(FormatError::Random)?;
        header[1..].copy_from_slice(&nonce);
        let tag = self.ciphers[0]
            .encrypt_in_place_detached((&nonce).into(), cookie_name.as_bytes(), plaintext)
            .map_err(|_| FormatError::Encrypt)?;
        sealed.extend_from_slice(&tag);
        let mut value = String::with_capacity(sealed.len().div_ceil(3) * 4);
        URL_SAFE_NO_PAD.encode_string(&sealed, &mut value);
        Ok(value)
    }

    fn open(&self, cookie_name: &str, value: &str, now: Timestamp) -> Option<Opened> {
        claims::check_length(FORMAT, value)?;
        // Decoded on the stack when the value is small, as sessions kept in
        // a cookie should be (a heap buffer cost more than the AES-GCM pass).
        let mut small = [0u8; SMALL_DECODED];
        let mut large = Vec::new();
        let buffer = if value.len() <= SMALL_DECODED / 3 * 4 {
            &mut small[..]
        } else {
            large.resize(value.len().div_ceil(4) * 3, 0);
            &mut large[..]
        };
        // Canonical unpadded base64url only, so every value has one text.
        let Ok(len) = URL_SAFE_NO_PAD.decode_slice(value, buffer) else {
            return claims::reject(FORMAT, "not base64url");
        };
        let sealed = &mut buffer[..len];
        if sealed.len() < OVERHEAD {
            return claims::reject(FORMAT, "shorter than version, nonce and tag");
        }
        let (header, rest) = sealed.split_at_mut(HEADER);
        // Only one version exists. A later one would derive its own key, so
        // relabelling a value could not make it open under other rules.
        if header[0] != VERSION {
            return claims::reject(FORMAT, "wrong version byte");
        }
        let Ok(nonce) = <&[u8; NONCE_BYTES]>::try_from(&header[1..]) else {
            return claims::reject(FORMAT, "no nonce");
        };
        let (ciphertext, tag) = rest.split_at_mut(rest.len() - TAG_BYTES);
        let Ok(tag) = <&[u8; TAG_BYTES]>::try_from(&*tag) else {
            return claims::reject(FORMAT, "no tag");
        };
        // A key that does not authenticate the value leaves it untouched
        // (aes-gcm checks the tag before decrypting), so the next key sees
        // the same ciphertext.
        let Some(index) = self.ciphers.iter().position(|cipher| {
            cipher
                .decrypt_in_place_detached(
                    nonce.into(),
                    cookie_name.as_bytes(),
                    ciphertext,
                    tag.into(),
                )
                .is_ok()
        }) else {
            return claims::reject(FORMAT, "no key opens the value");
        };
        // The cookie name is authenticated (the associated data), so it is
        // the sealed name.
        let record = Claims::from_compact(FORMAT, ciphertext, cookie_name)?.into_record(
            FORMAT,
            cookie_name,
            now,
        )?;
        Some(Opened { record, needs_reseal: index != 0 })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aes_gcm::Nonce;
    use session_core::StorageKey;

    use super::*;

    /// Pinned with Python: `hmac.new(bytes([7]) * 32, info + b"\x01",
    /// "sha256")`, which `cryptography`'s `HKDFExpand(SHA256(), 32, info)`
    /// also gives. A change of the derivation would end every session sealed
    /// with this format.
    #[test]
    fn the_key_is_hkdf_expand_of_the_keyring_key() {
        let derived = derive_key(&Key::from_bytes([7; 32]));
        assert_eq!(URL_SAFE_NO_PAD.encode(derived), "lFnIXblUyxjXppWnGo6mC9AzE1WI3dP5IxYQOf4uNWw");
        assert_ne!(derived, [7; 32]);
        assert_ne!(derive_key(&Key::from_bytes([8; 32])), derived);
    }

    #[test]
    fn a_value_is_version_nonce_ciphertext_tag_under_the_derived_key() {
        let key = Key::from_bytes([5; 32]);
        let format = AeadFormat::new(Keyring::new(key.clone()));
        let now = Timestamp::from_unix_seconds(10);
        let record =
            Record::new(StorageKey::from_bytes([0; 32]), now, now + Duration::from_secs(5), None);
        let value = format.seal("sid", &record).unwrap();
        let mut sealed = URL_SAFE_NO_PAD.decode(&value).unwrap();
        assert_eq!(sealed[0], VERSION);

        let cipher = Aes256Gcm::new(&derive_key(&key).into());
        let (header, rest) = sealed.split_at_mut(HEADER);
        let (ciphertext, tag) = rest.split_at_mut(rest.len() - TAG_BYTES);
        cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(&header[1..]),
                b"sid",
                ciphertext,
                aes_gcm::Tag::from_slice(tag),
            )
            .unwrap();
        // The compact claims: no flags, created and last seen at 10, idle
        // deadline 15, no absolute deadline, then the rest as JSON.
        let mut expected = vec![0];
        for seconds in [10_i64, 10, 15, 0] {
            expected.extend_from_slice(&seconds.to_be_bytes());
        }
        expected.extend_from_slice(br#"{"dat":{}}"#);
        assert_eq!(ciphertext, &expected[..]);
        assert_eq!(format!("{format:?}"), "AeadFormat { keys: 1, .. }");
    }

    #[test]
    fn every_seal_draws_a_new_nonce() {
        let format = AeadFormat::new(Keyring::new(Key::from_bytes([5; 32])));
        let now = Timestamp::from_unix_seconds(10);
        let record =
            Record::new(StorageKey::from_bytes([0; 32]), now, now + Duration::from_secs(5), None);
        let nonces: std::collections::HashSet<Vec<u8>> = (0..64)
            .map(|_| {
                URL_SAFE_NO_PAD.decode(format.seal("sid", &record).unwrap()).unwrap()[1..HEADER]
                    .to_vec()
            })
            .collect();
        assert_eq!(nonces.len(), 64);
    }
}

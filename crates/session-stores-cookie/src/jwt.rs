//! `JwtFormat`: the session as a signed JWT (HS256, or EdDSA).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use session_core::{CookieFormat, Error, Keyring, Opened, Record, Timestamp};

use crate::claims::{self, Claims, SealedClaims};
use crate::error::FormatError;

const FORMAT: &str = "jwt";

/// DER prefix of an Ed25519 `SubjectPublicKeyInfo`; the raw key follows.
const ED25519_SPKI_PREFIX: [u8; 12] =
    [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// JWT cookies: signed, **not encrypted**. Readable by the client (and by
/// anyone holding the cookie), not forgeable.
///
/// A value is a compact JWS whose claims are the session: the registered
/// claims `aud` (the cookie name), `iat` (when the session was created) and
/// `exp` (its deadline), plus the session data, deadlines, user and expiry
/// override (see the crate docs). Use the Fernet format when the data must
/// stay secret.
///
/// Validation, on every open:
///
/// - The algorithm is pinned by configuration ([`hs256`](Self::hs256) or
///   [`ed25519`](Self::ed25519)); the header's `alg` must equal it, so `none`
///   and algorithm confusion do not open. Header keys (`jku`, `jwk`, `x5u`,
///   `x5c`, `kid`) are ignored: only configured keys verify. A header with
///   `crit` is refused.
/// - `exp` is required and checked with zero leeway against the layer's
///   clock: a session is valid strictly before it. `nbf`, if present, is
///   checked. `aud` must be the cookie name. `iat` may be at most 60 s in the
///   future (clock skew between servers). The sealed idle and absolute
///   deadlines (the absolute one counted from `iat`) apply as well.
///
/// Keys rotate: every configured key verifies, primary first, and a value
/// verified by a fallback key opens with [`Opened::needs_reseal`] set.
///
/// # Crypto provider
///
/// `jsonwebtoken` is built with its RustCrypto backend only and selects it
/// automatically. If something else in your build also enables
/// `jsonwebtoken`'s `aws_lc_rs` feature, install a provider with
/// `jsonwebtoken::crypto::CryptoProvider::install_default` before building a
/// `JwtFormat`, or the constructor panics with `jsonwebtoken`'s message.
///
/// The cookie grows with the session: about 4/3 of the JSON plus 80 bytes
/// (HS256) or 125 bytes (EdDSA).
///
/// ```
/// use std::time::Duration;
/// use session_core::{CookieFormat, Key, Keyring, Record, StorageKey, Timestamp};
/// use session_stores_cookie::JwtFormat;
///
/// let format = JwtFormat::hs256(Keyring::new(Key::generate()));
/// let now = Timestamp::from_unix_seconds(1_700_000_000);
/// let mut record = Record::new(StorageKey::from_bytes([0; 32]), now, now + Duration::from_secs(60), None);
/// record.user = Some("alice".into());
///
/// let value = format.seal("session", &record)?;
/// assert_eq!(value.split('.').count(), 3);
/// let opened = format.open("session", &value, now).unwrap();
/// assert_eq!(opened.record.user.as_deref(), Some("alice"));
/// assert!(format.open("session", &value, now + Duration::from_secs(60)).is_none());
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Clone)]
pub struct JwtFormat {
    algorithm: Algorithm,
    signing: EncodingKey,
    /// Verifying keys, the one matching `signing` first.
    verifying: Vec<DecodingKey>,
}

impl JwtFormat {
    /// HMAC-SHA256 JWTs: `keyring`'s primary key signs, every key verifies.
    ///
    /// # Panics
    ///
    /// If `jsonwebtoken` has no crypto provider (see the type's docs).
    #[must_use]
    pub fn hs256(keyring: Keyring) -> Self {
        let signing = EncodingKey::from_secret(keyring.primary().as_bytes());
        let verifying =
            keyring.keys().map(|key| DecodingKey::from_secret(key.as_bytes())).collect();
        // Surfaces a missing crypto provider now, not on the first request.
        let _ = jsonwebtoken::crypto::sign(b"probe", &signing, Algorithm::HS256);
        Self { algorithm: Algorithm::HS256, signing, verifying }
    }

    /// Ed25519 (`EdDSA`) JWTs: `signing_key` signs, and its public key
    /// verifies, then each of `fallback_verifying_keys` in order.
    ///
    /// `signing_key` is an Ed25519 private key in PKCS#8 (v1, as written by
    /// `openssl genpkey -algorithm ed25519`), PEM (`-----BEGIN PRIVATE
    /// KEY-----`) or DER. Each fallback verifying key is an Ed25519 public
    /// key as PEM (`-----BEGIN PUBLIC KEY-----`), `SubjectPublicKeyInfo` DER,
    /// or the 32 raw bytes.
    ///
    /// ```
    /// use session_stores_cookie::JwtFormat;
    ///
    /// // The example key of RFC 8410; generate your own with
    /// // `openssl genpkey -algorithm ed25519`.
    /// let pem = "-----BEGIN PRIVATE KEY-----
    /// MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC
    /// -----END PRIVATE KEY-----";
    /// let format = JwtFormat::ed25519(pem.as_bytes(), &[])?;
    /// # let _ = format;
    /// # Ok::<(), session_stores_cookie::Ed25519KeyError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Ed25519KeyError`] naming the key that is not an Ed25519 key.
    ///
    /// # Panics
    ///
    /// If `jsonwebtoken` has no crypto provider (see the type's docs).
    pub fn ed25519(
        signing_key: &[u8],
        fallback_verifying_keys: &[&[u8]],
    ) -> Result<Self, Ed25519KeyError> {
        let der = pem_or_der(signing_key, "PRIVATE KEY").ok_or(Ed25519KeyError::SigningKey)?;
        let signing = EncodingKey::from_ed_der(&der);
        jsonwebtoken::crypto::sign(b"probe", &signing, Algorithm::EdDSA)
            .map_err(|_| Ed25519KeyError::SigningKey)?;
        let public = Jwk::from_encoding_key(&signing, Algorithm::EdDSA)
            .and_then(|jwk| DecodingKey::from_jwk(&jwk))
            .map_err(|_| Ed25519KeyError::SigningKey)?;
        let mut verifying = vec![public];
        for (position, key) in fallback_verifying_keys.iter().enumerate() {
            let index = position + 1;
            let raw = ed25519_public_key(key).ok_or(Ed25519KeyError::VerifyingKey { index })?;
            let decoding = DecodingKey::from_ed_der(&raw);
            // A key that is not a curve point errors here (a valid key
            // merely fails to verify the dummy signature).
            let dummy = "A".repeat(86);
            jsonwebtoken::crypto::verify(&dummy, b"probe", &decoding, Algorithm::EdDSA)
                .map_err(|_| Ed25519KeyError::VerifyingKey { index })?;
            verifying.push(decoding);
        }
        Ok(Self { algorithm: Algorithm::EdDSA, signing, verifying })
    }

    fn validation(&self, cookie_name: &str) -> Validation {
        let mut validation = Validation::new(self.algorithm);
        // Time is checked against the layer's clock (see `Claims`), not
        // `jsonwebtoken`'s system clock; presence and the audience here.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "aud"]);
        validation.validate_aud = true;
        validation.set_audience(&[cookie_name]);
        validation
    }
}

impl fmt::Debug for JwtFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtFormat")
            .field("algorithm", &self.algorithm)
            .field("verifying_keys", &self.verifying.len())
            .finish_non_exhaustive()
    }
}

impl CookieFormat for JwtFormat {
    fn seal(&self, cookie_name: &str, record: &Record) -> Result<String, Error> {
        let claims = SealedClaims::new(cookie_name, record);
        Ok(jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.signing)
            .map_err(FormatError::from)?)
    }

    fn open(&self, cookie_name: &str, value: &str, now: Timestamp) -> Option<Opened> {
        claims::check_length(FORMAT, value)?;
        if value.bytes().filter(|&b| b == b'.').count() != 2 {
            return claims::reject(FORMAT, "not three parts");
        }
        let Ok(header) = jsonwebtoken::decode_header(value) else {
            return claims::reject(FORMAT, "header is not a JWS header");
        };
        if header.alg != self.algorithm {
            return claims::reject(FORMAT, "algorithm is not the configured one");
        }
        if header.crit.is_some() {
            return claims::reject(FORMAT, "critical header extensions");
        }
        let validation = self.validation(cookie_name);
        let mut opened = None;
        for (index, key) in self.verifying.iter().enumerate() {
            match jsonwebtoken::decode::<Claims>(value, key, &validation) {
                Ok(data) => {
                    opened = Some((index, data.claims));
                    break;
                }
                Err(error) if matches!(error.kind(), ErrorKind::InvalidSignature) => {}
                // Authentic but invalid, or malformed: no other key changes that.
                Err(_) => return claims::reject(FORMAT, "invalid token or claims"),
            }
        }
        let Some((index, claims)) = opened else {
            return claims::reject(FORMAT, "no key verifies the signature");
        };
        let record = claims.into_record(FORMAT, cookie_name, value, now)?;
        Some(Opened { record, needs_reseal: index != 0 })
    }
}

/// Why an Ed25519 key was not accepted. Carries nothing of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Ed25519KeyError {
    /// The signing key is not an Ed25519 PKCS#8 v1 private key (PEM or DER).
    #[error("the Ed25519 signing key is not a PKCS#8 private key (PEM or DER)")]
    SigningKey,
    /// A fallback verifying key is not an Ed25519 public key.
    #[error(
        "Ed25519 verifying key {index} is not a public key (PEM, SubjectPublicKeyInfo DER or 32 \
         raw bytes)"
    )]
    VerifyingKey {
        /// Its index among the verifying keys: 0 is the signing key's own,
        /// 1 the first fallback.
        index: usize,
    },
}

/// The DER inside a PEM block labelled `label`, or `input` itself if it is
/// not PEM.
fn pem_or_der(input: &[u8], label: &str) -> Option<Vec<u8>> {
    let text = match std::str::from_utf8(input) {
        Ok(text) if text.trim_start().starts_with("-----BEGIN ") => text,
        _ => return Some(input.to_vec()),
    };
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let body: String = text[start..stop].chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(body).ok()
}

/// The 32 raw bytes of an Ed25519 public key given as raw bytes, SPKI DER or PEM.
fn ed25519_public_key(input: &[u8]) -> Option<Vec<u8>> {
    if input.len() == 32 {
        return Some(input.to_vec());
    }
    let der = pem_or_der(input, "PUBLIC KEY")?;
    let raw = der.strip_prefix(&ED25519_SPKI_PREFIX[..])?;
    (raw.len() == 32).then(|| raw.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC8410_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=
-----END PUBLIC KEY-----";

    #[test]
    fn public_keys_parse_from_pem_der_and_raw() {
        let raw = ed25519_public_key(RFC8410_PUBLIC_PEM.as_bytes()).unwrap();
        assert_eq!(raw.len(), 32);
        assert_eq!(raw[0], 0x19);
        let der = [&ED25519_SPKI_PREFIX[..], &raw].concat();
        assert_eq!(ed25519_public_key(&der).unwrap(), raw);
        assert_eq!(ed25519_public_key(&raw).unwrap(), raw);
        assert!(ed25519_public_key(&raw[..31]).is_none());
        assert!(
            ed25519_public_key(b"-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----")
                .is_none()
        );
        assert!(
            ed25519_public_key(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
                .is_none()
        );
    }

    #[test]
    fn bad_keys_are_named_not_shown() {
        assert_eq!(JwtFormat::ed25519(b"nope", &[]).unwrap_err(), Ed25519KeyError::SigningKey);
        let pem = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC
-----END PRIVATE KEY-----";
        assert!(JwtFormat::ed25519(pem.as_bytes(), &[]).is_ok());
        let short: &[u8] = &[1; 31];
        let err = JwtFormat::ed25519(pem.as_bytes(), &[RFC8410_PUBLIC_PEM.as_bytes(), short])
            .unwrap_err();
        assert_eq!(err, Ed25519KeyError::VerifyingKey { index: 2 });
        assert!(!err.to_string().contains("MC4C"));
    }
}

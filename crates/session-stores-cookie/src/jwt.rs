//! `JwtFormat`: the session as a signed JWT (HS256, or EdDSA).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use session_core::{CookieFormat, Error, Keyring, Opened, Record, Timestamp};

use crate::claims::{self, Claims, SealedClaims};
use crate::error::FormatError;
use crate::mac::{self, KeyedMac};

const FORMAT: &str = "jwt";

/// The header of every HS256 value sealed here, `{"typ":"JWT","alg":"HS256"}`
/// as base64url: what `jsonwebtoken::Header::new(Algorithm::HS256)` encodes
/// to (a test pins it).
const HS256_HEADER: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9";

/// The header of every EdDSA value sealed here, `{"typ":"JWT","alg":"EdDSA"}`.
const EDDSA_HEADER: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFZERTQSJ9";

/// Length of an Ed25519 signature as unpadded base64url (64 bytes).
const EDDSA_SIGNATURE_CHARS: usize = 86;

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
/// EdDSA signatures are made and checked by `jsonwebtoken`, built with its
/// RustCrypto backend only, which it selects automatically. If something
/// else in your build also enables `jsonwebtoken`'s `aws_lc_rs` feature,
/// install a provider with
/// `jsonwebtoken::crypto::CryptoProvider::install_default` before calling
/// [`ed25519`](Self::ed25519), or it panics with `jsonwebtoken`'s message.
/// HS256 does not depend on the provider.
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
    keys: Keys,
}

/// The keys of one algorithm.
///
/// HS256 is computed here with the `hmac` crate rather than through
/// `jsonwebtoken::encode`/`decode`, which cannot get close. Measured with
/// callgrind on the benchmark's session (SHA-256 in software), `decode`
/// alone cost 48k instructions per value where `open` now costs 27k in all,
/// and `encode` 32k where `seal` now costs 22k; most of what is left is the
/// HMAC over the base64 text, which JWT defines. For every call they build
/// a new HMAC from the key through the crypto provider (two SHA-256 blocks
/// of key schedule, 7k instructions; their API has no way to reuse a keyed
/// verifier or signer), and `decode` parses the header twice and the claims
/// twice (into the caller's type, and into its own for validation), with no
/// option to skip either. Here the keyed HMAC is built once per key, our own
/// header is recognised without parsing it, and the claims are parsed once,
/// into `Claims`, which makes every check the `jsonwebtoken` validation made
/// (see `open`). Tests pin that the two agree on the wire format both ways.
/// EdDSA signatures still go through `jsonwebtoken::crypto`.
#[derive(Clone)]
enum Keys {
    /// One keyed MAC per keyring key, primary first.
    Hs256(Vec<KeyedMac>),
    EdDsa {
        signing: EncodingKey,
        /// Verifying keys, the one matching `signing` first.
        verifying: Vec<DecodingKey>,
    },
}

impl JwtFormat {
    /// HMAC-SHA256 JWTs: `keyring`'s primary key signs, every key verifies.
    #[must_use]
    pub fn hs256(keyring: Keyring) -> Self {
        Self { keys: Keys::Hs256(keyring.keys().map(KeyedMac::new).collect()) }
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
        Ok(Self { keys: Keys::EdDsa { signing, verifying } })
    }

    fn algorithm(&self) -> Algorithm {
        match self.keys {
            Keys::Hs256(_) => Algorithm::HS256,
            Keys::EdDsa { .. } => Algorithm::EdDSA,
        }
    }

    /// Our own header, as base64url.
    fn header(&self) -> &'static str {
        match self.keys {
            Keys::Hs256(_) => HS256_HEADER,
            Keys::EdDsa { .. } => EDDSA_HEADER,
        }
    }

    /// Checks a header that is not exactly our own (a token made elsewhere
    /// with the same key): its `alg` must be ours, and it must have no
    /// `crit`; every other field is ignored.
    fn check_header(&self, header: &str) -> Option<()> {
        let Ok(json) = URL_SAFE_NO_PAD.decode(header) else {
            return claims::reject(FORMAT, "header is not base64url");
        };
        let Ok(header) = serde_json::from_slice::<JoseHeader>(&json) else {
            return claims::reject(FORMAT, "header is not a JWS header");
        };
        let expected = match self.keys {
            Keys::Hs256(_) => "HS256",
            Keys::EdDsa { .. } => "EdDSA",
        };
        if header.alg != expected {
            return claims::reject(FORMAT, "algorithm is not the configured one");
        }
        if header.crit {
            return claims::reject(FORMAT, "critical header extensions");
        }
        Some(())
    }
}

impl fmt::Debug for JwtFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verifying_keys = match &self.keys {
            Keys::Hs256(macs) => macs.len(),
            Keys::EdDsa { verifying, .. } => verifying.len(),
        };
        f.debug_struct("JwtFormat")
            .field("algorithm", &self.algorithm())
            .field("verifying_keys", &verifying_keys)
            .finish_non_exhaustive()
    }
}

impl CookieFormat for JwtFormat {
    fn seal(&self, cookie_name: &str, record: &Record) -> Result<String, Error> {
        let claims = SealedClaims::new(cookie_name, record).to_json()?;
        let header = self.header();
        let mut value = String::with_capacity(
            header.len() + claims.len().div_ceil(3) * 4 + 2 + EDDSA_SIGNATURE_CHARS,
        );
        value.push_str(header);
        value.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut value);
        match &self.keys {
            Keys::Hs256(macs) => {
                let tag = macs[0].tag(&[value.as_bytes()]);
                value.push('.');
                URL_SAFE_NO_PAD.encode_string(tag, &mut value);
            }
            Keys::EdDsa { signing, .. } => {
                let signature =
                    jsonwebtoken::crypto::sign(value.as_bytes(), signing, Algorithm::EdDSA)
                        .map_err(FormatError::from)?;
                value.push('.');
                value.push_str(&signature);
            }
        }
        Ok(value)
    }

    /// Checks, in order: three parts; the header's `alg` is the configured
    /// one and it has no `crit` (header keys such as `jku`, `jwk`, `x5u`,
    /// `kid` are never used); the signature, by each key, primary first;
    /// then, in `Claims`, the claims' shape (`exp` and `aud` required, every
    /// time an integer), `aud`, `nbf`, `iat`, `exp` and the sealed deadlines,
    /// against the layer's clock with zero leeway.
    fn open(&self, cookie_name: &str, value: &str, now: Timestamp) -> Option<Opened> {
        claims::check_length(FORMAT, value)?;
        let mut parts = value.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return claims::reject(FORMAT, "not three parts");
        };
        if header != self.header() {
            self.check_header(header)?;
        }
        // What the signature covers: `header "." payload`.
        let signed = &value.as_bytes()[..header.len() + 1 + payload.len()];
        let index = match &self.keys {
            Keys::Hs256(macs) => {
                let Some(tag) = mac::decode_tag(signature) else {
                    return claims::reject(FORMAT, "signature is not 32 bytes of base64url");
                };
                macs.iter().position(|mac| mac.verify(&[signed], &tag))
            }
            Keys::EdDsa { verifying, .. } => verifying.iter().position(|key| {
                matches!(
                    jsonwebtoken::crypto::verify(signature, signed, key, Algorithm::EdDSA),
                    Ok(true)
                )
            }),
        };
        let Some(index) = index else {
            return claims::reject(FORMAT, "no key verifies the signature");
        };
        let Ok(json) = URL_SAFE_NO_PAD.decode(payload) else {
            return claims::reject(FORMAT, "claims are not base64url");
        };
        let record = Claims::from_json(FORMAT, &json)?.into_record(FORMAT, cookie_name, now)?;
        Some(Opened { record, needs_reseal: index != 0 })
    }
}

/// The JOSE header fields `open` reads from a header that is not our own.
/// Only a JSON object is a header.
struct JoseHeader {
    alg: String,
    /// Present and not null.
    crit: bool,
}

impl<'de> Deserialize<'de> for JoseHeader {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeaderVisitor;

        impl<'de> Visitor<'de> for HeaderVisitor {
            type Value = JoseHeader;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JOSE header object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JoseHeader, A::Error> {
                let mut alg = None;
                let mut crit = false;
                while let Some(name) = map.next_key::<String>()? {
                    match name.as_str() {
                        "alg" if alg.is_some() => return Err(de::Error::duplicate_field("alg")),
                        "alg" => alg = Some(map.next_value::<String>()?),
                        "crit" => crit |= map.next_value::<Option<IgnoredAny>>()?.is_some(),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let alg = alg.ok_or_else(|| de::Error::missing_field("alg"))?;
                Ok(JoseHeader { alg, crit })
            }
        }

        deserializer.deserialize_map(HeaderVisitor)
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

    #[test]
    fn our_headers_are_what_jsonwebtoken_writes() {
        for (algorithm, ours) in
            [(Algorithm::HS256, HS256_HEADER), (Algorithm::EdDSA, EDDSA_HEADER)]
        {
            let json = serde_json::to_vec(&jsonwebtoken::Header::new(algorithm)).unwrap();
            assert_eq!(URL_SAFE_NO_PAD.encode(json), ours, "{algorithm:?}");
        }
        assert_eq!(
            format!("{:?}", JwtFormat::hs256(Keyring::new(session_core::Key::from_bytes([1; 32])))),
            "JwtFormat { algorithm: HS256, verifying_keys: 1, .. }"
        );
    }

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

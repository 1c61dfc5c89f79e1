//! HMAC-SHA256 keyed once per key: the signed format's tag, JWT `HS256`,
//! and the AEAD format's key derivation.

#[cfg(any(feature = "jwt", feature = "signed"))]
use base64::Engine as _;
#[cfg(any(feature = "jwt", feature = "signed"))]
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use session_core::Key;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length of a tag.
pub(crate) const TAG_BYTES: usize = 32;

/// Length of a tag as unpadded base64url.
#[cfg(any(feature = "jwt", feature = "signed"))]
pub(crate) const TAG_CHARS: usize = 43;

/// HMAC-SHA256 with its key already absorbed.
///
/// Keying HMAC hashes the key's inner and outer pads (two SHA-256 blocks);
/// doing that once here, and cloning the keyed state per value, is what
/// keeps a tag at the cost of hashing the message itself.
#[derive(Clone)]
pub(crate) struct KeyedMac(HmacSha256);

impl KeyedMac {
    /// HMAC keyed with the 32-byte `key`.
    pub(crate) fn new(key: &Key) -> Self {
        // HMAC zero-pads keys shorter than the 64-byte SHA-256 block, so this
        // is HMAC keyed with the 32-byte key, built without the fallible
        // variable-length constructor.
        let mut block = [0u8; 64];
        block[..Key::LEN].copy_from_slice(key.as_bytes());
        Self(<HmacSha256 as KeyInit>::new(&block.into()))
    }

    /// The tag of the concatenation of `parts`.
    pub(crate) fn tag(&self, parts: &[&[u8]]) -> [u8; TAG_BYTES] {
        self.absorb(parts).finalize().into_bytes().into()
    }

    /// Whether `tag` is the tag of the concatenation of `parts`, compared in
    /// constant time.
    #[cfg(any(feature = "jwt", feature = "signed"))]
    pub(crate) fn verify(&self, parts: &[&[u8]], tag: &[u8; TAG_BYTES]) -> bool {
        self.absorb(parts).verify_slice(tag).is_ok()
    }

    fn absorb(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = self.0.clone();
        for part in parts {
            mac.update(part);
        }
        mac
    }
}

/// Decodes a tag written as canonical unpadded base64url; `None` for any
/// other text or length.
#[cfg(any(feature = "jwt", feature = "signed"))]
pub(crate) fn decode_tag(text: &str) -> Option<[u8; TAG_BYTES]> {
    if text.len() != TAG_CHARS {
        return None;
    }
    // The decoder wants room for its estimate (33 bytes for 43 characters).
    let mut buffer = [0u8; TAG_BYTES + 1];
    match URL_SAFE_NO_PAD.decode_slice(text, &mut buffer) {
        Ok(TAG_BYTES) => {
            let mut tag = [0u8; TAG_BYTES];
            tag.copy_from_slice(&buffer[..TAG_BYTES]);
            Some(tag)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_mac_is_hmac_sha256_of_the_concatenation() {
        let key = Key::from_bytes([9; 32]);
        let mac = KeyedMac::new(&key);
        let expected: [u8; 32] = <HmacSha256 as Mac>::new_from_slice(key.as_bytes())
            .unwrap()
            .chain_update(b"name\0payload")
            .finalize()
            .into_bytes()
            .into();
        assert_eq!(mac.tag(&[b"name", b"\0", b"payload"]), expected);
        assert_eq!(mac.tag(&[b"name\0payload"]), expected);
        assert!(mac.verify(&[b"name\0", b"payload"], &expected));
        let mut wrong = expected;
        wrong[31] ^= 1;
        assert!(!mac.verify(&[b"name\0payload"], &wrong));
        assert!(!mac.verify(&[b"name\0payload!"], &expected));
    }

    #[test]
    fn tags_decode_only_from_canonical_43_characters() {
        let tag = [0xa5; 32];
        let text = URL_SAFE_NO_PAD.encode(tag);
        assert_eq!(decode_tag(&text), Some(tag));
        let mut non_canonical = text.clone();
        non_canonical.pop();
        non_canonical.push('B'); // trailing bits set
        assert_eq!(decode_tag(&non_canonical), None);
        for bad in [
            String::new(),
            text[..42].to_owned(),
            format!("{text}A"),
            format!("{text}="),
            format!("{}=", &text[..42]),
            format!("{}+", &text[..42]),
            format!("{}.", &text[..42]),
        ] {
            assert_eq!(decode_tag(&bad), None, "{bad:?}");
        }
    }
}

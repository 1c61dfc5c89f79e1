//! `AeadFormat::open` on hostile values.
//!
//! Modes (first input byte):
//! - raw: the rest of the input is the cookie value;
//! - sealed: a session built from the input is sealed by the format, maybe
//!   with one byte changed, then opened (a changed value must not open; an
//!   unchanged live one must);
//! - forged: a plaintext from the input (the rest of it as it is, or times
//!   in the compact layout followed by the rest as the JSON part), encrypted
//!   with AES-256-GCM under the format's key for a key chosen by the input
//!   (the HKDF-Expand derivation, computed here), the cookie name as
//!   associated data and a version byte chosen by the input, so the claims
//!   parser behind the tag sees arbitrary bytes and arbitrary JSON.
#![no_main]

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use session_fuzz::{COOKIE, Input, Signer, keyring, open_and_check, open_raw, open_sealed};
use session_stores_cookie::AeadFormat;
use sha2::Sha256;

/// The format's AES key for `key`: HKDF-Expand(SHA-256), one block.
fn aes_key(key: &[u8; 32]) -> Option<[u8; 32]> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    mac.update(b"session-stores-cookie AES-256-GCM cookie key v1");
    mac.update(&[1]);
    Some(mac.finalize().into_bytes().into())
}

fuzz_target!(|data: &[u8]| {
    let format = AeadFormat::new(keyring());
    let mut input = Input::new(data);
    let mode = input.byte();
    let now = input.timestamp();
    match mode % 3 {
        0 => open_raw(&format, input, now),
        1 => open_sealed(&format, &mut input, now, false),
        _ => {
            let signer = Signer::from_byte(input.byte());
            // Mostly the real version byte, sometimes any.
            let version = match input.byte() {
                byte @ 0..=31 => byte,
                _ => 1,
            };
            let mut nonce = [0u8; 12];
            for byte in &mut nonce {
                *byte = input.byte();
            }
            let mut body = Vec::new();
            if input.byte() % 2 == 1 {
                // Flags (mostly valid), then four times around `now`.
                body.push(match input.byte() % 4 {
                    0 => 0,
                    1 | 2 => 1,
                    _ => input.byte(),
                });
                for _ in 0..4 {
                    body.extend_from_slice(&input.timestamp().unix_seconds().to_be_bytes());
                }
            }
            body.extend_from_slice(input.rest());
            let Some(key) = aes_key(&signer.key()) else { return };
            let Ok(tag) = Aes256Gcm::new(&key.into()).encrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                COOKIE.as_bytes(),
                &mut body,
            ) else {
                return;
            };
            let value = URL_SAFE_NO_PAD.encode([&[version][..], &nonce, &body, &tag].concat());
            if let Some(opened) = open_and_check(&format, &value, now, false) {
                assert_ne!(signer, Signer::Stranger, "a value from an unknown key opened");
                assert_eq!(version, 1, "a value of another version opened");
                assert_eq!(opened.needs_reseal, signer == Signer::Fallback);
            }
        }
    }
});

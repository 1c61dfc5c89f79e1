//! `JwtFormat::open` on hostile values, HS256 and (with bit 0x10 of the
//! first byte) EdDSA. Every forged token is HMAC-signed, so none may open
//! under the EdDSA format (algorithm confusion), not even one keyed with the
//! Ed25519 public key.
//!
//! Modes (first input byte):
//! - raw: the rest of the input is the cookie value;
//! - sealed: a session built from the input is sealed by the format, maybe
//!   with one byte changed, then opened (a changed token must not open; an
//!   unchanged live one must);
//! - forged claims: the rest of the input is the claims JSON under the
//!   header `{"alg":"HS256","typ":"JWT"}`, signed with a key chosen by the
//!   input, so the claims checks behind the signature see arbitrary JSON;
//! - forged header: the input is split at the first 0xFF byte into header
//!   and claims JSON, both signed, so header handling (`alg`, `crit`, `jku`,
//!   ...) sees arbitrary JSON too.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use session_fuzz::{Input, Signer, keyring, open_and_check, open_raw, open_sealed};
use session_stores_cookie::JwtFormat;
use sha2::Sha256;

fn sign(key: &[u8; 32], header: &[u8], claims: &[u8]) -> Option<String> {
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(claims, &mut token);
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), &mut token);
    Some(token)
}

/// RFC 8410's example Ed25519 key.
const ED25519_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC
-----END PRIVATE KEY-----";
/// Its public key, raw: the HMAC key of a classic algorithm-confusion forgery.
const ED25519_PUBLIC: [u8; 32] = [
    0x19, 0xbf, 0x44, 0x09, 0x69, 0x84, 0xcd, 0xfe, 0x85, 0x41, 0xba, 0xc1, 0x67, 0xdc, 0x3b, 0x96,
    0xc8, 0x50, 0x86, 0xaa, 0x30, 0xb6, 0xb6, 0xcb, 0x0c, 0x5c, 0x38, 0xad, 0x70, 0x31, 0x66, 0xe1,
];

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.byte();
    let eddsa = mode & 0x10 != 0;
    let format = if eddsa {
        match JwtFormat::ed25519(ED25519_PRIVATE.as_bytes(), &[]) {
            Ok(format) => format,
            Err(error) => panic!("the RFC 8410 key: {error}"),
        }
    } else {
        JwtFormat::hs256(keyring())
    };
    let now = input.timestamp();
    match mode % 4 {
        0 => open_raw(&format, input, now),
        1 => open_sealed(&format, &mut input, now, false),
        mode => {
            let signer = Signer::from_byte(input.byte());
            let rest = input.rest();
            let (header, claims): (&[u8], &[u8]) = if mode == 2 {
                (br#"{"alg":"HS256","typ":"JWT"}"#, rest)
            } else {
                match rest.iter().position(|&b| b == 0xff) {
                    Some(split) => (&rest[..split], &rest[split + 1..]),
                    None => (rest, b"{}"),
                }
            };
            let key =
                if eddsa && signer == Signer::Stranger { ED25519_PUBLIC } else { signer.key() };
            let Some(token) = sign(&key, header, claims) else { return };
            if let Some(opened) = open_and_check(&format, &token, now, false) {
                assert!(!eddsa, "an HMAC-signed token opened under EdDSA");
                assert_ne!(signer, Signer::Stranger, "a token from an unknown key opened");
                assert_eq!(opened.needs_reseal, signer == Signer::Fallback);
            }
        }
    }
});

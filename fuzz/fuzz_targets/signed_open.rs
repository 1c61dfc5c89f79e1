//! `SignedFormat::open` on hostile values.
//!
//! Modes (first input byte):
//! - raw: the rest of the input is the cookie value;
//! - sealed: a session built from the input is sealed by the format, maybe
//!   with one byte changed, then opened (a changed value must not open; an
//!   unchanged live one must);
//! - forged: the rest of the input is the payload, tagged with
//!   HMAC-SHA256(key, name || 0 || payload) under a key chosen by the input,
//!   so the claims parser behind the MAC sees arbitrary JSON.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use session_fuzz::{COOKIE, Input, Signer, keyring, open_and_check, open_raw, open_sealed};
use session_stores_cookie::SignedFormat;
use sha2::Sha256;

fuzz_target!(|data: &[u8]| {
    let format = SignedFormat::new(keyring());
    let mut input = Input::new(data);
    let mode = input.byte();
    let now = input.timestamp();
    match mode % 3 {
        0 => open_raw(&format, input, now),
        1 => open_sealed(&format, &mut input, now, false),
        _ => {
            let signer = Signer::from_byte(input.byte());
            let payload = input.rest();
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&signer.key()) else { return };
            mac.update(COOKIE.as_bytes());
            mac.update(&[0]);
            mac.update(payload);
            let mut value = URL_SAFE_NO_PAD.encode(payload);
            value.push('.');
            URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), &mut value);
            if let Some(opened) = open_and_check(&format, &value, now, false) {
                assert_ne!(signer, Signer::Stranger, "a value from an unknown key opened");
                assert_eq!(opened.needs_reseal, signer == Signer::Fallback);
            }
        }
    }
});

//! `FernetFormat::open` on hostile values.
//!
//! Modes (first input byte):
//! - raw: the rest of the input is the cookie value;
//! - sealed: a session built from the input is sealed by the format, maybe
//!   with one byte changed, then opened (a changed token must not open; an
//!   unchanged live one must);
//! - forged: the rest of the input is the plaintext of a valid Fernet token
//!   (encrypted with a key and timestamp chosen by the input), so the claims
//!   parser behind the HMAC sees arbitrary JSON.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use session_core::Key;
use session_fuzz::{Input, Signer, keyring, open_and_check, open_raw, open_sealed};
use session_stores_cookie::FernetFormat;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.byte();
    let with_ttl = mode & 0x10 != 0;
    let format = if with_ttl {
        FernetFormat::new(keyring()).with_ttl(Duration::from_secs(3600))
    } else {
        FernetFormat::new(keyring())
    };
    let now = input.timestamp();
    match mode % 3 {
        0 => open_raw(&format, input, now),
        1 => open_sealed(&format, &mut input, now, with_ttl),
        _ => {
            let signer = Signer::from_byte(input.byte());
            let timestamp = match input.byte() % 3 {
                0 => input.u64(),
                1 => u64::MAX - u64::from(input.byte()),
                _ => u64::try_from(now.unix_seconds())
                    .unwrap_or(0)
                    .saturating_sub(u64::from(input.byte())),
            };
            let key = Key::from_bytes(signer.key()).to_base64();
            let Some(fernet) = fernet::Fernet::new(&key) else { return };
            let token = fernet.encrypt_at_time(input.rest(), timestamp);
            if let Some(opened) = open_and_check(&format, &token, now, false) {
                assert_ne!(signer, Signer::Stranger, "a token from an unknown key opened");
                assert_eq!(opened.needs_reseal, signer == Signer::Fallback);
            }
        }
    }
});

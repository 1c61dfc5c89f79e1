//! `SessionId::from_str` on arbitrary strings.
//!
//! Properties: parsing never panics; when it succeeds, `expose()` gives back
//! exactly the input (one id, one spelling); anything accepted is 22
//! base64url characters; and any 16 bytes round-trip through their string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_core::{SESSION_ID_LEN, SessionId};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(id) = text.parse::<SessionId>()
    {
        assert_eq!(id.expose(), text, "a parsed id does not expose as its input");
        assert_eq!(text.len(), SESSION_ID_LEN);
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        // Logs never show the id.
        assert!(!format!("{id} {id:?}").contains(text));
    }
    if let Some(bytes) = data.get(..16) {
        let mut raw = [0u8; 16];
        raw.copy_from_slice(bytes);
        let id = SessionId::from_bytes(raw);
        let exposed = id.expose();
        assert_eq!(exposed.parse::<SessionId>(), Ok(id), "{exposed}");
    }
});

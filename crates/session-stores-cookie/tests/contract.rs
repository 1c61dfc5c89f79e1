//! The client-side part of the store contract, for every format.
#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions.

#[macro_use]
mod common;

mod aead {
    format_contract_tests!(session_stores_cookie::AeadFormat::new);
}

mod fernet {
    format_contract_tests!(session_stores_cookie::FernetFormat::new);
}

mod fernet_with_ttl {
    format_contract_tests!(|keyring| {
        session_stores_cookie::FernetFormat::new(keyring).with_ttl(secs(24 * 3_600))
    });
}

mod jwt_hs256 {
    format_contract_tests!(session_stores_cookie::JwtFormat::hs256);
}

mod jwt_eddsa {
    format_contract_tests!(eddsa);
}

mod signed {
    format_contract_tests!(session_stores_cookie::SignedFormat::new);
}

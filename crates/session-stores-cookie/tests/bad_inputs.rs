//! The hostile-input catalogue (`docs/hostile-inputs.md`) for the cookie
//! formats: where each row that applies to a client-side format is tested,
//! and the rows that cut across formats.
//!
//! Formats: AEAD (AES-256-GCM), Fernet, Fernet with a TTL, JWT HS256, JWT
//! EdDSA, signed.
//!
//! | row | tests |
//! |-----|-------|
//! | 1, 2, 4 | `contract.rs`: `rows01_02_04_garbage_and_oversized_values_do_not_open` (every format); `properties.rs`: `open_never_panics_on_arbitrary_text` |
//! | 3, 20, 21, 27, 28 | the layer: `session-axum/tests/bad_inputs.rs` (`aead`, `fernet`, `jwt`, `signed` modules) |
//! | 5-8, 22-26 | not applicable: no ids, no server, no lock |
//! | 9 | `fernet_format.rs`: `fernet_row09_*`; `aead_format.rs`: `aead_row09_*` (version byte, length) |
//! | 10 | `aead_row10_*`, `fernet_row10_*`, `signed_row10_*`; `properties.rs`: `any_single_character_change_is_rejected`, `any_single_bit_flip_of_the_decoded_value_is_rejected` (every format) |
//! | 11 | `contract.rs`: `row11_other_key_and_removed_key_do_not_open` (every format); `aead_row11_*`, `fernet_row11_*`, `signed_row11_*` |
//! | 12 | `aead_row12_*`, `fernet_row12_*`, `signed_row12_*`; `contract.rs`: `open_at_or_after_the_*_deadline_is_none`; here: `row12_issued_61_seconds_in_the_future_does_not_open` (every format) |
//! | 13 | `aead_row13_*`, `fernet_row13_*`, `signed_row13_*`, `jwt_row17_exp_minus_one_1e30_u64_max`; here: `row13_extreme_times_never_panic` (every format) |
//! | 14 | `aead_row14_*`, `fernet_row14_*`, `signed_row14_*`, `jwt_claims_of_the_wrong_shape_with_a_valid_signature` |
//! | 15 | `contract.rs`: `row15_value_for_cookie_a_does_not_open_as_cookie_b` (every format); `aead_row15_*`, `fernet_row15_*`, `signed_row15_*`; here: `row15_value_of_another_format_with_the_same_key_does_not_open` |
//! | 16-18 | `jwt_format.rs`: `jwt_row16_*`, `jwt_row17_*`, `jwt_row18_*` |
//! | 19 | not applicable: nothing is stored |
//!
//! The `fuzz/` targets `aead_open`, `fernet_open`, `jwt_open` and `signed_open` run the
//! same properties on generated input (`cargo xtask fuzz`).
#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions.

mod common;

use std::time::Duration;

use session_core::{CookieFormat, Keyring, Record, StorageKey};
use session_stores_cookie::{AeadFormat, FernetFormat, JwtFormat, SignedFormat};

use common::*;

/// Every format, all on the same keyring.
fn formats(keyring: &Keyring) -> Vec<(&'static str, Box<dyn CookieFormat>)> {
    vec![
        ("aead", Box::new(AeadFormat::new(keyring.clone()))),
        ("fernet", Box::new(FernetFormat::new(keyring.clone()))),
        ("fernet+ttl", Box::new(FernetFormat::new(keyring.clone()).with_ttl(secs(3_600)))),
        ("jwt hs256", Box::new(JwtFormat::hs256(keyring.clone()))),
        ("jwt eddsa", Box::new(eddsa(keyring.clone()))),
        ("signed", Box::new(SignedFormat::new(keyring.clone()))),
    ]
}

fn opens(format: &dyn CookieFormat, value: &str, now: i64) -> bool {
    format.open("id", value, t(now)).is_some()
}

#[test]
fn row12_issued_61_seconds_in_the_future_does_not_open() {
    for (name, format) in formats(&keyring(&[1])) {
        for (ahead, expected) in [(60, true), (61, false), (3_600, false)] {
            // Created and last used `ahead` seconds after the server's now.
            let mut sealed = record();
            sealed.created_at = t(NOW + ahead);
            sealed.last_seen = t(NOW + ahead);
            sealed.idle_deadline = t(NOW + ahead) + secs(IDLE);
            sealed.absolute_deadline = None;
            let value = format.seal("id", &sealed).unwrap();
            assert_eq!(opens(format.as_ref(), &value, NOW), expected, "{name}: {ahead} s ahead");
        }
    }
}

#[test]
fn row13_extreme_times_never_panic() {
    let extremes = [i64::MIN, -1, 0, 1, i64::MAX - 1, i64::MAX];
    for (name, format) in formats(&keyring(&[1])) {
        for &created in &extremes {
            for &deadline in &extremes {
                let mut sealed = Record::new(
                    StorageKey::from_bytes([0; 32]),
                    t(created),
                    t(deadline),
                    Some(t(created).saturating_add(Duration::MAX)),
                );
                sealed.data.insert("k", "v").unwrap();
                let Ok(value) = format.seal("id", &sealed) else { continue };
                for &now in &extremes {
                    let opened = format.open("id", &value, t(now));
                    if let Some(opened) = opened {
                        assert!(
                            !opened.record.is_expired(t(now)),
                            "{name}: opened a session expired at {now}"
                        );
                        assert!(created <= now.saturating_add(60), "{name}: from the future");
                    }
                }
            }
        }
        // And the realistic case still works.
        let value = format.seal("id", &record()).unwrap();
        assert!(opens(format.as_ref(), &value, NOW), "{name}");
        assert!(!opens(format.as_ref(), &value, i64::MAX), "{name}");
    }
}

#[test]
fn row15_value_of_another_format_with_the_same_key_does_not_open() {
    let keyring = keyring(&[1]);
    let formats = formats(&keyring);
    for (sealer, format) in &formats {
        let value = format.seal("id", &record()).unwrap();
        for (opener, other) in &formats {
            // Fernet with and without a TTL is one format.
            if sealer.split('+').next() == opener.split('+').next() {
                continue;
            }
            assert!(!opens(other.as_ref(), &value, NOW), "sealed by {sealer}, opened by {opener}");
        }
    }
    // The TTL variant is the same format: it opens plain Fernet values.
    let plain = FernetFormat::new(keyring.clone()).seal("id", &record()).unwrap();
    let ttl = FernetFormat::new(keyring).with_ttl(Duration::from_secs(3_600));
    assert!(ttl.open("id", &plain, t(NOW)).is_some());
}

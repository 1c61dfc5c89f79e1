//! Shared helpers, and `format_contract_tests!`: the parts of the store
//! contract that apply to client-side sessions, run once per format.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use session_core::{Key, Keyring, Record, SessionExpiry, StorageKey, Timestamp};

/// A fixed "now" (November 2023), so tests never read the system clock.
pub const NOW: i64 = 1_700_000_000;

/// Idle timeout of [`record`].
pub const IDLE: u64 = 1_800;

/// Absolute timeout of [`record`].
pub const ABSOLUTE: u64 = 8 * 3_600;

pub fn t(seconds: i64) -> Timestamp {
    Timestamp::from_unix_seconds(seconds)
}

pub fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

/// A test key: 32 copies of `byte`.
pub fn key(byte: u8) -> Key {
    Key::from_bytes([byte; 32])
}

/// A keyring of test keys, the first one primary.
pub fn keyring(bytes: &[u8]) -> Keyring {
    Keyring::new(key(bytes[0])).with_fallbacks(bytes[1..].iter().map(|&b| key(b)))
}

/// A session created at `NOW` with some data, a user and an expiry override,
/// idle deadline `NOW + IDLE`, absolute deadline `NOW + ABSOLUTE`.
pub fn record() -> Record {
    let now = t(NOW);
    let mut record = Record::new(
        StorageKey::from_bytes([0xee; 32]),
        now,
        now + secs(IDLE),
        Some(now + secs(ABSOLUTE)),
    );
    record.data.insert("user_id", 42).unwrap();
    record.data.insert("flash", vec!["saved", "ünïcödé ✓"]).unwrap();
    record.data.insert("nested", serde_json::json!({"a": {"b": [1, null, true]}})).unwrap();
    record.user = Some("alice@example.com".to_owned());
    record.expiry = Some(SessionExpiry::Persistent {
        idle_timeout: secs(IDLE),
        absolute_timeout: Some(secs(ABSOLUTE)),
    });
    record.version = 7;
    record
}

/// Cookie values that are not sessions in any format (hostile-input rows 1, 2, 4).
pub fn garbage_values() -> Vec<String> {
    let mut values: Vec<String> = [
        "",
        "!!!",
        "=",
        ".",
        "..",
        "...",
        "a.b",
        "a.b.c",
        "\0",
        "a\0b",
        "\r\n",
        "id\r\nSet-Cookie: x",
        "ünïcödé",
        "\"quoted\"",
        "%ZZ",
        "%00",
        " ",
        "gAAAAA",
        "gAAAAA==",
        "e30.e30.",
        "e30.e30.e30",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    values.push("A".repeat(4_097));
    values.push("A".repeat(100 * 1_024));
    values.push("A".repeat(1_024 * 1_024));
    values.push(".".repeat(4_096));
    values
}

/// Runs the client-side contract for one format. `$make` builds the format
/// from a [`Keyring`].
#[allow(unused_macros)]
macro_rules! format_contract_tests {
    ($make:expr) => {
        use session_core::{CookieFormat, Record, Timestamp};

        #[allow(unused_imports)]
        use crate::common::*;

        fn format(keys: &[u8]) -> impl CookieFormat {
            ($make)(keyring(keys))
        }

        fn open_at(format: &impl CookieFormat, value: &str, now: Timestamp) -> Option<Record> {
            format.open("id", value, now).map(|opened| opened.record)
        }

        #[test]
        fn round_trip_keeps_data_deadlines_user_and_expiry() {
            let format = format(&[1]);
            let sealed = record();
            let value = format.seal("id", &sealed).unwrap();
            let opened = format.open("id", &value, t(NOW)).unwrap();
            assert!(!opened.needs_reseal);
            let record = opened.record;
            assert_eq!(record.data.as_map(), sealed.data.as_map());
            assert_eq!(record.created_at, sealed.created_at);
            assert_eq!(record.last_seen, sealed.last_seen);
            assert_eq!(record.idle_deadline, sealed.idle_deadline);
            assert_eq!(record.absolute_deadline, sealed.absolute_deadline);
            assert_eq!(record.user, sealed.user);
            assert_eq!(record.expiry, sealed.expiry);
        }

        #[test]
        fn round_trip_of_an_empty_session_without_options() {
            let format = format(&[1]);
            let sealed =
                Record::new(session_core::StorageKey::from_bytes([0; 32]), t(5), t(10), None);
            let value = format.seal("id", &sealed).unwrap();
            let record = open_at(&format, &value, t(5)).unwrap();
            assert!(record.data.is_empty());
            assert_eq!((record.absolute_deadline, record.user, record.expiry), (None, None, None));
            assert_eq!(record.idle_deadline, t(10));
        }

        #[test]
        fn opened_data_is_unchanged_at_version_zero_without_a_store_key() {
            let format = format(&[1]);
            let sealed = record();
            assert!(sealed.data.is_changed());
            let value = format.seal("id", &sealed).unwrap();
            let record = open_at(&format, &value, t(NOW)).unwrap();
            assert!(!record.data.is_changed());
            assert_eq!(record.version, 0);
            // Client-side sessions have no store key: the one the layer gives
            // new ones, whatever the sealed record's key was.
            assert_eq!(record.key, session_core::StorageKey::from_bytes([0; 32]));
        }

        #[test]
        fn open_at_or_after_the_idle_deadline_is_none() {
            let format = format(&[1]);
            let value = format.seal("id", &record()).unwrap();
            let deadline = NOW + IDLE as i64;
            assert!(open_at(&format, &value, t(deadline - 1)).is_some());
            assert!(open_at(&format, &value, t(deadline)).is_none(), "at the deadline");
            assert!(open_at(&format, &value, t(deadline + 1)).is_none());
            assert!(open_at(&format, &value, Timestamp::MAX).is_none());
        }

        #[test]
        fn open_at_or_after_the_absolute_deadline_is_none() {
            let format = format(&[1]);
            let mut sealed = record();
            // Used recently: the idle deadline is later than the absolute one.
            sealed.last_seen = t(NOW + ABSOLUTE as i64 - 10);
            sealed.idle_deadline = sealed.last_seen + secs(IDLE);
            let value = format.seal("id", &sealed).unwrap();
            let deadline = NOW + ABSOLUTE as i64;
            assert!(open_at(&format, &value, t(deadline - 1)).is_some());
            assert!(open_at(&format, &value, t(deadline)).is_none(), "at the deadline");
            assert!(open_at(&format, &value, t(deadline + 1)).is_none());
        }

        #[test]
        fn rotation_fallback_opens_with_needs_reseal() {
            let value = format(&[0xa]).seal("id", &record()).unwrap();
            let rotated = format(&[0xb, 0xa]).open("id", &value, t(NOW)).unwrap();
            assert!(rotated.needs_reseal, "opened by the fallback key");
            let current = format(&[0xa]).open("id", &value, t(NOW)).unwrap();
            assert!(!current.needs_reseal, "opened by the primary key");
            assert!(
                format(&[0xa, 0xb]).open("id", &value, t(NOW)).is_some_and(|o| !o.needs_reseal)
            );
            assert_eq!(rotated.record.data.as_map(), record().data.as_map());

            let resealed = format(&[0xb, 0xa]).seal("id", &rotated.record).unwrap();
            assert!(format(&[0xb]).open("id", &resealed, t(NOW)).is_some(), "resealed with B");
        }

        #[test]
        fn row11_other_key_and_removed_key_do_not_open() {
            let value = format(&[0xa]).seal("id", &record()).unwrap();
            assert!(format(&[0xb]).open("id", &value, t(NOW)).is_none(), "removed from keyring");
            assert!(format(&[0xb, 0xc]).open("id", &value, t(NOW)).is_none());
        }

        #[test]
        fn row15_value_for_cookie_a_does_not_open_as_cookie_b() {
            let format = format(&[1]);
            let value = format.seal("a", &record()).unwrap();
            assert!(format.open("a", &value, t(NOW)).is_some());
            for other in ["b", "A", "a ", "", "a\0", "__Host-a"] {
                assert!(format.open(other, &value, t(NOW)).is_none(), "{other:?}");
            }
        }

        #[test]
        fn rows01_02_04_garbage_and_oversized_values_do_not_open() {
            let format = format(&[1]);
            for value in garbage_values() {
                assert!(
                    format.open("id", &value, t(NOW)).is_none(),
                    "{:?}",
                    &value[..value.len().min(40)]
                );
            }
            // A valid value with anything appended or prepended.
            let value = format.seal("id", &record()).unwrap();
            for tampered in [
                format!("{value}="),
                format!("{value}A"),
                format!("{value}."),
                format!("A{value}"),
                format!(" {value}"),
                format!("{value}{}", "A".repeat(5_000)),
                value[..value.len() - 1].to_owned(),
            ] {
                assert!(format.open("id", &tampered, t(NOW)).is_none());
            }
        }

        #[test]
        fn large_sessions_make_large_values_that_are_refused_past_4096_bytes() {
            let format = format(&[1]);
            let mut sealed = record();
            sealed.data.insert("blob", "x".repeat(4_000)).unwrap();
            let value = format.seal("id", &sealed).unwrap();
            assert!(value.len() > 4_096, "{}", value.len());
            assert!(format.open("id", &value, t(NOW)).is_none(), "over 4096 bytes: unread");
        }

        #[test]
        fn values_are_valid_cookie_values() {
            let format = format(&[1]);
            let value = format.seal("id", &record()).unwrap();
            assert!(
                value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_=.".contains(&b)),
                "{value}"
            );
        }

        #[test]
        fn the_format_is_send_sync_and_debug_hides_keys() {
            fn assert_format<F: CookieFormat + Clone>(_: &F) {}
            let format = ($make)(keyring(&[0x41]));
            assert_format(&format);
            let debug = format!("{format:?}");
            assert!(!debug.contains("QUFB"), "{debug}"); // base64 of the key bytes
            assert!(!debug.contains("65, 65"), "{debug}");
        }
    };
}

/// PKCS#8 v1 DER of the Ed25519 private key with this 32-byte seed.
pub fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    let prefix = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    [&prefix[..], seed].concat()
}

/// The raw 32-byte Ed25519 public key for this seed.
pub fn ed25519_public(seed: &[u8; 32]) -> Vec<u8> {
    use base64::Engine as _;
    use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};

    let signing = jsonwebtoken::EncodingKey::from_ed_der(&ed25519_pkcs8(seed));
    let jwk = Jwk::from_encoding_key(&signing, jsonwebtoken::Algorithm::EdDSA).unwrap();
    let AlgorithmParameters::OctetKeyPair(params) = jwk.algorithm else { panic!("not an OKP") };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(params.x).unwrap()
}

/// An EdDSA `JwtFormat` whose keys are the keyring's bytes used as Ed25519
/// seeds: the primary signs, the others' public keys are fallbacks.
pub fn eddsa(keyring: Keyring) -> session_stores_cookie::JwtFormat {
    let seeds: Vec<[u8; 32]> = keyring.keys().map(|key| *key.as_bytes()).collect();
    let fallbacks: Vec<Vec<u8>> = seeds[1..].iter().map(ed25519_public).collect();
    let fallbacks: Vec<&[u8]> = fallbacks.iter().map(Vec::as_slice).collect();
    session_stores_cookie::JwtFormat::ed25519(&ed25519_pkcs8(&seeds[0]), &fallbacks).unwrap()
}

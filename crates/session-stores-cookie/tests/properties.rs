//! Properties of every format: any session data round-trips, and no single
//! character change of a sealed value opens.
#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions.

mod common;

use std::collections::HashMap;

use proptest::prelude::*;
use serde_json::Value;
use session_core::{CookieFormat, Keyring, Record, SessionData, StorageKey};
use session_stores_cookie::{AeadFormat, FernetFormat, JwtFormat, SignedFormat};

use common::*;

/// Every format, as the boxed trait the layer holds.
fn formats(keyring: &Keyring) -> Vec<(&'static str, Box<dyn CookieFormat>)> {
    vec![
        ("aead", Box::new(AeadFormat::new(keyring.clone()))),
        ("fernet", Box::new(FernetFormat::new(keyring.clone()))),
        ("jwt-hs256", Box::new(JwtFormat::hs256(keyring.clone()))),
        ("jwt-eddsa", Box::new(eddsa(keyring.clone()))),
        ("signed", Box::new(SignedFormat::new(keyring.clone()))),
    ]
}

/// JSON values without floats (JSON text does not round-trip every float
/// bit-exactly; sessions store what JSON stores).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<String>().prop_map(|s| Value::from(s.chars().take(8).collect::<String>())),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::hash_map("[a-z_]{0,6}", inner, 0..3)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn session_data() -> impl Strategy<Value = HashMap<String, Value>> {
    prop::collection::hash_map(
        any::<String>().prop_map(|s| s.chars().take(8).collect()),
        json_value(),
        0..6,
    )
}

fn record_with(data: HashMap<String, Value>, user: Option<String>) -> Record {
    let mut record =
        Record::new(StorageKey::from_bytes([0; 32]), t(NOW), t(NOW + 600), Some(t(NOW + 900)));
    record.data = SessionData::from_map(data);
    record.user = user;
    record
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_session_data_round_trips(data in session_data(), user in proptest::option::of(".{0,24}")) {
        let record = record_with(data, user);
        for (name, format) in formats(&keyring(&[1])) {
            let value = format.seal("sid", &record).unwrap();
            prop_assert!(value.len() <= 4_096, "{name}: test data too large ({} bytes)", value.len());
            let opened = format.open("sid", &value, t(NOW + 1));
            prop_assert!(opened.is_some(), "{name} did not open its own value");
            let opened = opened.unwrap();
            prop_assert_eq!(opened.record.data.as_map(), record.data.as_map(), "{}", name);
            prop_assert_eq!(&opened.record.user, &record.user, "{}", name);
            prop_assert!(!opened.record.data.is_changed());
        }
    }

    #[test]
    fn any_single_character_change_is_rejected(
        data in session_data(),
        position in any::<prop::sample::Index>(),
        replacement in prop::sample::select(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=.+/!\0 ".chars().collect::<Vec<_>>()
        ),
    ) {
        let record = record_with(data, None);
        for (name, format) in formats(&keyring(&[1])) {
            let value = format.seal("sid", &record).unwrap();
            let index = position.index(value.len());
            let original = value.as_bytes()[index] as char;
            if original == replacement {
                continue;
            }
            let mut changed = value.clone();
            changed.replace_range(index..=index, replacement.encode_utf8(&mut [0; 4]));
            prop_assert!(
                format.open("sid", &changed, t(NOW + 1)).is_none(),
                "{name}: changing {original:?} at {index} to {replacement:?} still opens"
            );
        }
    }

    #[test]
    fn any_single_bit_flip_of_the_decoded_value_is_rejected(
        data in session_data(),
        position in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        use base64::Engine as _;
        use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};

        let record = record_with(data, None);
        for (name, format) in formats(&keyring(&[1])) {
            let value = format.seal("sid", &record).unwrap();
            // Flip a bit inside one decoded part, then re-encode it.
            let parts: Vec<&str> = value.split('.').collect();
            let part = position.index(parts.len());
            let engine = if name == "fernet" { &URL_SAFE } else { &URL_SAFE_NO_PAD };
            let mut bytes = engine.decode(parts[part]).unwrap();
            if bytes.is_empty() {
                continue;
            }
            let byte = position.index(bytes.len());
            bytes[byte] ^= 1 << bit;
            let mut changed: Vec<String> = parts.iter().map(|&p| p.to_owned()).collect();
            changed[part] = engine.encode(&bytes);
            let changed = changed.join(".");
            prop_assert!(
                format.open("sid", &changed, t(NOW + 1)).is_none(),
                "{name}: flipping bit {bit} of byte {byte} in part {part} still opens"
            );
        }
    }

    #[test]
    fn open_never_panics_on_arbitrary_text(value in ".{0,300}", name in "[a-z]{0,4}") {
        for (_, format) in formats(&keyring(&[1])) {
            let _ = format.open(&name, &value, t(NOW));
        }
    }
}

//! hostile-input rows 9-15 against `FernetFormat`, with hostile tokens built by
//! hand: every forged field carries a valid HMAC, so the checks after the
//! HMAC are what refuses them.
#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use hmac::{Hmac, Mac};
use session_core::{CookieFormat, Key, Keyring, Record};
use session_stores_cookie::FernetFormat;
use sha2::Sha256;

use common::*;

const COOKIE: &str = "id";

fn format() -> FernetFormat {
    FernetFormat::new(keyring(&[1]))
}

fn opens(format: &FernetFormat, value: &str) -> bool {
    format.open(COOKIE, value, t(NOW)).is_some()
}

/// A genuine token for [`record`], sealed with key 1.
fn genuine() -> Vec<u8> {
    URL_SAFE.decode(format().seal(COOKIE, &record()).unwrap()).unwrap()
}

/// Re-signs token bytes with `key`'s Fernet signing key (its first 16 bytes)
/// and encodes them: whatever the bytes say, the HMAC is valid.
fn resign(mut token: Vec<u8>, key: &Key) -> String {
    let body = token.len().saturating_sub(32);
    token.truncate(body);
    let mut mac = Hmac::<Sha256>::new_from_slice(&key.as_bytes()[..16]).unwrap();
    mac.update(&token);
    token.extend_from_slice(&mac.finalize().into_bytes());
    URL_SAFE.encode(token)
}

/// A token with `plaintext` and `timestamp`, encrypted and signed with key 1
/// by the `fernet` crate itself.
fn token_with(plaintext: &[u8], timestamp: u64) -> String {
    fernet::Fernet::new(&key(1).to_base64()).unwrap().encrypt_at_time(plaintext, timestamp)
}

fn claims_json(record: &Record) -> Vec<u8> {
    let mut value = serde_json::json!({
        "aud": COOKIE,
        "iat": record.created_at,
        "lst": record.last_seen,
        "exp": record.expires_at(),
        "idl": record.idle_deadline,
        "dat": record.data,
    });
    if let Some(abs) = record.absolute_deadline {
        value["abs"] = serde_json::json!(abs);
    }
    serde_json::to_vec(&value).unwrap()
}

#[test]
fn resigned_genuine_tokens_still_open() {
    // The forging helper itself is faithful: re-signing changes nothing.
    assert!(opens(&format(), &resign(genuine(), &key(1))));
    assert!(opens(&format(), &token_with(&claims_json(&record()), NOW as u64)));
}

#[test]
fn fernet_row09_wrong_version_byte() {
    for version in [0x81, 0x00, 0x7f, 0xff] {
        let mut token = genuine();
        token[0] = version;
        assert!(!opens(&format(), &resign(token, &key(1))), "version {version:#x}");
    }
}

#[test]
fn fernet_row09_shorter_than_57_bytes() {
    let token = genuine();
    for len in [0, 1, 9, 25, 56, 57, 72] {
        let short = token[..len].to_vec();
        assert!(!opens(&format(), &URL_SAFE.encode(&short)), "{len} bytes");
        assert!(!opens(&format(), &resign(short, &key(1))), "{len} bytes, re-signed");
    }
}

#[test]
fn fernet_row09_ciphertext_not_a_multiple_of_16() {
    let token = genuine();
    let (head, hmac) = token.split_at(token.len() - 32);
    for cut in [1, 15, 17] {
        let body = &head[..head.len() - cut];
        let forged = resign([body, hmac].concat(), &key(1));
        assert!(!opens(&format(), &forged), "{cut} bytes short");
    }
    let longer = resign([head, &[0u8; 5], hmac].concat(), &key(1));
    assert!(!opens(&format(), &longer), "5 bytes long");
    // Whole blocks of garbage ciphertext, correctly signed: padding fails.
    let garbage = resign([&head[..25], &[0xaa; 32], hmac].concat(), &key(1));
    assert!(!opens(&format(), &garbage));
}

#[test]
fn fernet_row10_one_flipped_bit_in_hmac_iv_ciphertext_or_timestamp() {
    let token = genuine();
    let len = token.len();
    let regions = [
        ("version", 0),
        ("timestamp", 1),
        ("timestamp", 8),
        ("iv", 9),
        ("iv", 24),
        ("ciphertext", 25),
        ("ciphertext", len - 33),
        ("hmac", len - 32),
        ("hmac", len - 1),
    ];
    for (region, index) in regions {
        for bit in [0, 7] {
            let mut flipped = token.clone();
            flipped[index] ^= 1 << bit;
            assert!(
                !opens(&format(), &URL_SAFE.encode(&flipped)),
                "{region} byte {index} bit {bit}"
            );
        }
    }
}

#[test]
fn fernet_row11_token_from_another_key() {
    let other = FernetFormat::new(keyring(&[2])).seal(COOKIE, &record()).unwrap();
    assert!(!opens(&format(), &other));
    // Even a token whose signing half matches but encryption half does not.
    let mut half = [1u8; 32];
    half[16..].fill(9);
    let mixed = FernetFormat::new(Keyring::new(Key::from_bytes(half))).seal(COOKIE, &record());
    assert!(!opens(&format(), &mixed.unwrap()));
}

#[test]
fn fernet_row11_token_from_a_key_removed_from_the_keyring() {
    let old = FernetFormat::new(keyring(&[1])).seal(COOKIE, &record()).unwrap();
    let rotated = FernetFormat::new(keyring(&[2, 1]));
    assert!(rotated.open(COOKIE, &old, t(NOW)).unwrap().needs_reseal);
    let removed = FernetFormat::new(keyring(&[2]));
    assert!(!opens(&removed, &old));
}

#[test]
fn fernet_row12_expired_by_one_second_and_at_the_boundary() {
    // The session's own deadline (idle timeout IDLE).
    let value = format().seal(COOKIE, &record()).unwrap();
    let deadline = NOW + IDLE as i64;
    assert!(format().open(COOKIE, &value, t(deadline - 1)).is_some());
    assert!(format().open(COOKIE, &value, t(deadline)).is_none(), "at the boundary");
    assert!(format().open(COOKIE, &value, t(deadline + 1)).is_none(), "TTL + 1 s");

    // Fernet's TTL, from the token timestamp (sealed at NOW).
    let ttl = FernetFormat::new(keyring(&[1])).with_ttl(secs(600));
    assert!(ttl.open(COOKIE, &value, t(NOW + 599)).is_some());
    assert!(ttl.open(COOKIE, &value, t(NOW + 600)).is_none(), "at the TTL boundary");
    assert!(ttl.open(COOKIE, &value, t(NOW + 601)).is_none(), "TTL + 1 s");
}

#[test]
fn fernet_row12_timestamp_61_seconds_in_the_future() {
    let json = claims_json(&record());
    let at = |offset: i64| token_with(&json, (NOW + offset) as u64);
    assert!(opens(&format(), &at(60)), "60 s ahead is clock skew");
    assert!(!opens(&format(), &at(61)), "61 s ahead is not");
    assert!(!opens(&format(), &at(3_600)));

    // The same through a forged timestamp on a genuine token.
    let mut token = genuine();
    token[1..9].copy_from_slice(&((NOW + 61) as u64).to_be_bytes());
    assert!(!opens(&format(), &resign(token, &key(1))));
}

#[test]
fn fernet_row13_timestamp_u64_max_with_a_valid_hmac() {
    let json = claims_json(&record());
    for timestamp in [u64::MAX, u64::MAX - 59, i64::MAX as u64, i64::MAX as u64 + 1] {
        let sealed = token_with(&json, timestamp);
        let mut forged = genuine();
        forged[1..9].copy_from_slice(&timestamp.to_be_bytes());
        let forged = resign(forged, &key(1));
        for format in [format(), format().with_ttl(secs(60)), format().with_ttl(secs(u64::MAX))] {
            for value in [&sealed, &forged] {
                assert!(format.open(COOKIE, value, t(NOW)).is_none(), "{timestamp}");
                assert!(format.open(COOKIE, value, session_core::Timestamp::MAX).is_none());
            }
        }
    }
    // Timestamp zero with a TTL: ancient, refused without overflow.
    let ancient = token_with(&json, 0);
    assert!(format().with_ttl(secs(u64::MAX)).open(COOKIE, &ancient, t(NOW)).is_some());
    assert!(format().with_ttl(secs(60)).open(COOKIE, &ancient, t(NOW)).is_none());
}

#[test]
fn fernet_row14_valid_token_whose_plaintext_is_not_json() {
    for plaintext in [&b""[..], b"hello", b"\xff\xfe\x00", b"{", b"null", b"gAAAAA"] {
        assert!(!opens(&format(), &token_with(plaintext, NOW as u64)), "{plaintext:?}");
    }
}

#[test]
fn fernet_row14_valid_token_with_json_of_the_wrong_shape() {
    let good: serde_json::Value = serde_json::from_slice(&claims_json(&record())).unwrap();
    assert!(opens(&format(), &token_with(good.to_string().as_bytes(), NOW as u64)));
    let mut shapes = vec![
        serde_json::json!([]),
        serde_json::json!({}),
        serde_json::json!("session"),
        serde_json::json!({"aud": COOKIE}),
    ];
    for (field, bad) in [
        ("exp", serde_json::json!("1700001800")),
        ("exp", serde_json::json!(1e30)),
        ("dat", serde_json::json!("data")),
        ("usr", serde_json::json!(7)),
        ("aud", serde_json::json!(null)),
    ] {
        let mut shape = good.clone();
        shape[field] = bad;
        shapes.push(shape);
    }
    for shape in shapes {
        assert!(
            !opens(&format(), &token_with(shape.to_string().as_bytes(), NOW as u64)),
            "{shape}"
        );
    }
}

#[test]
fn fernet_row15_valid_token_copied_from_another_cookie_name() {
    let other = format().seal("other", &record()).unwrap();
    assert!(format().open("other", &other, t(NOW)).is_some());
    assert!(!opens(&format(), &other));
}

#[test]
fn fernet_text_must_be_canonical_base64url_with_padding() {
    let value = format().seal(COOKIE, &record()).unwrap();
    assert!(value.ends_with('='), "Fernet tokens are padded: {value}");
    let unpadded = value.trim_end_matches('=');
    assert!(!opens(&format(), unpadded), "padding removed");
    let standard = value.replace('-', "+").replace('_', "/");
    if standard != value {
        assert!(!opens(&format(), &standard), "standard alphabet");
    }
}

#[test]
fn fernet_opens_a_token_made_by_python_cryptography() {
    // Python: Fernet(key).encrypt_at_time(claims_json, 1700000000) with
    // key = base64url(32 * b"\x07").
    const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
    const TOKEN: &str = "gAAAAABlU_EAQx5LbShvtrjPV4X22TZcrW4GUN8YdFn2YPODmTQe_5o2copnAU3Xz_qIgBkfbOi1y1030bUv8iYH7EQwCbQRg2zaTjv1wYgqy0kxB6p7-qHyLUQ_TlH0yQMlnHLidC8T1DPInP65UWO4gog_LdWy5jEouBWaMDznFB2p-zVdOoD54z3OSdKLt1FqJLe8xWsmnexVeWcSoXmkHLYfOYAcQUiVkNrOIde1dE-eNzlYqPznOqHuGlG7Af-CDPqkdrUr";
    let format = FernetFormat::new(Keyring::new(KEY.parse().unwrap()));
    let opened = format.open("session", TOKEN, t(NOW + 10)).unwrap();
    assert_eq!(opened.record.user.as_deref(), Some("alice"));
    assert_eq!(opened.record.data.get::<String>("from").unwrap().as_deref(), Some("python"));
    assert_eq!(opened.record.data.get::<Vec<u8>>("n").unwrap(), Some(vec![1, 2, 3]));
    assert!(format.open("session", TOKEN, t(NOW + 3_600)).is_none(), "exp passed");
    assert!(format.open("id", TOKEN, t(NOW + 10)).is_none(), "another cookie");
}

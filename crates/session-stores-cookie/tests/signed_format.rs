//! Hostile values against `SignedFormat`: the hostile-input rows that apply to a
//! signed (not encrypted) value, with tags computed here so the checks after
//! the tag are what refuses them.
#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use session_core::CookieFormat;
use session_stores_cookie::SignedFormat;
use sha2::Sha256;

use common::*;

const COOKIE: &str = "id";

fn format() -> SignedFormat {
    SignedFormat::new(keyring(&[1]))
}

fn opens(format: &SignedFormat, value: &str) -> bool {
    format.open(COOKIE, value, t(NOW)).is_some()
}

/// `payload` signed for `cookie` with key `key_byte`, as the format would.
fn signed(key_byte: u8, cookie: &str, payload: &[u8]) -> String {
    let tag = Hmac::<Sha256>::new_from_slice(key(key_byte).as_bytes())
        .unwrap()
        .chain_update(cookie.as_bytes())
        .chain_update([0])
        .chain_update(payload)
        .finalize()
        .into_bytes();
    format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(tag))
}

fn claims() -> Value {
    let deadline = NOW + IDLE as i64;
    json!({"aud": COOKIE, "iat": NOW, "lst": NOW, "exp": deadline, "idl": deadline, "dat": {"k": "v"}})
}

#[test]
fn hand_signed_values_open() {
    assert!(opens(&format(), &signed(1, COOKIE, claims().to_string().as_bytes())));
}

#[test]
fn signed_is_readable_by_the_client() {
    let value = format().seal(COOKIE, &record()).unwrap();
    let (payload, _) = value.split_once('.').unwrap();
    let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(payload["dat"]["user_id"], 42);
    assert_eq!(payload["usr"], "alice@example.com");
}

#[test]
fn signed_row10_one_flipped_bit_in_payload_or_tag() {
    let value = format().seal(COOKIE, &record()).unwrap();
    let (payload, tag) = value.split_once('.').unwrap();
    let payload = URL_SAFE_NO_PAD.decode(payload).unwrap();
    let tag = URL_SAFE_NO_PAD.decode(tag).unwrap();
    for index in [0, 1, payload.len() / 2, payload.len() - 1] {
        let mut flipped = payload.clone();
        flipped[index] ^= 0x01;
        let forged =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(&flipped), URL_SAFE_NO_PAD.encode(&tag));
        assert!(!opens(&format(), &forged), "payload byte {index}");
    }
    for index in [0, 15, 31] {
        let mut flipped = tag.clone();
        flipped[index] ^= 0x80;
        let forged =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(&flipped));
        assert!(!opens(&format(), &forged), "tag byte {index}");
    }
}

#[test]
fn signed_row10_truncated_or_extended_tag() {
    let value = format().seal(COOKIE, &record()).unwrap();
    let (payload, tag) = value.split_once('.').unwrap();
    let tag = URL_SAFE_NO_PAD.decode(tag).unwrap();
    for forged_tag in [&tag[..0], &tag[..16], &tag[..31], &[tag.as_slice(), &[0]].concat()[..]] {
        let forged = format!("{payload}.{}", URL_SAFE_NO_PAD.encode(forged_tag));
        assert!(!opens(&format(), &forged), "{} bytes", forged_tag.len());
    }
    assert!(!opens(&format(), &format!("{payload}.{}=", URL_SAFE_NO_PAD.encode(&tag))), "padded");
}

#[test]
fn signed_row11_value_from_another_or_removed_key() {
    let payload = claims().to_string();
    assert!(!opens(&format(), &signed(2, COOKIE, payload.as_bytes())));
    let old = SignedFormat::new(keyring(&[2])).seal(COOKIE, &record()).unwrap();
    assert!(SignedFormat::new(keyring(&[1, 2])).open(COOKIE, &old, t(NOW)).unwrap().needs_reseal);
    assert!(!opens(&format(), &old), "key 2 removed");
}

#[test]
fn signed_row12_expired_and_at_the_boundary() {
    let value = format().seal(COOKIE, &record()).unwrap();
    let deadline = NOW + IDLE as i64;
    assert!(format().open(COOKIE, &value, t(deadline - 1)).is_some());
    assert!(format().open(COOKIE, &value, t(deadline)).is_none());
    assert!(format().open(COOKIE, &value, t(deadline + 1)).is_none());
    // Issued more than 60 s ahead of this server's clock.
    assert!(format().open(COOKIE, &value, t(NOW - 60)).is_some());
    assert!(format().open(COOKIE, &value, t(NOW - 61)).is_none());
}

#[test]
fn signed_row13_absurd_times_with_a_valid_tag() {
    for (field, value) in [
        ("exp", json!(u64::MAX)),
        ("exp", json!(-1)),
        ("exp", serde_json::from_str::<Value>("1e30").unwrap()),
        ("idl", json!(i64::MAX)),
        ("lst", json!(i64::MAX)),
        ("iat", json!(i64::MIN)),
    ] {
        let mut claims = claims();
        claims[field] = value.clone();
        let forged = signed(1, COOKIE, claims.to_string().as_bytes());
        for now in [t(NOW), t(i64::MAX), t(i64::MIN)] {
            // Either refused, or (iat in the distant past) valid: never a panic.
            let opened = format().open(COOKIE, &forged, now);
            if field != "iat" || now != t(NOW) {
                assert!(opened.is_none(), "{field} = {value} at {now}");
            }
        }
    }
}

#[test]
fn signed_row14_valid_tag_on_a_payload_that_is_not_session_json() {
    let mut payloads: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"not json".to_vec(),
        b"\xff\xfe".to_vec(),
        b"[]".to_vec(),
        b"{}".to_vec(),
        b"null".to_vec(),
    ];
    for (field, bad) in [
        ("exp", json!("soon")),
        ("dat", json!([])),
        ("usr", json!({"id": 1})),
        ("aud", json!(["id"])),
    ] {
        let mut claims = claims();
        claims[field] = bad;
        payloads.push(claims.to_string().into_bytes());
    }
    let mut duplicated = claims().to_string();
    duplicated.insert_str(1, "\"aud\":\"other\",");
    payloads.push(duplicated.into_bytes());
    for payload in payloads {
        assert!(
            !opens(&format(), &signed(1, COOKIE, &payload)),
            "{}",
            String::from_utf8_lossy(&payload)
        );
    }
}

#[test]
fn signed_row15_valid_value_for_another_cookie_name() {
    let payload = claims().to_string();
    // Tag bound to "other", payload claims "id": refused by the tag.
    assert!(!opens(&format(), &signed(1, "other", payload.as_bytes())));
    // Tag bound to "id", payload claims "other": refused by the claims.
    let mut other = claims();
    other["aud"] = json!("other");
    assert!(!opens(&format(), &signed(1, COOKIE, other.to_string().as_bytes())));
    // Name and payload boundary: "i" + NUL + "d..." is not "id" + NUL + "...".
    assert!(!opens(&format(), &signed(1, "i", &[&b"\0d"[..], payload.as_bytes()].concat())));
}

#[test]
fn signed_text_must_be_canonical_base64url() {
    let value = format().seal(COOKIE, &record()).unwrap();
    let (payload, tag) = value.split_once('.').unwrap();
    for forged in [
        format!("{payload}=.{tag}"),
        format!("{}.{tag}", payload.replace('-', "+").replace('_', "/")),
        format!("{payload}.{tag}.{tag}"),
        format!("{payload} .{tag}"),
        format!("{tag}.{payload}"),
    ] {
        if forged != value {
            assert!(!opens(&format(), &forged), "{forged}");
        }
    }
}

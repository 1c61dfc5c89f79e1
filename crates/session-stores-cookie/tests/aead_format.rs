//! Hostile-input rows 9-15 against `AeadFormat`, with hostile values built by
//! hand: every forged field is encrypted and tagged under the format's own
//! key, so the checks after the tag are what refuses them.
#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions.

mod common;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde_json::json;
use session_core::{CookieFormat, Key};
use session_stores_cookie::AeadFormat;
use sha2::Sha256;

use common::*;

const COOKIE: &str = "id";

fn format() -> AeadFormat {
    AeadFormat::new(keyring(&[1]))
}

fn opens(format: &AeadFormat, value: &str) -> bool {
    format.open(COOKIE, value, t(NOW)).is_some()
}

/// The format's AES key for `key`, derived here independently of the crate:
/// HKDF-Expand(SHA-256) with one block, `HMAC(key, info || 0x01)`.
fn aes_key(key: &Key) -> [u8; 32] {
    <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
        .unwrap()
        .chain_update(b"session-stores-cookie AES-256-GCM cookie key v1")
        .chain_update([1])
        .finalize()
        .into_bytes()
        .into()
}

/// `version || nonce || AES-256-GCM(plaintext) || tag` under `aes_key`, with
/// `aad` as associated data, as base64url: what the format would seal.
fn sealed_with(aes_key: [u8; 32], version: u8, aad: &str, plaintext: &[u8]) -> String {
    let nonce = [0x42; 12];
    let mut body = plaintext.to_vec();
    let tag = Aes256Gcm::new(&aes_key.into())
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad.as_bytes(), &mut body)
        .unwrap();
    URL_SAFE_NO_PAD.encode([&[version][..], &nonce, &body, &tag].concat())
}

/// `plaintext` sealed for `cookie` with keyring key `key_byte`.
fn sealed(key_byte: u8, cookie: &str, plaintext: &[u8]) -> String {
    sealed_with(aes_key(&key(key_byte)), 1, cookie, plaintext)
}

/// A plaintext in the format's compact form: flags, created, last seen,
/// idle deadline and absolute deadline (big-endian seconds), then `json`.
fn compact(flags: u8, times: [i64; 4], json: &str) -> Vec<u8> {
    let mut bytes = vec![flags];
    for seconds in times {
        bytes.extend_from_slice(&seconds.to_be_bytes());
    }
    bytes.extend_from_slice(json.as_bytes());
    bytes
}

/// A live session in the compact form: created now, idle deadline in IDLE
/// seconds, no absolute deadline, one key of data.
fn live() -> Vec<u8> {
    compact(0, [NOW, NOW, NOW + IDLE as i64, 0], r#"{"dat":{"k":"v"}}"#)
}

/// A genuine value for [`record`], sealed with key 1, decoded.
fn genuine() -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(format().seal(COOKIE, &record()).unwrap()).unwrap()
}

#[test]
fn hand_sealed_values_open() {
    // The forging helper is faithful: what it seals, the format opens.
    assert!(opens(&format(), &sealed(1, COOKIE, &live())));
}

#[test]
fn aead_is_not_readable_by_the_client() {
    let value = format().seal(COOKIE, &record()).unwrap();
    let bytes = URL_SAFE_NO_PAD.decode(&value).unwrap();
    for secret in [&b"alice@example.com"[..], b"user_id", b"\"aud\""] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret), "{secret:?} in the clear");
    }
    // Version, nonce and tag around the JSON: 29 bytes, 39 characters more.
    assert_eq!(bytes[0], 1);
}

#[test]
fn aead_row09_wrong_version_byte() {
    for version in [0x00, 0x02, 0x80, 0xff] {
        let mut value = genuine();
        value[0] = version;
        assert!(!opens(&format(), &URL_SAFE_NO_PAD.encode(&value)), "version {version:#x}");
        // Even with a valid tag: the version is checked, not just authenticated.
        let forged = sealed_with(aes_key(&key(1)), version, COOKIE, &live());
        assert!(!opens(&format(), &forged), "version {version:#x}, valid tag");
    }
}

#[test]
fn aead_row09_shorter_than_version_nonce_and_tag() {
    let value = genuine();
    for len in [0, 1, 13, 28, 29, 30] {
        assert!(!opens(&format(), &URL_SAFE_NO_PAD.encode(&value[..len])), "{len} bytes");
    }
    // Version, nonce and a valid tag over an empty plaintext: not a session.
    assert!(!opens(&format(), &sealed(1, COOKIE, b"")));
    // The genuine value cut anywhere, or with bytes added: the tag fails.
    for cut in [1, 15, 16, 17] {
        let short = URL_SAFE_NO_PAD.encode(&value[..value.len() - cut]);
        assert!(!opens(&format(), &short), "{cut} bytes short");
    }
    let longer = URL_SAFE_NO_PAD.encode([&value[..], &[0; 5]].concat());
    assert!(!opens(&format(), &longer), "5 bytes long");
}

#[test]
fn aead_row10_one_flipped_bit_in_version_nonce_ciphertext_or_tag() {
    let value = genuine();
    let len = value.len();
    let regions = [
        ("version", 0),
        ("nonce", 1),
        ("nonce", 12),
        ("ciphertext", 13),
        ("ciphertext", len / 2),
        ("ciphertext", len - 17),
        ("tag", len - 16),
        ("tag", len - 1),
    ];
    for (region, index) in regions {
        for bit in [0, 7] {
            let mut flipped = value.clone();
            flipped[index] ^= 1 << bit;
            assert!(
                !opens(&format(), &URL_SAFE_NO_PAD.encode(&flipped)),
                "{region} byte {index} bit {bit}"
            );
        }
    }
    assert!(opens(&format(), &URL_SAFE_NO_PAD.encode(&value)), "the unflipped value opens");
}

#[test]
fn aead_row11_value_from_another_key() {
    let other = AeadFormat::new(keyring(&[2])).seal(COOKIE, &record()).unwrap();
    assert!(!opens(&format(), &other));
    assert!(!opens(&format(), &sealed(2, COOKIE, &live())));
    // Sealed with the keyring key itself rather than the derived key: the
    // format never uses a keyring key as an AES key.
    let raw = sealed_with(*key(1).as_bytes(), 1, COOKIE, &live());
    assert!(!opens(&format(), &raw));
}

#[test]
fn aead_row11_value_from_a_key_removed_from_the_keyring() {
    let old = format().seal(COOKIE, &record()).unwrap();
    let rotated = AeadFormat::new(keyring(&[2, 1]));
    assert!(rotated.open(COOKIE, &old, t(NOW)).unwrap().needs_reseal);
    assert!(!opens(&AeadFormat::new(keyring(&[2])), &old), "key 1 removed");
}

#[test]
fn aead_rotation_with_many_keys_opens_with_each_and_reseals_with_the_primary() {
    let keys = [9, 8, 7, 6, 5];
    let ring = AeadFormat::new(keyring(&keys));
    for (index, &byte) in keys.iter().enumerate() {
        let value = AeadFormat::new(keyring(&[byte])).seal(COOKIE, &record()).unwrap();
        let opened = ring.open(COOKIE, &value, t(NOW)).unwrap();
        assert_eq!(opened.needs_reseal, index != 0, "key #{index}");
        assert_eq!(opened.record.data.as_map(), record().data.as_map());
        // Resealed: only the primary opens it.
        let resealed = ring.seal(COOKIE, &opened.record).unwrap();
        assert!(opens(&AeadFormat::new(keyring(&[9])), &resealed));
        assert!(!opens(&AeadFormat::new(keyring(&[8, 7, 6, 5])), &resealed));
    }
    // The fallbacks are tried in any order of the ring: each still opens.
    let value = AeadFormat::new(keyring(&[6])).seal(COOKIE, &record()).unwrap();
    assert!(AeadFormat::new(keyring(&[1, 2, 3, 6])).open(COOKIE, &value, t(NOW)).is_some());
}

#[test]
fn aead_row12_expired_by_one_second_and_at_the_boundary() {
    let value = format().seal(COOKIE, &record()).unwrap();
    let deadline = NOW + IDLE as i64;
    assert!(format().open(COOKIE, &value, t(deadline - 1)).is_some());
    assert!(format().open(COOKIE, &value, t(deadline)).is_none(), "at the boundary");
    assert!(format().open(COOKIE, &value, t(deadline + 1)).is_none(), "one second past");
}

#[test]
fn aead_row12_issued_61_seconds_in_the_future() {
    for (ahead, expected) in [(60, true), (61, false), (3_600, false)] {
        let issued = NOW + ahead;
        let plaintext = compact(0, [issued, issued, issued + IDLE as i64, 0], r#"{"dat":{}}"#);
        assert_eq!(opens(&format(), &sealed(1, COOKIE, &plaintext)), expected, "{ahead} s ahead");
        // Created in the past, last used in the future: refused too.
        let plaintext = compact(0, [NOW, issued, issued + IDLE as i64, 0], r#"{"dat":{}}"#);
        assert_eq!(opens(&format(), &sealed(1, COOKIE, &plaintext)), expected, "{ahead} s ahead");
    }
}

#[test]
fn aead_row13_absurd_times_with_a_valid_tag() {
    let idle = NOW + IDLE as i64;
    // [created, last seen, idle deadline, absolute deadline or None]
    let cases = [
        [NOW, NOW, i64::MAX, i64::MAX],
        [NOW, NOW, -1, i64::MAX],
        [NOW, NOW, i64::MIN, i64::MIN],
        [NOW, NOW, idle, -1],
        [NOW, NOW, idle, i64::MIN],
        [NOW, i64::MAX, idle, idle],
        [i64::MAX, NOW, idle, idle],
        [i64::MAX, i64::MAX, i64::MAX, i64::MAX],
        [i64::MIN, i64::MIN, idle, idle],
        [-1, -1, -1, -1],
    ];
    for times in cases {
        for flags in [0, 1] {
            let times = if flags == 0 { [times[0], times[1], times[2], 0] } else { times };
            let forged = sealed(1, COOKIE, &compact(flags, times, r#"{"dat":{}}"#));
            for now in [t(NOW), t(i64::MAX), t(i64::MIN), t(0), t(-1)] {
                // Never a panic; opened only if live at `now`, created no
                // later than a minute ahead of it.
                if let Some(opened) = format().open(COOKIE, &forged, now) {
                    let record = opened.record;
                    assert!(!record.is_expired(now), "{times:?} at {now}");
                    assert!(
                        record.created_at <= now.saturating_add(secs(60)),
                        "{times:?} at {now}"
                    );
                    assert!(record.last_seen <= now.saturating_add(secs(60)), "{times:?} at {now}");
                }
            }
        }
    }
    // In the distant past, still within its deadlines: valid.
    let ancient = compact(1, [i64::MIN, i64::MIN, idle, idle], r#"{"dat":{}}"#);
    assert!(opens(&format(), &sealed(1, COOKIE, &ancient)));
    // Deadlines at the end of time, used now: valid until then.
    let forever = compact(1, [NOW, NOW, i64::MAX, i64::MAX], r#"{"dat":{}}"#);
    assert!(opens(&format(), &sealed(1, COOKIE, &forever)));
    assert!(format().open(COOKIE, &sealed(1, COOKIE, &forever), t(i64::MAX)).is_none());
}

#[test]
fn aead_row14_valid_tag_on_a_plaintext_that_is_not_session_claims() {
    let idle = NOW + IDLE as i64;
    let times = [NOW, NOW, idle, 0];
    let mut plaintexts: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"not json".to_vec(),
        b"\xff\xfe\x00".to_vec(),
        live()[..32].to_vec(),
        live()[..33].to_vec(),
        // Another format's plaintext: the whole session as one JSON object.
        json!({"aud": COOKIE, "iat": NOW, "lst": NOW, "exp": idle, "idl": idle, "dat": {}})
            .to_string()
            .into_bytes(),
        // Unknown flags, or an absolute time without its flag.
        compact(2, times, r#"{"dat":{}}"#),
        compact(0xff, times, r#"{"dat":{}}"#),
        compact(0, [NOW, NOW, idle, idle], r#"{"dat":{}}"#),
    ];
    for json in [
        "",
        "{",
        "[]",
        "{}",
        "null",
        "\"session\"",
        r#"{"dat":[]}"#,
        r#"{"dat":"data"}"#,
        r#"{"dat":null}"#,
        r#"{"usr":{"id":1},"dat":{}}"#,
        r#"{"usr":7,"dat":{}}"#,
        r#"{"xpy":{"kind":"forever"},"dat":{}}"#,
        r#"{"aud":"id","dat":{}}"#,
        r#"{"exp":1,"dat":{}}"#,
        r#"{"dat":{},"dat":{}}"#,
        r#"{"dat":{}} {}"#,
        r#"{"dat":{}}x"#,
    ] {
        plaintexts.push(compact(0, times, json));
    }
    for plaintext in plaintexts {
        assert!(
            !opens(&format(), &sealed(1, COOKIE, &plaintext)),
            "{}",
            String::from_utf8_lossy(&plaintext)
        );
    }
    // Whitespace around valid JSON is still JSON.
    assert!(opens(&format(), &sealed(1, COOKIE, &compact(0, times, r#" {"dat":{}} "#))));
}

#[test]
fn aead_row15_valid_value_for_another_cookie_name() {
    let other = format().seal("other", &record()).unwrap();
    assert!(format().open("other", &other, t(NOW)).is_some());
    assert!(!opens(&format(), &other));
    // The name is the associated data: a value for any other name, or
    // for none (as a plain AES-GCM user would seal it), does not open.
    for name in ["other", "", "i", "idd", "ID", "__Host-id"] {
        assert!(!opens(&format(), &sealed(1, name, &live())), "{name:?}");
    }
    assert!(opens(&format(), &sealed(1, COOKIE, &live())));
}

#[test]
fn aead_text_must_be_canonical_unpadded_base64url() {
    let value = format().seal(COOKIE, &record()).unwrap();
    let bytes = URL_SAFE_NO_PAD.decode(&value).unwrap();
    let padded = URL_SAFE.encode(&bytes);
    let standard = STANDARD.encode(&bytes);
    let mut variants = vec![
        format!("{value}="),
        format!("{value}=="),
        format!(" {value}"),
        format!("{value}\n"),
        format!("{}.{}", &value[..10], &value[10..]),
    ];
    if padded != value {
        variants.push(padded);
    }
    if standard.trim_end_matches('=') != value {
        variants.push(standard);
    }
    // Non-canonical trailing bits in the last character.
    if !value.len().is_multiple_of(4) {
        let last = value.chars().last().unwrap();
        for c in ['B', 'C', 'D', 'F', 'R', 'h'] {
            if c != last {
                let mut changed = value.clone();
                changed.pop();
                changed.push(c);
                if URL_SAFE_NO_PAD.decode(&changed).ok().as_deref() == Some(&bytes[..]) {
                    panic!("{c} decodes to the same bytes");
                }
                variants.push(changed);
            }
        }
    }
    for forged in variants {
        assert!(!opens(&format(), &forged), "{forged}");
    }
    assert!(opens(&format(), &value));
}

#[test]
fn aead_values_of_the_cookie_crates_private_jar_do_not_open() {
    // The jar's layout (no version byte, standard base64 with padding) under
    // the same raw key and the cookie name as associated data, with a nonce
    // that starts like our version byte.
    let mut nonce = [0x42; 12];
    nonce[0] = 1;
    let mut body = live();
    let tag = Aes256Gcm::new(&(*key(1).as_bytes()).into())
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), COOKIE.as_bytes(), &mut body)
        .unwrap();
    let jar = [&nonce[..], &body, &tag].concat();
    assert!(!opens(&format(), &STANDARD.encode(&jar)));
    assert!(!opens(&format(), &URL_SAFE_NO_PAD.encode(&jar)));
}

#[test]
fn aead_two_seals_of_one_session_differ_and_both_open() {
    let one = format().seal(COOKIE, &record()).unwrap();
    let two = format().seal(COOKIE, &record()).unwrap();
    assert_ne!(one, two, "a fresh nonce per seal");
    assert!(opens(&format(), &one) && opens(&format(), &two));
    assert_eq!(one.len(), two.len());
}

#[test]
fn aead_values_of_every_size_up_to_4096_bytes_open() {
    // Small values are decoded on the stack, larger ones on the heap: both
    // sides of the boundary, and the largest value a cookie can hold.
    let mut sizes: Vec<usize> = (0..40).map(|n| 300 + n * 10).collect();
    sizes.extend([1_000, 2_000, 2_700, 2_750, 2_800, 2_850, 2_900]);
    let mut largest = 0;
    for size in sizes {
        let mut sealed = record();
        sealed.data.insert("blob", "x".repeat(size)).unwrap();
        let value = format().seal(COOKIE, &sealed).unwrap();
        if value.len() > 4_096 {
            continue;
        }
        largest = largest.max(value.len());
        let opened = format().open(COOKIE, &value, t(NOW)).unwrap();
        assert_eq!(opened.record.data.get::<String>("blob").unwrap().unwrap().len(), size);
    }
    assert!(largest > 3_900, "{largest}");
}

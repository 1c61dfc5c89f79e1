//! hostile-input rows 16-18 against `JwtFormat`, with hostile tokens built by
//! hand (header and claims as raw JSON, signatures computed here).
#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use session_core::CookieFormat;
use session_stores_cookie::JwtFormat;
use sha2::{Sha256, Sha384, Sha512};

use common::*;

const COOKIE: &str = "id";

/// RFC 8410's example Ed25519 key pair.
const RFC8410_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC
-----END PRIVATE KEY-----
";
const RFC8410_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=
-----END PUBLIC KEY-----
";

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hs256() -> JwtFormat {
    JwtFormat::hs256(keyring(&[1]))
}

fn eddsa_rfc8410() -> JwtFormat {
    JwtFormat::ed25519(RFC8410_PRIVATE_PEM.as_bytes(), &[]).unwrap()
}

fn opens(format: &JwtFormat, value: &str) -> bool {
    format.open(COOKIE, value, t(NOW)).is_some()
}

fn header(alg: &str) -> Value {
    json!({"alg": alg, "typ": "JWT"})
}

/// Valid claims for [`COOKIE`] at [`NOW`].
fn claims() -> Value {
    let deadline = NOW + IDLE as i64;
    json!({"aud": COOKIE, "iat": NOW, "lst": NOW, "exp": deadline, "idl": deadline, "dat": {"k": "v"}})
}

fn claims_with(field: &str, value: Value) -> Value {
    let mut claims = claims();
    claims[field] = value;
    claims
}

fn claims_without(field: &str) -> Value {
    let mut claims = claims();
    claims.as_object_mut().unwrap().remove(field);
    claims
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", b64(header.to_string()), b64(claims.to_string()))
}

/// A token with `header` and `claims`, HMAC-signed with `secret` (SHA-256,
/// -384 or -512 by `bits`).
fn hmac_token(bits: u16, secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let tag = match bits {
        256 => Hmac::<Sha256>::new_from_slice(secret)
            .unwrap()
            .chain_update(&input)
            .finalize()
            .into_bytes()
            .to_vec(),
        384 => Hmac::<Sha384>::new_from_slice(secret)
            .unwrap()
            .chain_update(&input)
            .finalize()
            .into_bytes()
            .to_vec(),
        _ => Hmac::<Sha512>::new_from_slice(secret)
            .unwrap()
            .chain_update(&input)
            .finalize()
            .into_bytes()
            .to_vec(),
    };
    format!("{input}.{}", b64(tag))
}

/// An HS256 token signed with key 1 (what `hs256()` verifies).
fn hs256_token(header: &Value, claims: &Value) -> String {
    hmac_token(256, key(1).as_bytes(), header, claims)
}

/// An EdDSA token signed with the RFC 8410 key (what `eddsa_rfc8410()` verifies).
fn eddsa_token(claims: &Value) -> String {
    let input = signing_input(&header("EdDSA"), claims);
    let key = jsonwebtoken::EncodingKey::from_ed_der(&rfc8410_private_der());
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::EdDSA).unwrap();
    format!("{input}.{signature}")
}

fn rfc8410_private_der() -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode("MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp-K06_nwoy_HU--CXqI9EdVhC")
        .unwrap()
}

#[test]
fn hand_built_tokens_open() {
    // The helpers are faithful: a hand-built token of the right shape opens.
    let opened = hs256().open(COOKIE, &hs256_token(&header("HS256"), &claims()), t(NOW)).unwrap();
    assert_eq!(opened.record.data.get::<String>("k").unwrap().as_deref(), Some("v"));
    assert!(opens(&hs256(), &hs256_token(&json!({"alg": "HS256"}), &claims())), "typ is optional");
    assert!(opens(&eddsa_rfc8410(), &eddsa_token(&claims())));
}

#[test]
fn jwt_is_signed_not_encrypted() {
    let value = hs256().seal(COOKIE, &record()).unwrap();
    let payload = value.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["aud"], COOKIE);
    assert_eq!(claims["dat"]["user_id"], 42, "anyone with the cookie reads the data");
    assert_eq!(claims["exp"], NOW + IDLE as i64);
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(value.split('.').next().unwrap()).unwrap())
            .unwrap();
    assert_eq!(header, json!({"alg": "HS256", "typ": "JWT"}));
}

#[test]
fn jwt_row16_alg_none() {
    for alg in ["none", "None", "NONE", "nOnE"] {
        let unsigned = format!("{}.", signing_input(&header(alg), &claims()));
        let signed = hs256_token(&header(alg), &claims());
        for format in [hs256(), eddsa_rfc8410()] {
            assert!(!opens(&format, &unsigned), "{alg}, no signature");
            assert!(!opens(&format, &signed), "{alg}, with a valid HMAC");
        }
    }
}

#[test]
fn jwt_row16_hs256_token_to_an_eddsa_verifier() {
    // The classic confusion: HMAC keyed with the verifier's public key.
    let format = eddsa_rfc8410();
    let genuine = format.seal(COOKIE, &record()).unwrap();
    assert!(opens(&format, &genuine));
    let raw = ed25519_public(&rfc8410_private_der()[16..].try_into().unwrap());
    let spki = URL_SAFE_NO_PAD
        .decode("MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE")
        .unwrap();
    assert_eq!(&spki[12..], raw.as_slice(), "the RFC's public key");
    for secret in [&raw[..], &spki, RFC8410_PUBLIC_PEM.as_bytes()] {
        for alg in ["HS256", "EdDSA"] {
            let forged = hmac_token(256, secret, &header(alg), &claims());
            assert!(!opens(&format, &forged), "{alg} HMAC keyed with the public key");
        }
    }
    // And the other way round: an EdDSA token to the HS256 verifier.
    assert!(!opens(&hs256(), &genuine));
}

#[test]
fn jwt_row16_wrong_algorithm_in_header() {
    let secret = key(1);
    for (bits, alg) in [
        (384, "HS384"),
        (512, "HS512"),
        (256, "hs256"),
        (256, "HS256 "),
        (256, "RS256"),
        (256, "ES256"),
        (256, "PS256"),
    ] {
        let token = hmac_token(bits, secret.as_bytes(), &header(alg), &claims());
        assert!(!opens(&hs256(), &token), "{alg}");
    }
    // The signature is HS256 but the header says otherwise, or nothing.
    for header in [
        json!({"typ": "JWT"}),
        json!({"alg": null}),
        json!({"alg": 256}),
        json!({"alg": ["HS256"]}),
        json!([]),
    ] {
        assert!(!opens(&hs256(), &hs256_token(&header, &claims())), "{header}");
    }
}

#[test]
fn jwt_row17_missing_exp() {
    assert!(!opens(&hs256(), &hs256_token(&header("HS256"), &claims_without("exp"))));
}

#[test]
fn jwt_row17_string_typed_exp() {
    for exp in [
        json!((NOW + 60).to_string()),
        json!("never"),
        json!(""),
        json!(null),
        json!({}),
        json!([NOW + 60]),
    ] {
        let token = hs256_token(&header("HS256"), &claims_with("exp", exp.clone()));
        assert!(!opens(&hs256(), &token), "exp = {exp}");
    }
}

#[test]
fn jwt_row17_exp_minus_one_1e30_u64_max() {
    let huge: Value = serde_json::from_str("1e30").unwrap();
    for exp in [json!(-1), huge, json!(u64::MAX), json!(i64::MIN), json!(1.7e9), json!(f64::MAX)] {
        let claims = claims_with("exp", exp.clone());
        let tokens = [hs256_token(&header("HS256"), &claims), eddsa_token(&claims)];
        for (format, token) in [hs256(), eddsa_rfc8410()].iter().zip(&tokens) {
            assert!(!opens(format, token), "exp = {exp}");
            assert!(format.open(COOKIE, token, session_core::Timestamp::MAX).is_none());
            assert!(format.open(COOKIE, token, t(i64::MIN)).is_none());
        }
    }
}

#[test]
fn jwt_row17_expired() {
    let mut claims = claims();
    for (exp, valid) in [(NOW + 1, true), (NOW, false), (NOW - 1, false), (0, false)] {
        claims["exp"] = json!(exp);
        claims["idl"] = json!(exp);
        let token = hs256_token(&header("HS256"), &claims);
        assert_eq!(opens(&hs256(), &token), valid, "exp = now + {}", exp - NOW);
    }
    // Zero leeway on a genuine token too.
    let value = hs256().seal(COOKIE, &record()).unwrap();
    let deadline = NOW + IDLE as i64;
    assert!(hs256().open(COOKIE, &value, t(deadline - 1)).is_some());
    assert!(hs256().open(COOKIE, &value, t(deadline)).is_none());
}

#[test]
fn jwt_row17_exp_that_is_not_the_sealed_deadline() {
    for exp in [NOW + IDLE as i64 + 1, NOW + IDLE as i64 - 1, i64::MAX] {
        let token = hs256_token(&header("HS256"), &claims_with("exp", json!(exp)));
        assert!(!opens(&hs256(), &token), "exp = {exp}");
    }
}

#[test]
fn jwt_row17_future_nbf() {
    for (nbf, valid) in [
        (json!(NOW + 1), false),
        (json!(NOW + 3_600), false),
        (json!(NOW), true),
        (json!(NOW - 1), true),
        (json!("0"), false),
        (json!(u64::MAX), false),
    ] {
        let token = hs256_token(&header("HS256"), &claims_with("nbf", nbf.clone()));
        assert_eq!(opens(&hs256(), &token), valid, "nbf = {nbf}");
    }
}

#[test]
fn jwt_row17_iat_in_the_future_beyond_clock_skew() {
    for (iat, valid) in [(NOW + 60, true), (NOW + 61, false), (NOW + 100_000, false)] {
        let token = hs256_token(&header("HS256"), &claims_with("iat", json!(iat)));
        assert_eq!(opens(&hs256(), &token), valid, "iat = now + {}", iat - NOW);
    }
    assert!(!opens(&hs256(), &hs256_token(&header("HS256"), &claims_without("iat"))));
}

#[test]
fn jwt_row18_wrong_aud() {
    for aud in [
        json!("other"),
        json!("ID"),
        json!(""),
        json!(["id"]),
        json!(["other", "id"]),
        json!(null),
        json!(1),
    ] {
        let token = hs256_token(&header("HS256"), &claims_with("aud", aud.clone()));
        assert!(!opens(&hs256(), &token), "aud = {aud}");
    }
    assert!(!opens(&hs256(), &hs256_token(&header("HS256"), &claims_without("aud"))));
    // A genuine token for another cookie name.
    let other = hs256().seal("other", &record()).unwrap();
    assert!(!opens(&hs256(), &other));
}

#[test]
fn jwt_row18_jku_jwk_x5u_kid_headers_are_ignored() {
    let attacker = key(66);
    let attacker_jwk = json!({"kty": "oct", "k": b64(attacker.as_bytes()), "alg": "HS256"});
    let hostile = json!({
        "alg": "HS256",
        "typ": "JWT",
        "jku": "https://attacker.example/jwks.json",
        "x5u": "https://attacker.example/cert.pem",
        "kid": "attacker-key",
        "jwk": attacker_jwk,
    });
    // Signed by our key: the extra headers change nothing, it opens.
    assert!(opens(&hs256(), &hs256_token(&hostile, &claims())));
    // Signed by the key the headers point to: never used, so it does not open.
    let forged = hmac_token(256, attacker.as_bytes(), &hostile, &claims());
    assert!(!opens(&hs256(), &forged));
    for name in ["jku", "x5u", "kid"] {
        let only = json!({"alg": "HS256", name: "attacker"});
        assert!(
            !opens(&hs256(), &hmac_token(256, attacker.as_bytes(), &only, &claims())),
            "{name}"
        );
    }
}

#[test]
fn jwt_row18_embedded_jwk_is_ignored_by_eddsa() {
    // The attacker signs with their own Ed25519 key and embeds its public key.
    let attacker = eddsa(keyring(&[66]));
    let genuine_attack = attacker.seal(COOKIE, &record()).unwrap();
    let mut parts = genuine_attack.split('.');
    let (_, payload) = (parts.next(), parts.next().unwrap());
    let public = b64(ed25519_public(&[66; 32]));
    let header = json!({"alg": "EdDSA", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": public}});
    // Re-sign with the attacker's key through the library's signing helper.
    let input = format!("{}.{payload}", b64(header.to_string()));
    let signing = jsonwebtoken::EncodingKey::from_ed_der(&ed25519_pkcs8(&[66; 32]));
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), &signing, jsonwebtoken::Algorithm::EdDSA)
            .unwrap();
    let forged = format!("{input}.{signature}");
    assert!(opens(&eddsa(keyring(&[66])), &forged), "valid for the attacker's own key");
    assert!(!opens(&eddsa_rfc8410(), &forged), "our verifier ignores the embedded key");
}

#[test]
fn jwt_row18_two_and_four_part_tokens() {
    let token = hs256_token(&header("HS256"), &claims());
    let parts: Vec<&str> = token.split('.').collect();
    let malformed = [
        format!("{}.{}", parts[0], parts[1]),
        format!("{}.{}", parts[1], parts[2]),
        format!("{token}.{}", parts[2]),
        format!("{}.{token}", parts[0]),
        format!("{token}."),
        format!(".{token}"),
        format!("{}..{}", parts[0], parts[2]),
        format!("{}.{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[1], parts[2]),
        parts[1].to_owned(),
        format!("{}.{}.", parts[0], parts[1]),
    ];
    assert!(opens(&hs256(), &token));
    for value in malformed {
        assert!(!opens(&hs256(), &value), "{value}");
    }
}

#[test]
fn jwt_critical_header_extensions_are_refused() {
    let header = json!({"alg": "HS256", "crit": ["exp"], "exp": NOW});
    assert!(!opens(&hs256(), &hs256_token(&header, &claims())));
}

#[test]
fn jwt_claims_of_the_wrong_shape_with_a_valid_signature() {
    for claims in [
        json!([]),
        json!({}),
        json!("claims"),
        claims_with("dat", json!([1])),
        claims_with("lst", json!("now")),
        claims_without("idl"),
    ] {
        assert!(!opens(&hs256(), &hs256_token(&header("HS256"), &claims)), "{claims}");
    }
    let not_json = format!("{}.{}", b64(header("HS256").to_string()), b64("not json"));
    let tag = Hmac::<Sha256>::new_from_slice(key(1).as_bytes())
        .unwrap()
        .chain_update(&not_json)
        .finalize()
        .into_bytes();
    assert!(!opens(&hs256(), &format!("{not_json}.{}", b64(tag))));
}

#[test]
fn eddsa_keys_from_pem_der_and_rotation_through_verifying_keys() {
    let rfc = eddsa_rfc8410();
    let value = rfc.seal(COOKIE, &record()).unwrap();
    assert!(!rfc.open(COOKIE, &value, t(NOW)).unwrap().needs_reseal);

    // The same private key as DER.
    let der = rfc8410_private_der();
    assert_eq!(ed25519_pkcs8(&der[16..].try_into().unwrap()), der);
    assert!(opens(&JwtFormat::ed25519(&der, &[]).unwrap(), &value));

    // A new signing key, the RFC key kept as a fallback verifying key, in
    // each accepted encoding.
    let spki = URL_SAFE_NO_PAD
        .decode("MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE")
        .unwrap();
    let new_key = ed25519_pkcs8(&[5; 32]);
    for fallback in [RFC8410_PUBLIC_PEM.as_bytes(), &spki, &spki[12..]] {
        let rotated = JwtFormat::ed25519(&new_key, &[fallback]).unwrap();
        let opened = rotated.open(COOKIE, &value, t(NOW)).unwrap();
        assert!(opened.needs_reseal);
        let resealed = rotated.seal(COOKIE, &opened.record).unwrap();
        assert!(!rotated.open(COOKIE, &resealed, t(NOW)).unwrap().needs_reseal);
        assert!(!opens(&rfc, &resealed), "the old key does not verify the new one");
    }
    assert!(!opens(&JwtFormat::ed25519(&new_key, &[]).unwrap(), &value), "fallback removed");
}

#[test]
fn eddsa_signature_tampering_is_rejected() {
    let format = eddsa_rfc8410();
    let value = format.seal(COOKIE, &record()).unwrap();
    let (input, signature) = value.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
    for index in [0, 31, 32, 63] {
        bytes[index] ^= 1;
        assert!(!opens(&format, &format!("{input}.{}", b64(&bytes))), "byte {index}");
        bytes[index] ^= 1;
    }
    for short in [0, 32, 63] {
        assert!(!opens(&format, &format!("{input}.{}", b64(&bytes[..short]))), "{short} bytes");
    }
    assert!(!opens(&format, &format!("{input}.{}", b64([bytes.as_slice(), &[0]].concat()))));
}

/// An HS256 token whose header is exactly `header` (raw JSON text), signed
/// with key 1.
fn hs256_raw_header(header: &str, claims: &Value) -> String {
    let input = format!("{}.{}", b64(header), b64(claims.to_string()));
    let tag = Hmac::<Sha256>::new_from_slice(key(1).as_bytes())
        .unwrap()
        .chain_update(&input)
        .finalize()
        .into_bytes();
    format!("{input}.{}", b64(tag))
}

#[test]
fn headers_made_elsewhere_are_read_not_matched() {
    // Our own header is recognised as is; any other spelling is parsed.
    for (header, valid) in [
        (r#"{"typ":"JWT","alg":"HS256"}"#, true),
        (r#"{"alg":"HS256"}"#, true),
        (r#" { "alg" : "HS256" , "typ" : "JWT" } "#, true),
        (r#"{"alg":"HS\u0032\u00356"}"#, true),
        (r#"{"alg":"HS256","crit":null}"#, true),
        (r#"{"alg":"HS256","cty":"JWT","x5c":["AAAA"],"zip":"DEF","extra":{"a":[1]}}"#, true),
        (r#"{"alg":"HS256","crit":[]}"#, false),
        (r#"{"alg":"HS256","crit":"exp"}"#, false),
        (r#"{"alg":"HS256","alg":"HS256"}"#, false),
        (r#"{"alg":"none","alg":"HS256"}"#, false),
        (r#"{"alg":"HS256","alg":"none"}"#, false),
        (r#"["HS256"]"#, false),
        (r#"["HS256", null]"#, false),
        (r#""HS256""#, false),
        (r#"{"alg":"HS256""#, false),
        (r#"{"alg":"HS256"} x"#, false),
        ("", false),
        ("null", false),
    ] {
        let token = hs256_raw_header(header, &claims());
        assert_eq!(opens(&hs256(), &token), valid, "{header}");
    }
}

#[test]
fn sealed_values_are_standard_jwts() {
    // What we seal, `jsonwebtoken::decode` verifies and reads.
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_exp = false; // NOW is in the past
    validation.set_audience(&[COOKIE]);
    let value = hs256().seal(COOKIE, &record()).unwrap();
    let secret = jsonwebtoken::DecodingKey::from_secret(key(1).as_bytes());
    let data = jsonwebtoken::decode::<Value>(&value, &secret, &validation).unwrap();
    assert_eq!(data.header, jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256));
    assert_eq!(data.claims["dat"]["user_id"], 42);
    assert_eq!(data.claims["exp"], NOW + IDLE as i64);

    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.validate_exp = false;
    validation.set_audience(&[COOKIE]);
    let value = eddsa_rfc8410().seal(COOKIE, &record()).unwrap();
    let public = jsonwebtoken::DecodingKey::from_ed_der(&ed25519_public(
        &rfc8410_private_der()[16..].try_into().unwrap(),
    ));
    let data = jsonwebtoken::decode::<Value>(&value, &public, &validation).unwrap();
    assert_eq!(data.header, jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA));
    assert_eq!(data.claims["usr"], "alice@example.com");
}

#[test]
fn values_sealed_by_jsonwebtoken_open() {
    // And what `jsonwebtoken::encode` seals with the same claims opens here.
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims(),
        &jsonwebtoken::EncodingKey::from_secret(key(1).as_bytes()),
    )
    .unwrap();
    let opened = hs256().open(COOKIE, &hs, t(NOW)).unwrap();
    assert_eq!(opened.record.data.get::<String>("k").unwrap().as_deref(), Some("v"));

    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("ignored".to_owned());
    let ed = jsonwebtoken::encode(
        &header,
        &claims(),
        &jsonwebtoken::EncodingKey::from_ed_der(&rfc8410_private_der()),
    )
    .unwrap();
    assert!(opens(&eddsa_rfc8410(), &ed));
    assert!(!opens(&hs256(), &ed));
    assert!(!opens(&eddsa_rfc8410(), &hs));
}

//! `JsonCodec::decode` on arbitrary bytes (what a corrupt store row holds).
//!
//! Properties: decoding never panics (deep nesting included); decoded data
//! is marked unchanged; it encodes again, and that encoding decodes to the
//! same data (floats compared with a relative tolerance: serde_json's default
//! float parsing is not exactly round-trip).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use session_core::{Codec, JsonCodec};

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            _ if x == y => true,
            (Some(x), Some(y)) => {
                let difference = (x - y).abs();
                difference <= f64::EPSILON * 4.0 * x.abs().max(y.abs())
                    || difference <= f64::MIN_POSITIVE
            }
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(decoded) = JsonCodec.decode(data) else { return };
    assert!(!decoded.is_changed(), "decoded data starts unchanged");
    let encoded = match JsonCodec.encode(&decoded) {
        Ok(encoded) => encoded,
        Err(error) => panic!("decoded data does not encode: {error}"),
    };
    let again = match JsonCodec.decode(&encoded) {
        Ok(again) => again,
        Err(error) => panic!("our own encoding does not decode: {error}"),
    };
    assert_eq!(decoded.len(), again.len());
    for key in decoded.keys() {
        let (Some(a), Some(b)) = (decoded.get_value(key), again.get_value(key)) else {
            panic!("key {key:?} lost in the round trip");
        };
        assert!(same(a, b), "{key:?}: {a} != {b}");
    }
});

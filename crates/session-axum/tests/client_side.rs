//! Client-side sessions through the real layer: the whole session in the
//! cookie. `client_side_tests!(make_layer)` runs every scenario on one format;
//! the real formats (AEAD, Fernet, JWT, signed) run it behind their features.
#![allow(clippy::expect_used)] // Layers built from constant, valid configs.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use session_axum::core::{CookieFormat, Error, Opened, Record, Timestamp};

/// A deliberately simple format for testing the layer, not a secure one:
/// `<key>.<json>` where the JSON holds the cookie name and the record. "Keys"
/// are single characters; the first is the primary.
#[derive(Debug)]
struct TagFormat {
    keys: Vec<char>,
    opens: Arc<AtomicUsize>,
}

impl TagFormat {
    fn new(keys: &[char]) -> Self {
        Self { keys: keys.to_vec(), opens: Arc::default() }
    }
}

impl CookieFormat for TagFormat {
    fn seal(&self, cookie_name: &str, record: &Record) -> Result<String, Error> {
        let json = serde_json::to_string(&(cookie_name, record))?;
        // Cookie values cannot hold `"`, `,`, `;` or spaces; hex keeps it simple.
        let hex: String = json.bytes().map(|b| format!("{b:02x}")).collect();
        Ok(format!("{}.{hex}", self.keys[0]))
    }

    fn open(&self, cookie_name: &str, value: &str, now: Timestamp) -> Option<Opened> {
        self.opens.fetch_add(1, Ordering::SeqCst);
        let (key, hex) = value.split_once('.')?;
        let key = key.chars().next()?;
        let index = self.keys.iter().position(|k| *k == key)?;
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| hex.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
            .collect::<Option<_>>()?;
        let (name, record): (String, Record) = serde_json::from_slice(&bytes).ok()?;
        if name != cookie_name || record.is_expired(now) {
            return None;
        }
        Some(Opened { record, needs_reseal: index != 0 })
    }
}

/// Expands to one test per client-side scenario on the layer built by
/// `$make_layer(config)`.
#[macro_export]
macro_rules! client_side_tests {
    ($make_layer:path) => {
        mod client_side_tests {
            use std::time::Duration;

            use session_axum::core::{ExpiryPolicy, ManualClock};

            use super::*;
            use $crate::common::{app, config, send};

            #[tokio::test]
            async fn flash_messages_are_read_once_in_order() {
                $crate::common::flash_scenario(&app($make_layer(config()))).await;
            }

            #[tokio::test]
            async fn csrf_tokens_guard_unsafe_methods() {
                $crate::common::csrf_scenario(&app($make_layer(config()))).await;
            }

            #[tokio::test]
            async fn csrf_refusals_answer_the_configured_responder() {
                let config = config().with_error_responder($crate::common::CsrfPage);
                $crate::common::csrf_responder_scenario(&app($make_layer(config))).await;
            }

            #[tokio::test]
            async fn the_session_travels_in_a_secure_cookie() {
                let app = app($make_layer(config()));
                let reply = send(&app, "/set?v=hello", &[]).await;
                let set = reply.set_cookie().unwrap();
                for part in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
                    assert!(set.contains(part), "{set} lacks {part}");
                }
                let cookie = reply.cookie();
                assert_eq!(send(&app, "/get", &[&cookie]).await.body, "hello");
                // Reads within the touch interval do not reissue the cookie.
                assert_eq!(send(&app, "/get", &[&cookie]).await.set_cookie(), None);
                assert_eq!(send(&app, "/noop", &[]).await.set_cookie(), None);
                assert_eq!(send(&app, "/get", &[]).await.set_cookie(), None);
            }

            #[tokio::test]
            async fn a_tampered_cookie_is_no_session() {
                let app = app($make_layer(config()));
                let cookie = send(&app, "/set?v=mine", &[]).await.cookie();
                let mut bytes = cookie.into_bytes();
                let middle = bytes.len() / 2;
                bytes[middle] = if bytes[middle] == b'a' { b'b' } else { b'a' };
                let tampered = String::from_utf8(bytes).unwrap();
                let reply = send(&app, "/get", &[&tampered]).await;
                assert_eq!(reply.body, "none");
                assert!(reply.set_cookie().unwrap().contains("Max-Age=0"));
            }

            #[tokio::test]
            async fn hostile_cookie_headers_are_no_session() {
                let app = app($make_layer(config()));
                let huge = format!("id={}", "A".repeat(100 * 1024));
                let long = format!("id={}", "A".repeat(4096));
                for cookie in
                    ["id=!!!", "id=", "id", "id=%ZZ", "id=\"quoted\"", "id=é", &long, &huge]
                {
                    let reply = send(&app, "/get", &[cookie]).await;
                    assert_eq!(
                        (reply.status.as_u16(), reply.body.as_str()),
                        (200, "none"),
                        "{cookie:.30}"
                    );
                }
                let good = send(&app, "/set?v=ok", &[]).await.cookie();
                // Row 3: junk under the same name does not shadow the real value.
                assert_eq!(send(&app, "/get", &["id=!!!", "x=1", &good]).await.body, "ok");
            }

            #[tokio::test]
            async fn destroy_clears_the_cookie() {
                let app = app($make_layer(config()));
                let cookie = send(&app, "/set?v=bye", &[]).await.cookie();
                let set = send(&app, "/destroy", &[&cookie]).await.set_cookie().unwrap();
                assert!(set.contains("Max-Age=0"), "{set}");
            }

            #[tokio::test]
            async fn oversized_sessions_fail_and_keep_the_old_cookie() {
                let app = app($make_layer(config()));
                let cookie = send(&app, "/set?v=small", &[]).await.cookie();
                let reply = send(&app, "/big", &[&cookie]).await;
                assert_eq!(reply.status, 500);
                assert_eq!(reply.set_cookie(), None);
                assert_eq!(send(&app, "/get", &[&cookie]).await.body, "small");
                let just_over = format!("/set?v={}", "x".repeat(4000));
                assert_eq!(send(&app, &just_over, &[]).await.status, 500);
            }

            #[tokio::test]
            async fn server_errors_reissue_nothing() {
                let app = app($make_layer(config()));
                let reply = send(&app, "/fail", &[]).await;
                assert_eq!((reply.status.as_u16(), reply.set_cookie()), (500, None));
            }

            #[tokio::test]
            async fn idle_and_absolute_expiry_come_from_the_sealed_deadlines() {
                let clock = ManualClock::starting_now();
                let policy = ExpiryPolicy::default()
                    .with_idle_timeout(Duration::from_secs(600))
                    .with_absolute_timeout(Some(Duration::from_secs(1000)))
                    .with_touch_interval(Duration::from_secs(60));
                let app = app($make_layer(config().with_clock(clock.clone()).with_expiry(policy)));
                let first = send(&app, "/set?v=t", &[]).await.cookie();
                clock.advance(Duration::from_secs(500));
                let reply = send(&app, "/get", &[&first]).await;
                assert_eq!(reply.body, "t");
                let refreshed = reply.cookie();
                clock.advance(Duration::from_secs(200));
                assert_eq!(send(&app, "/get", &[&first]).await.body, "none", "old value idled out");
                assert_eq!(send(&app, "/get", &[&refreshed]).await.body, "t");
                clock.advance(Duration::from_secs(300));
                assert_eq!(
                    send(&app, "/get", &[&refreshed]).await.body,
                    "none",
                    "absolute deadline"
                );
            }

            #[tokio::test]
            async fn lock_is_last_writer_wins_but_sequential_requests_count() {
                let app = app($make_layer(config()));
                let mut cookie = send(&app, "/set?v=c", &[]).await.cookie();
                for expected in 1..=5 {
                    let reply = send(&app, "/incr", &[&cookie]).await;
                    assert_eq!(reply.body, expected.to_string());
                    cookie = reply.cookie();
                }
            }
        }
    };
}

fn tag_layer(config: session_axum::SessionConfig) -> session_axum::SessionLayer {
    session_axum::SessionLayer::client_side(TagFormat::new(&['a']))
        .with_config(config)
        .expect("a valid session config")
}

client_side_tests!(tag_layer);

#[tokio::test]
async fn values_from_a_fallback_key_are_resealed_with_the_primary() {
    let old = common::app(session_axum::SessionLayer::client_side(TagFormat::new(&['a'])));
    let cookie = common::send(&old, "/set?v=rotated", &[]).await.cookie();
    assert!(cookie.starts_with("id=a."));

    let rotated = common::app(session_axum::SessionLayer::client_side(TagFormat::new(&['b', 'a'])));
    let reply = common::send(&rotated, "/get", &[&cookie]).await;
    assert_eq!(reply.body, "rotated");
    let resealed = reply.cookie();
    assert!(resealed.starts_with("id=b."), "{resealed}");

    let dropped = common::app(session_axum::SessionLayer::client_side(TagFormat::new(&['b'])));
    assert_eq!(common::send(&dropped, "/get", &[&cookie]).await.body, "none");
    assert_eq!(common::send(&dropped, "/get", &[&resealed]).await.body, "rotated");
}

#[tokio::test]
async fn oversized_incoming_cookies_are_never_opened() {
    let format = TagFormat::new(&['a']);
    let opens = Arc::clone(&format.opens);
    let app = common::app(session_axum::SessionLayer::client_side(format));
    for size in [4096, 100 * 1024, 1024 * 1024] {
        let cookie = format!("id=a.{}", "0".repeat(size));
        assert_eq!(common::send(&app, "/get", &[&cookie]).await.body, "none");
    }
    assert_eq!(opens.load(Ordering::SeqCst), 0);
}

/// The real formats, each with a fresh random key.
#[cfg(any(
    feature = "cookie-aead",
    feature = "cookie-fernet",
    feature = "cookie-jwt",
    feature = "cookie-signed"
))]
mod formats {
    use session_axum::cookie_store::{Key, Keyring};
    use session_axum::{SessionConfig, SessionLayer};

    fn keyring() -> Keyring {
        Keyring::new(Key::generate())
    }

    #[cfg(feature = "cookie-aead")]
    mod aead {
        use super::*;

        fn layer(config: SessionConfig) -> SessionLayer {
            let format = session_axum::cookie_store::AeadFormat::new(keyring());
            SessionLayer::client_side(format).with_config(config).expect("a valid session config")
        }

        crate::client_side_tests!(layer);
    }

    #[cfg(feature = "cookie-fernet")]
    mod fernet {
        use super::*;

        fn layer(config: SessionConfig) -> SessionLayer {
            let format = session_axum::cookie_store::FernetFormat::new(keyring());
            SessionLayer::client_side(format).with_config(config).expect("a valid session config")
        }

        crate::client_side_tests!(layer);
    }

    #[cfg(feature = "cookie-jwt")]
    mod jwt {
        use super::*;

        fn layer(config: SessionConfig) -> SessionLayer {
            let format = session_axum::cookie_store::JwtFormat::hs256(keyring());
            SessionLayer::client_side(format).with_config(config).expect("a valid session config")
        }

        crate::client_side_tests!(layer);
    }

    #[cfg(feature = "cookie-signed")]
    mod signed {
        use super::*;

        fn layer(config: SessionConfig) -> SessionLayer {
            let format = session_axum::cookie_store::SignedFormat::new(keyring());
            SessionLayer::client_side(format).with_config(config).expect("a valid session config")
        }

        crate::client_side_tests!(layer);
    }
}

//! A real Redis killed under the layer, before and during requests: every
//! request gets the error response (never a 500, never a fresh session that
//! would overwrite the user's data), and the same app serves again once Redis
//! is back, with the session intact.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers.

mod common;

use std::time::Duration;

use common::{app, config, send};
use http::StatusCode;
use session_axum::SessionLayer;
use session_axum::core::LockOptions;
use session_axum::redis::RedisStore;
// The private `redis-server` of the Redis store's own fault tests.
use session_stores_redis::testing as redis_server;

/// Requests until one succeeds, at most `attempts`: the first request on a
/// connection Redis dropped may fail once before the pool reconnects.
async fn first_success(app: &axum::Router, path: &str, cookie: &str, attempts: usize) -> String {
    for _ in 0..attempts {
        let reply = send(app, path, &[cookie]).await;
        if reply.status == StatusCode::OK {
            return reply.body;
        }
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} did not succeed again after Redis came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_mid_run_gives_503_and_recovers_with_the_data() {
    let mut redis = redis_server::PrivateRedis::start_durable();
    let store = RedisStore::from_url(&redis.url())
        .unwrap()
        .with_connect_timeout(Duration::from_millis(500));
    // A lock taken just before the kill survives in the durable Redis until
    // its lease ends (that is the design: a crashed holder's lock expires);
    // a short lease keeps this test quick.
    let locks = LockOptions { lease: Duration::from_secs(1), wait_timeout: Duration::from_secs(2) };
    let app = app(SessionLayer::new(store)
        .with_config(config().with_lock_options(locks))
        .expect("a valid session config"));
    let cookie = send(&app, "/set?v=precious", &[]).await.cookie();
    for expected in 1..=3 {
        assert_eq!(send(&app, "/incr", &[&cookie]).await.body, expected.to_string());
    }

    // Killed while requests are in flight: each gets 200 or 503, nothing else.
    let mut in_flight = Vec::new();
    for round in 0..40 {
        if round == 20 {
            redis.kill();
        }
        let (app, cookie) = (app.clone(), cookie.clone());
        in_flight.push(tokio::spawn(async move { send(&app, "/incr", &[&cookie]).await }));
    }
    let mut counted = 0;
    for request in in_flight {
        let reply = request.await.unwrap();
        match reply.status {
            StatusCode::OK => counted += 1,
            StatusCode::SERVICE_UNAVAILABLE => assert_eq!(reply.set_cookie(), None),
            other => panic!("got {other} while Redis died: {}", reply.body),
        }
    }

    // Down: every operation is the error response, and nothing is handed a
    // fresh session in place of the real one.
    for path in ["/get", "/set?v=overwritten", "/incr", "/cycle", "/destroy"] {
        let reply = send(&app, path, &[&cookie]).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {}", reply.body);
        assert_eq!(reply.set_cookie(), None, "{path}");
    }
    let reply = send(&app, "/set?v=new", &[]).await;
    assert_eq!((reply.status, reply.set_cookie()), (StatusCode::SERVICE_UNAVAILABLE, None));

    // Back: the same app, store and pool serve again, and the session is the
    // user's, with every increment that was acknowledged.
    redis.start_again();
    assert_eq!(first_success(&app, "/get", &cookie, 50).await, "precious");
    let after: u64 = first_success(&app, "/incr", &cookie, 50).await.parse().unwrap();
    // An increment can land while its reply is lost in the crash, never the reverse.
    assert!(after > 3 + counted, "{after} <= 3 + {counted} acknowledged increments + 1");
    assert!(after <= 3 + 40 + 1, "{after}");
}

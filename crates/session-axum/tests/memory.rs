//! The HTTP scenarios on the memory store, plus layer behaviour that does not
//! depend on the store.
#![allow(clippy::expect_used, clippy::unwrap_used)] // Layers built from constant, valid configs; test set-up.

mod common;

use axum::Router;
use axum::routing::get;
use session_axum::memory::MemoryStore;
use session_axum::{Session, SessionKind};

async fn make_store() -> MemoryStore {
    MemoryStore::new()
}

route_tests!(make_store);
race_tests!(make_store);

struct Admin;

impl SessionKind for Admin {
    const NAME: &'static str = "admin";
}

#[tokio::test]
async fn missing_layer_is_a_500_naming_it() {
    let app = Router::new().route("/", get(|_: Session<Admin>| async { "unreachable" }));
    let reply = common::send(&app, "/", &[]).await;
    assert_eq!(reply.status, 500);
    assert!(reply.body.contains("`admin`"), "{}", reply.body);
    assert!(reply.body.contains("SessionLayer"), "{}", reply.body);
}

/// Every extractor that needs the session layer answers a route without it
/// the same way: a 500 naming the layer and the session kind.
#[tokio::test]
async fn every_extractor_without_the_layer_is_the_same_500() {
    use session_axum::csrf::CsrfToken;
    use session_axum::flash::Flash;
    let app = Router::new()
        .route("/session", get(|_: Session| async { "unreachable" }))
        .route("/flash", get(|_: Flash| async { "unreachable" }))
        .route("/csrf", get(|_: CsrfToken| async { "unreachable" }));
    for path in ["/session", "/flash", "/csrf"] {
        let reply = common::send(&app, path, &[]).await;
        assert_eq!(reply.status, 500, "{path}");
        assert!(reply.body.contains("SessionLayer"), "{path}: {}", reply.body);
        assert!(reply.body.contains("`default`"), "{path}: {}", reply.body);
    }
}

/// The wire client reaches an app served on a real socket: a fresh session
/// comes back with its cookie, and the cookie carries it to the next request.
#[tokio::test]
async fn the_wire_client_carries_a_session_over_a_real_socket() {
    use std::time::Duration;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let layer =
        session_axum::SessionLayer::new(MemoryStore::new()).with_config(common::config()).unwrap();
    tokio::spawn(async move { axum::serve(listener, common::app(layer)).await });
    let mut client = common::wire::WireClient::new(port, Duration::from_secs(10));
    let first = client.get("/incr", None).await.unwrap();
    assert_eq!(first.status, http::StatusCode::OK);
    let cookie = first.cookies.first().expect("a session cookie").clone();
    let second = client.get("/incr", Some(&cookie)).await.unwrap();
    assert_eq!((first.body.as_str(), second.body.as_str()), ("1", "2"));
}

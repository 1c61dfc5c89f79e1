//! The HTTP scenarios on the memory store, plus layer behaviour that does not
//! depend on the store.
#![allow(clippy::expect_used)] // Layers built from constant, valid configs.

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

#[tokio::test]
async fn optional_session_is_none_without_the_layer() {
    let app =
        Router::new().route(
            "/",
            get(|session: Option<Session>| async move {
                if session.is_some() { "some" } else { "none" }
            }),
        );
    assert_eq!(common::send(&app, "/", &[]).await.body, "none");
}

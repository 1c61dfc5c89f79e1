//! The auth scenarios on the memory store, plus auth behaviour that does not
//! depend on the store.

mod auth_common;

use axum::Router;
use axum::routing::get;
use session_axum::memory::MemoryStore;
use session_axum::{CurrentUser, SessionLayer};

use auth_common::{TestUser, send};

async fn make_store() -> MemoryStore {
    MemoryStore::new()
}

auth_tests!(make_store);

#[tokio::test]
async fn missing_auth_layer_is_a_500_naming_it() {
    let app = Router::new()
        .route("/", get(|user: CurrentUser<TestUser>| async move { user.name.clone() }))
        .layer(SessionLayer::new(MemoryStore::new()));
    let reply = send(&app, "/", &[]).await;
    assert_eq!(reply.status, 500);
    assert!(reply.body.contains("TestUser"), "{}", reply.body);
    assert!(reply.body.contains("AuthLayer"), "{}", reply.body);
}

#[tokio::test]
async fn missing_session_layer_is_a_500_naming_it() {
    let app = Router::new()
        .route("/", get(|user: CurrentUser<TestUser>| async move { user.name.clone() }))
        .layer(session_axum::AuthLayer::new(auth_common::TestUsers::default()));
    let reply = send(&app, "/", &[]).await;
    assert_eq!(reply.status, 500);
    assert!(reply.body.contains("SessionLayer"), "{}", reply.body);
}

#[tokio::test]
async fn optional_current_user_is_none_without_the_layers() {
    let app = Router::new().route(
        "/",
        get(|user: Option<CurrentUser<TestUser>>| async move {
            if user.is_some() { "some" } else { "none" }
        }),
    );
    assert_eq!(send(&app, "/", &[]).await.body, "none");
}

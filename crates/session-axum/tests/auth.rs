//! The auth scenarios on the memory store, plus auth behaviour that does not
//! depend on the store. Redis and Postgres come from `REDIS_URL` /
//! `DATABASE_URL`, which `cargo xtask test` sets.

#![allow(clippy::expect_used)] // Store constructors in test helpers.

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

/// The URL of a service that `cargo xtask test` starts; the test fails
/// (never skips) without it.
#[cfg(any(feature = "redis", feature = "postgres"))]
fn service_url(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!("{variable} is not set: run the tests with `cargo xtask test`, which starts the services")
    })
}

/// A directory that outlives the test process's stores (removed by the OS
/// temp cleanup, not by us: stores may still be writing when a test ends).
#[cfg(any(feature = "sqlite", feature = "fs"))]
fn scratch_dir() -> std::path::PathBuf {
    tempfile::tempdir().expect("a temporary directory").keep()
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use session_axum::sqlite::SqliteStore;

    async fn make_store() -> SqliteStore {
        let path = crate::scratch_dir().join("sessions.sqlite3");
        SqliteStore::open(path).await.expect("a SQLite store")
    }

    crate::auth_tests!(make_store);
}

#[cfg(feature = "redis")]
mod redis {
    use session_axum::core::SessionId;
    use session_axum::redis::RedisStore;

    async fn make_store() -> RedisStore {
        let url = crate::service_url("REDIS_URL");
        let prefix = format!("auth-tests:{}:", SessionId::random().expose());
        RedisStore::from_url(&url).expect("a Redis store").with_prefix(prefix)
    }

    crate::auth_tests!(make_store);
}

#[cfg(feature = "postgres")]
mod postgres {
    use session_axum::postgres::{PgPool, PostgresStore};

    async fn make_store() -> PostgresStore {
        let url = crate::service_url("DATABASE_URL");
        let pool = PgPool::connect(&url).await.expect("a Postgres pool");
        // One table for every run: users and session ids are random per test.
        let store = PostgresStore::new(pool).with_table_name("axum_auth_tests").expect("a name");
        store.migrate().await.expect("migrations");
        store
    }

    crate::auth_tests!(make_store);
}

#[cfg(feature = "fs")]
mod fs {
    use session_axum::fs::FsStore;

    async fn make_store() -> FsStore {
        FsStore::new(crate::scratch_dir().join("sessions")).expect("a filesystem store")
    }

    crate::auth_tests!(make_store);
}

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

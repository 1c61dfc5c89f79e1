//! Shared helpers for the MySQL tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // Test helpers: a failure is a test failure.

use std::time::Duration;

use session_core::testing::Backend;
use session_core::{ExpiryPolicy, Record, SessionId, StorageKey};
use session_stores_mysql::{MySqlPool, MySqlPoolOptions, MySqlStore};

/// The test database, from `MYSQL_URL`. Never skips: without it, fail.
pub fn mysql_url() -> String {
    match std::env::var("MYSQL_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "MYSQL_URL is not set. These tests need a real MySQL or MariaDB server: run them \
             with `cargo xtask test`, which starts MariaDB and sets MYSQL_URL."
        ),
    }
}

/// A fresh table name, so tests can run in parallel and repeatedly.
pub fn random_table() -> String {
    format!("test_sessions_{}", &SessionId::random().storage_key().to_hex()[..16])
}

/// `table` quoted for raw SQL in tests.
pub fn quoted(table: &str) -> String {
    table.split('.').map(|part| format!("`{part}`")).collect::<Vec<_>>().join(".")
}

/// A small pool on the test database (the server is shared; keep it lean).
pub async fn pool(max_connections: u32) -> MySqlPool {
    MySqlPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&mysql_url())
        .await
        .unwrap_or_else(|e| panic!("connecting to MYSQL_URL: {e}"))
}

/// A store on `pool` with its own migrated table.
pub async fn store_on(pool: MySqlPool, table: &str) -> MySqlStore {
    let store =
        MySqlStore::new(pool).with_table_name(table).unwrap_or_else(|e| panic!("table name: {e}"));
    store.migrate().await.unwrap_or_else(|e| panic!("migrate: {e}"));
    store
}

/// A store on a fresh pool and a fresh table.
pub async fn fresh_store() -> MySqlStore {
    store_on(pool(4).await, &random_table()).await
}

/// Two stores, each with its own pool, on one fresh table: two processes
/// sharing sessions.
pub async fn two_stores() -> (MySqlStore, MySqlStore) {
    let table = random_table();
    let store = store_on(pool(4).await, &table).await;
    (store, store_on(pool(4).await, &table).await)
}

/// [`two_stores`] for the conformance suite.
pub async fn backend() -> Backend {
    let (store, other) = two_stores().await;
    Backend::new(store, other)
}

/// A fresh session record with a ten-minute idle timeout.
pub fn record(now: session_core::Timestamp) -> Record {
    ExpiryPolicy::default()
        .with_idle_timeout(Duration::from_secs(600))
        .new_record(SessionId::random().storage_key(), now)
}

/// The server's id of the connection holding the lock of `key` in `store`'s
/// table, if any.
pub async fn lock_holder(store: &MySqlStore, key: &StorageKey) -> Option<i64> {
    sqlx::query_scalar("SELECT IS_USED_LOCK(?)")
        .bind(store.lock_name(key))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// Ends connection `id` in the server, as a failover or a network cut would.
pub async fn kill_connection(id: i64) {
    let admin = pool(1).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("KILL CONNECTION {id}")))
        .execute(&admin)
        .await
        .unwrap_or_else(|e| panic!("KILL CONNECTION {id}: {e}"));
}

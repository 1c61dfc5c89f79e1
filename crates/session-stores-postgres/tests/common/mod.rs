//! Shared helpers for the PostgreSQL tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use session_core::SessionId;
use session_core::testing::Backend;
use session_stores_postgres::{PgPool, PgPoolOptions, PostgresStore};

/// The test database, from `DATABASE_URL`. Never skips: without it, fail.
pub fn database_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "DATABASE_URL is not set. These tests need a real PostgreSQL server: \
             run them with `cargo xtask test`, which starts one and sets DATABASE_URL."
        ),
    }
}

/// The schema holding every test table, so the shared database stays tidy:
/// `DROP SCHEMA session_tests CASCADE` removes them all.
pub const SCHEMA: &str = "session_tests";

/// A fresh, schema-qualified table name, so tests can run in parallel and
/// repeatedly.
pub fn random_table() -> String {
    format!("{SCHEMA}.{}", random_plain_table())
}

/// A fresh unqualified table name.
pub fn random_plain_table() -> String {
    format!("test_sessions_{}", &SessionId::random().storage_key().to_hex()[..16])
}

/// `schema.table` quoted for raw SQL in tests.
pub fn quoted(table: &str) -> String {
    table.split('.').map(|part| format!("\"{part}\"")).collect::<Vec<_>>().join(".")
}

/// Creates [`SCHEMA`] if needed. Concurrent tests may race to create it, so
/// they take turns under an advisory lock.
pub async fn ensure_schema(pool: &PgPool) {
    let run = async {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(7171717171)").execute(&mut *tx).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {SCHEMA}")))
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    };
    run.await.unwrap_or_else(|e: sqlx::Error| panic!("creating schema {SCHEMA}: {e}"));
}

/// A small pool on the test database (the server is shared; keep it lean).
pub async fn pool(max_connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&database_url())
        .await
        .unwrap_or_else(|e| panic!("connecting to DATABASE_URL: {e}"))
}

/// A store on `pool` with its own migrated table.
pub async fn store_on(pool: PgPool, table: &str) -> PostgresStore {
    if table.starts_with(&format!("{SCHEMA}.")) {
        ensure_schema(&pool).await;
    }
    let store = PostgresStore::new(pool)
        .with_table_name(table)
        .unwrap_or_else(|e| panic!("table name: {e}"));
    store.migrate().await.unwrap_or_else(|e| panic!("migrate: {e}"));
    store
}

/// A store on a fresh pool and a fresh table.
pub async fn fresh_store() -> PostgresStore {
    store_on(pool(4).await, &random_table()).await
}

/// Two stores, each with its own pool, on one fresh table: two processes
/// sharing sessions.
pub async fn two_stores() -> (PostgresStore, PostgresStore) {
    let table = random_table();
    let store = store_on(pool(4).await, &table).await;
    (store, store_on(pool(4).await, &table).await)
}

/// [`two_stores`] for the conformance suite.
pub async fn backend() -> Backend {
    let (store, other) = two_stores().await;
    Backend::new(store, other)
}

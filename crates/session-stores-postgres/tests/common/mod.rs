//! Shared helpers for the PostgreSQL tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // Test helpers: a failure is a test failure.

use std::time::Duration;

use session_core::testing::Backend;
use session_core::{
    ExpiryPolicy, LockOptions, LockingStore, Record, SessionId, SessionStore, Timestamp,
};
use session_stores_postgres::{LockMode, PgConnectOptions, PgPool, PgPoolOptions, PostgresStore};

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
    // One simple query (one implicit transaction, no prepared statement), so
    // it is safe through PgBouncer's transaction pooling too.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SELECT pg_advisory_xact_lock(7171717171); CREATE SCHEMA IF NOT EXISTS {SCHEMA}"
    )))
    .execute(pool)
    .await
    .unwrap_or_else(|e| panic!("creating schema {SCHEMA}: {e}"));
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

/// PgBouncer in transaction pooling mode in front of the test database, from
/// `PGBOUNCER_URL`. Never skips: without it, fail.
pub fn pgbouncer_url() -> String {
    match std::env::var("PGBOUNCER_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "PGBOUNCER_URL is not set. These tests need a real PgBouncer in transaction pooling \
             mode in front of the test PostgreSQL: run them with `cargo xtask test`, or set \
             PGBOUNCER_URL=postgres://postgres@127.0.0.1:PORT/sessions."
        ),
    }
}

/// Connect options for PgBouncer: without sqlx's `extra_float_digits`
/// startup parameter, which PgBouncer refuses unless told to ignore it.
pub fn pgbouncer_options() -> PgConnectOptions {
    pgbouncer_url()
        .parse::<PgConnectOptions>()
        .unwrap_or_else(|e| panic!("PGBOUNCER_URL: {e}"))
        .extra_float_digits(None)
}

/// A pool of up to `max_connections` client connections to PgBouncer (which
/// shares a few server connections among all of them).
pub async fn pgbouncer_pool(max_connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(pgbouncer_options())
        .await
        .unwrap_or_else(|e| panic!("connecting to PGBOUNCER_URL: {e}"))
}

/// A lease-mode store on `pool` with its own migrated table (migrated
/// through `pool`, so through PgBouncer when `pool` goes there).
pub async fn lease_store_on(pool: PgPool, table: &str) -> PostgresStore {
    if table.starts_with(&format!("{SCHEMA}.")) {
        ensure_schema(&pool).await;
    }
    let store = PostgresStore::new(pool)
        .with_table_name(table)
        .unwrap_or_else(|e| panic!("table name: {e}"))
        .with_lock_mode(LockMode::Lease);
    store.migrate().await.unwrap_or_else(|e| panic!("migrate: {e}"));
    store
}

/// Two lease-mode stores straight on PostgreSQL, each with its own pool, on
/// one fresh table, for the conformance suite.
pub async fn lease_backend() -> Backend {
    let table = random_table();
    let store = lease_store_on(pool(4).await, &table).await;
    Backend::new(store, lease_store_on(pool(4).await, &table).await)
}

/// Two lease-mode stores through PgBouncer, each with its own pool, on one
/// fresh table, for the conformance suite.
pub async fn lease_pgbouncer_backend() -> Backend {
    let (store, other) = two_lease_pgbouncer_stores(4).await;
    Backend::new(store, other)
}

/// Two lease-mode stores through PgBouncer, each with a pool of
/// `connections`, on one fresh table: two processes behind one PgBouncer.
pub async fn two_lease_pgbouncer_stores(connections: u32) -> (PostgresStore, PostgresStore) {
    let table = random_table();
    let store = lease_store_on(pgbouncer_pool(connections).await, &table).await;
    (store, lease_store_on(pgbouncer_pool(connections).await, &table).await)
}

/// `<table>_leases`, quoted for raw SQL in tests.
pub fn quoted_leases(table: &str) -> String {
    quoted(&format!("{table}_leases"))
}

/// A fresh session record with a ten-minute idle timeout.
pub fn record(now: Timestamp) -> Record {
    ExpiryPolicy::default()
        .with_idle_timeout(Duration::from_secs(600))
        .new_record(SessionId::random().storage_key(), now)
}

/// `sessions` sessions locked at once through `store`, each held across an
/// await for `hold` (as a handler does, so lock holders take the pool's
/// connections at once), then saved and released: afterwards `other` finds
/// every one saved and can lock it within `relock`.
pub async fn many_locked_at_once(
    store: &PostgresStore,
    other: &PostgresStore,
    sessions: usize,
    hold: Duration,
    relock: LockOptions,
) {
    let now = Timestamp::now();
    let mut keys = Vec::new();
    for _ in 0..sessions {
        let r = record(now);
        store.create(&r).await.unwrap();
        keys.push(r.key);
    }
    let wait =
        LockOptions { lease: Duration::from_secs(30), wait_timeout: Duration::from_secs(60) };
    let tasks: Vec<_> = keys
        .iter()
        .map(|&key| {
            let store = store.clone();
            tokio::spawn(async move {
                let (guard, loaded) = store.lock_and_load(&key, wait, now).await.unwrap();
                let mut loaded = loaded.unwrap();
                tokio::time::sleep(hold).await;
                loaded.data.insert("n", 1).unwrap();
                loaded.version += 1;
                store.save_and_release(&loaded, guard).await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    for key in &keys {
        let loaded = other.load(key, now).await.unwrap().unwrap();
        assert_eq!((loaded.data.get::<u64>("n").unwrap(), loaded.version), (Some(1), 1));
        other.lock(key, relock).await.unwrap().release().await.unwrap();
    }
}

//! hostile-input row 22: PostgreSQL goes away mid-run and comes back.
//!
//! Runs its own private cluster (`testing::PrivatePostgres`: initdb + pg_ctl
//! in a temporary directory on a free port, as the unprivileged `postgres` OS
//! user when running as root), so killing it disturbs no one else. Needs the
//! PostgreSQL server binaries (`cargo xtask test` installs them).

#![allow(clippy::unwrap_used)] // Test set-up outside #[test] functions.

mod common;

use std::time::Duration;

use session_core::{
    Error, ExpiryPolicy, LockOptions, LockingStore, SessionId, SessionStore, Timestamp,
};
use session_stores_postgres::testing::PrivatePostgres;
use session_stores_postgres::{PgPoolOptions, PostgresStore};

fn assert_unavailable<T: std::fmt::Debug>(what: &str, result: Result<T, Error>) {
    match result {
        Err(Error::Backend { store, .. }) => assert_eq!(store, "postgres", "{what}"),
        other => panic!("{what} with the database down: expected Error::Backend, got {other:?}"),
    }
}

/// A migrated store on a fresh table of `cluster`, with a small pool whose
/// acquire timeout keeps calls short while the server is down.
async fn store_on(cluster: &PrivatePostgres, connections: u32) -> PostgresStore {
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_millis(500))
        .connect(&cluster.url())
        .await
        .unwrap();
    let store = PostgresStore::new(pool).with_table_name(&common::random_plain_table()).unwrap();
    store.migrate().await.unwrap();
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_fails_cleanly_while_postgres_is_down_and_recovers_after() {
    let cluster = tokio::task::spawn_blocking(PrivatePostgres::start).await.unwrap();
    let store = store_on(&cluster, 3).await;

    let now = Timestamp::now();
    let policy = ExpiryPolicy::default();
    let mut record = policy.new_record(SessionId::random().storage_key(), now);
    record.data.insert("kept", "yes").unwrap();
    store.create(&record).await.unwrap();
    let options =
        LockOptions { lease: Duration::from_secs(30), wait_timeout: Duration::from_secs(10) };
    // A lock held across the outage: its connection dies with the server.
    let held = store.lock(&record.key, options).await.unwrap();

    let mut cluster = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        cluster.kill();
        cluster
    })
    .await
    .unwrap();

    assert_unavailable("load", store.load(&record.key, now).await);
    assert_unavailable("save", store.save(&record).await);
    assert_unavailable("touch", store.touch(&record).await);
    assert_unavailable("delete", store.delete(&record.key).await);
    let fresh = policy.new_record(SessionId::random().storage_key(), now);
    assert_unavailable("create", store.create(&fresh).await);
    assert_unavailable("delete_expired", store.delete_expired(now).await);
    assert_unavailable("list_for_user", store.list_for_user("u", now).await);
    assert_unavailable("lock", store.lock(&fresh.key, options).await);
    assert_unavailable("migrate", store.migrate().await);
    assert_unavailable("release of a lock whose server died", held.release().await);

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start_again();
        cluster
    })
    .await
    .unwrap();

    // The same store and pool work again, and nothing was lost.
    let loaded = store.load(&record.key, now).await.unwrap().unwrap();
    assert_eq!(loaded.data.get::<String>("kept").unwrap().as_deref(), Some("yes"));
    let guard = store.lock(&record.key, options).await.unwrap();
    guard.release().await.unwrap();
    store.save(&loaded).await.unwrap();
    store.create(&fresh).await.unwrap();
    drop(cluster);
}

/// With `fsync` on, every save that returned before a SIGKILL of the server
/// is there after crash recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_cluster_keeps_every_acknowledged_save_across_a_kill() {
    let cluster = tokio::task::spawn_blocking(PrivatePostgres::start_durable).await.unwrap();
    let store = store_on(&cluster, 2).await;
    let now = Timestamp::now();
    let mut record = ExpiryPolicy::default().new_record(SessionId::random().storage_key(), now);
    store.create(&record).await.unwrap();
    for n in 1..=50_u64 {
        record.data.insert("n", n).unwrap();
        store.save(&record).await.unwrap();
    }

    let cluster = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        cluster.kill();
        cluster.start_again();
        cluster
    })
    .await
    .unwrap();

    // The pool's connections died with the server: the first use may fail.
    let mut loaded = None;
    for _ in 0..20 {
        if let Ok(found) = store.load(&record.key, now).await {
            loaded = found;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let loaded = loaded.expect("the session survives the crash");
    assert_eq!(loaded.data.get::<u64>("n").unwrap(), Some(50));
    drop(cluster);
}

//! SQLite-specific behaviour: opening files, corrupt rows, table names,
//! stores sharing a file, batched cleanup and the cleanup task.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TempStore;
use session_core::testing::{DynStore, concurrent_increments};
use session_core::{
    Clock, Error, ExpiryPolicy, LockOptions, LockingStore, ManualClock, Record, SessionId,
    SessionStore, Timestamp,
};
use session_stores_sqlite::{SpawnCleanup, SqlitePool, SqlitePoolOptions, SqliteStore};
use sqlx::AssertSqlSafe;

fn policy() -> ExpiryPolicy {
    ExpiryPolicy::default().with_idle_timeout(Duration::from_secs(600))
}

fn record(now: Timestamp) -> Record {
    policy().new_record(SessionId::random().storage_key(), now)
}

#[tokio::test]
async fn open_creates_the_file_and_sessions_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    assert!(!path.exists());
    let store = SqliteStore::open(&path).await.unwrap();
    assert!(path.exists(), "open created the file");

    let now = Timestamp::now();
    let mut r = record(now);
    r.data.insert("kept", true).unwrap();
    store.create(&r).await.unwrap();
    store.pool().close().await;
    drop(store);

    let reopened = SqliteStore::open(&path).await.unwrap();
    let loaded = reopened.load(&r.key, now).await.unwrap().unwrap();
    assert_eq!(loaded.data.get::<bool>("kept").unwrap(), Some(true));
}

#[tokio::test]
async fn open_fails_cleanly_without_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    match SqliteStore::open(dir.path().join("missing").join("s.db")).await {
        Err(Error::Backend { store, .. }) => assert_eq!(store, "sqlite"),
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[tokio::test]
async fn corrupt_rows_load_as_absent_and_spare_their_neighbours() {
    let temp = TempStore::new().await;
    let store = &temp.store;
    let now = Timestamp::now();
    let user = format!("user-{}", SessionId::random().storage_key());
    let mut records = vec![record(now), record(now), record(now), record(now)];
    for r in &mut records {
        r.user = Some(user.clone());
        r.data.insert("n", 1).unwrap();
        store.create(r).await.unwrap();
    }
    let table = store.table_name();
    let corruptions = ["data = '{\"n\": 1, \"trunc'", "data = X'FF00FE'", "expiry = 'not json'"];
    for (r, set) in records.iter().zip(corruptions) {
        sqlx::query(AssertSqlSafe(format!("UPDATE \"{table}\" SET {set} WHERE session_key = ?1")))
            .bind(r.key.as_bytes().as_slice())
            .execute(store.pool())
            .await
            .unwrap();
    }
    let good = &records[3];
    for r in &records[..3] {
        assert!(store.load(&r.key, now).await.unwrap().is_none());
    }
    let loaded = store.load(&good.key, now).await.unwrap().unwrap();
    assert_eq!(loaded.data.get::<u64>("n").unwrap(), Some(1));
    let listed = store.list_for_user(&user, now).await.unwrap();
    assert_eq!(listed.iter().map(|r| r.key).collect::<Vec<_>>(), vec![good.key]);
    assert_eq!(store.delete_for_user(&user).await.unwrap(), 4);
}

#[tokio::test]
async fn hostile_table_names_are_refused() {
    let pool = SqlitePool::connect_lazy("sqlite::memory:").unwrap();
    let long = "a".repeat(100);
    for bad in [
        "x; DROP TABLE y",
        "\"quoted\"",
        "",
        long.as_str(),
        "main.sessions",
        "sessions--",
        "sessions'",
        "1sessions",
        " sessions",
        "sqlite_master",
    ] {
        let result = SqliteStore::new(pool.clone()).with_table_name(bad);
        assert!(result.is_err(), "{bad:?} was accepted");
    }
}

#[tokio::test]
async fn custom_tables_are_separate_and_migrations_idempotent() {
    let temp = TempStore::new().await;
    let other = temp.store.clone().with_table_name("Other_Sessions").unwrap();
    other.migrate().await.unwrap();
    other.migrate().await.unwrap();
    temp.store.migrate().await.unwrap();
    let now = Timestamp::now();
    let r = record(now);
    other.create(&r).await.unwrap();
    assert!(other.load(&r.key, now).await.unwrap().is_some());
    assert!(temp.store.load(&r.key, now).await.unwrap().is_none());
    assert_eq!(other.table_name(), "Other_Sessions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stores_on_one_file_share_their_locks() {
    let temp = TempStore::new().await;
    let second = SqliteStore::open(temp.dir.path().join("sessions.db")).await.unwrap();
    // Different spelling of the same path, and a pool built by hand.
    let third = SqliteStore::new(
        SqlitePoolOptions::new()
            .connect_with(
                session_stores_sqlite::SqliteConnectOptions::new()
                    .filename(temp.dir.path().join(".").join("sessions.db")),
            )
            .await
            .unwrap(),
    );
    let stores: [DynStore; 3] =
        [Arc::new(temp.store.clone()), Arc::new(second.clone()), Arc::new(third)];
    concurrent_increments(&stores, 100).await;

    let key = SessionId::random().storage_key();
    let short =
        LockOptions { lease: Duration::from_secs(30), wait_timeout: Duration::from_millis(100) };
    let held = temp.store.lock(&key, short).await.unwrap();
    assert!(matches!(second.lock(&key, short).await, Err(Error::LockTimeout { .. })));
    held.release().await.unwrap();
    second.lock(&key, short).await.unwrap().release().await.unwrap();
}

#[tokio::test]
async fn delete_expired_works_in_batches() {
    let temp = TempStore::new().await;
    let store = temp.store.clone().with_cleanup_batch_size(3);
    session_core::testing::delete_expired_in_batches(&store, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_task_deletes_expired_sessions_until_stopped() {
    let temp = TempStore::new().await;
    let store = &temp.store;
    let clock = ManualClock::starting_now();
    let start = clock.now();
    let r = record(start);
    store.create(&r).await.unwrap();

    let cleanup = store.spawn_cleanup_with_clock(Duration::from_millis(5), Arc::new(clock.clone()));
    clock.advance(Duration::from_secs(600));
    // Bounded wait for the task; no timing assertion. Load with the old time:
    // only a physical delete makes it disappear.
    let mut gone = false;
    for _ in 0..2000 {
        if store.load(&r.key, start).await.unwrap().is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(gone, "the cleanup task deleted the expired session");
    cleanup.stop().await;

    let late = record(clock.now() - Duration::from_secs(600));
    store.create(&late).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        store.load(&late.key, start).await.unwrap().is_some(),
        "a stopped cleanup task deletes nothing"
    );
}

#[tokio::test]
async fn per_session_expiry_and_large_versions_round_trip() {
    let temp = TempStore::new().await;
    let now = Timestamp::now();
    let mut r = record(now);
    policy().apply(
        &mut r,
        session_core::SessionExpiry::Persistent {
            idle_timeout: Duration::from_secs(99),
            absolute_timeout: None,
        },
        now,
    );
    r.version = u64::MAX - 1;
    temp.store.create(&r).await.unwrap();
    let loaded = temp.store.load(&r.key, now).await.unwrap().unwrap();
    assert_eq!(loaded, r);
}

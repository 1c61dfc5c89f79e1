//! `shared/BAD_INPUTS.md`, store level, for the memory store: one test per
//! row that a store answers for, named after the row. Two clones of one store
//! stand for two users of it (one process holds all memory sessions).
//!
//! | row | here |
//! |-----|------|
//! | 1-4, 6, 20-22, 27 | the layer: `session-axum/tests/bad_inputs.rs` (stores only ever see hashed keys) |
//! | 5 | `row05_unknown_key_is_not_created` |
//! | 7, 8 | hostile user ids in the per-user index |
//! | 9-18 | cookie formats only |
//! | 19, 24 | not applicable: records are kept as values, never as bytes or files |
//! | 23 | `row23_held_lock_times_out_elsewhere` |
//! | 25, 26, 28 | below, and through the layer |
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use session_core::testing::{self, DynStore};
use session_core::{
    Error, ExpiryPolicy, LockOptions, LockingStore, Record, SessionId, SessionStore, Timestamp,
};
use session_stores_memory::MemoryStore;

fn stores() -> (MemoryStore, MemoryStore) {
    let store = MemoryStore::new();
    (store.clone(), store)
}

fn record(now: Timestamp) -> Record {
    ExpiryPolicy::default().new_record(SessionId::random().storage_key(), now)
}

#[tokio::test]
async fn row05_unknown_key_is_not_created() {
    let (store, _) = stores();
    testing::unknown_key_loads_nothing(Arc::new(store.clone())).await;
    testing::save_never_resurrects(Arc::new(store.clone())).await;
    assert!(store.is_empty(), "nothing was left behind");
}

#[tokio::test]
async fn row07_path_like_user_ids() {
    let (store, other) = stores();
    testing::hostile_user_ids(
        &store,
        &other,
        &["../../etc/passwd", "..%2f..", "a\\b", "/etc/passwd", "NUL", "CON", "", "\0", "."],
    )
    .await;
}

#[tokio::test]
async fn row08_sql_shaped_user_ids() {
    let (store, other) = stores();
    testing::hostile_user_ids(
        &store,
        &other,
        &["' OR 1=1--", "'; DROP TABLE sessions; --", "%", "_", "*"],
    )
    .await;
}

#[tokio::test]
async fn row23_held_lock_times_out_elsewhere() {
    let (store, other) = stores();
    let key = SessionId::random().storage_key();
    let short =
        LockOptions { lease: Duration::from_secs(30), wait_timeout: Duration::from_millis(200) };
    let held = store.lock(&key, LockOptions::default()).await.unwrap();
    assert!(matches!(other.lock(&key, short).await, Err(Error::LockTimeout { .. })));
    let waited = other.lock_and_load(&key, short, Timestamp::now()).await;
    assert!(matches!(waited, Err(Error::LockTimeout { .. })));
    held.release().await.unwrap();
    other.lock(&key, short).await.unwrap().release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn row25_concurrent_locked_writers_lose_nothing() {
    let (store, other) = stores();
    let stores: [DynStore; 2] = [Arc::new(store), Arc::new(other)];
    testing::concurrent_increments(&stores, testing::CONCURRENT_INCREMENTS).await;
}

#[tokio::test]
async fn row26_id_collision_on_create_hands_over_nothing() {
    let (store, other) = stores();
    testing::create_refuses_collision(Arc::new(store.clone())).await;
    let now = Timestamp::now();
    let mut first = record(now);
    first.data.insert("owner", "first").unwrap();
    store.create(&first).await.unwrap();
    let mut second = first.clone();
    second.data.insert("owner", "second").unwrap();
    assert!(matches!(other.create(&second).await, Err(Error::IdCollision)));
    let loaded = other.load(&first.key, now).await.unwrap().unwrap();
    assert_eq!(loaded.data.get::<String>("owner").unwrap().as_deref(), Some("first"));
}

#[tokio::test]
async fn row28_deleted_session_is_gone_everywhere() {
    let (store, other) = stores();
    let now = Timestamp::now();
    let mut record = record(now);
    store.create(&record).await.unwrap();
    assert!(other.load(&record.key, now).await.unwrap().is_some());
    store.delete(&record.key).await.unwrap();
    assert!(other.load(&record.key, now).await.unwrap().is_none());
    let (guard, loaded) =
        other.lock_and_load(&record.key, LockOptions::default(), now).await.unwrap();
    assert!(loaded.is_none());
    guard.release().await.unwrap();
    record.version += 1;
    assert!(matches!(other.save(&record).await, Err(Error::NotFound)), "no resurrection");
    assert!(matches!(other.touch(&record).await, Err(Error::NotFound)));
    assert!(store.load(&record.key, now).await.unwrap().is_none());
}

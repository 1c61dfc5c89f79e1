//! `MemoryStore::locks_in_use`, the lock-table size leak tests watch: up while
//! a lock is held, back to 0 however the lock ends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use session_core::{ExpiryPolicy, LockOptions, LockingStore, SessionId, SessionStore, Timestamp};
use session_stores_memory::MemoryStore;

fn options(wait_timeout: Duration) -> LockOptions {
    LockOptions { lease: Duration::from_secs(1), wait_timeout }
}

#[tokio::test]
async fn counts_held_locks_and_returns_to_zero() {
    let store = MemoryStore::new();
    let clone = store.clone();
    assert_eq!(store.locks_in_use(), 0);

    let (first, second) = (SessionId::random().storage_key(), SessionId::random().storage_key());
    let short = options(Duration::from_millis(20));
    let held = store.lock(&first, short).await.unwrap();
    assert_eq!(store.locks_in_use(), 1);
    let other = clone.lock(&second, short).await.unwrap();
    assert_eq!((store.locks_in_use(), clone.locks_in_use()), (2, 2), "clones share the table");

    // A waiter that times out is not a lock of its own and leaves nothing.
    assert!(clone.lock(&first, short).await.is_err());
    assert_eq!(store.locks_in_use(), 2);

    held.release().await.unwrap();
    assert_eq!(store.locks_in_use(), 1);
    drop(other);
    assert_eq!(store.locks_in_use(), 0, "a dropped guard releases too");

    // Through lock_and_load and save_and_release, the path requests take.
    let now = Timestamp::now();
    let mut record = ExpiryPolicy::default().new_record(first, now);
    store.create(&record).await.unwrap();
    let (guard, loaded) = store.lock_and_load(&first, short, now).await.unwrap();
    assert!(loaded.is_some());
    assert_eq!(store.locks_in_use(), 1);
    record.version += 1;
    store.save_and_release(&record, guard).await.unwrap();
    assert_eq!(store.locks_in_use(), 0);
    assert_eq!(store.len(), 1, "the lock table is not the records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contended_locks_leave_an_empty_table() {
    let store = MemoryStore::new();
    let keys: Vec<_> = (0..4).map(|_| SessionId::random().storage_key()).collect();
    let mut tasks = Vec::new();
    for task in 0..32 {
        let (store, keys) = (store.clone(), keys.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..200 {
                let key = &keys[(task + round) % keys.len()];
                // Some waits time out, some are cancelled: every way out of
                // the queue has to clean up.
                let wait = Duration::from_micros(if round % 3 == 0 { 50 } else { 50_000 });
                let attempt = store.lock(key, options(wait));
                if round % 7 == 0 {
                    let _ = tokio::time::timeout(Duration::from_micros(10), attempt).await;
                } else if let Ok(guard) = attempt.await {
                    assert!(store.locks_in_use() >= 1);
                    tokio::task::yield_now().await;
                    if round % 2 == 0 { guard.release().await.unwrap() } else { drop(guard) }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.locks_in_use(), 0);
}

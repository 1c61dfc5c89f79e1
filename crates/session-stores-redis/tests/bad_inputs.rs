//! `shared/BAD_INPUTS.md`, store level, for the Redis store: one test per row
//! that a store answers for, named after the row. Two stores with pools of
//! their own on one Redis and prefix stand for two processes. Needs
//! `REDIS_URL` (`cargo xtask test` sets it).
//!
//! | row | here |
//! |-----|------|
//! | 1-4, 6, 20, 21, 27 | the layer: `session-axum/tests/bad_inputs.rs` (keys hold hashed ids only) |
//! | 5 | `row05_unknown_key_is_not_created` |
//! | 7, 8 | hostile user ids (glob characters included) in the per-user index |
//! | 9-18 | cookie formats only |
//! | 19 | `row19_corrupt_records_are_absent_and_still_removable`; more corruptions in `store.rs` (`corrupt_records_load_as_absent`) |
//! | 22 | `faults.rs`: `redis_down_before_and_killed_during_then_recovers`, `unreachable_redis_fails_with_backend_errors`; through the layer: `row22_*` in `session-axum/tests/bad_inputs.rs` |
//! | 23 | `faults.rs`: `exhausted_pool_fails_after_the_timeout`, `busy_lock_times_out`; through the layer: `row23_*` |
//! | 24 | filesystem store only |
//! | 25, 26, 28 | below, and through the layer |
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use deadpool_redis::redis::{self, AsyncCommands};
use session_core::testing::{self, DynStore};
use session_core::{
    Error, ExpiryPolicy, LockOptions, LockingStore, Record, SessionId, SessionStore, Timestamp,
};
use session_stores_redis::RedisStore;

/// Two stores, each with its own pool, on one Redis and a fresh prefix.
fn stores(label: &str) -> (RedisStore, RedisStore) {
    let store = common::shared_store(label);
    let other =
        RedisStore::from_url(&common::redis_url()).unwrap().with_prefix(store.prefix().to_owned());
    (store, other)
}

fn record(now: Timestamp) -> Record {
    ExpiryPolicy::default().new_record(SessionId::random().storage_key(), now)
}

#[tokio::test]
async fn row05_unknown_key_is_not_created() {
    let (store, _) = stores("row05");
    testing::unknown_key_loads_nothing(Arc::new(store.clone())).await;
    testing::save_never_resurrects(Arc::new(store.clone())).await;
    let mut raw = common::raw_connection(&common::redis_url()).await;
    let left: Vec<String> = raw.keys(format!("{}*", store.prefix())).await.unwrap();
    assert!(left.is_empty(), "nothing was left behind: {left:?}");
}

#[tokio::test]
async fn row07_path_like_user_ids() {
    let (store, other) = stores("row07");
    testing::hostile_user_ids(
        &store,
        &other,
        &["../../etc/passwd", "..%2f..", "a\\b", "/etc/passwd", "NUL", "CON", "", "\0", ":"],
    )
    .await;
}

#[tokio::test]
async fn row08_sql_shaped_user_ids() {
    let (store, other) = stores("row08");
    testing::hostile_user_ids(
        &store,
        &other,
        &["' OR 1=1--", "'; DROP TABLE sessions; --", "*", "?", "[a-z]", "\r\nFLUSHALL\r\n"],
    )
    .await;
}

/// Corrupt records are absent for both stores, never in a user's listing,
/// and "log out everywhere" still removes a corrupt record of the user.
#[tokio::test]
async fn row19_corrupt_records_are_absent_and_still_removable() {
    let (store, other) = stores("row19");
    let mut raw = common::raw_connection(&common::redis_url()).await;
    let now = Timestamp::now();
    let user = format!("user-{}", &SessionId::random().storage_key().to_hex()[..12]);
    let (mut truncated, mut not_a_record, mut good) = (record(now), record(now), record(now));
    for r in [&mut truncated, &mut not_a_record, &mut good] {
        r.user = Some(user.clone());
        store.create(r).await.unwrap();
    }
    let key_of = |r: &Record| format!("{}{}", store.prefix(), r.key.to_hex());
    // Cut inside the data: the head (and with it the user) is still there.
    let stored: Vec<u8> = raw.get(key_of(&truncated)).await.unwrap();
    let cut = &stored[..stored.len() - 1];
    let () = redis::cmd("SET")
        .arg(key_of(&truncated))
        .arg(cut)
        .arg("KEEPTTL")
        .query_async(&mut raw)
        .await
        .unwrap();
    let () = raw.del(key_of(&not_a_record)).await.unwrap();
    let () = raw.hset(key_of(&not_a_record), "data", "not a record").await.unwrap();

    for reader in [&store, &other] {
        for corrupt in [&truncated, &not_a_record] {
            assert!(reader.load(&corrupt.key, now).await.unwrap().is_none());
            let (guard, loaded) =
                reader.lock_and_load(&corrupt.key, LockOptions::default(), now).await.unwrap();
            assert!(loaded.is_none());
            guard.release().await.unwrap();
        }
        let listed = reader.list_for_user(&user, now).await.unwrap();
        assert_eq!(listed.iter().map(|r| r.key).collect::<Vec<_>>(), [good.key]);
    }
    other.delete_expired(now).await.unwrap();
    assert!(store.load(&good.key, now).await.unwrap().is_some(), "the neighbour is untouched");

    other.delete_for_user(&user).await.unwrap();
    for r in [&truncated, &good] {
        let exists: bool = raw.exists(key_of(r)).await.unwrap();
        assert!(!exists, "removed with the user's other sessions");
    }
    // A key that is not a record cannot show whose it is, so it is left
    // alone (and stays absent); only someone with access to Redis can plant
    // one.
    assert!(store.load(&not_a_record.key, now).await.unwrap().is_none());
    let () = raw.del(key_of(&not_a_record)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn row25_concurrent_locked_writers_lose_nothing() {
    let (store, other) = stores("row25");
    let stores: [DynStore; 2] = [Arc::new(store), Arc::new(other)];
    testing::concurrent_increments(&stores, testing::CONCURRENT_INCREMENTS).await;
}

#[tokio::test]
async fn row26_id_collision_on_create_hands_over_nothing() {
    let (store, other) = stores("row26");
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
    let (store, other) = stores("row28");
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

//! The hostile-input catalogue (`docs/hostile-inputs.md`), store level, for the Redis
//! store: where each row that a store answers for is tested, and the checks
//! only this store can make. Two stores with pools of their own on one Redis
//! and prefix stand for two processes. Needs `REDIS_URL` (`cargo xtask test`
//! sets it).
//!
//! | row | here |
//! |-----|------|
//! | 1-4, 6, 20, 21, 27 | the layer: `session-axum/tests/bad_inputs.rs` (keys hold hashed ids only) |
//! | 5 | `conformance::{standalone,cluster}::row05_unknown_key_is_not_created` (`session_core::testing`); below: no key is left under the prefix |
//! | 7, 8 | `conformance::*::row07_*`, `conformance::*::row08_*`: hostile user ids (glob characters and an injected command included) in the per-user index |
//! | 9-18 | cookie formats only |
//! | 19 | `row19_corrupt_records_are_absent_and_still_removable`; more corruptions in `redis.rs` (`corrupt_records_load_as_absent`) |
//! | 22 | `faults.rs`: `redis_down_before_and_killed_during_then_recovers`, `unreachable_redis_fails_with_backend_errors`; through the layer: `row22_*` in `session-axum/tests/bad_inputs.rs` |
//! | 23 | `conformance::row23_held_lock_times_out_elsewhere`; `faults.rs`: `exhausted_pool_fails_after_the_timeout`, `busy_lock_times_out`; through the layer: `row23_*` |
//! | 24 | filesystem store only |
//! | 25, 26, 28 | `conformance::row25_*`, `row26_*`, `row28_*`, and through the layer |
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use deadpool_redis::redis::aio::ConnectionLike;
use deadpool_redis::redis::{self, AsyncCommands};
use session_core::testing;
use session_core::{
    ExpiryPolicy, LockOptions, LockingStore, Record, SessionId, SessionStore, Timestamp,
};
use session_stores_redis::RedisStore;

fn record(now: Timestamp) -> Record {
    ExpiryPolicy::default().new_record(SessionId::random().storage_key(), now)
}

/// Row 5 in Redis: the unknown keys the generic check used (and its lock)
/// left no key under the store's prefix.
#[tokio::test]
async fn row05_unknown_key_leaves_no_key() {
    let raw = common::raw_connection(&common::redis_url()).await;
    row05(common::two_stores("row05"), raw).await;
}

/// Row 5 on Redis Cluster (`KEYS` asks every primary).
#[tokio::test]
async fn row05_unknown_key_leaves_no_key_on_a_cluster() {
    let raw = common::raw_cluster_connection().await;
    row05(common::two_cluster_stores("row05"), raw).await;
}

async fn row05(
    (store, other): (RedisStore, RedisStore),
    mut raw: impl ConnectionLike + Send + Sync,
) {
    testing::row05_unknown_key_is_not_created(Arc::new(store.clone()), Arc::new(other)).await;
    let left: Vec<String> = raw.keys(format!("{}*", store.prefix())).await.unwrap();
    assert!(left.is_empty(), "nothing was left behind: {left:?}");
}

/// Corrupt records are absent for both stores, never in a user's listing,
/// and "log out everywhere" still removes a corrupt record of the user.
#[tokio::test]
async fn row19_corrupt_records_are_absent_and_still_removable() {
    let raw = common::raw_connection(&common::redis_url()).await;
    row19(common::two_stores("row19"), raw).await;
}

/// Row 19 on Redis Cluster, where the user's index is in another slot.
#[tokio::test]
async fn row19_corrupt_records_are_absent_and_still_removable_on_a_cluster() {
    let raw = common::raw_cluster_connection().await;
    row19(common::two_cluster_stores("row19"), raw).await;
}

async fn row19(
    (store, other): (RedisStore, RedisStore),
    mut raw: impl ConnectionLike + Send + Sync,
) {
    let now = Timestamp::now();
    let user = format!("user-{}", &SessionId::random().storage_key().to_hex()[..12]);
    let (mut truncated, mut not_a_record, mut good) = (record(now), record(now), record(now));
    for r in [&mut truncated, &mut not_a_record, &mut good] {
        r.user = Some(user.clone());
        store.create(r).await.unwrap();
    }
    let key_of = |r: &Record| session_stores_redis::testing::record_key(&store, &r.key);
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

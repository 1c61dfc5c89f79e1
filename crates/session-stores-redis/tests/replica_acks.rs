//! `with_replica_acks`: on a private primary with one private replica, every
//! session write waits for the replica; with the replica gone, writes fail
//! (a 503) instead of being acknowledged without a copy.
#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions.

mod common;

use std::time::{Duration, Instant};

use deadpool_redis::redis::{self, AsyncCommands};
use session_core::{
    Error, ExpiryPolicy, LockOptions, LockingStore, Record, SessionId, SessionStore, Timestamp,
};
use session_stores_redis::RedisStore;
use session_stores_redis::testing::PrivateRedis;

fn fresh_record(now: Timestamp) -> Record {
    let mut record = ExpiryPolicy::default().new_record(SessionId::random().storage_key(), now);
    record.user = Some("replicated-user".to_owned());
    record
}

/// Waits until `replica` reports its link to the primary up (the initial
/// sync is done), so what follows measures acknowledgements, not the sync.
async fn wait_until_synced(replica: &PrivateRedis) {
    let mut raw = common::raw_connection(&replica.url()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info: String =
            redis::cmd("INFO").arg("replication").query_async(&mut raw).await.unwrap();
        if info.contains("master_link_status:up") {
            return;
        }
        assert!(Instant::now() < deadline, "the replica never synced: {info}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[track_caller]
fn assert_not_replicated<T: std::fmt::Debug>(what: &str, result: Result<T, Error>) {
    match result {
        Err(error @ Error::Backend { store: "redis", .. }) => {
            assert!(error.is_unavailable(), "{what}: {error}");
            assert!(error.to_string().contains("0 of 1 replicas acknowledged"), "{what}: {error}");
        }
        other => panic!("{what}: expected an unacknowledged-write error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_are_on_the_replica_and_unacknowledged_ones_fail() {
    let primary = PrivateRedis::start();
    let mut replica = PrivateRedis::start_replica_of(&primary);
    wait_until_synced(&replica).await;
    let store = RedisStore::from_url(&primary.url())
        .unwrap()
        .with_replica_acks(1, Duration::from_millis(300));
    let mut on_replica = common::raw_connection(&replica.url()).await;
    let stored_on_replica =
        |record: &Record| session_stores_redis::testing::record_key(&store, &record.key);

    // With the replica up, every kind of write goes through, and once it
    // has answered, the replica holds it.
    let now = Timestamp::now();
    let mut record = fresh_record(now);
    record.data.insert_value("n", 1.into());
    store.create(&record).await.unwrap();
    let copy: Option<Vec<u8>> = on_replica.get(stored_on_replica(&record)).await.unwrap();
    assert!(copy.is_some(), "an acknowledged create is on the replica");
    record.data.insert_value("n", 2.into());
    record.version += 1;
    store.save(&record).await.unwrap();
    let (guard, loaded) =
        store.lock_and_load(&record.key, LockOptions::default(), now).await.unwrap();
    let mut locked = loaded.unwrap();
    locked.data.insert_value("n", 3.into());
    locked.version += 1;
    store.save_and_release(&locked, guard).await.unwrap();
    store.touch(&locked).await.unwrap();
    let on_primary = store.load(&record.key, now).await.unwrap().unwrap();
    assert_eq!(on_primary.data.get::<u64>("n").unwrap(), Some(3));
    let copy: Vec<u8> = on_replica.get(stored_on_replica(&record)).await.unwrap();
    let mut on_primary_raw = common::raw_connection(&primary.url()).await;
    let original: Vec<u8> = on_primary_raw.get(stored_on_replica(&record)).await.unwrap();
    assert_eq!(copy, original, "the replica holds the last acknowledged save");

    // The replica dies: no write is acknowledged any more.
    replica.kill();
    let second = fresh_record(now);
    assert_not_replicated("create", store.create(&second).await);
    assert_not_replicated("save", store.save(&locked).await);
    let (guard, _) = store.lock_and_load(&record.key, LockOptions::default(), now).await.unwrap();
    assert_not_replicated("save_and_release", store.save_and_release(&locked, guard).await);
    assert_not_replicated("touch", store.touch(&locked).await);
    assert_not_replicated("delete", store.delete(&record.key).await);
    assert_not_replicated("delete_for_user", store.delete_for_user("replicated-user").await);
    // Reads do not wait for replicas, and the lock was released with the
    // (unacknowledged) save: it is free again.
    assert!(store.load(&second.key, now).await.is_ok());
    let quick = LockOptions { lease: Duration::from_secs(30), wait_timeout: Duration::ZERO };
    store.lock(&second.key, quick).await.unwrap().release().await.unwrap();

    // A replica comes back: writes are acknowledged again.
    replica.start_again();
    wait_until_synced(&replica).await;
    let third = fresh_record(now);
    store.create(&third).await.unwrap();
    let mut on_replica = common::raw_connection(&replica.url()).await;
    let copy: Option<Vec<u8>> = on_replica.get(stored_on_replica(&third)).await.unwrap();
    assert!(copy.is_some());
}

/// Zero replicas means no acknowledgement at all: a write succeeds on a
/// primary without replicas.
#[tokio::test]
async fn zero_replica_acks_wait_for_nothing() {
    let primary = PrivateRedis::start();
    let store =
        RedisStore::from_url(&primary.url()).unwrap().with_replica_acks(0, Duration::from_secs(5));
    store.create(&fresh_record(Timestamp::now())).await.unwrap();
    assert!(format!("{store:?}").contains("replica_acks: None"), "{store:?}");
}

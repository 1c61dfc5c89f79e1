//! What only Redis Cluster can show: sessions spread over every primary, a
//! user's index in another slot than the user's sessions kept correct and
//! self-healing, the fenced lock, and the lock's lost-update check. Needs
//! `REDIS_CLUSTER_URLS` (`cargo xtask test` starts a 3+3 node cluster and
//! sets it). The conformance suite runs on the cluster in `conformance.rs`,
//! the bad-input rows in `bad_inputs.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis::{self, AsyncCommands};
use session_core::testing::{
    DynStore, concurrent_increments, late_save_under_a_lost_lock_is_refused,
};
use session_core::{
    Error, ExpiryPolicy, LockOptions, LockingStore, Record, SessionId, SessionStore, Timestamp,
};
use session_stores_redis::{RedisStore, testing};

fn record(now: Timestamp) -> Record {
    ExpiryPolicy::default().new_record(SessionId::random().storage_key(), now)
}

/// The primaries, each as a plain connection to that node alone (`ROLE`
/// says which nodes are primaries now, failovers included).
async fn primaries() -> Vec<(String, redis::aio::MultiplexedConnection)> {
    let mut primaries = Vec::new();
    for url in common::cluster_urls() {
        let mut node = common::raw_connection(&url).await;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut node).await.unwrap();
        if matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master") {
            primaries.push((url, node));
        }
    }
    primaries
}

/// Sixty sessions land on all three primaries (by their hash tags), and each
/// record sits on the same node as its lock.
#[tokio::test]
async fn sessions_spread_over_every_primary() {
    let (store, _) = common::two_cluster_stores("spread");
    let now = Timestamp::now();
    let mut records = Vec::new();
    for _ in 0..60 {
        let record = record(now);
        store.create(&record).await.unwrap();
        records.push(record);
    }
    let guards = {
        let mut guards = Vec::new();
        for record in &records {
            guards.push(store.lock(&record.key, LockOptions::default()).await.unwrap());
        }
        guards
    };
    let primaries = primaries().await;
    assert_eq!(primaries.len(), 3, "a 3-primary cluster");
    let mut total = 0;
    for (url, mut node) in primaries {
        let keys: Vec<String> = node.keys(format!("{}*", store.prefix())).await.unwrap();
        let records_here: Vec<&Record> = records
            .iter()
            .filter(|r| keys.contains(&testing::record_key(&store, &r.key)))
            .collect();
        println!("{url}: {} sessions", records_here.len());
        assert!(!records_here.is_empty(), "no session on the primary at {url}");
        for r in &records_here {
            assert!(keys.contains(&testing::lock_key(&store, &r.key)), "lock beside its record");
        }
        total += records_here.len();
    }
    assert_eq!(total, records.len(), "every session on exactly one primary");
    for guard in guards {
        guard.release().await.unwrap();
    }
    for record in &records {
        store.delete(&record.key).await.unwrap();
    }
}

/// A user's sessions, on many slots, are listed and ended together though
/// the index lives in a slot of its own; nothing of them is left.
#[tokio::test]
async fn log_out_everywhere_ends_sessions_on_every_node() {
    let (store, other) = common::two_cluster_stores("everywhere");
    let mut raw = common::raw_cluster_connection().await;
    let now = Timestamp::now();
    let user = "user on many nodes";
    let mut mine = Vec::new();
    for _ in 0..12 {
        let mut record = record(now);
        record.user = Some(user.to_owned());
        store.create(&record).await.unwrap();
        mine.push(record);
    }
    let mut someone_else = record(now);
    someone_else.user = Some("someone else".to_owned());
    store.create(&someone_else).await.unwrap();

    let listed = other.list_for_user(user, now).await.unwrap();
    assert_eq!(listed.len(), mine.len());
    assert_eq!(other.delete_for_user(user).await.unwrap(), 12);
    for record in &mine {
        assert!(store.load(&record.key, now).await.unwrap().is_none());
        let exists: bool = raw.exists(testing::record_key(&store, &record.key)).await.unwrap();
        assert!(!exists);
    }
    let left: Vec<String> = raw.smembers(testing::index_key(&store, user)).await.unwrap();
    assert!(left.is_empty(), "the index holds no entry of an ended session: {left:?}");
    assert!(store.load(&someone_else.key, now).await.unwrap().is_some(), "others untouched");
    assert_eq!(store.delete_for_user(user).await.unwrap(), 0, "safe to run again");
    store.delete(&someone_else.key).await.unwrap();
}

/// Every write of a session with a user puts it in the user's index first,
/// and moving a session to another user leaves it only in the new user's
/// listing (the old entry is ignored, then pruned once the record is gone).
#[tokio::test]
async fn the_index_follows_writes_and_heals_stale_entries() {
    let (store, other) = common::two_cluster_stores("index");
    let mut raw = common::raw_cluster_connection().await;
    let now = Timestamp::now();
    let mut session = record(now);
    store.create(&session).await.unwrap();
    session.user = Some("alice".to_owned());
    store.save(&session).await.unwrap();
    let alice = testing::index_key(&store, "alice");
    let members: Vec<String> = raw.smembers(&alice).await.unwrap();
    assert_eq!(members, [session.key.to_hex()]);
    let ttl: i64 = raw.ttl(&alice).await.unwrap();
    assert!(ttl > 0, "the index expires with its sessions: {ttl}");

    session.user = Some("bob".to_owned());
    other.save(&session).await.unwrap();
    assert!(store.list_for_user("alice", now).await.unwrap().is_empty());
    assert_eq!(store.list_for_user("bob", now).await.unwrap().len(), 1);
    assert_eq!(store.delete_for_user("alice").await.unwrap(), 0, "bob's session is not alice's");
    assert!(store.load(&session.key, now).await.unwrap().is_some());

    // An entry whose record is gone (a delete whose index step failed, a
    // record Redis expired): ignored, and pruned when read.
    let ghost = SessionId::random().storage_key();
    let () = raw.sadd(testing::index_key(&store, "bob"), ghost.to_hex()).await.unwrap();
    assert_eq!(store.list_for_user("bob", now).await.unwrap().len(), 1);
    let members: Vec<String> = raw.smembers(testing::index_key(&store, "bob")).await.unwrap();
    assert_eq!(members, [session.key.to_hex()], "the ghost entry was pruned");

    // `delete_expired` prunes on every primary.
    let () = raw.sadd(testing::index_key(&store, "bob"), ghost.to_hex()).await.unwrap();
    assert_eq!(store.delete_expired(now).await.unwrap(), 0);
    let members: Vec<String> = raw.smembers(testing::index_key(&store, "bob")).await.unwrap();
    assert_eq!(members, [session.key.to_hex()]);

    store.delete(&session.key).await.unwrap();
    let members: Vec<String> = raw.smembers(testing::index_key(&store, "bob")).await.unwrap();
    assert!(members.is_empty(), "delete removes the entry: {members:?}");
}

/// Fencing on a cluster with a lease that really runs out: the holder's
/// Redis user loses every permission on every node (as good as a partition:
/// its renewals fail), so the lock key expires after the lease; another
/// process, as another user, locks and saves; with the permissions back,
/// the late save is refused and the newer data kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_cut_off_past_its_lease_cannot_overwrite_the_next_holder() {
    let (_, second) = common::two_cluster_stores("fenced-expiry");
    let user = format!("holder{}", &common::unique_prefix("").replace(':', ""));
    let acl = |rules: &'static [&'static str]| {
        let user = user.clone();
        async move {
            for url in common::cluster_urls() {
                let mut node = common::raw_connection(&url).await;
                let mut command = redis::cmd("ACL");
                command.arg("SETUSER").arg(&user).arg(rules);
                let () = command.query_async(&mut node).await.unwrap();
            }
        }
    };
    acl(&["on", ">fenced", "~*", "&*", "+@all"]).await;
    let urls = common::cluster_urls()
        .into_iter()
        .map(|url| url.replacen("redis://", &format!("redis://{user}:fenced@"), 1));
    let first = RedisStore::cluster(urls)
        .unwrap()
        .with_prefix(second.prefix().to_owned())
        .with_response_timeout(Duration::from_millis(200));
    let now = Timestamp::now();
    let mut record = record(now);
    record.data.insert_value("n", 1.into());
    first.create(&record).await.unwrap();
    let lease = Duration::from_millis(600);
    let options = LockOptions { lease, wait_timeout: Duration::from_secs(5) };
    let (late_guard, late) = first.lock_and_load(&record.key, options, now).await.unwrap();
    let taken = std::time::Instant::now();
    acl(&["-@all"]).await;
    while late_guard.is_held() {
        assert!(taken.elapsed() < Duration::from_secs(10), "the lease never ran out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(taken.elapsed() >= lease - Duration::from_millis(50), "held until the lease ran out");
    let mut raw = common::raw_cluster_connection().await;
    let mut expired = false;
    for _ in 0..100 {
        let exists: bool = raw.exists(testing::lock_key(&first, &record.key)).await.unwrap();
        if !exists {
            expired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(expired, "Redis expired the lock key on its own");
    acl(&["+@all"]).await;
    let error =
        late_save_under_a_lost_lock_is_refused(&first, &second, late_guard, late.unwrap()).await;
    assert!(matches!(error, Error::LockLost), "{error:?}");
    for url in common::cluster_urls() {
        let mut node = common::raw_connection(&url).await;
        let _: i64 =
            redis::cmd("ACL").arg("DELUSER").arg(&user).query_async(&mut node).await.unwrap();
    }
}

/// Locked increments from two processes on one session lose nothing.
#[tokio::test]
async fn locked_increments_from_two_processes_lose_nothing() {
    let (store, other) = common::two_cluster_stores("increments");
    let stores: Vec<DynStore> = vec![Arc::new(store), Arc::new(other)];
    concurrent_increments(&stores, 100).await;
}

/// A URL list that is not URLs is refused up front; valid ones connect lazily.
#[test]
fn cluster_checks_the_urls_but_does_not_connect() {
    assert!(matches!(
        session_stores_redis::RedisStore::cluster(["not a url"]),
        Err(Error::Backend { store: "redis", .. })
    ));
    assert!(session_stores_redis::RedisStore::cluster(["redis://127.0.0.1:1/"]).is_ok());
}

/// A slot migration that has split a session's keys (its record moved to
/// the new owner, its lock still on the old one) makes the fenced save
/// answer `TRYAGAIN` for as long as the split lasts, here longer than the
/// client's own retries: the save is sent again while the lock's lease
/// runs, and lands once the slot has moved. On a cluster of its own, so
/// that no other test meets the migration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_save_waits_out_a_migration_that_split_its_keys() {
    let cluster = tokio::task::spawn_blocking(testing::PrivateRedisCluster::start).await.unwrap();
    let store = RedisStore::cluster(cluster.urls()).unwrap();
    let now = Timestamp::now();
    let mut record = record(now);
    store.create(&record).await.unwrap();
    let guard = store.lock(&record.key, LockOptions::default()).await.unwrap();

    let record_key = testing::record_key(&store, &record.key);
    let slot = cluster.slot_of(&record_key);
    let from = cluster.owner_of(slot);
    let to = cluster.primaries().into_iter().find(|&port| port != from).unwrap();
    let migration = cluster.start_migration(slot, to).unwrap();
    migration.move_key(&record_key);

    record.data.insert_value("n", 1.into());
    let saving = {
        let (store, record) = (store.clone(), record.clone());
        tokio::spawn(async move { store.save_and_release(&record, guard).await })
    };
    // Past the client's own retries (about half a second at most).
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| migration.finish());
    saving.await.unwrap().unwrap_or_else(|e| panic!("the save did not wait for the slot: {e}"));

    assert_eq!(cluster.owner_of(slot), to);
    let stored = store.load(&record.key, Timestamp::now()).await.unwrap().unwrap();
    assert_eq!(stored.data.as_map(), record.data.as_map(), "the save landed");
    let options =
        LockOptions { wait_timeout: Duration::from_millis(100), ..LockOptions::default() };
    let next =
        store.lock(&record.key, options).await.unwrap_or_else(|e| panic!("not released: {e}"));
    next.release().await.unwrap();
}

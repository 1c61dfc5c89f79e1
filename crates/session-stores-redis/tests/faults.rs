//! Faults (hostile-input rows 22 and 23): Redis down before a request and
//! killed during one, on a private redis-server so the shared one is never
//! stopped; an exhausted pool; a lock that is never free.
#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions.

mod common;

use std::future::Future;
use std::time::Duration;

use deadpool_redis::Config;
use session_core::{
    Error, ExpiryPolicy, LockOptions, LockingStore, Record, SessionId, SessionStore, Timestamp,
};
use session_stores_redis::RedisStore;
use session_stores_redis::testing::PrivateRedis;

fn fresh_record(now: Timestamp) -> Record {
    let mut record = ExpiryPolicy::default().new_record(SessionId::random().storage_key(), now);
    record.user = Some("fault-user".to_owned());
    record
}

fn short_lock() -> LockOptions {
    LockOptions { lease: Duration::from_secs(30), wait_timeout: Duration::from_millis(200) }
}

#[track_caller]
fn assert_backend<T: std::fmt::Debug>(what: &str, result: Result<T, Error>) {
    match result {
        Err(error @ Error::Backend { store: "redis", .. }) => assert!(error.is_unavailable()),
        other => panic!("{what}: expected a redis Backend error, got {other:?}"),
    }
}

/// Runs every store operation against a Redis that is down: each one is a
/// `Backend` error (a 503), none hangs, none panics.
async fn every_operation_fails_cleanly(store: &RedisStore) {
    let now = Timestamp::now();
    let record = fresh_record(now);
    assert_backend("create", store.create(&record).await);
    assert_backend("load", store.load(&record.key, now).await);
    assert_backend("save", store.save(&record).await);
    assert_backend("touch", store.touch(&record).await);
    assert_backend("delete", store.delete(&record.key).await);
    assert_backend("delete_expired", store.delete_expired(now).await);
    assert_backend("list_for_user", store.list_for_user("fault-user", now).await);
    assert_backend("delete_for_user", store.delete_for_user("fault-user").await);
    assert_backend("lock", store.lock(&record.key, short_lock()).await);
    assert_backend("lock_and_load", store.lock_and_load(&record.key, short_lock(), now).await);
}

/// A session round trip through the store, under the lock.
async fn store_works(store: &RedisStore) {
    let now = Timestamp::now();
    let mut record = fresh_record(now);
    store.create(&record).await.unwrap();
    record.data.insert_value("n", 1.into());
    record.version += 1;
    store.save(&record).await.unwrap();
    let (guard, loaded) =
        store.lock_and_load(&record.key, LockOptions::default(), now).await.unwrap();
    let mut loaded = loaded.unwrap();
    assert_eq!(loaded.data.get::<u64>("n").unwrap(), Some(1));
    loaded.data.insert_value("n", 2.into());
    store.save_and_release(&loaded, guard).await.unwrap();
    assert_eq!(store.list_for_user("fault-user", now).await.unwrap().len(), 1);
    assert_eq!(store.delete_for_user("fault-user").await.unwrap(), 1);
}

/// Row 22: Redis down before the first request, then killed while requests
/// are in flight and a lock is held. Every failure is a `Backend` error, and
/// the same store instance works again once Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_before_and_killed_during_then_recovers() {
    let mut server = PrivateRedis::start();
    let store =
        RedisStore::from_url(&server.url()).unwrap().with_prefix(common::unique_prefix("faults"));

    // Down before the first request: the store was never connected.
    server.kill();
    every_operation_fails_cleanly(&store).await;

    server.start_again();
    store_works(&store).await;

    // Killed during: a held lock and requests in flight.
    let now = Timestamp::now();
    let record = fresh_record(now);
    store.create(&record).await.unwrap();
    let (guard, loaded) =
        store.lock_and_load(&record.key, LockOptions::default(), now).await.unwrap();
    let mut workers = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let record = record.clone();
        workers.push(tokio::spawn(async move {
            // Until Redis dies: every result is a success or a Backend error.
            loop {
                match store.load(&record.key, now).await {
                    Ok(_) => {}
                    Err(error) => {
                        assert_backend("load in flight", Err::<(), _>(error));
                        return;
                    }
                }
                if let Err(error) = store.save(&record).await {
                    assert_backend("save in flight", Err::<(), _>(error));
                    return;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.kill();
    for worker in workers {
        worker.await.unwrap();
    }
    assert_backend(
        "save_and_release after the kill",
        store.save_and_release(&loaded.unwrap(), guard).await,
    );
    every_operation_fails_cleanly(&store).await;

    // Back (empty: the private server keeps nothing): the same store works.
    server.start_again();
    store_works(&store).await;
}

/// Row 22, the pool side: nothing listens on the port at all.
#[tokio::test]
async fn unreachable_redis_fails_with_backend_errors() {
    let mut server = PrivateRedis::start();
    let url = server.url();
    server.kill();
    let store = RedisStore::from_url(&url).unwrap();
    every_operation_fails_cleanly(&store).await;
}

/// Awaits `future` and hands back its result, failing the test if it does
/// not finish within `limit` (a hang, not a slow machine: `limit` is far
/// above the configured timeout).
async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("still waiting after {limit:?}: the timeout did not apply"))
}

/// Row 23: with the pool exhausted, an operation fails with a `Backend`
/// error once the connect timeout passes, and the same store works as soon
/// as a connection is free again. The pool here has no runtime and no
/// timeouts of its own: the store's timeout applies regardless.
#[tokio::test]
async fn exhausted_pool_fails_after_the_timeout() {
    let mut config = Config::from_url(common::redis_url());
    config.pool = Some(deadpool_redis::PoolConfig::new(1));
    let pool = config.create_pool(None).unwrap();
    let taken = pool.get().await.unwrap();
    let store = RedisStore::new(pool)
        .with_prefix(common::unique_prefix("exhausted"))
        .with_connect_timeout(Duration::from_millis(200));
    let now = Timestamp::now();
    let record = fresh_record(now);
    let result = within(Duration::from_secs(10), store.load(&record.key, now)).await;
    match &result {
        Err(error @ Error::Backend { .. }) => {
            assert!(error.to_string().contains("pool exhausted"), "{error}");
        }
        other => panic!("expected a Backend error, got {other:?}"),
    }
    assert_backend(
        "lock with the pool exhausted",
        within(Duration::from_secs(10), store.lock(&record.key, short_lock())).await,
    );

    drop(taken);
    assert!(store.load(&record.key, now).await.unwrap().is_none());
    store.create(&record).await.unwrap();
    store.delete(&record.key).await.unwrap();
}

/// Row 23, the lock side: a lock that is never free gives `LockTimeout`
/// after the wait timeout, through `lock` and `lock_and_load` alike.
#[tokio::test]
async fn busy_lock_times_out() {
    let holder = common::shared_store("busy-lock");
    let waiter =
        RedisStore::from_url(&common::redis_url()).unwrap().with_prefix(holder.prefix().to_owned());
    let now = Timestamp::now();
    let record = fresh_record(now);
    holder.create(&record).await.unwrap();
    let guard = holder.lock(&record.key, LockOptions::default()).await.unwrap();
    let options = short_lock();
    for attempt in ["lock", "lock_and_load"] {
        let result = match attempt {
            "lock" => {
                within(Duration::from_secs(10), waiter.lock(&record.key, options)).await.map(drop)
            }
            _ => within(Duration::from_secs(10), waiter.lock_and_load(&record.key, options, now))
                .await
                .map(drop),
        };
        match result {
            Err(Error::LockTimeout { waited }) => {
                assert!(waited >= options.wait_timeout, "{attempt}: {waited:?}");
            }
            other => panic!("{attempt}: expected LockTimeout, got {other:?}"),
        }
    }
    guard.release().await.unwrap();
    holder.delete(&record.key).await.unwrap();
}

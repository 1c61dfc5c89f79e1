//! MySQL-specific behaviour (needs `MYSQL_URL`): the lock (the server's
//! queue, a holder whose connection died, dropped guards, many locked
//! sessions on a small pool), pool exhaustion, table names, batched cleanup.

mod common;

use std::sync::Arc;
use std::time::Duration;

use session_core::testing::{
    DynStore, concurrent_increments, late_save_under_a_lost_lock_is_refused,
};
use session_core::{Error, LockOptions, LockingStore, SessionId, SessionStore, Timestamp};
use session_stores_mysql::{MySqlPoolOptions, MySqlStore};

use common::record;

fn options(wait_timeout: Duration) -> LockOptions {
    LockOptions { lease: Duration::from_secs(30), wait_timeout }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pools_on_one_database_lose_no_update() {
    let (a, b) = common::two_stores().await;
    let stores: [DynStore; 2] = [Arc::new(a), Arc::new(b)];
    concurrent_increments(&stores, 60).await;
}

/// A locked read-modify-write needs one connection, not two: more sessions
/// locked at once than the pool has connections all get saved (the save
/// runs on the lock's own connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn more_locked_sessions_than_connections_do_not_deadlock() {
    let pool = MySqlPoolOptions::new()
        .max_connections(3)
        .acquire_timeout(Duration::from_secs(60))
        .connect(&common::mysql_url())
        .await
        .unwrap();
    let table = common::random_table();
    let store = common::store_on(pool, &table).await;
    let other = common::store_on(common::pool(2).await, &table).await;
    let now = Timestamp::now();
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let r = record(now);
                store.create(&r).await.unwrap();
                let (guard, loaded) = store
                    .lock_and_load(&r.key, options(Duration::from_secs(60)), now)
                    .await
                    .unwrap();
                let mut loaded = loaded.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
                loaded.data.insert("n", 1).unwrap();
                loaded.version += 1;
                store.save_and_release(&loaded, guard).await.unwrap();
                r.key
            })
        })
        .collect();
    for task in tasks {
        let key = task.await.unwrap();
        let loaded = other.load(&key, now).await.unwrap().unwrap();
        assert_eq!((loaded.data.get::<u64>("n").unwrap(), loaded.version), (Some(1), 1));
        other.lock(&key, options(Duration::from_secs(1))).await.unwrap().release().await.unwrap();
    }
}

/// Fencing: the lock lives and dies with its connection, so a holder whose
/// connection ended (killed in the server here; a failover or a network cut
/// alike) cannot save at all: the next holder locks at once and keeps its
/// data, and the late saves fail with a 503-class error.
#[tokio::test]
async fn a_holder_whose_lock_connection_died_cannot_overwrite_the_next_holder() {
    let (first, second) = common::two_stores().await;
    let now = Timestamp::now();
    let mut created = record(now);
    created.data.insert_value("n", 1.into());
    first.create(&created).await.unwrap();
    let wait = options(Duration::from_secs(10));
    let (late_guard, late) = first.lock_and_load(&created.key, wait, now).await.unwrap();
    let holder = common::lock_holder(&second, &created.key).await.expect("the lock is held");
    common::kill_connection(holder).await;
    late_save_under_a_lost_lock_is_refused(&first, &second, late_guard, late.unwrap()).await;
    assert_eq!(common::lock_holder(&second, &created.key).await, None, "nothing holds it");
}

/// A waiter waits in the server's own lock queue, not by polling: while
/// another process holds the lock, the waiter's connection is seen in the
/// process list waiting in `GET_LOCK` (state `User lock`; a poller would be
/// seen sleeping between attempts), and the holder's release hands it over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_waits_in_the_server_lock_queue() {
    let (holder, waiter) = common::two_stores().await;
    let key = SessionId::random().storage_key();
    let options = options(Duration::from_secs(20));
    let held = holder.lock(&key, options).await.unwrap();
    let waiting = tokio::spawn({
        let waiter = waiter.clone();
        async move { waiter.lock(&key, options).await }
    });
    let mut queued = false;
    for _ in 0..200 {
        let in_queue: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE STATE = 'User lock' AND INFO LIKE 'SELECT GET_LOCK(%'",
        )
        .fetch_one(holder.pool())
        .await
        .unwrap();
        if in_queue >= 1 {
            queued = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(queued, "the waiter never waited in the server's lock queue");
    assert!(!waiting.is_finished(), "it waits while the lock is held");
    held.release().await.unwrap();
    let taken =
        waiting.await.unwrap().unwrap_or_else(|e| panic!("the release did not wake it: {e}"));
    assert!(common::lock_holder(&holder, &key).await.is_some());
    taken.release().await.unwrap();
    assert_eq!(common::lock_holder(&holder, &key).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_times_out_other_processes_and_dropped_guards_release() {
    let table = common::random_table();
    // One connection: whatever a drop does, it is the only one to reuse.
    let single = MySqlPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&common::mysql_url())
        .await
        .unwrap();
    let a = common::store_on(single, &table).await;
    let b = common::store_on(common::pool(2).await, &table).await;
    let short = options(Duration::from_millis(300));
    let key = SessionId::random().storage_key();
    let held = a.lock(&key, short).await.unwrap();
    match b.lock(&key, short).await {
        Err(Error::LockTimeout { waited }) => assert_eq!(waited, short.wait_timeout),
        other => panic!("expected LockTimeout, got {other:?}"),
    }
    held.release().await.unwrap();
    b.lock(&key, short).await.unwrap().release().await.unwrap();
    for _ in 0..3 {
        let key = SessionId::random().storage_key();
        drop(a.lock(&key, short).await.unwrap());
        // Another process gets the lock (the drop released it)...
        b.lock(&key, options(Duration::from_secs(10))).await.unwrap().release().await.unwrap();
        // ...and the pooled connection holds no lock at all.
        assert_eq!(common::lock_holder(&a, &key).await, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_pool_errors_after_the_acquire_timeout() {
    let pool = MySqlPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(300))
        .connect(&common::mysql_url())
        .await
        .unwrap();
    let store = common::store_on(pool.clone(), &common::random_table()).await;
    let hold = async || pool.acquire().await.unwrap();
    session_core::testing::row23_exhausted_pool_fails_then_recovers(&store, hold).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_names_are_checked_and_qualified_names_work() {
    let pool = common::pool(2).await;
    let long = "a".repeat(100);
    for bad in ["x; DROP TABLE y", "`quoted`", "", long.as_str(), "a.b.c", "sessions'", " s"] {
        let result = MySqlStore::new(pool.clone()).with_table_name(bad);
        assert!(result.is_err(), "{bad:?} was accepted");
    }
    let database: String = sqlx::query_scalar("SELECT DATABASE()").fetch_one(&pool).await.unwrap();
    let qualified = format!("{database}.{}", common::random_table());
    let long = format!("{}{}", common::random_table(), "x".repeat(33));
    assert_eq!(long.len(), 63);
    for name in [qualified, long] {
        let store = common::store_on(pool.clone(), &name).await;
        store.migrate().await.unwrap(); // idempotent
        assert_eq!(store.table_name(), name);
        let now = Timestamp::now();
        let r = record(now);
        store.create(&r).await.unwrap();
        assert!(store.load(&r.key, now).await.unwrap().is_some());
        assert_eq!(store.delete_expired(r.expires_at()).await.unwrap(), 1);
    }
    let missing = MySqlStore::new(pool).with_table_name("no_such_database.sessions").unwrap();
    match missing.migrate().await {
        Err(Error::Backend { store, .. }) => assert_eq!(store, "mysql"),
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_deletes_in_batches_until_stopped() {
    let store = common::fresh_store().await.with_cleanup_batch_size(3);
    session_core::testing::delete_expired_in_batches(&store, 3).await;
    session_core::testing::cleanup_task_deletes_expired(store).await;
}

#[tokio::test]
async fn per_session_expiry_and_large_versions_round_trip() {
    let store = common::fresh_store().await;
    let now = Timestamp::now();
    let mut r = record(now);
    session_core::ExpiryPolicy::default().apply(
        &mut r,
        session_core::SessionExpiry::Persistent {
            idle_timeout: Duration::from_secs(99),
            absolute_timeout: None,
        },
        now,
    );
    r.version = u64::MAX - 1;
    let text = "\u{0}\u{1F600}\u{FFFF} ' \" \\ ; --";
    r.data.insert("text", text).unwrap();
    store.create(&r).await.unwrap();
    let loaded = store.load(&r.key, now).await.unwrap().unwrap();
    assert_eq!(loaded.data.get::<String>("text").unwrap().as_deref(), Some(text));
    // The rest of the record, field for field (the data's change flag aside).
    assert_eq!(loaded, session_core::Record { data: loaded.data.clone(), ..r.clone() });
    // Saving the same record again matches its row (no spurious NotFound
    // for an UPDATE that changes nothing), and so does a touch.
    store.save(&r).await.unwrap();
    store.touch(&r).await.unwrap();
}

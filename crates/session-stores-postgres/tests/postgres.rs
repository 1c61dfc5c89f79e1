//! PostgreSQL-specific behaviour (needs `DATABASE_URL`): several pools on one
//! database, corrupt rows, table names, pool exhaustion, lock timeouts,
//! batched cleanup.

mod common;

use std::sync::Arc;
use std::time::Duration;

use session_core::testing::{
    DynStore, concurrent_increments, late_save_under_a_lost_lock_is_refused,
};
use session_core::{
    Error, ExpiryPolicy, LockOptions, LockingStore, SessionId, SessionStore, Timestamp,
};
use session_stores_postgres::{PgPoolOptions, PostgresStore};
use sqlx::AssertSqlSafe;

fn policy() -> ExpiryPolicy {
    ExpiryPolicy::default().with_idle_timeout(Duration::from_secs(600))
}

use common::record;

fn short_wait() -> LockOptions {
    LockOptions { lease: Duration::from_secs(30), wait_timeout: Duration::from_millis(300) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pools_on_one_database_lose_no_update() {
    let table = common::random_table();
    let a = common::store_on(common::pool(4).await, &table).await;
    let b = common::store_on(common::pool(4).await, &table).await;
    let stores: [DynStore; 2] = [Arc::new(a), Arc::new(b)];
    concurrent_increments(&stores, 100).await;
}

/// A locked read-modify-write needs one connection, not two: more sessions
/// locked at once than the pool has connections all get saved (the save
/// runs on the lock's own connection), instead of every holder waiting for
/// a second connection until the acquire timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn more_locked_sessions_than_connections_do_not_deadlock() {
    const SESSIONS: usize = 16;
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(60))
        .connect(&common::database_url())
        .await
        .unwrap();
    let table = common::random_table();
    let store = common::store_on(pool, &table).await;
    // Every session was saved and unlocked (another process gets each lock).
    let other = common::store_on(common::pool(2).await, &table).await;
    common::many_locked_at_once(&store, &other, SESSIONS, Duration::from_millis(20), short_wait())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_rows_load_as_absent_and_spare_their_neighbours() {
    let store = common::fresh_store().await;
    let now = Timestamp::now();
    let user = format!("user-{}", SessionId::random().storage_key());
    let (mut bad_data, mut bad_expiry, mut good) = (record(now), record(now), record(now));
    for r in [&mut bad_data, &mut bad_expiry, &mut good] {
        r.user = Some(user.clone());
        r.data.insert("n", 1).unwrap();
        store.create(r).await.unwrap();
    }

    let table = common::quoted(&store.table_name());
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {table} SET data = '{{\"n\": 1, \"trunc' WHERE session_key = $1"
    )))
    .bind(bad_data.key.as_bytes().as_slice())
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {table} SET expiry = 'not json' WHERE session_key = $1"
    )))
    .bind(bad_expiry.key.as_bytes().as_slice())
    .execute(store.pool())
    .await
    .unwrap();

    assert!(store.load(&bad_data.key, now).await.unwrap().is_none());
    assert!(store.load(&bad_expiry.key, now).await.unwrap().is_none());
    let loaded = store.load(&good.key, now).await.unwrap().unwrap();
    assert_eq!(loaded.data.get::<u64>("n").unwrap(), Some(1));

    let listed = store.list_for_user(&user, now).await.unwrap();
    assert_eq!(listed.iter().map(|r| r.key).collect::<Vec<_>>(), vec![good.key]);
    // Locked loads see the same.
    let (guard, loaded) = store.lock_and_load(&bad_data.key, short_wait(), now).await.unwrap();
    assert!(loaded.is_none());
    guard.release().await.unwrap();
    // The corrupt sessions can still be deleted with the user's others.
    assert_eq!(store.delete_for_user(&user).await.unwrap(), 3);
}

#[tokio::test]
async fn hostile_table_names_are_refused() {
    let pool = PgPoolOptions::new().connect_lazy(&common::database_url()).unwrap();
    let long = "a".repeat(100);
    for bad in [
        "x; DROP TABLE y",
        "\"quoted\"",
        "",
        long.as_str(),
        "a.b.c",
        "sessions--",
        "sessions'",
        "1sessions",
        " sessions",
    ] {
        let result = PostgresStore::new(pool.clone()).with_table_name(bad);
        assert!(result.is_err(), "{bad:?} was accepted");
    }
    let store = PostgresStore::new(pool.clone()).with_table_name("Mixed_Case_1").unwrap();
    assert_eq!(store.table_name(), "Mixed_Case_1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_qualified_and_long_names_work() {
    let pool = common::pool(2).await;
    let long = format!("{}{}", common::random_table(), "x".repeat(33));
    let long_table = long.rsplit('.').next().unwrap();
    assert_eq!(long_table.len(), 63);
    for name in [common::random_table(), long.clone()] {
        let store = common::store_on(pool.clone(), &name).await;
        store.migrate().await.unwrap(); // idempotent
        let now = Timestamp::now();
        let r = record(now);
        store.create(&r).await.unwrap();
        assert!(store.load(&r.key, now).await.unwrap().is_some());
        assert_eq!(store.delete_expired(r.expires_at()).await.unwrap(), 1);
        let indexes: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 \
             AND (indexname LIKE '%expires_at_idx' OR indexname LIKE '%user_id_idx')",
        )
        .bind(common::SCHEMA)
        .bind(name.rsplit('.').next().unwrap())
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(indexes, 2, "expiry and user indexes on {name}");
    }
}

#[tokio::test]
async fn migrating_into_a_missing_schema_is_a_backend_error() {
    let pool = common::pool(1).await;
    let table = format!("no_such_schema.{}", common::random_plain_table());
    let store = PostgresStore::new(pool).with_table_name(&table).unwrap();
    match store.migrate().await {
        Err(Error::Backend { store, .. }) => assert_eq!(store, "postgres"),
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_are_safe() {
    let table = common::random_table();
    let pool = common::pool(4).await;
    common::ensure_schema(&pool).await;
    let store = PostgresStore::new(pool).with_table_name(&table).unwrap();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.migrate().await })
        })
        .collect();
    for run in runs {
        run.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_pool_errors_after_the_acquire_timeout() {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(300))
        .connect(&common::database_url())
        .await
        .unwrap();
    let store = common::store_on(pool.clone(), &common::random_table()).await;
    let hold = async || pool.acquire().await.unwrap();
    session_core::testing::row23_exhausted_pool_fails_then_recovers(&store, hold).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_times_out_other_processes() {
    let table = common::random_table();
    let a = common::store_on(common::pool(2).await, &table).await;
    let b = common::store_on(common::pool(2).await, &table).await;
    let key = SessionId::random().storage_key();

    let held = a.lock(&key, short_wait()).await.unwrap();
    match b.lock(&key, short_wait()).await {
        Err(Error::LockTimeout { waited }) => assert_eq!(waited, short_wait().wait_timeout),
        other => panic!("expected LockTimeout, got {other:?}"),
    }
    held.release().await.unwrap();
    let taken = b.lock(&key, short_wait()).await.unwrap();
    taken.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_guard_never_returns_a_locked_connection_to_the_pool() {
    let table = common::random_table();
    // One connection: whatever the drop does, it is the only one to reuse.
    let single = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&common::database_url())
        .await
        .unwrap();
    let a = common::store_on(single, &table).await;
    let b = common::store_on(common::pool(2).await, &table).await;
    let options =
        LockOptions { lease: Duration::from_secs(30), wait_timeout: Duration::from_secs(10) };
    for _ in 0..5 {
        let key = SessionId::random().storage_key();
        drop(a.lock(&key, options).await.unwrap());
        // Another process gets the lock (the drop released it)...
        b.lock(&key, options).await.unwrap().release().await.unwrap();
        // ...and the pooled connection holds no advisory lock at all.
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
        )
        .fetch_one(a.pool())
        .await
        .unwrap();
        assert_eq!(held, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_expired_works_in_batches() {
    let store = common::fresh_store().await.with_cleanup_batch_size(3);
    session_core::testing::delete_expired_in_batches(&store, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_task_deletes_expired_sessions_until_stopped() {
    session_core::testing::cleanup_task_deletes_expired(common::fresh_store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_session_expiry_and_large_versions_round_trip() {
    let store = common::fresh_store().await;
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
    store.create(&r).await.unwrap();
    let loaded = store.load(&r.key, now).await.unwrap().unwrap();
    assert_eq!(loaded, r);
}

/// Fencing: the advisory lock lives and dies with its connection, so a holder
/// whose connection ended (a terminated backend here; a failover or a network
/// cut alike) cannot save at all: the next holder locks at once and keeps its
/// data, and the late save fails with a 503-class error.
#[tokio::test]
async fn a_holder_whose_lock_connection_died_cannot_overwrite_the_next_holder() {
    let (first, second) = common::two_stores().await;
    let now = Timestamp::now();
    let mut created = record(now);
    created.data.insert_value("n", 1.into());
    first.create(&created).await.unwrap();
    let wait =
        LockOptions { lease: Duration::from_secs(30), wait_timeout: Duration::from_secs(10) };
    let (late_guard, late) = first.lock_and_load(&created.key, wait, now).await.unwrap();
    // The advisory lock's bigint key is split into classid (high 32 bits)
    // and objid (low 32 bits) in pg_locks.
    let lock_id = created.key.prefix_u64().cast_signed();
    let admin = common::pool(1).await;
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks
          WHERE locktype = 'advisory' AND granted AND objsubid = 1
            AND classid::bigint = ($1 >> 32) & 4294967295 AND objid::bigint = $1 & 4294967295",
    )
    .bind(lock_id)
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(terminated, [true], "exactly one backend held the lock");
    late_save_under_a_lost_lock_is_refused(&first, &second, late_guard, late.unwrap()).await;
}

/// A waiter waits in PostgreSQL's own lock queue, not by polling: while
/// another process holds the lock, the waiter's connection is seen in
/// `pg_locks` waiting for the advisory lock (a poller would never be), and
/// the holder's unlock hands the lock over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_waits_in_the_database_lock_queue() {
    let table = common::random_table();
    let holder = common::store_on(common::pool(2).await, &table).await;
    let waiter = common::store_on(common::pool(2).await, &table).await;
    let observer = common::pool(1).await;
    let key = SessionId::random().storage_key();
    let options =
        LockOptions { lease: Duration::from_secs(30), wait_timeout: Duration::from_secs(20) };
    let held = holder.lock(&key, options).await.unwrap();
    let waiting = tokio::spawn(async move { waiter.lock(&key, options).await });

    // A bigint advisory key shows in pg_locks as its high and low halves.
    let lock_id = key.prefix_u64();
    let (high, low) =
        (i64::try_from(lock_id >> 32).unwrap(), i64::try_from(lock_id & 0xffff_ffff).unwrap());
    let mut queued = false;
    for _ in 0..200 {
        let waiting_in_queue: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1",
        )
        .bind(high)
        .bind(low)
        .fetch_one(&observer)
        .await
        .unwrap();
        if waiting_in_queue == 1 {
            queued = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(queued, "the waiter never waited in the database's lock queue");
    assert!(!waiting.is_finished(), "it waits while the lock is held");
    held.release().await.unwrap();
    let taken =
        waiting.await.unwrap().unwrap_or_else(|e| panic!("the release did not wake it: {e}"));
    taken.release().await.unwrap();
}

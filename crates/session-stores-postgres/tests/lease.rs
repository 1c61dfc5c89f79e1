//! `LockMode::Lease`: the conformance suite straight on PostgreSQL
//! (`DATABASE_URL`) and through PgBouncer in transaction pooling mode
//! (`PGBOUNCER_URL`), and what only the lease lock does: many more lockers
//! than PgBouncer has server connections, fencing of a holder whose lease
//! ended, renewal, and taking over the lease of a crashed holder.
//!
//! The PgBouncer tests expect it in transaction pooling with fewer server
//! connections than lockers (`cargo xtask test` runs it with
//! `default_pool_size = 4`); `pgbouncer_pools_by_transaction` checks that.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::testing::{
    DynStore, concurrent_increments, late_save_under_a_lost_lock_is_refused,
};
use session_core::{Error, LockOptions, LockingStore, Record, SessionId, SessionStore, Timestamp};
use session_stores_postgres::{LockMode, PgPoolOptions, PostgresStore};
use sqlx::AssertSqlSafe;

mod direct {
    session_core::conformance_tests!(crate::common::lease_backend);
}

mod pgbouncer {
    session_core::conformance_tests!(crate::common::lease_pgbouncer_backend);
}

use common::record;

fn options(lease: Duration, wait_timeout: Duration) -> LockOptions {
    LockOptions { lease, wait_timeout }
}

/// Sets the lease of `record`'s session to have ended (as if its holder
/// paused for longer than the lease), straight on PostgreSQL.
async fn end_lease(table: &str, record: &Record) {
    let admin = common::pool(1).await;
    let ended = sqlx::query(AssertSqlSafe(format!(
        "UPDATE {} SET lease_until = now() - interval '1 second' WHERE session_key = $1",
        common::quoted_leases(table)
    )))
    .bind(record.key.as_bytes().as_slice())
    .execute(&admin)
    .await
    .unwrap_or_else(|e| panic!("ending the lease: {e}"));
    assert_eq!(ended.rows_affected(), 1, "the session had a lease row");
}

/// The PgBouncer under test pools by transaction: with more clients than it
/// has server connections, each holding its client connection, every client
/// still gets answers. (Pooling by session would block the clients beyond
/// `default_pool_size` until another disconnects.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_pools_by_transaction() {
    const CLIENTS: u32 = 12;
    let pool = common::pgbouncer_pool(CLIENTS).await;
    let mut held = Vec::new();
    for _ in 0..CLIENTS {
        let mut conn = pool.acquire().await.unwrap();
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            sqlx::raw_sql("SELECT 1").execute(&mut *conn),
        )
        .await;
        assert!(
            matches!(answer, Ok(Ok(_))),
            "client {} of {CLIENTS} got no answer: is PGBOUNCER_URL PgBouncer with \
             pool_mode = transaction?",
            held.len() + 1
        );
        held.push(conn);
    }
}

/// 50 lockers at once on one session, from two processes with 25 client
/// connections each: far more than PgBouncer's server connections. None of
/// the increments is lost, and none waits for a connection held by a lock
/// holder (a held lease takes none).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_lockers_through_pgbouncer_lose_no_increment() {
    let (a, b) = common::two_lease_pgbouncer_stores(25).await;
    let stores: [DynStore; 2] = [Arc::new(a), Arc::new(b)];
    concurrent_increments(&stores, 50).await;
}

/// More sessions locked at once, each across an `await`, than the pool has
/// client connections and PgBouncer has server connections: all are saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn more_locked_sessions_than_connections_through_pgbouncer() {
    const SESSIONS: usize = 24;
    let table = common::random_table();
    let store = common::lease_store_on(common::pgbouncer_pool(3).await, &table).await;
    let other = common::lease_store_on(common::pgbouncer_pool(2).await, &table).await;
    let relock = options(Duration::from_secs(30), Duration::from_millis(500));
    common::many_locked_at_once(&store, &other, SESSIONS, Duration::from_millis(50), relock).await;
}

/// Fencing through PgBouncer: the holder's lease ends (set in the past, as
/// after a pause longer than the lease) while its guard still believes it
/// holds the lock; another process takes the lease and saves; the late
/// save is refused by the database (the lease row holds another token) with
/// `LockLost`, and the newer data is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_lease_ended_cannot_overwrite_the_next_holder() {
    let (first, second) = common::two_lease_pgbouncer_stores(4).await;
    let now = Timestamp::now();
    let mut created = record(now);
    created.data.insert_value("n", 1.into());
    first.create(&created).await.unwrap();
    let wait = options(Duration::from_secs(30), Duration::from_secs(10));
    let (late_guard, late) = first.lock_and_load(&created.key, wait, now).await.unwrap();
    end_lease(&first.table_name(), &created).await;
    assert!(late_guard.is_held(), "the holder has not noticed: only the database refuses");
    let error =
        late_save_under_a_lost_lock_is_refused(&first, &second, late_guard, late.unwrap()).await;
    assert!(matches!(error, Error::LockLost), "{error:?}");
}

/// A holder's store on a pool of one connection (taken as a hostage, it
/// keeps the holder from renewing), waiting `acquire_timeout` for it, and
/// another process's store on the same fresh table.
async fn holder_on_one_connection(
    acquire_timeout: Duration,
) -> (sqlx::PgPool, PostgresStore, PostgresStore) {
    let table = common::random_table();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(acquire_timeout)
        .connect_with(common::pgbouncer_options())
        .await
        .unwrap_or_else(|e| panic!("a pool: {e}"));
    let first = common::lease_store_on(pool.clone(), &table).await;
    let second = common::lease_store_on(common::pgbouncer_pool(2).await, &table).await;
    (pool, first, second)
}

/// A holder that cannot renew (its pool is exhausted, as in a long pause or
/// a partition) sees its lease run out: `is_held` turns false after the
/// lease, the next holder takes it over, and the late save is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_cannot_renew_loses_the_lock_after_its_lease() {
    let (pool, first, second) = holder_on_one_connection(Duration::from_millis(100)).await;
    let now = Timestamp::now();
    let mut created = record(now);
    created.data.insert_value("n", 1.into());
    first.create(&created).await.unwrap();
    let lease = Duration::from_millis(600);
    let (late_guard, late) = first
        .lock_and_load(&created.key, options(lease, Duration::from_secs(5)), now)
        .await
        .unwrap();
    let taken = Instant::now();
    let hostage = pool.acquire().await.unwrap();
    while late_guard.is_held() {
        assert!(taken.elapsed() < Duration::from_secs(10), "the lease never ran out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(taken.elapsed() >= lease - Duration::from_millis(50), "held until the lease ran out");
    drop(hostage);
    let error =
        late_save_under_a_lost_lock_is_refused(&first, &second, late_guard, late.unwrap()).await;
    assert!(matches!(error, Error::LockLost), "{error:?}");
}

/// A renewal that waited (here for the pool's one connection) while the
/// lease ran out, and is answered after `is_held` said so, does not bring
/// the lock back: it stays lost, nothing renews it any more, and another
/// holder takes it. (Before, the late answer revived the lease, its holder
/// renewed it for good, and the next holder timed out.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_answered_after_the_lease_ran_out_does_not_revive_it() {
    // A long acquire timeout: the renewal waits for the connection instead
    // of giving up, and goes through once the hostage is let go.
    let (pool, first, second) = holder_on_one_connection(Duration::from_secs(30)).await;
    let now = Timestamp::now();
    let created = record(now);
    first.create(&created).await.unwrap();
    let lease = Duration::from_millis(600);
    let guard = first.lock(&created.key, options(lease, Duration::from_secs(5))).await.unwrap();
    let taken = Instant::now();
    let hostage = pool.acquire().await.unwrap();
    while guard.is_held() {
        assert!(taken.elapsed() < Duration::from_secs(10), "the lease never ran out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(hostage); // the waiting renewal now reaches the database
    let next = second
        .lock(&created.key, options(Duration::from_secs(30), Duration::from_secs(5)))
        .await
        .unwrap_or_else(|e| panic!("the lapsed lease was revived: {e}"));
    assert!(!guard.is_held(), "a lost lock stays lost");
    next.release().await.unwrap();
    assert!(matches!(guard.release().await, Ok(())));
}

/// While the guard lives, the lease is renewed: held for several leases,
/// the lock keeps other processes out, and the save under it goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lease_is_renewed_until_released() {
    let (first, second) = common::two_lease_pgbouncer_stores(2).await;
    let now = Timestamp::now();
    let created = record(now);
    first.create(&created).await.unwrap();
    let lease = Duration::from_millis(300);
    let (guard, loaded) = first
        .lock_and_load(&created.key, options(lease, Duration::from_secs(5)), now)
        .await
        .unwrap();
    let held_since = Instant::now();
    while held_since.elapsed() < lease * 4 {
        match second.lock(&created.key, options(lease, Duration::from_millis(100))).await {
            Err(Error::LockTimeout { .. }) => {}
            other => panic!("a renewed lease was taken: {other:?}"),
        }
        assert!(guard.is_held());
    }
    let mut loaded = loaded.unwrap();
    loaded.data.insert_value("n", 1.into());
    loaded.version += 1;
    first.save_and_release(&loaded, guard).await.unwrap();
    let short = options(lease, Duration::from_millis(500));
    second.lock(&created.key, short).await.unwrap().release().await.unwrap();
}

/// A holder that crashes (its process, here its runtime, ends with the lock
/// held and never released) blocks the session until its lease ends, and
/// not longer: then another process takes the lease over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_holders_lease_is_taken_over_once_it_ends() {
    let table = common::random_table();
    let survivor = common::lease_store_on(common::pgbouncer_pool(2).await, &table).await;
    let key = SessionId::random().storage_key();
    let lease = Duration::from_secs(2);
    let crashed_table = table.clone();
    let requested = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let requested = runtime.block_on(async {
            let store =
                common::lease_store_on(common::pgbouncer_pool(1).await, &crashed_table).await;
            let requested = Instant::now();
            let guard = store.lock(&key, options(lease, Duration::from_secs(5))).await.unwrap();
            // Neither released nor dropped: the process dies holding it.
            std::mem::forget(guard);
            requested
        });
        // Ends every task of the "process", its lease renewal included.
        drop(runtime);
        requested
    })
    .await
    .unwrap();
    match survivor.lock(&key, options(lease, Duration::from_millis(300))).await {
        Err(Error::LockTimeout { .. }) => {}
        other => panic!("the crashed holder's lease was taken before it ended: {other:?}"),
    }
    let guard = survivor.lock(&key, options(lease, Duration::from_secs(10))).await.unwrap();
    let waited = requested.elapsed();
    assert!(waited >= lease - Duration::from_millis(100), "taken over after {waited:?}");
    assert!(waited < lease + Duration::from_secs(3), "taken over only after {waited:?}");
    guard.release().await.unwrap();
}

/// The save-and-release statement never deletes another holder's lease:
/// with another token in the row (the lease ended and was taken while this
/// holder did not notice), the save writes nothing and the row stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_and_release_never_touches_another_holders_lease() {
    let store =
        common::lease_store_on(common::pgbouncer_pool(2).await, &common::random_table()).await;
    let now = Timestamp::now();
    let created = record(now);
    store.create(&created).await.unwrap();
    let (guard, loaded) =
        store.lock_and_load(&created.key, LockOptions::default(), now).await.unwrap();
    let admin = common::pool(1).await;
    let leases = common::quoted_leases(&store.table_name());
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {leases} SET token = '\\x00'::bytea WHERE session_key = $1"
    )))
    .bind(created.key.as_bytes().as_slice())
    .execute(&admin)
    .await
    .unwrap();
    let mut loaded = loaded.unwrap();
    loaded.data.insert_value("n", 5.into());
    loaded.version += 1;
    match store.save_and_release(&loaded, guard).await {
        Err(Error::LockLost) => {}
        other => panic!("expected LockLost, got {other:?}"),
    }
    let token: Vec<u8> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT token FROM {leases} WHERE session_key = $1"
    )))
    .bind(created.key.as_bytes().as_slice())
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(token, [0], "the other holder's lease is left alone");
    let stored = store.load(&created.key, now).await.unwrap().unwrap();
    assert_eq!((stored.data.get_value("n"), stored.version), (None, 0));
}

/// `delete_expired` also removes leases that ended (a crashed holder's, on a
/// session nobody locked again), never running ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_removes_ended_leases_only() {
    let table = common::random_table();
    let store = common::lease_store_on(common::pgbouncer_pool(2).await, &table).await;
    let now = Timestamp::now();
    let (ended, running) = (record(now), record(now));
    let ended_guard = store.lock(&ended.key, LockOptions::default()).await.unwrap();
    let running_guard = store.lock(&running.key, LockOptions::default()).await.unwrap();
    end_lease(&table, &ended).await;
    store.delete_expired(now).await.unwrap();
    let admin = common::pool(1).await;
    let left: Vec<Vec<u8>> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT session_key FROM {}",
        common::quoted_leases(&table)
    )))
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(left, [running.key.as_bytes().to_vec()]);
    ended_guard.release().await.unwrap(); // already gone: nothing to do
    running_guard.release().await.unwrap();
}

/// In lease mode the store prepares no statement at all (named or
/// unnamed), migrations included: on a pool of one connection straight to
/// PostgreSQL, `pg_prepared_statements` stays empty after every operation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_mode_prepares_no_statements() {
    let pool = common::pool(1).await;
    let store = common::lease_store_on(pool.clone(), &common::random_table()).await;
    let now = Timestamp::now();
    let mut r = record(now);
    r.user = Some(format!("user-{}", SessionId::random().storage_key()));
    store.create(&r).await.unwrap();
    store.load(&r.key, now).await.unwrap().unwrap();
    r.version += 1;
    store.save(&r).await.unwrap();
    store.touch(&r).await.unwrap();
    let (guard, _) = store.lock_and_load(&r.key, LockOptions::default(), now).await.unwrap();
    store.save_and_release(&r, guard).await.unwrap();
    store.lock(&r.key, LockOptions::default()).await.unwrap().release().await.unwrap();
    store.list_for_user(r.user.as_deref().unwrap(), now).await.unwrap();
    store.delete_expired(now).await.unwrap();
    store.delete_for_user(r.user.as_deref().unwrap()).await.unwrap();
    store.delete(&r.key).await.unwrap();
    let prepared =
        sqlx::raw_sql("SELECT name FROM pg_prepared_statements").fetch_all(&pool).await.unwrap();
    assert!(prepared.is_empty(), "{} prepared statements", prepared.len());
}

/// The lease read happens after the lease is taken even when the server's
/// default isolation is REPEATABLE READ (whose snapshot, taken before the
/// lease wait, would miss the previous holder's save): no lost update.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lock_and_load_sees_the_last_save_under_a_repeatable_read_default() {
    let table = common::random_table();
    let mut stores: Vec<DynStore> = Vec::new();
    for _ in 0..2 {
        let options = common::database_url()
            .parse::<session_stores_postgres::PgConnectOptions>()
            .unwrap()
            .options([("default_transaction_isolation", "repeatable read")]);
        let pool = PgPoolOptions::new().max_connections(4).connect_with(options).await.unwrap();
        stores.push(Arc::new(common::lease_store_on(pool, &table).await));
    }
    concurrent_increments(&stores, 50).await;
}

/// `with_lock_mode(LockMode::Lease)` drops sqlx's `extra_float_digits`
/// startup parameter itself: a lazily connected pool with sqlx's default
/// options works through PgBouncer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_mode_connects_through_pgbouncer_with_default_options() {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy(&common::pgbouncer_url())
        .unwrap();
    let store = PostgresStore::new(pool)
        .with_table_name(&common::random_table())
        .unwrap()
        .with_lock_mode(LockMode::Lease);
    common::ensure_schema(store.pool()).await;
    store.migrate().await.unwrap();
    let now = Timestamp::now();
    let r = record(now);
    store.create(&r).await.unwrap();
    assert!(store.load(&r.key, now).await.unwrap().is_some());
    let guard = store.lock(&r.key, LockOptions::default()).await.unwrap();
    store.save_and_release(&r, guard).await.unwrap();
}

//! `shared/BAD_INPUTS.md`, store level, for the SQLite store: one test per
//! row that a store answers for, named after the row. Two stores opened on
//! one file stand for two users of it (they share the file and its locks).
//!
//! | row | here |
//! |-----|------|
//! | 1-4, 6, 20-22, 27 | the layer: `session-axum/tests/bad_inputs.rs` (stores only ever see hashed keys) |
//! | 5 | `row05_unknown_key_is_not_created` |
//! | 7, 8 | hostile user ids in the per-user index (bound parameters, never SQL text) |
//! | 9-18 | cookie formats only |
//! | 19 | `row19_corrupt_rows_are_absent_and_cleanup_goes_on`; more corruptions in `sqlite.rs` (`corrupt_rows_load_as_absent_and_spare_their_neighbours`) |
//! | 22 | not applicable: an embedded database has no server to go down |
//! | 23 | a lock held by another store on the file, and an exhausted pool |
//! | 24 | filesystem store only |
//! | 25, 26, 28 | below, and through the layer |
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use session_core::testing::{self, DynStore};
use session_core::{
    Error, ExpiryPolicy, LockOptions, LockingStore, Record, SessionId, SessionStore, Timestamp,
};
use session_stores_sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteStore};
use sqlx::AssertSqlSafe;
use tempfile::TempDir;

/// Two stores on one fresh database file, and the directory holding it.
async fn stores() -> (SqliteStore, SqliteStore, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = file(dir.path());
    (SqliteStore::open(&path).await.unwrap(), SqliteStore::open(&path).await.unwrap(), dir)
}

fn file(dir: &Path) -> PathBuf {
    dir.join("sessions.db")
}

fn record(now: Timestamp) -> Record {
    ExpiryPolicy::default().new_record(SessionId::random().storage_key(), now)
}

fn short_wait() -> LockOptions {
    LockOptions { lease: Duration::from_secs(30), wait_timeout: Duration::from_millis(200) }
}

#[tokio::test]
async fn row05_unknown_key_is_not_created() {
    let (store, _, _dir) = stores().await;
    testing::unknown_key_loads_nothing(Arc::new(store.clone())).await;
    testing::save_never_resurrects(Arc::new(store.clone())).await;
    let table = store.table_name();
    let rows: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM \"{table}\"")))
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 0, "nothing was left behind");
}

#[tokio::test]
async fn row07_path_like_user_ids() {
    let (store, other, _dir) = stores().await;
    testing::hostile_user_ids(
        &store,
        &other,
        &["../../etc/passwd", "..%2f..", "a\\b", "/etc/passwd", "NUL", "CON", "", "\0", "."],
    )
    .await;
}

#[tokio::test]
async fn row08_sql_shaped_user_ids() {
    let (store, other, _dir) = stores().await;
    testing::hostile_user_ids(
        &store,
        &other,
        &["' OR 1=1--", "'; DROP TABLE sessions; --", "\" OR \"\"=\"", "%", "_", "*", "?1"],
    )
    .await;
}

/// A corrupt row is absent for readers of either store; the cleanup still
/// removes what expired (corrupt or not) and nothing else.
#[tokio::test]
async fn row19_corrupt_rows_are_absent_and_cleanup_goes_on() {
    let (store, other, _dir) = stores().await;
    let now = Timestamp::now();
    let (mut live_corrupt, mut expired_corrupt, good) = (record(now), record(now), record(now));
    expired_corrupt.created_at = now - Duration::from_secs(100);
    expired_corrupt.idle_deadline = now + Duration::from_secs(10);
    live_corrupt.data.insert("n", 1).unwrap();
    for r in [&live_corrupt, &expired_corrupt, &good] {
        store.create(r).await.unwrap();
    }
    let table = store.table_name();
    for (r, set) in [(&live_corrupt, "data = '{\"n\": '"), (&expired_corrupt, "data = X'00FF'")] {
        let sql = format!("UPDATE \"{table}\" SET {set} WHERE session_key = ?1");
        sqlx::query(AssertSqlSafe(sql))
            .bind(r.key.as_bytes().as_slice())
            .execute(store.pool())
            .await
            .unwrap();
    }
    for reader in [&store, &other] {
        assert!(reader.load(&live_corrupt.key, now).await.unwrap().is_none());
        let (guard, loaded) =
            reader.lock_and_load(&live_corrupt.key, short_wait(), now).await.unwrap();
        assert!(loaded.is_none());
        guard.release().await.unwrap();
        assert!(reader.load(&good.key, now).await.unwrap().is_some());
    }
    let later = now + Duration::from_secs(20);
    assert_eq!(other.delete_expired(later).await.unwrap(), 1, "the expired corrupt row");
    assert!(store.load(&good.key, now).await.unwrap().is_some(), "neighbours untouched");
    // A save from a request that loaded the session before it was corrupted
    // replaces the row whole (SQLite's `UPDATE`): repaired, never merged.
    live_corrupt.version += 1;
    store.save(&live_corrupt).await.unwrap();
    let repaired = other.load(&live_corrupt.key, now).await.unwrap().unwrap();
    assert_eq!(repaired.data.get::<u64>("n").unwrap(), Some(1));
}

#[tokio::test]
async fn row23_held_lock_and_exhausted_pool_time_out() {
    let (store, other, dir) = stores().await;
    let key = SessionId::random().storage_key();
    let held = store.lock(&key, LockOptions::default()).await.unwrap();
    assert!(matches!(other.lock(&key, short_wait()).await, Err(Error::LockTimeout { .. })));
    let waited = other.lock_and_load(&key, short_wait(), Timestamp::now()).await;
    assert!(matches!(waited, Err(Error::LockTimeout { .. })));
    held.release().await.unwrap();
    other.lock(&key, short_wait()).await.unwrap().release().await.unwrap();

    // One connection, taken: operations fail (503) after the acquire timeout.
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(200))
        .connect_with(SqliteConnectOptions::new().filename(file(dir.path())))
        .await
        .unwrap();
    let small = SqliteStore::new(pool.clone());
    let taken = pool.acquire().await.unwrap();
    match small.load(&key, Timestamp::now()).await {
        Err(error) => assert!(error.is_unavailable(), "{error}"),
        Ok(found) => panic!("load with the pool exhausted: {found:?}"),
    }
    drop(taken);
    assert!(small.load(&key, Timestamp::now()).await.unwrap().is_none(), "works again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn row25_concurrent_locked_writers_lose_nothing() {
    let (store, other, _dir) = stores().await;
    let stores: [DynStore; 2] = [Arc::new(store), Arc::new(other)];
    testing::concurrent_increments(&stores, testing::CONCURRENT_INCREMENTS).await;
}

#[tokio::test]
async fn row26_id_collision_on_create_hands_over_nothing() {
    let (store, other, _dir) = stores().await;
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
    let (store, other, _dir) = stores().await;
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

//! The hostile-input catalogue (`docs/hostile-inputs.md`), store level, for the SQLite
//! store: where each row that a store answers for is tested, and the checks
//! only this store can make. Two stores opened on one file stand for two
//! users of it (they share the file and its locks).
//!
//! | row | here |
//! |-----|------|
//! | 1-4, 6, 20-22, 27 | the layer: `session-axum/tests/bad_inputs.rs` (stores only ever see hashed keys) |
//! | 5 | `conformance::row05_unknown_key_is_not_created` (`session_core::testing`); below: no row is left in the table |
//! | 7, 8 | `conformance::row07_*`, `conformance::row08_*`: hostile user ids in the per-user index (bound parameters, never SQL text) |
//! | 9-18 | cookie formats only |
//! | 19 | `row19_corrupt_rows_are_absent_and_cleanup_goes_on`; more corruptions in `sqlite.rs` (`corrupt_rows_load_as_absent_and_spare_their_neighbours`) |
//! | 22 | not applicable: an embedded database has no server to go down |
//! | 23 | `conformance::row23_held_lock_times_out_elsewhere`; below: an exhausted pool |
//! | 24 | filesystem store only |
//! | 25, 26, 28 | `conformance::row25_*`, `row26_*`, `row28_*`, and through the layer |
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TempStore;
use session_core::testing;
use session_core::{SessionId, SessionStore, Timestamp};
use session_stores_sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteStore};
use sqlx::AssertSqlSafe;

/// Row 5 in the database: the unknown keys the generic check used left no
/// row.
#[tokio::test]
async fn row05_unknown_key_leaves_no_row() {
    let temp = TempStore::new().await;
    let store = &temp.store;
    let other = temp.open_again().await;
    testing::row05_unknown_key_is_not_created(Arc::new(store.clone()), Arc::new(other)).await;
    let table = store.table_name();
    let rows: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM \"{table}\"")))
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 0, "nothing was left behind");
}

/// Row 19 with corrupt JSON in the data of one row and a value SQLite
/// stores with another type (a BLOB in the data's TEXT column) in another.
#[tokio::test]
async fn row19_corrupt_rows_are_absent_and_cleanup_goes_on() {
    let temp = TempStore::new().await;
    let (store, other) = (temp.store.clone(), temp.open_again().await);
    let table = store.table_name();
    let corrupt = async |which, key: session_core::StorageKey| {
        let set = match which {
            testing::Corrupted::Live => "data = '{\"n\": '",
            testing::Corrupted::Expired => "data = X'00FF'",
        };
        let sql = format!("UPDATE \"{table}\" SET {set} WHERE session_key = ?1");
        sqlx::query(AssertSqlSafe(sql))
            .bind(key.as_bytes().as_slice())
            .execute(store.pool())
            .await
            .unwrap();
    };
    testing::row19_corrupt_rows_are_absent_and_cleanup_goes_on(&store, &other, corrupt).await;
}

/// Row 23 for an embedded database: with the pool's one connection taken,
/// operations fail (503) after the acquire timeout, and work again once it is
/// free. (The held-lock half of row 23 is `conformance::row23_*`.)
#[tokio::test]
async fn row23_exhausted_pool_fails_after_the_acquire_timeout() {
    let temp = TempStore::new().await;
    let key = SessionId::random().storage_key();
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(200))
        .connect_with(SqliteConnectOptions::new().filename(temp.file()))
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

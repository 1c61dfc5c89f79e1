//! The hostile-input catalogue (`docs/hostile-inputs.md`), store level, for the MySQL
//! store: where each row that a store answers for is tested, and the checks
//! only this store can make. Two stores with pools of their own on one table
//! stand for two processes. Needs `MYSQL_URL` (`cargo xtask test` sets it).
//!
//! | row | here |
//! |-----|------|
//! | 1-4, 6, 20, 21, 27 | the layer: `session-axum/tests/bad_inputs.rs` (rows are keyed by hashed ids only) |
//! | 5 | `conformance::row05_unknown_key_is_not_created` (`session_core::testing`); below: no row is left in the table |
//! | 7, 8 | `conformance::row07_*`, `conformance::row08_*`: hostile user ids in the per-user index (bound parameters); below: NUL, case and trailing spaces in user ids (bytes, compared byte for byte) |
//! | 9-18 | cookie formats only |
//! | 19 | `row19_corrupt_rows_are_absent_and_cleanup_goes_on` |
//! | 22 | through the layer: `row22_unreachable_mysql_is_503_never_a_fresh_session` in `session-axum/tests/bad_inputs.rs`; `mysql.rs`: `a_holder_whose_lock_connection_died_cannot_overwrite_the_next_holder` |
//! | 23 | `conformance::row23_held_lock_times_out_elsewhere`; `mysql.rs`: `exhausted_pool_errors_after_the_acquire_timeout`; through the layer: `row23_*` |
//! | 24 | filesystem store only |
//! | 25, 26, 28 | `conformance::row25_*`, `row26_*`, `row28_*`, and through the layer |
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use session_core::testing;
use session_core::{LockOptions, LockingStore, SessionId, SessionStore, StorageKey, Timestamp};
use sqlx::AssertSqlSafe;

use common::record;

/// Row 5 in the database: the unknown keys the generic check used left no
/// row.
#[tokio::test]
async fn row05_unknown_key_leaves_no_row() {
    let (store, other) = common::two_stores().await;
    testing::row05_unknown_key_is_not_created(Arc::new(store.clone()), Arc::new(other)).await;
    let table = common::quoted(&store.table_name());
    let rows: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 0, "nothing was left behind in {table}");
}

/// User ids are bytes (`LONGBLOB`), compared byte for byte: one with NUL
/// (and other control characters) is indexed, listed, moved by a locked save
/// and deleted like any other, and ids that a text collation would take for
/// one (case, trailing spaces, a NUL at the end) stay apart.
#[tokio::test]
async fn row07_nul_case_and_trailing_spaces_in_user_ids_stay_apart() {
    let (store, other) = common::two_stores().await;
    testing::hostile_user_ids(&store, &other, &["a\0b", "\0", "nul\0\0end", "\u{1}\r\n\t"]).await;
    let now = Timestamp::now();
    let base = format!("user-{}", &SessionId::random().storage_key().to_hex()[..8]);
    let users = [
        base.clone(),
        base.to_uppercase(),
        format!("{base} "),
        format!("{base}\0"),
        format!("é{base}"),
    ];
    let mut keys = Vec::new();
    for user in &users {
        let mut r = record(now);
        r.user = Some(user.clone());
        store.create(&r).await.unwrap();
        keys.push(r.key);
    }
    for (user, key) in users.iter().zip(&keys) {
        let listed = other.list_for_user(user, now).await.unwrap();
        assert_eq!(listed.iter().map(|r| r.key).collect::<Vec<_>>(), [*key], "{user:?}");
        assert_eq!(listed[0].user.as_deref(), Some(user.as_str()));
    }
    // Under the lock too: `save_and_release` writes the user id the same way.
    let (guard, loaded) = other.lock_and_load(&keys[0], LockOptions::default(), now).await.unwrap();
    let mut loaded = loaded.unwrap();
    let moved = format!("{base}\0moved");
    loaded.user = Some(moved.clone());
    loaded.version += 1;
    other.save_and_release(&loaded, guard).await.unwrap();
    assert!(store.list_for_user(&base, now).await.unwrap().is_empty());
    assert_eq!(store.delete_for_user(&moved).await.unwrap(), 1);
    for user in &users[1..] {
        assert_eq!(other.delete_for_user(user).await.unwrap(), 1, "{user:?}");
    }
}

/// Row 19 with corrupt JSON in the data of one row and in the expiry of
/// another; and a user id that is not UTF-8, which makes its session absent
/// too.
#[tokio::test]
async fn row19_corrupt_rows_are_absent_and_cleanup_goes_on() {
    let (store, other) = common::two_stores().await;
    let table = common::quoted(&store.table_name());
    let corrupt = async |set: &str, key: StorageKey| {
        let sql = format!("UPDATE {table} SET {set} WHERE session_key = ?");
        sqlx::query(AssertSqlSafe(sql))
            .bind(key.as_bytes().as_slice())
            .execute(store.pool())
            .await
            .unwrap();
    };
    testing::row19_corrupt_rows_are_absent_and_cleanup_goes_on(
        &store,
        &other,
        async |which, key| match which {
            testing::Corrupted::Live => corrupt("data = '{\"n\": '", key).await,
            testing::Corrupted::Expired => corrupt("expiry = 'nope'", key).await,
        },
    )
    .await;
    let now = Timestamp::now();
    let mut bad_user = record(now);
    bad_user.user = Some("someone".to_owned());
    store.create(&bad_user).await.unwrap();
    corrupt("user_id = X'FF00'", bad_user.key).await;
    for reader in [&store, &other] {
        assert!(reader.load(&bad_user.key, now).await.unwrap().is_none());
    }
}

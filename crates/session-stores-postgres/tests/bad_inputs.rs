//! The hostile-input catalogue (`docs/hostile-inputs.md`), store level, for the PostgreSQL
//! store: where each row that a store answers for is tested, and the checks
//! only this store can make. Two stores with pools of their own on one table
//! stand for two processes. Each check runs in both lock modes: advisory
//! straight on PostgreSQL, and lease through PgBouncer (whose statements
//! write values as literals and read results as text). Needs `DATABASE_URL`
//! and `PGBOUNCER_URL` (`cargo xtask test` sets them).
//!
//! | row | here |
//! |-----|------|
//! | 1-4, 6, 20, 21, 27 | the layer: `session-axum/tests/bad_inputs.rs` (rows are keyed by hashed ids only) |
//! | 5 | `conformance::row05_unknown_key_is_not_created` (`session_core::testing`); below: no row is left in the table |
//! | 7, 8 | `conformance::row07_*`, `conformance::row08_*` (and in `lease.rs`, both lease backends): hostile user ids in the per-user index (advisory mode: bound parameters; lease mode: hex literals, never the id's own characters); below: NUL in user ids (`BYTEA`) |
//! | 9-18 | cookie formats only |
//! | 19 | `row19_corrupt_rows_are_absent_and_cleanup_goes_on`; more corruptions in `postgres.rs` (`corrupt_rows_load_as_absent_and_spare_their_neighbours`) |
//! | 22 | `faults.rs`: `store_fails_cleanly_while_postgres_is_down_and_recovers_after`; through the layer: `row22_*` in `session-axum/tests/bad_inputs.rs` |
//! | 23 | `conformance::row23_held_lock_times_out_elsewhere`; `postgres.rs`: `exhausted_pool_errors_after_the_acquire_timeout`, `a_held_lock_times_out_other_processes`; through the layer: `row23_*` |
//! | 24 | filesystem store only |
//! | 25, 26, 28 | `conformance::row25_*`, `row26_*`, `row28_*`, and through the layer |
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use session_core::testing;
use session_core::{
    ExpiryPolicy, LockOptions, LockingStore, Record, SessionId, SessionStore, Timestamp,
};
use session_stores_postgres::PostgresStore;
use sqlx::AssertSqlSafe;

/// Declares `$name` (advisory, straight on PostgreSQL) and `$lease` (lease
/// mode through PgBouncer), both running `$check(store, other)`.
macro_rules! in_both_modes {
    ($check:ident: $name:ident, $lease:ident) => {
        #[tokio::test]
        async fn $name() {
            let (store, other) = common::two_stores().await;
            $check(store, other).await;
        }

        #[tokio::test]
        async fn $lease() {
            let (store, other) = common::two_lease_pgbouncer_stores(4).await;
            $check(store, other).await;
        }
    };
}

fn record(now: Timestamp) -> Record {
    ExpiryPolicy::default().new_record(SessionId::random().storage_key(), now)
}

/// Row 5 in the database: the unknown keys the generic check used left no
/// row (nor a lease).
async fn row05(store: PostgresStore, other: PostgresStore) {
    testing::row05_unknown_key_is_not_created(Arc::new(store.clone()), Arc::new(other)).await;
    let admin = common::pool(1).await;
    for table in [common::quoted(&store.table_name()), common::quoted_leases(&store.table_name())] {
        let rows: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(&admin)
            .await
            .unwrap();
        assert_eq!(rows, 0, "nothing was left behind in {table}");
    }
}

in_both_modes!(row05: row05_unknown_key_leaves_no_row, row05_unknown_key_leaves_no_row_lease);

/// User ids are stored as their UTF-8 bytes (`BYTEA`): PostgreSQL `TEXT`
/// cannot hold NUL, and a user id may. One with NUL (and other control
/// characters) is indexed, listed, moved by `save` and deleted like any other.
async fn row07(store: PostgresStore, other: PostgresStore) {
    testing::hostile_user_ids(&store, &other, &["a\0b", "\0", "nul\0\0end", "\u{1}\r\n\t"]).await;
    let now = Timestamp::now();
    let user = format!("a\0b-{}", &SessionId::random().storage_key().to_hex()[..8]);
    let prefix = user.split('\0').next().unwrap().to_owned();
    let mut plain = record(now);
    store.create(&plain).await.unwrap();
    plain.user = Some(user.clone());
    plain.version += 1;
    store.save(&plain).await.unwrap();
    let loaded = other.load(&plain.key, now).await.unwrap().unwrap();
    assert_eq!(loaded.user.as_deref(), Some(user.as_str()));
    let listed = other.list_for_user(&user, now).await.unwrap();
    assert_eq!(listed.iter().map(|r| r.key).collect::<Vec<_>>(), [plain.key]);
    assert!(other.list_for_user(&prefix, now).await.unwrap().is_empty(), "no prefix match");
    // Under the lock too: `save_and_release` writes the user id the same way.
    let options = LockOptions::default();
    let (guard, loaded) = other.lock_and_load(&plain.key, options, now).await.unwrap();
    let mut loaded = loaded.unwrap();
    let moved = format!("{user}\0moved");
    loaded.user = Some(moved.clone());
    loaded.version += 1;
    other.save_and_release(&loaded, guard).await.unwrap();
    assert!(store.list_for_user(&user, now).await.unwrap().is_empty());
    assert_eq!(store.delete_for_user(&moved).await.unwrap(), 1);
    assert!(other.load(&plain.key, now).await.unwrap().is_none());
}

in_both_modes!(row07: row07_nul_in_a_user_id_works, row07_nul_in_a_user_id_works_lease);

/// Row 19 with corrupt JSON in the data of one row and in the expiry of
/// another, written straight into PostgreSQL.
async fn row19(store: PostgresStore, other: PostgresStore) {
    let table = common::quoted(&store.table_name());
    let admin = common::pool(1).await;
    let corrupt = async |which, key: session_core::StorageKey| {
        let set = match which {
            testing::Corrupted::Live => "data = '{\"n\": '",
            testing::Corrupted::Expired => "expiry = 'nope'",
        };
        let sql = format!("UPDATE {table} SET {set} WHERE session_key = $1");
        sqlx::query(AssertSqlSafe(sql))
            .bind(key.as_bytes().as_slice())
            .execute(&admin)
            .await
            .unwrap();
    };
    testing::row19_corrupt_rows_are_absent_and_cleanup_goes_on(&store, &other, corrupt).await;
}

in_both_modes!(
    row19: row19_corrupt_rows_are_absent_and_cleanup_goes_on,
    row19_corrupt_rows_are_absent_and_cleanup_goes_on_lease
);

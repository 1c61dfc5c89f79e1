//! The HTTP scenarios of `route_tests!` on every server-side store besides
//! memory (which `tests/memory.rs` covers). Redis, Postgres and MySQL come from
//! `REDIS_URL` / `REDIS_CLUSTER_URLS` / `DATABASE_URL` / `MYSQL_URL`, PgBouncer (for
//! Postgres in lease mode) from `PGBOUNCER_URL`, which `cargo xtask test` sets.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Store constructors in test helpers.

mod common;

#[cfg(feature = "redis")]
mod redis {
    use session_axum::redis::RedisStore;

    async fn make_store() -> RedisStore {
        let url = crate::common::service_url("REDIS_URL");
        RedisStore::from_url(&url)
            .unwrap()
            .with_prefix(format!("route-tests:{}:", crate::common::unique()))
    }

    crate::route_tests!(make_store);
    crate::race_tests!(make_store);
}

#[cfg(feature = "redis-cluster")]
mod redis_cluster {
    use session_axum::redis::RedisStore;

    async fn make_store() -> RedisStore {
        let urls = crate::common::service_url("REDIS_CLUSTER_URLS");
        RedisStore::cluster(urls.split(','))
            .unwrap()
            .with_prefix(format!("route-tests:{}:", crate::common::unique()))
    }

    crate::route_tests!(make_store);
    crate::race_tests!(make_store);
}

#[cfg(feature = "postgres")]
mod postgres {
    use session_axum::postgres::{PgPool, PostgresStore};

    async fn make_store() -> PostgresStore {
        let pool = PgPool::connect(&crate::common::service_url("DATABASE_URL")).await.unwrap();
        // One table for all runs: every test uses fresh random session ids.
        let store = PostgresStore::new(pool).with_table_name("axum_route_tests").unwrap();
        store.migrate().await.unwrap();
        store
    }

    crate::route_tests!(make_store);
    crate::race_tests!(make_store);
}

/// Lease mode through PgBouncer in transaction pooling mode (`PGBOUNCER_URL`),
/// on a pool with more client connections than PgBouncer has server
/// connections.
#[cfg(feature = "postgres")]
mod postgres_lease_pgbouncer {
    use std::time::Duration;

    use session_axum::postgres::{LockMode, PgConnectOptions, PgPoolOptions, PostgresStore};

    async fn make_store() -> PostgresStore {
        let options: PgConnectOptions =
            crate::common::service_url("PGBOUNCER_URL").parse().unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            // PgBouncer refuses sqlx's `extra_float_digits` startup parameter.
            .connect_with(options.extra_float_digits(None))
            .await
            .unwrap();
        // One table for all runs (every test uses fresh random session ids),
        // apart from the advisory-mode tests: the two modes do not exclude
        // each other.
        let store = PostgresStore::new(pool)
            .with_table_name("axum_route_tests_lease")
            .unwrap()
            .with_lock_mode(LockMode::Lease);
        store.migrate().await.unwrap();
        store
    }

    crate::route_tests!(make_store);
    crate::race_tests!(make_store);
}

#[cfg(feature = "mysql")]
mod mysql {
    use session_axum::mysql::{MySqlPool, MySqlStore};

    async fn make_store() -> MySqlStore {
        let pool = MySqlPool::connect(&crate::common::service_url("MYSQL_URL")).await.unwrap();
        // One table for all runs: every test uses fresh random session ids.
        let store = MySqlStore::new(pool).with_table_name("axum_route_tests").unwrap();
        store.migrate().await.unwrap();
        store
    }

    crate::route_tests!(make_store);
    crate::race_tests!(make_store);
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use session_axum::sqlite::SqliteStore;

    async fn make_store() -> SqliteStore {
        SqliteStore::open(crate::common::scratch_dir().join("sessions.sqlite3")).await.unwrap()
    }

    crate::route_tests!(make_store);
    crate::race_tests!(make_store);
}

#[cfg(feature = "fs")]
mod fs {
    use session_axum::fs::FsStore;

    async fn make_store() -> FsStore {
        FsStore::new(crate::common::scratch_dir().join("sessions")).unwrap()
    }

    crate::route_tests!(make_store);
    crate::race_tests!(make_store);
}

//! The shared store conformance suite, on PostgreSQL (needs `DATABASE_URL`).

mod common;

use session_stores_postgres::PostgresStore;

async fn make_store() -> PostgresStore {
    common::fresh_store().await
}

session_core::conformance_tests!(make_store);

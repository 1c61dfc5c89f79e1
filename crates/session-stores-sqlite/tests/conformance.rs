//! The shared store conformance suite, on a temporary SQLite file.

mod common;

use common::TempStore;

async fn make_store() -> TempStore {
    TempStore::new().await
}

session_core::conformance_tests!(make_store);

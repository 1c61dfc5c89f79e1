//! The hostile-input catalogue (`docs/hostile-inputs.md`), store level, for the memory
//! store: where each row that a store answers for is tested, and the checks
//! only this store can make.
//!
//! | row | here |
//! |-----|------|
//! | 1-4, 6, 20-22, 27 | the layer: `session-axum/tests/bad_inputs.rs` (stores only ever see hashed keys) |
//! | 5 | `conformance::row05_unknown_key_is_not_created` (`session_core::testing`); below: nothing is left in memory |
//! | 7, 8 | `conformance::row07_*`, `conformance::row08_*`: hostile user ids in the per-user index |
//! | 9-18 | cookie formats only |
//! | 19, 24 | not applicable: records are kept as values, never as bytes or files |
//! | 23, 25, 26, 28 | `conformance::row23_*`, `row25_*`, `row26_*`, `row28_*`, and through the layer |
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use session_core::testing;
use session_stores_memory::MemoryStore;

/// Row 5 in memory: the unknown keys the generic check used left no record.
#[tokio::test]
async fn row05_unknown_key_leaves_nothing_in_memory() {
    let store = MemoryStore::new();
    testing::row05_unknown_key_is_not_created(Arc::new(store.clone()), Arc::new(store.clone()))
        .await;
    assert!(store.is_empty(), "nothing was left behind");
}

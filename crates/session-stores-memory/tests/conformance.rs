//! The store conformance suite, on the memory store: two clones of one store
//! stand for two users of it (one process holds all memory sessions).

use session_core::testing::Backend;
use session_stores_memory::MemoryStore;

async fn backend() -> Backend {
    let store = MemoryStore::new();
    Backend::new(store.clone(), store)
}

session_core::conformance_tests!(backend);

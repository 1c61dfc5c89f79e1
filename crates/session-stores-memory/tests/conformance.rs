//! The shared store conformance suite, on the memory store.

use session_stores_memory::MemoryStore;

async fn make_store() -> MemoryStore {
    MemoryStore::new()
}

session_core::conformance_tests!(make_store);

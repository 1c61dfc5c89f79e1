//! The shared store conformance suite, on the shared Redis (`REDIS_URL`),
//! each test under a fresh random prefix.

mod common;

use session_stores_redis::RedisStore;

async fn make_store() -> RedisStore {
    common::shared_store("conformance")
}

session_core::conformance_tests!(
    make_store,
    session_core::testing::Capabilities::expires_natively()
);

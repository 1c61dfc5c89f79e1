//! The store conformance suite, on two stores (each with its own pool) on the
//! test Redis (`REDIS_URL`), each test under a fresh random prefix.

mod common;

session_core::conformance_tests!(
    common::backend,
    session_core::testing::Capabilities::expires_natively()
);

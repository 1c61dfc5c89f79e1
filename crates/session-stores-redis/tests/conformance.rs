//! The store conformance suite, on two stores (each with its own pool)
//! standing for two processes, each test under a fresh random prefix: on the
//! test run's Redis (`REDIS_URL`) and on its Redis Cluster
//! (`REDIS_CLUSTER_URLS`).

mod common;

mod standalone {
    session_core::conformance_tests!(
        crate::common::backend,
        session_core::testing::Capabilities::expires_natively()
    );
}

mod cluster {
    session_core::conformance_tests!(
        crate::common::cluster_backend,
        session_core::testing::Capabilities::expires_natively()
    );
}

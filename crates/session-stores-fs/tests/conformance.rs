//! The store conformance suite, on two filesystem stores on one directory.
//! Every test gets its own temporary directory, removed when the test ends.

mod common;

session_core::conformance_tests!(common::backend);

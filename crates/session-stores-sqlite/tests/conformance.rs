//! The store conformance suite, on two stores opened on one temporary SQLite
//! file.

mod common;

session_core::conformance_tests!(common::TempStore::backend);

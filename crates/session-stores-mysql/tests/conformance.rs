//! The store conformance suite, on two stores (each with its own pool) on one
//! fresh MySQL table (needs `MYSQL_URL`).

mod common;

session_core::conformance_tests!(common::backend);

//! Criterion micro-benchmarks for the session crates; the benchmarks are in
//! `benches/micro.rs`. Run them with `cargo xtask bench micro`.

//! See `benches/micro.rs`.

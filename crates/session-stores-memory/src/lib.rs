//! The in-process session store: [`MemoryStore`].
//!
//! Sessions live in a sharded map inside the process and are gone when it
//! exits. It is the default store of `session-axum`, right for development,
//! tests and single-process apps that can afford to log everyone out on
//! restart. Its lock ([`LockingStore`](session_core::LockingStore)) is a
//! per-session first-come-first-served lock, so `lock()` serializes requests
//! within this process only.
//!
//! Not for direct use; see the `session-axum` crate.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod lock;
mod packed;
mod store;
mod sweeper;

pub use session_core::CleanupHandle;
pub use store::MemoryStore;

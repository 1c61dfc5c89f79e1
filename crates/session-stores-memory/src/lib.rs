//! The in-process session store: [`MemoryStore`].
//!
//! Sessions live in a sharded map inside the process and are gone when it
//! exits. It is the default store of `session-axum`, right for development,
//! tests and single-process apps that can afford to log everyone out on
//! restart. Its lock ([`LockingStore`](session_core::LockingStore)) is a
//! per-session first-come-first-served lock, so `lock()` serializes requests
//! within this process only.
//!
//! Expired sessions never load; the cleanup task frees their memory:
//!
//! ```
//! use std::time::Duration;
//! use session_stores_memory::{MemoryStore, SpawnCleanup};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = MemoryStore::new();
//! let cleanup = store.spawn_cleanup(Duration::from_secs(60));
//! // ... serve requests ...
//! cleanup.stop().await;
//! # }
//! ```
//!
//! Not for direct use; see the `session-axum` crate.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod lock;
mod packed;
mod store;

/// The background task that deletes expired sessions: `store.spawn_cleanup(interval)`
/// through [`SpawnCleanup`], stopped through its [`CleanupHandle`].
pub use session_core::{CleanupHandle, SpawnCleanup};
pub use store::MemoryStore;

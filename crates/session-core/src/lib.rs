//! Core types for axum sessions.
//!
//! This crate holds what every session store and the `session-axum` layer
//! share:
//!
//! - [`SessionId`]: 128 random bits, strictly parsed, never logged; and
//!   [`StorageKey`], the hash of an id that stores file records under.
//! - [`SessionData`]: the session dict, with change tracking; [`Codec`] and
//!   [`JsonCodec`] to turn it into bytes.
//! - [`Record`]: a stored session with its deadlines and user.
//! - [`ExpiryPolicy`] and [`SessionExpiry`]: idle and absolute timeouts.
//! - [`SessionStore`] and [`LockingStore`]: the traits every server-side store
//!   implements, with their contracts; [`Error`].
//! - [`Mirrored`]: a primary store whose writes also go to replicas.
//! - [`CookieFormat`]: client-side sessions sealed into the cookie.
//! - [`Clock`], [`SystemClock`], [`SteadyClock`], [`ManualClock`]: time that
//!   survives a stepped wall clock, and is testable.
//! - For store crates: [`spawn_cleanup`], the background task that deletes
//!   expired sessions; [`LocalLocks`], per-session locks within one process
//!   (a whole lock, or the queue in front of one that reaches other
//!   processes); [`Backoff`], the pauses of a lock loop; [`ReleaseOnDrop`]
//!   and [`spawn_release`], releasing a lock held in a server when its
//!   request or guard is dropped.
//! - `testing` (feature `testing`): the conformance suite for stores.
//!
//! Applications use these through `session-axum`.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backoff;
mod blocking_wait;
mod cleanup;
mod client;
mod clock;
mod codec;
mod data;
mod error;
mod expiry;
mod id;
mod key_hash;
mod keyring;
mod local_lock;
mod lock;
mod mirrored;
mod record;
mod release_on_drop;
mod store;

#[cfg(any(test, feature = "testing"))]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use async_trait::async_trait;

pub use backoff::Backoff;
pub use blocking_wait::{MAX_BLOCKING_WAITS, spawn_blocking_wait};
pub use cleanup::{CleanupHandle, SpawnCleanup, spawn_cleanup};
pub use client::{CookieFormat, Opened};
pub use clock::{Clock, ManualClock, SteadyClock, SystemClock, Timestamp};
pub use codec::{Codec, JsonCodec};
pub use data::SessionData;
pub use error::{BoxError, Error};
pub use expiry::{ExpiryPolicy, SessionExpiry};
pub use id::{
    IdGenerator, InvalidSessionId, InvalidStorageKey, RandomIds, SESSION_ID_LEN, SessionId,
    StorageKey,
};
pub use key_hash::{StorageKeyHash, StorageKeyHasher};
pub use keyring::{InvalidKey, Key, KeyMatch, Keyring};
pub use local_lock::{LocalLocks, LocalTurn};
pub use lock::{
    Fenced, FencedRelease, Handover, HeldLock, LockGuard, LockOptions, LockingStore, Reloaded,
};
pub use mirrored::{Mirrored, ReplicaFailure};
pub use record::Record;
pub use release_on_drop::{BackgroundRelease, ReleaseOnDrop, release_until_done, spawn_release};
pub use store::SessionStore;

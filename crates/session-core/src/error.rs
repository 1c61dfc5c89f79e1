//! The error type shared by every store.

use std::time::Duration;

/// A boxed error from a store's backend (driver, pool, I/O).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors from session stores, locks and codecs.
///
/// A malformed or unknown cookie is not an error: it is simply "no session".
/// Errors are for things the application must answer for, typically with a
/// 503 (a store that is down) or a 500.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// [`SessionStore::create`](crate::SessionStore::create) found a session
    /// under the same key. Nothing was written.
    #[error("a session with this id already exists")]
    IdCollision,

    /// The session does not exist (any more): it was deleted or expired.
    /// [`SessionStore::save`](crate::SessionStore::save) returns this instead of
    /// resurrecting a deleted session.
    #[error("session not found")]
    NotFound,

    /// The session lock was not acquired in time.
    #[error("timed out after {waited:?} waiting for the session lock")]
    LockTimeout {
        /// How long the caller waited.
        waited: Duration,
    },

    /// The session lock was lost before the save: its lease ran out (a long
    /// pause, a partition, a failover) or its connection ended, so another
    /// holder may have locked and written since. Nothing was written: the
    /// newer data is kept, never overwritten by a holder that no longer holds
    /// the lock. Answer it like a lock timeout (503): a retry locks afresh
    /// and sees the newer data.
    #[error("the session lock was lost before the save; nothing was written")]
    LockLost,

    /// The encoded session is larger than the configured limit. Nothing was
    /// written; the stored session keeps its previous data.
    #[error("session payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// Encoded size.
        size: usize,
        /// Configured limit.
        limit: usize,
    },

    /// Session data could not be encoded or decoded.
    #[error("session data codec: {0}")]
    Codec(#[from] serde_json::Error),

    /// The store's backend failed: connection refused, pool exhausted, I/O
    /// error. Usually temporary; answer with 503.
    #[error("{store} store: {source}")]
    Backend {
        /// Which store, e.g. `"redis"`.
        store: &'static str,
        /// The backend's error.
        #[source]
        source: BoxError,
    },

    /// The store does not support this operation.
    #[error("the {store} store does not support {operation}")]
    Unsupported {
        /// Which store.
        store: &'static str,
        /// What was asked of it.
        operation: &'static str,
    },
}

impl Error {
    /// Wraps a backend error.
    ///
    /// ```
    /// use session_core::Error;
    ///
    /// let io = std::io::Error::other("connection refused");
    /// let err = Error::backend("redis", io);
    /// assert_eq!(err.to_string(), "redis store: connection refused");
    /// assert!(err.is_unavailable());
    /// ```
    pub fn backend(store: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Backend { store, source: source.into() }
    }

    /// Whether the error means "try again later" (a backend failure, a lock
    /// timeout or a lost lock) rather than a bug or bad data. Maps to 503.
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Backend { .. } | Self::LockTimeout { .. } | Self::LockLost)
    }
}

//! This crate's errors, mapped into [`session_core::Error`].

/// The store name in [`session_core::Error::Backend`].
pub(crate) const STORE: &str = "postgres";

/// What can go wrong talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PgStoreError {
    /// The driver or the pool failed (connection refused, pool timed out,
    /// query error).
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),

    /// `pg_advisory_unlock` reported that the lock was not held: the
    /// connection was reset while the guard was alive.
    #[error("the session's advisory lock was no longer held by its connection")]
    LockLost,

    /// The OS random number generator failed (lease tokens).
    #[error("the OS random number generator failed: {0}")]
    Random(getrandom::Error),

    /// A statement answered with rows it never returns (a table changed
    /// behind the store's back).
    #[error("unexpected result from PostgreSQL: {0}")]
    UnexpectedReply(&'static str),
}

impl From<PgStoreError> for session_core::Error {
    fn from(error: PgStoreError) -> Self {
        match error {
            PgStoreError::LockLost => Self::LockLost,
            PgStoreError::Sqlx(_) | PgStoreError::Random(_) | PgStoreError::UnexpectedReply(_) => {
                Self::backend(STORE, error)
            }
        }
    }
}

/// Shorthand for mapping a driver error.
pub(crate) fn backend(error: sqlx::Error) -> session_core::Error {
    PgStoreError::from(error).into()
}

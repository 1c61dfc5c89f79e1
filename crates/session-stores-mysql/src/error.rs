//! This crate's errors, mapped into [`session_core::Error`].

/// The store name in [`session_core::Error::Backend`].
pub(crate) const STORE: &str = "mysql";

/// What can go wrong talking to MySQL or MariaDB.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MySqlStoreError {
    /// The driver or the pool failed (connection refused, pool timed out,
    /// query error).
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),

    /// A statement answered what it never does (`GET_LOCK` gives `NULL` when
    /// the wait was killed, or after an error in the server).
    #[error("unexpected result from the server: {0}")]
    UnexpectedReply(&'static str),
}

impl From<MySqlStoreError> for session_core::Error {
    fn from(error: MySqlStoreError) -> Self {
        Self::backend(STORE, error)
    }
}

/// Shorthand for mapping a driver error.
pub(crate) fn backend(error: sqlx::Error) -> session_core::Error {
    MySqlStoreError::from(error).into()
}

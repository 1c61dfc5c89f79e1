//! This crate's errors, mapped into [`session_core::Error`].

/// The store name in [`session_core::Error::Backend`].
pub(crate) const STORE: &str = "sqlite";

/// What can go wrong talking to SQLite.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SqliteStoreError {
    /// The driver or the pool failed (cannot open the file, pool timed out,
    /// database busy for longer than the busy timeout).
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// The file of the cross-process session locks could not be opened or
    /// locked.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    #[error("session lock file {}: {source}", path.display())]
    LockFile { path: std::path::PathBuf, source: std::io::Error },
    /// The thread waiting for another process's lock panicked.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    #[error("waiting for a session lock of another process failed: {0}")]
    Wait(String),
}

impl From<SqliteStoreError> for session_core::Error {
    fn from(error: SqliteStoreError) -> Self {
        Self::backend(STORE, error)
    }
}

/// Shorthand for mapping a driver error.
pub(crate) fn backend(error: sqlx::Error) -> session_core::Error {
    SqliteStoreError::from(error).into()
}

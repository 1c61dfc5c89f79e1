//! The store's own errors, mapped into [`session_core::Error`].

use std::io;
use std::path::{Path, PathBuf};

/// What went wrong inside the filesystem store.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FsError {
    /// A system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The store directory (or one of its subdirectories) can be read or
    /// entered by group or others.
    #[error(
        "{path} has mode {mode:04o}: a session directory must not be accessible \
         by group or others (chmod 700 it)"
    )]
    NotPrivate { path: PathBuf, mode: u32 },

    /// Something other than a directory sits where a directory belongs.
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },

    /// A file kept being replaced while we tried to lock it.
    #[error("{path} kept changing while being locked")]
    Unstable { path: PathBuf },

    /// A blocking task panicked or was cancelled.
    #[error("blocking file task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl FsError {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io { op, path: path.to_owned(), source }
    }
}

impl From<FsError> for session_core::Error {
    fn from(error: FsError) -> Self {
        Self::backend("fs", error)
    }
}

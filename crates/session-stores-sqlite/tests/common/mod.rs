//! Helpers for the SQLite test binaries: stores on a fresh database file in a
//! temporary directory that is removed with them.
#![allow(dead_code, unreachable_pub)] // Each test binary uses a different part.

use std::path::{Path, PathBuf};

use session_core::testing::Backend;
use session_stores_sqlite::SqliteStore;
use tempfile::TempDir;

/// A store on a fresh database file that is deleted with it: the one
/// temporary-directory helper of these tests.
#[derive(Debug)]
pub struct TempStore {
    // Declared first so it is dropped (pool closed) before the directory.
    pub store: SqliteStore,
    pub dir: TempDir,
}

impl TempStore {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let store = open(&file(dir.path())).await;
        Self { store, dir }
    }

    /// The database file.
    pub fn file(&self) -> PathBuf {
        file(self.dir.path())
    }

    /// A second store opened on the same file: it shares the file and its
    /// locks, as a second user of it in this process does.
    pub async fn open_again(&self) -> SqliteStore {
        open(&self.file()).await
    }

    /// The store and a second one on its file, for the conformance suite.
    pub async fn backend() -> Backend {
        let temp = Self::new().await;
        let other = temp.open_again().await;
        Backend::new(temp.store.clone(), other).keeping(temp)
    }
}

fn file(dir: &Path) -> PathBuf {
    dir.join("sessions.db")
}

async fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path).await.unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

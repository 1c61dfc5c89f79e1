//! Helpers for the SQLite test binaries: stores on a fresh database file in a
//! temporary directory that is removed with them.
#![allow(dead_code, unreachable_pub)] // Each test binary uses a different part.

use std::path::{Path, PathBuf};

use session_core::testing::Backend;
use session_stores_sqlite::SqliteStore;
use tempfile::TempDir;

/// A store on a fresh database file that is deleted with it.
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
}

/// The database file in `dir`.
pub fn file(dir: &Path) -> PathBuf {
    dir.join("sessions.db")
}

async fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path).await.unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// Two stores opened on one fresh database file (they share the file and its
/// locks, as two users of it in one process do), and the directory holding it.
pub async fn two_stores() -> (SqliteStore, SqliteStore, TempDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = file(dir.path());
    (open(&path).await, open(&path).await, dir)
}

/// [`two_stores`] for the conformance suite.
pub async fn backend() -> Backend {
    let (store, other, dir) = two_stores().await;
    Backend::new(store, other).keeping(dir)
}

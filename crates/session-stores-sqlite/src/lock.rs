//! Session locks: per-session async mutexes inside this process.
//!
//! A SQLite file is owned by one process (see the crate docs), so an
//! in-process lock is both sufficient and the cheapest correct choice: it
//! costs no database round trip and never holds a write transaction open
//! while a handler runs, which would block every other writer of the file.
//!
//! The table is shared by every [`SqliteStore`] on the same database file in
//! this process (a process-wide registry keyed by the file's canonical path),
//! so two stores opened on one file still exclude each other.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};

use session_core::{
    Error, LocalLocks, LockGuard, LockOptions, LockingStore, StorageKey, async_trait,
};

use crate::SqliteStore;

/// Lock tables by database file, so every store on one file shares one.
static REGISTRY: LazyLock<Mutex<HashMap<PathBuf, Weak<LocalLocks>>>> =
    LazyLock::new(Mutex::default);

/// The lock table of the database at `path`.
pub(crate) fn for_database(path: &Path) -> Arc<LocalLocks> {
    if path.as_os_str().is_empty() {
        // An anonymous temporary database: nothing else can open it.
        return Arc::default();
    }
    let identity = database_identity(path);
    let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    registry.retain(|_, table| table.strong_count() > 0);
    if let Some(table) = registry.get(&identity).and_then(Weak::upgrade) {
        return table;
    }
    let table = Arc::default();
    registry.insert(identity, Arc::downgrade(&table));
    table
}

/// The same file under any spelling of its path, whether or not it exists
/// yet.
fn database_identity(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().map_or_else(|_| path.to_owned(), |dir| dir.join(path))
    };
    if let (Some(parent), Some(name)) = (absolute.parent(), absolute.file_name())
        && let Ok(parent) = std::fs::canonicalize(parent)
    {
        return parent.join(name);
    }
    absolute
}

/// An async mutex per session, shared by every store on the same file in
/// this process.
///
/// `options.lease` does not apply: the lock cannot outlive the process, and a
/// dropped guard releases it at once. Waiting gives up with
/// [`Error::LockTimeout`] after `options.wait_timeout`. Two *processes*
/// sharing one file do not exclude each other (see the crate docs).
#[async_trait]
impl LockingStore for SqliteStore {
    async fn lock(&self, key: &StorageKey, options: LockOptions) -> Result<LockGuard, Error> {
        self.locks.lock(key, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_table_per_file_under_any_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.db");
        let a = for_database(&file);
        let b = for_database(&dir.path().join(".").join("s.db"));
        assert!(Arc::ptr_eq(&a, &b), "before the file exists");
        std::fs::write(&file, b"").unwrap();
        let c = for_database(&file);
        assert!(Arc::ptr_eq(&a, &c), "after the file exists");
        let other = for_database(&dir.path().join("t.db"));
        assert!(!Arc::ptr_eq(&a, &other));
    }
}

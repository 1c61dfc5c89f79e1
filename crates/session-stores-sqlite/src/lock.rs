//! Session locks: a per-session async mutex inside this process, then (on
//! Linux, for a database in a file) a byte-range lock that excludes every
//! other process on the same file.
//!
//! The in-process half is shared by every [`SqliteStore`] on the same
//! database file in this process (a process-wide registry keyed by the
//! file's canonical path), so two stores opened on one file exclude each
//! other, fairly and without polling. The cross-process half is in
//! `cross_process.rs`. Neither holds a SQLite transaction open while a
//! handler runs, which would block every other writer of the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};

use session_core::{
    Error, LocalLocks, LockGuard, LockOptions, LockingStore, StorageKey, async_trait,
};

use crate::SqliteStore;

/// Lock tables by database file, so every store on one file shares one.
static REGISTRY: LazyLock<Mutex<HashMap<PathBuf, Weak<SessionLocks>>>> =
    LazyLock::new(Mutex::default);

/// The session locks of every store on one database file in this process.
#[derive(Debug, Default)]
pub(crate) struct SessionLocks {
    /// Excludes the holders in this process.
    local: Arc<LocalLocks>,
    /// The file whose byte ranges exclude other processes: `None` for a
    /// database without a file, or where the platform has no
    /// open-file-description locks.
    shared: Option<PathBuf>,
}

/// The session locks of the database at `path`.
pub(crate) fn for_database(path: &Path) -> Arc<SessionLocks> {
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
    // In-memory databases (`:memory:`, `mode=memory`) have no file by the
    // time the pool is connected; only a file can be shared by processes.
    let shared = (cfg!(target_os = "linux") && identity.is_file()).then(|| {
        let mut name = identity.clone().into_os_string();
        name.push("-locks");
        PathBuf::from(name)
    });
    let table = Arc::new(SessionLocks { local: Arc::default(), shared });
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

/// Exclusive per session across every store on the database file: an async
/// mutex per session among the stores of this process, then, for a database
/// in a file on Linux, an open-file-description lock (`F_OFD_SETLK`) on one
/// byte of `<database>-locks`, chosen by the session's storage key, against
/// every other process.
///
/// `options.lease` does not apply: the operating system ends the byte lock
/// when its holder closes the file or dies, and a dropped guard releases
/// both halves at once. Waiting gives up with [`Error::LockTimeout`] after
/// `options.wait_timeout` in all. Elsewhere (other platforms, in-memory
/// databases) the lock is the in-process half only.
#[async_trait]
impl LockingStore for SqliteStore {
    async fn lock(&self, key: &StorageKey, options: LockOptions) -> Result<LockGuard, Error> {
        let Some(shared) = &self.locks.shared else {
            return self.locks.local.lock(key, options).await;
        };
        #[cfg(target_os = "linux")]
        {
            let backoff = crate::cross_process::backoff(key, options.wait_timeout);
            let turn = self.locks.local.turn(key, backoff.remaining()).await?;
            crate::cross_process::lock(shared, key, turn, backoff).await
        }
        #[cfg(not(target_os = "linux"))]
        unreachable!("no shared lock file off Linux: {shared:?}");
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

    #[test]
    fn only_a_database_in_a_file_gets_a_shared_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("u.db");
        std::fs::write(&file, b"").unwrap();
        let on_file = for_database(&file);
        let expected = cfg!(target_os = "linux").then(|| dir.path().join("u.db-locks"));
        let canonical = expected
            .map(|path| std::fs::canonicalize(dir.path()).unwrap().join(path.file_name().unwrap()));
        assert_eq!(on_file.shared, canonical);
        assert_eq!(for_database(Path::new(":memory:")).shared, None);
        assert_eq!(for_database(Path::new("")).shared, None);
    }
}

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
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};

use session_core::{Error, HeldLock, LockGuard, LockOptions, SessionLock, StorageKey, async_trait};
use tokio::sync::OwnedMutexGuard;

use crate::SqliteStore;

const SHARDS: usize = 16;

type Entry = Arc<tokio::sync::Mutex<()>>;

/// Per shard, the mutexes of the sessions locked or waited for right now.
/// An entry lives exactly as long as some [`Claim`] refers to it, so the
/// table grows with the number of sessions being locked, not stored.
pub(crate) struct LockTable {
    shards: [Mutex<HashMap<StorageKey, Entry>>; SHARDS],
}

/// Lock tables by database file, so every store on one file shares one.
static REGISTRY: LazyLock<Mutex<HashMap<PathBuf, Weak<LockTable>>>> = LazyLock::new(Mutex::default);

impl LockTable {
    fn new() -> Self {
        Self { shards: std::array::from_fn(|_| Mutex::default()) }
    }

    /// The lock table of the database at `path`.
    pub(crate) fn for_database(path: &Path) -> Arc<Self> {
        if path.as_os_str().is_empty() {
            // An anonymous temporary database: nothing else can open it.
            return Arc::new(Self::new());
        }
        let identity = database_identity(path);
        let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        registry.retain(|_, table| table.strong_count() > 0);
        if let Some(table) = registry.get(&identity).and_then(Weak::upgrade) {
            return table;
        }
        let table = Arc::new(Self::new());
        registry.insert(identity, Arc::downgrade(&table));
        table
    }

    fn shard(&self, key: &StorageKey) -> MutexGuard<'_, HashMap<StorageKey, Entry>> {
        // Storage keys are uniform hashes: their first byte picks the shard.
        let index = usize::from(key.as_bytes()[0]) % SHARDS;
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
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

/// A reference to a table entry, held while waiting and while locked. The
/// last claim to go removes the entry.
struct Claim {
    table: Arc<LockTable>,
    key: StorageKey,
    entry: Entry,
}

impl Claim {
    fn new(table: &Arc<LockTable>, key: StorageKey) -> Self {
        let entry = Arc::clone(table.shard(&key).entry(key).or_default());
        Self { table: Arc::clone(table), key, entry }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut shard = self.table.shard(&self.key);
        // Claims are only created and dropped under the shard lock, so the
        // count is exact: the table's reference plus ours means nobody else
        // holds or waits for this lock.
        if Arc::strong_count(&self.entry) == 2 {
            shard.remove(&self.key);
        }
    }
}

struct SqliteLock {
    // Field order matters: the mutex is unlocked before the claim is dropped.
    _guard: OwnedMutexGuard<()>,
    _claim: Claim,
}

#[async_trait]
impl HeldLock for SqliteLock {
    async fn release(self: Box<Self>) -> Result<(), Error> {
        drop(self);
        Ok(())
    }
}

/// An async mutex per session, shared by every store on the same file in
/// this process.
///
/// `options.lease` does not apply: the lock cannot outlive the process, and a
/// dropped guard releases it at once. Waiting gives up with
/// [`Error::LockTimeout`] after `options.wait_timeout`. Two *processes*
/// sharing one file do not exclude each other (see the crate docs).
#[async_trait]
impl SessionLock for SqliteStore {
    async fn lock(&self, key: &StorageKey, options: LockOptions) -> Result<LockGuard, Error> {
        let claim = Claim::new(&self.locks, *key);
        let waiting = Arc::clone(&claim.entry).lock_owned();
        match tokio::time::timeout(options.wait_timeout, waiting).await {
            Ok(guard) => Ok(LockGuard::new(SqliteLock { _guard: guard, _claim: claim })),
            Err(_elapsed) => Err(Error::LockTimeout { waited: options.wait_timeout }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use session_core::SessionId;

    use super::*;

    #[tokio::test]
    async fn table_entries_are_removed_when_unused() {
        let dir = tempfile::tempdir().unwrap();
        let table = LockTable::for_database(&dir.path().join("a.db"));
        let key = SessionId::random().storage_key();
        let options =
            LockOptions { lease: Duration::from_secs(1), wait_timeout: Duration::from_millis(50) };
        let claim = Claim::new(&table, key);
        let guard = Arc::clone(&claim.entry).lock_owned().await;
        assert_eq!(table.entries(), 1);
        let waiter = Claim::new(&table, key);
        assert!(
            tokio::time::timeout(options.wait_timeout, Arc::clone(&waiter.entry).lock_owned())
                .await
                .is_err()
        );
        drop(waiter);
        assert_eq!(table.entries(), 1, "a timed-out waiter leaves no entry");
        drop(guard);
        drop(claim);
        assert_eq!(table.entries(), 0);
    }

    #[test]
    fn one_table_per_file_under_any_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.db");
        let a = LockTable::for_database(&file);
        let b = LockTable::for_database(&dir.path().join(".").join("s.db"));
        assert!(Arc::ptr_eq(&a, &b), "before the file exists");
        std::fs::write(&file, b"").unwrap();
        let c = LockTable::for_database(&file);
        assert!(Arc::ptr_eq(&a, &c), "after the file exists");
        let other = LockTable::for_database(&dir.path().join("t.db"));
        assert!(!Arc::ptr_eq(&a, &other));
    }
}

//! Per-session async mutexes whose entries disappear when nobody uses them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use session_core::{Error, HeldLock, LockGuard, LockOptions, SessionLock, StorageKey, async_trait};
use tokio::sync::OwnedMutexGuard;

use crate::MemoryStore;
use crate::store::{SHARDS, shard_of};

type Entry = Arc<tokio::sync::Mutex<()>>;

/// The lock table: per shard, the mutexes of the sessions currently locked or
/// waited for. An entry lives exactly as long as some [`Claim`] refers to it,
/// so the table never grows with the number of sessions, only with the
/// number of sessions being locked right now.
pub(crate) struct LockTable {
    shards: [Mutex<HashMap<StorageKey, Entry>>; SHARDS],
}

impl Default for LockTable {
    fn default() -> Self {
        Self { shards: std::array::from_fn(|_| Mutex::default()) }
    }
}

impl LockTable {
    fn shard(&self, key: &StorageKey) -> MutexGuard<'_, HashMap<StorageKey, Entry>> {
        self.shards[shard_of(key)].lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

/// A reference to a table entry (held while waiting and while locked). The
/// last claim to go removes the entry.
struct Claim {
    store: MemoryStore,
    key: StorageKey,
    entry: Entry,
}

impl Claim {
    fn new(store: &MemoryStore, key: StorageKey) -> Self {
        let entry = Arc::clone(store.inner.locks.shard(&key).entry(key).or_default());
        Self { store: store.clone(), key, entry }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut shard = self.store.inner.locks.shard(&self.key);
        // Claims are only created and dropped under the shard lock, so the
        // count is exact here: the table's reference plus ours means no one
        // else holds or waits for this lock.
        if Arc::strong_count(&self.entry) == 2 {
            shard.remove(&self.key);
        }
    }
}

struct MemoryLock {
    // Field order matters: the mutex is unlocked before the claim is dropped.
    _guard: OwnedMutexGuard<()>,
    _claim: Claim,
}

#[async_trait]
impl HeldLock for MemoryLock {
    async fn release(self: Box<Self>) -> Result<(), Error> {
        drop(self);
        Ok(())
    }
}

/// An async mutex per session, within this process.
///
/// The lease in [`LockOptions`] does not apply: the lock cannot outlive the
/// process, and a dropped guard releases it at once.
#[async_trait]
impl SessionLock for MemoryStore {
    async fn lock(&self, key: &StorageKey, options: LockOptions) -> Result<LockGuard, Error> {
        let claim = Claim::new(self, *key);
        let waiting = Arc::clone(&claim.entry).lock_owned();
        match tokio::time::timeout(options.wait_timeout, waiting).await {
            Ok(guard) => Ok(LockGuard::new(MemoryLock { _guard: guard, _claim: claim })),
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
        let store = MemoryStore::new();
        let key = SessionId::random().storage_key();
        let options =
            LockOptions { lease: Duration::from_secs(1), wait_timeout: Duration::from_millis(50) };

        let guard = store.lock(&key, options).await.unwrap();
        assert_eq!(store.inner.locks.entries(), 1);
        assert!(matches!(store.lock(&key, options).await, Err(Error::LockTimeout { .. })));
        assert_eq!(store.inner.locks.entries(), 1, "a timed-out waiter leaves no entry behind");
        guard.release().await.unwrap();
        assert_eq!(store.inner.locks.entries(), 0);

        let guard = store.lock(&key, options).await.unwrap();
        drop(guard);
        assert_eq!(store.inner.locks.entries(), 0, "dropping the guard cleans up too");
    }
}

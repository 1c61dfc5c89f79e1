//! Per-session async mutexes within one process: a store's whole lock, or
//! the in-process queue in front of a lock that reaches other processes, so
//! that of the waiters in one process only the first talks to the server or
//! the file (see [`LocalLocks::turn`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::OwnedMutexGuard;

use crate::{Error, HeldLock, LockGuard, LockOptions, StorageKey, StorageKeyHash};

/// Number of shards; a power of two so the shard is a mask of the key.
const SHARDS: usize = 64;

type Entry = Arc<tokio::sync::Mutex<()>>;

/// A table of per-session async mutexes: the lock of an in-process store.
///
/// Per shard, the table holds the mutexes of the sessions locked or waited
/// for right now. An entry lives exactly as long as someone holds or waits
/// for its lock, so the table grows with the number of sessions being locked,
/// not with the number stored. Locks are exclusive among the callers of one
/// table only: share the `Arc` between every store that must exclude each
/// other.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use session_core::{Error, LocalLocks, LockOptions, SessionId};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error> {
/// let locks = Arc::new(LocalLocks::default());
/// let key = SessionId::random().storage_key();
/// let options = LockOptions { wait_timeout: Duration::from_millis(10), ..LockOptions::default() };
///
/// let guard = locks.lock(&key, options).await?;
/// assert!(matches!(locks.lock(&key, options).await, Err(Error::LockTimeout { .. })));
/// guard.release().await?;
/// assert!(locks.lock(&key, options).await.is_ok());
/// # Ok(()) }
/// ```
pub struct LocalLocks {
    shards: [Mutex<HashMap<StorageKey, Entry, StorageKeyHash>>; SHARDS],
}

impl Default for LocalLocks {
    fn default() -> Self {
        Self { shards: std::array::from_fn(|_| Mutex::default()) }
    }
}

impl fmt::Debug for LocalLocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalLocks").field("entries", &self.entries()).finish()
    }
}

impl LocalLocks {
    /// Waits for and takes the lock on `key`.
    ///
    /// `options.lease` does not apply: the lock cannot outlive the process,
    /// and dropping the guard releases it at once. The guard keeps the table
    /// alive, hence the `Arc` receiver.
    ///
    /// # Errors
    ///
    /// [`Error::LockTimeout`] after `options.wait_timeout`.
    pub async fn lock(
        self: &Arc<Self>,
        key: &StorageKey,
        options: LockOptions,
    ) -> Result<LockGuard, Error> {
        Ok(LockGuard::new(self.turn(key, options.wait_timeout).await?))
    }

    /// Waits, first come first served, until every earlier caller for `key`
    /// in this process is done with it.
    ///
    /// A store whose lock reaches other processes (a server's, a file's)
    /// takes its turn here first and only then tries its own lock, keeping
    /// the turn in the guard ([`LockGuard::queued`]) until that lock is
    /// released: so of the waiters in one process only the first talks to
    /// the server or the file, and they get the lock in the order they
    /// asked.
    ///
    /// # Errors
    ///
    /// [`Error::LockTimeout`] after `wait`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use session_core::{Error, LocalLocks, SessionId};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Error> {
    /// let queue = Arc::new(LocalLocks::default());
    /// let key = SessionId::random().storage_key();
    /// let first = queue.turn(&key, Duration::from_secs(1)).await?;
    /// assert!(matches!(queue.turn(&key, Duration::from_millis(10)).await, Err(Error::LockTimeout { .. })));
    /// drop(first);
    /// let _second = queue.turn(&key, Duration::from_millis(10)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn turn(
        self: &Arc<Self>,
        key: &StorageKey,
        wait: Duration,
    ) -> Result<LocalTurn, Error> {
        let claim = Claim::new(self, *key);
        let waiting = Arc::clone(&claim.entry).lock_owned();
        match tokio::time::timeout(wait, waiting).await {
            Ok(guard) => Ok(LocalTurn { _guard: guard, _claim: claim }),
            Err(_elapsed) => Err(Error::LockTimeout { waited: wait }),
        }
    }

    fn shard(
        &self,
        key: &StorageKey,
    ) -> MutexGuard<'_, HashMap<StorageKey, Entry, StorageKeyHash>> {
        // Storage keys are uniform hashes: their first byte picks the shard.
        let index = usize::from(key.as_bytes()[0]) & (SHARDS - 1);
        // A poisoned shard holds plain data that is consistent between
        // statements, so carry on.
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The number of sessions locked or waited for right now. For tests.
    #[doc(hidden)]
    #[must_use]
    pub fn entries(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

/// A reference to a table entry, held while waiting and while locked. The
/// last claim to go removes the entry.
struct Claim {
    table: Arc<LocalLocks>,
    key: StorageKey,
    entry: Entry,
}

impl Claim {
    fn new(table: &Arc<LocalLocks>, key: StorageKey) -> Self {
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

/// One caller's turn at a session's lock in this process, from
/// [`LocalLocks::turn`]; the next caller's turn comes when it is dropped.
pub struct LocalTurn {
    // Field order matters: the mutex is unlocked before the claim is dropped.
    _guard: OwnedMutexGuard<()>,
    _claim: Claim,
}

impl fmt::Debug for LocalTurn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalTurn").finish_non_exhaustive()
    }
}

#[async_trait]
impl HeldLock for LocalTurn {
    async fn release(self: Box<Self>) -> Result<(), Error> {
        drop(self);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionId;

    #[tokio::test]
    async fn table_entries_are_removed_when_unused() {
        let table = Arc::new(LocalLocks::default());
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

    #[tokio::test]
    async fn guards_remove_their_entries() {
        let table = Arc::new(LocalLocks::default());
        let key = SessionId::random().storage_key();
        let options =
            LockOptions { lease: Duration::from_secs(1), wait_timeout: Duration::from_millis(50) };

        let guard = table.lock(&key, options).await.unwrap();
        assert_eq!(table.entries(), 1);
        assert!(matches!(table.lock(&key, options).await, Err(Error::LockTimeout { .. })));
        assert_eq!(table.entries(), 1, "a timed-out waiter leaves no entry behind");
        guard.release().await.unwrap();
        assert_eq!(table.entries(), 0);

        let guard = table.lock(&key, options).await.unwrap();
        drop(guard);
        assert_eq!(table.entries(), 0, "dropping the guard cleans up too");
    }
}

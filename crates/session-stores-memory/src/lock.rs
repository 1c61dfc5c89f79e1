//! Per-session async mutexes whose entries disappear when nobody uses them.

use session_core::{Error, LockGuard, LockOptions, SessionLock, StorageKey, async_trait};

use crate::MemoryStore;

/// An async mutex per session, within this process (a
/// [`LocalLocks`](session_core::LocalLocks) table per store and its clones).
///
/// The lease in [`LockOptions`] does not apply: the lock cannot outlive the
/// process, and a dropped guard releases it at once.
#[async_trait]
impl SessionLock for MemoryStore {
    async fn lock(&self, key: &StorageKey, options: LockOptions) -> Result<LockGuard, Error> {
        self.inner.locks.lock(key, options).await
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

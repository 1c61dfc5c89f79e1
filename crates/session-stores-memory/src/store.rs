//! [`MemoryStore`]: records in a sharded in-process map.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use session_core::{
    Error, Record, Reloaded, SessionStore, StorageKey, StorageKeyHash, Timestamp, async_trait,
};

use crate::lock::Waiter;
use crate::packed::{self, Packed};

/// Number of shards; a power of two so the shard is a mask of the key.
const SHARDS: usize = 64;

/// An in-process session store.
///
/// Records are spread over 64 independently locked shards by their storage
/// key, so concurrent requests for different sessions rarely contend. Clones
/// share the same sessions.
///
/// Each session is kept as one compact allocation: its deadlines, version
/// and user, and its data encoded as JSON, decoded again on load.
///
/// Expired records are invisible at once and removed by
/// [`delete_expired`](SessionStore::delete_expired), which
/// [`SpawnCleanup::spawn_cleanup`](crate::SpawnCleanup::spawn_cleanup) runs
/// periodically.
///
/// ```
/// use session_core::{ExpiryPolicy, SessionId, SessionStore, Timestamp};
/// use session_stores_memory::MemoryStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), session_core::Error> {
/// let store = MemoryStore::new();
/// let now = Timestamp::now();
/// let record = ExpiryPolicy::default().new_record(SessionId::random().storage_key(), now);
/// store.create(&record).await?;
/// assert!(store.load(&record.key, now).await?.is_some());
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct MemoryStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    shards: [RwLock<Shard>; SHARDS],
    /// User id -> keys of that user's sessions. Only logins and logouts write
    /// here, so one lock is enough. Lock order: a shard, then this; never the
    /// other way round.
    users: RwLock<HashMap<String, KeySet>>,
}

impl Default for Inner {
    fn default() -> Self {
        Self { shards: std::array::from_fn(|_| RwLock::default()), users: RwLock::default() }
    }
}

/// The storage-key hasher of every table here (see [`StorageKeyHash`]).
pub(crate) type KeyHash = StorageKeyHash;
type KeySet = HashSet<StorageKey, KeyHash>;

/// One shard: its records, and the session locks of its keys.
#[derive(Default)]
pub(crate) struct Shard {
    records: HashMap<StorageKey, Packed, KeyHash>,
    /// Keys locked right now, each with the callers waiting for it in
    /// arrival order. An entry exists exactly while its lock is held.
    pub(crate) locks: HashMap<StorageKey, VecDeque<Arc<Waiter>>, KeyHash>,
}

impl Shard {
    /// The live record under `key`, decoded. A record that does not decode
    /// is logged and reported absent.
    pub(crate) fn load(&self, key: &StorageKey, now: Timestamp) -> Option<Record> {
        let stored = self.records.get(key).filter(|stored| !stored.is_expired(now))?;
        match stored.decode(*key) {
            Ok(record) => Some(record),
            Err(error) => {
                tracing::warn!(%error, session = ?key, "unreadable session record treated as absent");
                None
            }
        }
    }

    /// What [`LockingStore::lock_and_reload`](session_core::LockingStore::lock_and_reload)
    /// answers: `Unchanged` while the live record still has `version`, read
    /// from its header without decoding it.
    pub(crate) fn reload(&self, key: &StorageKey, now: Timestamp, version: u64) -> Reloaded {
        let unchanged = self
            .records
            .get(key)
            .is_some_and(|stored| !stored.is_expired(now) && stored.version() == Some(version));
        if unchanged { Reloaded::Unchanged } else { Reloaded::Changed(self.load(key, now)) }
    }

    /// Overwrites the record under `record.key` with `bytes` (its compact
    /// form) and moves it in the user index if its user changed.
    pub(crate) fn save(
        &mut self,
        inner: &Inner,
        record: &Record,
        bytes: &[u8],
    ) -> Result<(), Error> {
        let stored = self.records.get_mut(&record.key).ok_or(Error::NotFound)?;
        let new_user = record.user.as_deref();
        if stored.user() != new_user.map(str::as_bytes) {
            if let Some(old_user) = stored.user_str() {
                inner.unindex(old_user, &record.key);
            }
            if let Some(new_user) = new_user {
                inner.index(new_user, record.key);
            }
        }
        stored.overwrite(bytes);
        Ok(())
    }
}

// A poisoned lock means a panic happened while a map was being modified; the
// maps hold plain data that stays consistent between statements, so carry on.
pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Larger encodings than this are not kept in the per-thread buffer.
const SCRATCH_KEEP: usize = 64 * 1024;

thread_local! {
    /// Where records are encoded before they are copied into the store, so a
    /// save allocates nothing when the record keeps its size.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Encodes `record` in the compact form and hands the bytes to `then`.
pub(crate) fn with_encoded<R>(record: &Record, then: impl FnOnce(&[u8]) -> R) -> Result<R, Error> {
    // The buffer is taken out for the duration, so re-entry (or use during
    // thread teardown) just starts from an empty one.
    let mut buffer = SCRATCH
        .try_with(|scratch| scratch.try_borrow_mut().map(|mut kept| std::mem::take(&mut *kept)))
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let result = packed::encode(record, &mut buffer).map(|()| then(&buffer));
    if buffer.capacity() <= SCRATCH_KEEP {
        let _ = SCRATCH.try_with(|scratch| {
            if let Ok(mut kept) = scratch.try_borrow_mut() {
                *kept = buffer;
            }
        });
    }
    result
}

impl Inner {
    pub(crate) fn shard(&self, key: &StorageKey) -> &RwLock<Shard> {
        &self.shards[usize::from(key.as_bytes()[0]) & (SHARDS - 1)]
    }

    fn index(&self, user: &str, key: StorageKey) {
        write(&self.users).entry(user.to_owned()).or_default().insert(key);
    }

    fn unindex(&self, user: &str, key: &StorageKey) {
        let mut users = write(&self.users);
        if let Some(keys) = users.get_mut(user) {
            keys.remove(key);
            if keys.is_empty() {
                users.remove(user);
            }
        }
    }

    /// Number of keys locked right now.
    pub(crate) fn lock_entries(&self) -> usize {
        self.shards.iter().map(|shard| read(shard).locks.len()).sum()
    }
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of records held, including expired ones not yet swept.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|shard| read(shard).records.len()).sum()
    }

    /// Whether the store holds no records.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of sessions whose lock is held right now, by this store or its
    /// clones (each with its queue of waiters, which are not counted).
    ///
    /// A lock's entry goes as soon as it is released with nobody waiting, so
    /// this is 0 whenever no request holds a session lock: a count that stays
    /// above 0 while the server is idle means a lock was leaked. Meant for
    /// monitoring and leak tests, like [`len`](Self::len); the figure may be
    /// stale by the time it is returned.
    ///
    /// ```
    /// use session_core::{LockOptions, LockingStore, SessionId};
    /// use session_stores_memory::MemoryStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), session_core::Error> {
    /// let store = MemoryStore::new();
    /// let key = SessionId::random().storage_key();
    /// let guard = store.lock(&key, LockOptions::default()).await?;
    /// assert_eq!(store.locks_in_use(), 1);
    /// guard.release().await?;
    /// assert_eq!(store.locks_in_use(), 0);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn locks_in_use(&self) -> usize {
        self.inner.lock_entries()
    }

    pub(crate) fn shard(&self, key: &StorageKey) -> &RwLock<Shard> {
        self.inner.shard(key)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").field("sessions", &self.len()).finish_non_exhaustive()
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(&self, record: &Record) -> Result<(), Error> {
        with_encoded(record, |bytes| {
            let mut shard = write(self.shard(&record.key));
            if shard.records.contains_key(&record.key) {
                return Err(Error::IdCollision);
            }
            shard.records.insert(record.key, Packed::new(bytes));
            if let Some(user) = &record.user {
                self.inner.index(user, record.key);
            }
            Ok(())
        })?
    }

    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, Error> {
        Ok(read(self.shard(key)).load(key, now))
    }

    async fn save(&self, record: &Record) -> Result<(), Error> {
        with_encoded(record, |bytes| {
            write(self.shard(&record.key)).save(&self.inner, record, bytes)
        })?
    }

    async fn delete(&self, key: &StorageKey) -> Result<(), Error> {
        let mut shard = write(self.shard(key));
        if let Some(user) = shard.records.remove(key).as_ref().and_then(Packed::user_str) {
            self.inner.unindex(user, key);
        }
        Ok(())
    }

    async fn touch(&self, record: &Record) -> Result<(), Error> {
        let mut shard = write(self.shard(&record.key));
        let stored = shard.records.get_mut(&record.key).ok_or(Error::NotFound)?;
        stored.touch(record.last_seen, record.idle_deadline);
        Ok(())
    }

    async fn delete_expired(&self, now: Timestamp) -> Result<u64, Error> {
        let mut removed = 0;
        for shard in &self.inner.shards {
            // Collect under the read lock; take the write lock only if needed,
            // so a sweep does not stall requests on a shard with nothing to do.
            let expired: Vec<StorageKey> = read(shard)
                .records
                .iter()
                .filter(|(_, stored)| stored.is_expired(now))
                .map(|(key, _)| *key)
                .collect();
            if expired.is_empty() {
                continue;
            }
            let mut shard = write(shard);
            for key in expired {
                // Re-check: the record may have been touched in between.
                if !shard.records.get(&key).is_some_and(|stored| stored.is_expired(now)) {
                    continue;
                }
                if let Some(stored) = shard.records.remove(&key) {
                    if let Some(user) = stored.user_str() {
                        self.inner.unindex(user, &key);
                    }
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    async fn list_for_user(&self, user: &str, now: Timestamp) -> Result<Vec<Record>, Error> {
        let keys: Vec<StorageKey> = read(&self.inner.users)
            .get(user)
            .map(|keys| keys.iter().copied().collect())
            .unwrap_or_default();
        Ok(keys
            .iter()
            .filter_map(|key| read(self.shard(key)).load(key, now))
            .filter(|record| record.user.as_deref() == Some(user))
            .collect())
    }

    async fn delete_for_user(&self, user: &str) -> Result<u64, Error> {
        let keys = write(&self.inner.users).remove(user).unwrap_or_default();
        let mut removed = 0;
        for key in keys {
            let mut shard = write(self.shard(&key));
            // Only if it is still this user's: the index entry is gone already.
            if shard.records.get(&key).is_some_and(|stored| stored.user() == Some(user.as_bytes()))
            {
                shard.records.remove(&key);
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use session_core::SessionId;

    use super::*;

    #[test]
    fn encodes_through_the_scratch_buffer_and_without_it() {
        let record = session_core::ExpiryPolicy::default()
            .new_record(SessionId::random().storage_key(), Timestamp::now());
        let len = with_encoded(&record, <[u8]>::len).unwrap();
        let nested = with_encoded(&record, |_| with_encoded(&record, <[u8]>::len)).unwrap();
        assert_eq!(nested.unwrap(), len, "re-entry falls back to a fresh buffer");
    }

    #[tokio::test]
    async fn unreadable_records_are_absent_and_swept() {
        use session_core::{LockOptions, LockingStore};

        let store = MemoryStore::new();
        let now = Timestamp::now();
        let mut record = session_core::ExpiryPolicy::default()
            .new_record(SessionId::random().storage_key(), now);
        store.create(&record).await.unwrap();
        let mut bytes = Vec::new();
        packed::encode(&record, &mut bytes).unwrap();
        // Cut into the JSON: the header still says live.
        bytes.truncate(bytes.len() - 1);
        write(store.shard(&record.key)).records.insert(record.key, Packed::new(&bytes));

        assert!(store.load(&record.key, now).await.unwrap().is_none());
        let (guard, loaded) =
            store.lock_and_load(&record.key, LockOptions::default(), now).await.unwrap();
        assert!(loaded.is_none());
        drop(guard);
        // A save overwrites it with a good record again.
        record.version += 1;
        store.save(&record).await.unwrap();
        assert_eq!(store.load(&record.key, now).await.unwrap().unwrap().version, 1);

        // Not even a header: counts as expired, so `delete_expired` removes it.
        write(store.shard(&record.key)).records.insert(record.key, Packed::new(b"\0"));
        assert!(store.load(&record.key, now).await.unwrap().is_none());
        assert_eq!(store.delete_expired(now).await.unwrap(), 1);
        assert!(store.is_empty());
    }
}

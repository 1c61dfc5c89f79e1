//! [`MemoryStore`]: records in a sharded in-process map.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use session_core::{Error, LocalLocks, Record, SessionStore, StorageKey, Timestamp, async_trait};

/// Number of shards; a power of two so the shard is a mask of the key.
const SHARDS: usize = 64;

/// An in-process session store.
///
/// Records are spread over 64 independently locked shards by their storage
/// key, so concurrent requests for different sessions rarely contend. Clones
/// share the same sessions.
///
/// Expired records are invisible at once and removed by
/// [`delete_expired`](SessionStore::delete_expired), which
/// [`MemoryStore::spawn_sweeper`] runs periodically.
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
    shards: [RwLock<HashMap<StorageKey, Record>>; SHARDS],
    /// User id -> keys of that user's sessions. Only logins and logouts write
    /// here, so one lock is enough.
    users: RwLock<HashMap<String, HashSet<StorageKey>>>,
    pub(crate) locks: Arc<LocalLocks>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| RwLock::default()),
            users: RwLock::default(),
            locks: Arc::default(),
        }
    }
}

/// What the store keeps: the record as the caller will see it on load.
fn stored_copy(record: &Record) -> Record {
    let mut copy = record.clone();
    copy.data.mark_unchanged();
    copy
}

fn shard_of(key: &StorageKey) -> usize {
    usize::from(key.as_bytes()[0]) & (SHARDS - 1)
}

// A poisoned lock means a panic happened while a map was being modified; the
// maps hold plain data that stays consistent between statements, so carry on.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
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
        self.inner.shards.iter().map(|shard| read(shard).len()).sum()
    }

    /// Whether the store holds no records.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &StorageKey) -> &RwLock<HashMap<StorageKey, Record>> {
        &self.inner.shards[shard_of(key)]
    }

    fn index(&self, user: Option<&str>, key: StorageKey) {
        if let Some(user) = user {
            write(&self.inner.users).entry(user.to_owned()).or_default().insert(key);
        }
    }

    fn unindex(&self, user: Option<&str>, key: &StorageKey) {
        let Some(user) = user else { return };
        let mut users = write(&self.inner.users);
        if let Some(keys) = users.get_mut(user) {
            keys.remove(key);
            if keys.is_empty() {
                users.remove(user);
            }
        }
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
        {
            let mut shard = write(self.shard(&record.key));
            if shard.contains_key(&record.key) {
                return Err(Error::IdCollision);
            }
            shard.insert(record.key, stored_copy(record));
        }
        self.index(record.user.as_deref(), record.key);
        Ok(())
    }

    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, Error> {
        let shard = read(self.shard(key));
        Ok(shard.get(key).filter(|record| !record.is_expired(now)).cloned())
    }

    async fn save(&self, record: &Record) -> Result<(), Error> {
        let previous_user = {
            let mut shard = write(self.shard(&record.key));
            let Some(stored) = shard.get_mut(&record.key) else {
                return Err(Error::NotFound);
            };
            let previous_user = stored.user.take();
            stored.clone_from(record);
            stored.data.mark_unchanged();
            previous_user
        };
        if previous_user != record.user {
            self.unindex(previous_user.as_deref(), &record.key);
            self.index(record.user.as_deref(), record.key);
        }
        Ok(())
    }

    async fn delete(&self, key: &StorageKey) -> Result<(), Error> {
        let removed = write(self.shard(key)).remove(key);
        if let Some(record) = removed {
            self.unindex(record.user.as_deref(), key);
        }
        Ok(())
    }

    async fn touch(&self, record: &Record) -> Result<(), Error> {
        let mut shard = write(self.shard(&record.key));
        let stored = shard.get_mut(&record.key).ok_or(Error::NotFound)?;
        stored.last_seen = record.last_seen;
        stored.idle_deadline = record.idle_deadline;
        Ok(())
    }

    async fn delete_expired(&self, now: Timestamp) -> Result<u64, Error> {
        let mut removed = 0;
        for shard in &self.inner.shards {
            // Collect under the read lock; take the write lock only if needed,
            // so a sweep does not stall requests on a shard with nothing to do.
            let expired: Vec<StorageKey> = read(shard)
                .iter()
                .filter(|(_, record)| record.is_expired(now))
                .map(|(key, _)| *key)
                .collect();
            if expired.is_empty() {
                continue;
            }
            let mut gone = Vec::with_capacity(expired.len());
            {
                let mut shard = write(shard);
                for key in expired {
                    // Re-check: the record may have been touched in between.
                    if shard.get(&key).is_some_and(|record| record.is_expired(now))
                        && let Some(record) = shard.remove(&key)
                    {
                        gone.push(record);
                    }
                }
            }
            for record in &gone {
                self.unindex(record.user.as_deref(), &record.key);
            }
            removed += gone.len() as u64;
        }
        Ok(removed)
    }

    async fn list_for_user(&self, user: &str, now: Timestamp) -> Result<Vec<Record>, Error> {
        let keys: Vec<StorageKey> = read(&self.inner.users)
            .get(user)
            .map(|keys| keys.iter().copied().collect())
            .unwrap_or_default();
        let mut records = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(record) = self.load(&key, now).await? {
                records.push(record);
            }
        }
        Ok(records)
    }

    async fn delete_for_user(&self, user: &str) -> Result<u64, Error> {
        let keys = write(&self.inner.users).remove(user).unwrap_or_default();
        let mut removed = 0;
        for key in keys {
            if write(self.shard(&key)).remove(&key).is_some() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

//! Per-session locks, kept in the shards next to the records.
//!
//! A locked key has an entry in its shard's lock table holding the callers
//! waiting for it, in arrival order; the entry goes when the last holder
//! releases with nobody waiting, so the table only ever holds the sessions
//! locked right now. Release hands the lock straight to the first waiter
//! (first come, first served, like an async mutex). Because the lock and the
//! record share a shard, [`LockingStore::lock_and_load`] and
//! [`LockingStore::save_and_release`] each take the shard's lock once.

use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLockWriteGuard};
use std::time::Duration;

use session_core::{
    Error, HeldLock, LockGuard, LockOptions, LockingStore, Record, Reloaded, StorageKey, Timestamp,
    async_trait,
};
use tokio::sync::Notify;

use crate::MemoryStore;
use crate::store::{Inner, Shard, read, with_encoded, write};

/// A caller waiting for a locked key.
#[derive(Default)]
pub(crate) struct Waiter {
    /// Set when the lock was handed to this waiter. Written and read under
    /// the shard's lock only.
    granted: AtomicBool,
    notify: Notify,
}

impl Shard {
    /// Takes the lock on `key` if nobody holds it; otherwise queues and
    /// returns a waiter that is notified when the lock is handed to it.
    fn try_lock(&mut self, key: &StorageKey) -> Result<(), Arc<Waiter>> {
        match self.locks.entry(*key) {
            Entry::Vacant(vacant) => {
                vacant.insert(Default::default());
                Ok(())
            }
            Entry::Occupied(mut held) => {
                let waiter = Arc::new(Waiter::default());
                held.get_mut().push_back(Arc::clone(&waiter));
                Err(waiter)
            }
        }
    }

    /// Releases the lock on `key`: to the first waiter, or for good.
    fn unlock(&mut self, key: &StorageKey) {
        if let Entry::Occupied(mut held) = self.locks.entry(*key) {
            match held.get_mut().pop_front() {
                Some(next) => {
                    next.granted.store(true, Ordering::Relaxed);
                    // Stores a permit if `next` is not polling yet.
                    next.notify.notify_one();
                }
                None => {
                    held.remove();
                }
            }
        }
    }

    /// Takes `waiter`, which gave up, out of the queue for `key`.
    fn dequeue(&mut self, key: &StorageKey, waiter: &Arc<Waiter>) {
        if let Some(queue) = self.locks.get_mut(key) {
            queue.retain(|queued| !Arc::ptr_eq(queued, waiter));
        }
    }
}

/// A held lock of a [`MemoryStore`].
struct MemoryLock {
    inner: Arc<Inner>,
    key: StorageKey,
    /// Set once the lock was released, by `save_and_release` (under the
    /// shard lock it already holds) or by `Drop`.
    released: AtomicBool,
}

impl MemoryLock {
    /// Releases the lock with its shard already locked.
    fn release_in(&self, shard: &mut Shard) {
        if !self.released.swap(true, Ordering::Relaxed) {
            shard.unlock(&self.key);
        }
    }
}

impl Drop for MemoryLock {
    fn drop(&mut self) {
        if !*self.released.get_mut() {
            write(self.inner.shard(&self.key)).unlock(&self.key);
        }
    }
}

#[async_trait]
impl HeldLock for MemoryLock {
    async fn release(self: Box<Self>) -> Result<(), Error> {
        drop(self);
        Ok(())
    }
}

/// A place in a key's queue. Dropped before [`Queued::finish`] (the waiting
/// future was cancelled), it leaves the queue, or releases the lock if it
/// was handed over meanwhile.
struct Queued<'a> {
    inner: &'a Inner,
    key: StorageKey,
    waiter: Option<Arc<Waiter>>,
}

impl Queued<'_> {
    /// Whether the lock is ours, once the wait ended: notified, or timed out
    /// (when it may still have been handed over at the last moment).
    fn finish(mut self, notified: bool) -> bool {
        let Some(waiter) = self.waiter.take() else { return false };
        if notified {
            return true;
        }
        let mut shard = write(self.inner.shard(&self.key));
        if waiter.granted.load(Ordering::Relaxed) {
            return true;
        }
        shard.dequeue(&self.key, &waiter);
        false
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if let Some(waiter) = self.waiter.take() {
            let mut shard = write(self.inner.shard(&self.key));
            if waiter.granted.load(Ordering::Relaxed) {
                shard.unlock(&self.key);
            } else {
                shard.dequeue(&self.key, &waiter);
            }
        }
    }
}

impl MemoryStore {
    fn guard(&self, key: StorageKey) -> LockGuard {
        LockGuard::new(MemoryLock {
            inner: Arc::clone(&self.inner),
            key,
            released: AtomicBool::new(false),
        })
    }

    /// Waits in the queue of `key` for the lock to be handed over.
    async fn wait(
        &self,
        key: &StorageKey,
        waiter: Arc<Waiter>,
        timeout: Duration,
    ) -> Result<LockGuard, Error> {
        let queued = Queued { inner: &self.inner, key: *key, waiter: Some(Arc::clone(&waiter)) };
        let notified = tokio::time::timeout(timeout, waiter.notify.notified()).await.is_ok();
        if queued.finish(notified) {
            Ok(self.guard(*key))
        } else {
            Err(Error::LockTimeout { waited: timeout })
        }
    }
}

/// A first-come-first-served lock per session, within this process, shared by
/// the store and its clones.
///
/// The lease in [`LockOptions`] does not apply: the lock cannot outlive the
/// process, and a dropped guard releases it at once. `lock_and_load`,
/// `lock_and_reload` and `save_and_release` lock the record's shard once
/// each when the session lock is free; `lock_and_reload` reads the stored
/// version without decoding the record when it is unchanged.
#[async_trait]
impl LockingStore for MemoryStore {
    async fn lock(&self, key: &StorageKey, options: LockOptions) -> Result<LockGuard, Error> {
        let queued = write(self.shard(key)).try_lock(key);
        match queued {
            Ok(()) => Ok(self.guard(*key)),
            Err(waiter) => self.wait(key, waiter, options.wait_timeout).await,
        }
    }

    async fn lock_and_load(
        &self,
        key: &StorageKey,
        options: LockOptions,
        now: Timestamp,
    ) -> Result<(LockGuard, Option<Record>), Error> {
        let waiter = {
            let mut shard = write(self.shard(key));
            match shard.try_lock(key) {
                Ok(()) => {
                    // Decoding needs no exclusive access: let readers in.
                    let record = RwLockWriteGuard::downgrade(shard).load(key, now);
                    return Ok((self.guard(*key), record));
                }
                Err(waiter) => waiter,
            }
        };
        let guard = self.wait(key, waiter, options.wait_timeout).await?;
        let record = read(self.shard(key)).load(key, now);
        Ok((guard, record))
    }

    async fn lock_and_reload(
        &self,
        key: &StorageKey,
        options: LockOptions,
        now: Timestamp,
        version: u64,
    ) -> Result<(LockGuard, Reloaded), Error> {
        let waiter = {
            let mut shard = write(self.shard(key));
            match shard.try_lock(key) {
                Ok(()) => {
                    let reloaded = RwLockWriteGuard::downgrade(shard).reload(key, now, version);
                    return Ok((self.guard(*key), reloaded));
                }
                Err(waiter) => waiter,
            }
        };
        let guard = self.wait(key, waiter, options.wait_timeout).await?;
        let reloaded = read(self.shard(key)).reload(key, now, version);
        Ok((guard, reloaded))
    }

    async fn save_and_release(&self, record: &Record, guard: LockGuard) -> Result<(), Error> {
        let ours = guard
            .downcast_ref::<MemoryLock>()
            .filter(|lock| lock.key == record.key && Arc::ptr_eq(&lock.inner, &self.inner));
        let Some(lock) = ours else {
            // Another store's lock, or another key's: save, then release it.
            return guard.save_through(self, record).await;
        };
        let saved = with_encoded(record, |bytes| {
            let mut shard = write(self.shard(&record.key));
            let saved = shard.save(&self.inner, record, bytes);
            lock.release_in(&mut shard);
            saved
        });
        // Releases the lock if encoding failed before the shard was locked.
        drop(guard);
        saved?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use session_core::{ExpiryPolicy, SessionId, SessionStore};

    use super::*;

    fn options(wait_timeout: Duration) -> LockOptions {
        LockOptions { lease: Duration::from_secs(1), wait_timeout }
    }

    #[tokio::test]
    async fn table_entries_are_removed_when_unused() {
        let store = MemoryStore::new();
        let key = SessionId::random().storage_key();
        let options = options(Duration::from_millis(50));

        let guard = store.lock(&key, options).await.unwrap();
        assert_eq!(store.inner.lock_entries(), 1);
        assert!(matches!(store.lock(&key, options).await, Err(Error::LockTimeout { .. })));
        assert_eq!(store.inner.lock_entries(), 1, "a timed-out waiter leaves no entry behind");
        assert!(read(store.shard(&key)).locks[&key].is_empty(), "nor a place in the queue");
        guard.release().await.unwrap();
        assert_eq!(store.inner.lock_entries(), 0);

        let guard = store.lock(&key, options).await.unwrap();
        drop(guard);
        assert_eq!(store.inner.lock_entries(), 0, "dropping the guard cleans up too");

        let now = Timestamp::now();
        let (guard, record) = store.lock_and_load(&key, options, now).await.unwrap();
        assert!(record.is_none());
        let missing = ExpiryPolicy::default().new_record(key, now);
        assert!(matches!(store.save_and_release(&missing, guard).await, Err(Error::NotFound)));
        assert_eq!(store.inner.lock_entries(), 0, "a failed save still releases");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiters_get_the_lock_in_arrival_order() {
        let store = MemoryStore::new();
        let key = SessionId::random().storage_key();
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = store.lock(&key, options(Duration::from_secs(60))).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (mine, order) = (store.clone(), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                let guard = mine.lock(&key, options(Duration::from_secs(60))).await.unwrap();
                order.lock().unwrap().push(i);
                guard.release().await.unwrap();
            }));
            // Queue them one after the other.
            while read(store.shard(&key)).locks[&key].len() <= i {
                tokio::task::yield_now().await;
            }
        }
        held.release().await.unwrap();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
        assert_eq!(store.inner.lock_entries(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_waiter_passes_the_lock_on() {
        let store = MemoryStore::new();
        let key = SessionId::random().storage_key();
        let long = options(Duration::from_secs(60));
        let held = store.lock(&key, long).await.unwrap();

        // Cancelled while queued: leaves the queue.
        let cancelled = tokio::time::timeout(Duration::from_millis(10), store.lock(&key, long));
        assert!(cancelled.await.is_err());
        assert!(read(store.shard(&key)).locks[&key].is_empty());

        // Handed the lock, then cancelled before it ran: passes it on.
        let mut first = Box::pin(store.lock(&key, long));
        assert!(futures_poll(first.as_mut()).is_none(), "queued");
        let second = tokio::spawn({
            let store = store.clone();
            async move { store.lock(&key, long).await.map(drop) }
        });
        while read(store.shard(&key)).locks[&key].len() < 2 {
            tokio::task::yield_now().await;
        }
        drop(held);
        drop(first);
        second.await.unwrap().unwrap();
        assert_eq!(store.inner.lock_entries(), 0);
    }

    fn futures_poll<F: Future>(future: std::pin::Pin<&mut F>) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        match future.poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        }
    }

    #[tokio::test]
    async fn save_and_release_accepts_other_guards() {
        let (store, other) = (MemoryStore::new(), MemoryStore::new());
        let now = Timestamp::now();
        let mut record = ExpiryPolicy::default().new_record(SessionId::random().storage_key(), now);
        store.create(&record).await.unwrap();
        record.data.insert("n", 1).unwrap();
        record.version += 1;

        // A guard of another store: the save happens, both locks are freed.
        let foreign = other.lock(&record.key, LockOptions::default()).await.unwrap();
        store.save_and_release(&record, foreign).await.unwrap();
        assert_eq!(other.inner.lock_entries(), 0);

        // A guard of this store for another key.
        let elsewhere = SessionId::random().storage_key();
        let guard = store.lock(&elsewhere, LockOptions::default()).await.unwrap();
        record.version += 1;
        store.save_and_release(&record, guard).await.unwrap();
        assert_eq!(store.inner.lock_entries(), 0);
        let loaded = store.load(&record.key, now).await.unwrap().unwrap();
        assert_eq!((loaded.version, loaded.data.get::<u64>("n").unwrap()), (2, Some(1)));
    }

    #[tokio::test]
    async fn lock_and_load_after_waiting_sees_the_previous_save() {
        let store = MemoryStore::new();
        let now = Timestamp::now();
        let record = ExpiryPolicy::default().new_record(SessionId::random().storage_key(), now);
        store.create(&record).await.unwrap();
        let (guard, loaded) =
            store.lock_and_load(&record.key, LockOptions::default(), now).await.unwrap();
        let mut loaded = loaded.unwrap();
        let waiting = tokio::spawn({
            let store = store.clone();
            async move { store.lock_and_load(&record.key, LockOptions::default(), now).await }
        });
        while read(store.shard(&record.key)).locks[&record.key].is_empty() {
            tokio::task::yield_now().await;
        }
        loaded.data.insert("n", 7).unwrap();
        loaded.version += 1;
        store.save_and_release(&loaded, guard).await.unwrap();
        let (guard, next) = waiting.await.unwrap().unwrap();
        assert_eq!(next.unwrap().data.get::<u64>("n").unwrap(), Some(7));
        drop(guard);
        assert_eq!(store.inner.lock_entries(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn exclusive_under_timeouts_and_cancellations() {
        use std::sync::atomic::AtomicUsize;

        let store = MemoryStore::new();
        let key = SessionId::random().storage_key();
        let inside = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for task in 0..8_u64 {
            let (store, inside) = (store.clone(), Arc::clone(&inside));
            tasks.push(tokio::spawn(async move {
                for round in 0..100_u64 {
                    let wait = Duration::from_micros((task * 7 + round * 13) % 500);
                    let locking = store.lock(&key, options(wait));
                    // Every third attempt is also cancelled from outside.
                    let guard = if round % 3 == 0 {
                        match tokio::time::timeout(wait / 2, locking).await {
                            Ok(locked) => locked,
                            Err(_cancelled) => continue,
                        }
                    } else {
                        locking.await
                    };
                    let Ok(guard) = guard else { continue };
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
                    if round % 4 == 0 {
                        // Long enough for the others' waits to run out.
                        tokio::time::sleep(Duration::from_micros(500)).await;
                    } else {
                        tokio::task::yield_now().await;
                    }
                    inside.fetch_sub(1, Ordering::SeqCst);
                    if round % 2 == 0 {
                        guard.release().await.unwrap();
                    } else {
                        drop(guard);
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(store.inner.lock_entries(), 0, "nothing left locked or queued");
        store.lock(&key, options(Duration::ZERO)).await.unwrap().release().await.unwrap();
    }

    #[tokio::test]
    async fn lock_and_reload_checks_the_version_and_the_deadline() {
        let store = MemoryStore::new();
        let now = Timestamp::now();
        let mut record = ExpiryPolicy::default().new_record(SessionId::random().storage_key(), now);
        record.version = 4;
        store.create(&record).await.unwrap();
        let options = LockOptions::default();

        let (guard, reloaded) = store.lock_and_reload(&record.key, options, now, 4).await.unwrap();
        assert_eq!(reloaded, Reloaded::Unchanged);
        // Queued behind the holder, it answers once the lock is handed over.
        let waiting = tokio::spawn({
            let store = store.clone();
            async move { store.lock_and_reload(&record.key, options, now, 4).await }
        });
        while read(store.shard(&record.key)).locks[&record.key].is_empty() {
            tokio::task::yield_now().await;
        }
        record.version = 5;
        store.save_and_release(&record, guard).await.unwrap();
        let (guard, reloaded) = waiting.await.unwrap().unwrap();
        assert_eq!(reloaded, Reloaded::Changed(Some(record.clone())));
        drop(guard);

        let expired = record.expires_at();
        let (guard, reloaded) =
            store.lock_and_reload(&record.key, options, expired, 5).await.unwrap();
        assert_eq!(reloaded, Reloaded::Changed(None), "same version, but over");
        drop(guard);
        assert_eq!(store.inner.lock_entries(), 0);
    }
}

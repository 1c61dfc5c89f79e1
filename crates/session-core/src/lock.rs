//! Per-session locks: no lost updates for read-modify-write.

use std::any::Any;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::{Error, LocalTurn, Record, SessionStore, StorageKey, Timestamp};

/// How to take a session lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockOptions {
    /// How long the lock is held at most if its holder dies. Distributed
    /// locks renew the lease while the guard is alive.
    pub lease: Duration,
    /// How long to wait for the lock before giving up with
    /// [`Error::LockTimeout`].
    pub wait_timeout: Duration,
}

impl Default for LockOptions {
    /// A 4 second lease and a 10 second wait.
    ///
    /// The lease is renewed every third of it while the holder lives, and
    /// saves are fenced, so it can be short: a crashed holder's session is
    /// free again within the lease. The wait outlasts it, so that a waiter
    /// behind a crashed holder gets the lock rather than an error.
    fn default() -> Self {
        Self { lease: Duration::from_secs(4), wait_timeout: Duration::from_secs(10) }
    }
}

/// An exclusive per-session lock, provided by the store that holds the
/// session so it works wherever the store is shared: in one process (memory),
/// across processes on one machine (filesystem; SQLite on Linux) or across machines
/// (Redis, Postgres).
///
/// # Contract
///
/// While a [`LockGuard`] for a key is alive, no other `lock` call for that key,
/// through this or any other instance of the store on the same backend,
/// returns. A waiting call returns [`Error::LockTimeout`] after
/// `options.wait_timeout`. Dropping the guard releases the lock (best effort
/// for remote stores; the lease bounds how long a lost release can block).
///
/// ```
/// # use session_core::{LockOptions, SessionId, LockingStore};
/// # async fn demo(store: &dyn LockingStore) -> Result<(), session_core::Error> {
/// let key = SessionId::random().storage_key();
/// let guard = store.lock(&key, LockOptions::default()).await?;
/// // read, modify and save the session here
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[async_trait]
pub trait LockingStore: SessionStore {
    /// Waits for and takes the lock on `key`.
    async fn lock(&self, key: &StorageKey, options: LockOptions) -> Result<LockGuard, Error>;

    /// Takes the lock, then loads the record. Stores that can do both in one
    /// round trip override this.
    async fn lock_and_load(
        &self,
        key: &StorageKey,
        options: LockOptions,
        now: Timestamp,
    ) -> Result<(LockGuard, Option<Record>), Error> {
        let guard = self.lock(key, options).await?;
        match self.load(key, now).await {
            Ok(record) => Ok((guard, record)),
            Err(error) => {
                guard.release_quietly().await;
                Err(error)
            }
        }
    }

    /// Takes the lock, then reloads a record the caller loaded earlier (at
    /// `version`) without the lock. A record whose stored version is still
    /// `version` is [`Reloaded::Unchanged`]: the caller's copy is current,
    /// so stores that can check the version before transferring or decoding
    /// the record override this to skip that work.
    ///
    /// ```
    /// # use session_core::{LockOptions, Record, Reloaded, LockingStore, Timestamp};
    /// # async fn demo(store: &dyn LockingStore, mut record: Record) -> Result<(), session_core::Error> {
    /// let (guard, reloaded) =
    ///     store.lock_and_reload(&record.key, LockOptions::default(), Timestamp::now(), record.version).await?;
    /// if let Reloaded::Changed(newer) = reloaded {
    ///     match newer {
    ///         Some(newer) => record = newer,
    ///         None => return Ok(guard.release().await?), // deleted meanwhile
    ///     }
    /// }
    /// # let _ = record;
    /// guard.release().await
    /// # }
    /// ```
    async fn lock_and_reload(
        &self,
        key: &StorageKey,
        options: LockOptions,
        now: Timestamp,
        version: u64,
    ) -> Result<(LockGuard, Reloaded), Error> {
        let (guard, record) = self.lock_and_load(key, options, now).await?;
        let reloaded = match record {
            Some(record) if record.version == version => Reloaded::Unchanged,
            record => Reloaded::Changed(record),
        };
        Ok((guard, reloaded))
    }

    /// Saves the record, then releases the lock. Stores that can do both in
    /// one round trip override this. The lock is released even if the save
    /// fails.
    async fn save_and_release(&self, record: &Record, guard: LockGuard) -> Result<(), Error> {
        guard.save_through(self, record).await
    }

    /// Saves the record and keeps the lock, fenced as
    /// [`save_and_release`](Self::save_and_release) is: a guard that no
    /// longer holds its lock writes nothing and answers
    /// [`Error::LockLost`]. The caller releases the guard afterwards.
    ///
    /// For work that must follow a save under the same lock: a
    /// [`Mirrored`](crate::Mirrored) store writes its replicas between this
    /// save and the release, so they get one session's writes in the
    /// primary's order. The default checks [`LockGuard::is_held`], then saves
    /// with [`save`](SessionStore::save), which is fenced for locks that
    /// cannot be lost unnoticed (in-process and file locks); stores whose lock
    /// is a lease override it with a save that checks the lease in the same
    /// round trip.
    ///
    /// # Errors
    ///
    /// The save's error, or [`Error::LockLost`] (nothing written).
    ///
    /// ```
    /// # use session_core::{ExpiryPolicy, LockOptions, LockingStore, SessionId, Timestamp};
    /// # async fn demo(store: &dyn LockingStore) -> Result<(), session_core::Error> {
    /// let record = ExpiryPolicy::default().new_record(SessionId::random().storage_key(), Timestamp::now());
    /// store.create(&record).await?;
    /// let guard = store.lock(&record.key, LockOptions::default()).await?;
    /// store.save_under_lock(&record, &guard).await?;
    /// // ... more work that must happen before the next holder's ...
    /// guard.release().await?;
    /// # Ok(())
    /// # }
    /// ```
    async fn save_under_lock(&self, record: &Record, guard: &LockGuard) -> Result<(), Error> {
        guard.save_while_held(self, record).await
    }
}

/// What [`LockingStore::lock_and_reload`] found once the lock was held.
#[derive(Debug, Clone, PartialEq)]
pub enum Reloaded {
    /// The stored record still has the caller's version: data, user and
    /// expiry are as the caller holds them (a touch may have moved the
    /// deadlines, which a touch does without a new version).
    Unchanged,
    /// The record changed since the caller loaded it: the stored record, or
    /// `None` when it was deleted or has expired.
    Changed(Option<Record>),
}

/// One store's held lock. Store crates implement this; users see [`LockGuard`].
///
/// Implementations release in `release` and, best effort, in `Drop` when
/// `release` was never called.
#[async_trait]
pub trait HeldLock: Any + Send + Sync + 'static {
    /// Releases the lock.
    async fn release(self: Box<Self>) -> Result<(), Error>;

    /// Whether the lock is still held: `false` once a distributed lock's lease
    /// lapsed (renewal failed), when writing would risk a lost update.
    fn is_held(&self) -> bool {
        true
    }
}

/// A store's own lock state that its fenced save releases (see
/// [`LockGuard::hand_over`]).
pub trait FencedRelease {
    /// Marks the lock released and stops anything renewing it, so that
    /// dropping its guard no longer releases it; `false` if it already was.
    fn finish(&self) -> bool;
}

impl<T: FencedRelease + ?Sized> FencedRelease for Arc<T> {
    fn finish(&self) -> bool {
        (**self).finish()
    }
}

/// What [`LockGuard::hand_over`] decided.
#[derive(Debug)]
pub enum Handover<T> {
    /// Save under the store's own lock, and release it in the same round
    /// trip: the guard is gone and will not.
    Save(Fenced<T>),
    /// Settled already: another store's guard saved through and released,
    /// or a lost lock released ([`Error::LockLost`], nothing written).
    Settled(Result<(), Error>),
}

/// A store's lock state handed over for a fenced save and release
/// ([`Handover::Save`]), with the guard's turn in this process's queue: the
/// next waiter in this process gets its turn when this is dropped, after
/// the save.
#[derive(Debug)]
pub struct Fenced<T> {
    state: T,
    _turn: Option<LocalTurn>,
}

impl<T> Deref for Fenced<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.state
    }
}

/// A held session lock. Dropping it releases the lock; prefer
/// [`LockGuard::release`] to learn whether that worked.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard {
    // Field order matters: on drop the store's lock is let go (or its
    // release started) before the next waiter in this process gets its turn.
    held: Box<dyn HeldLock>,
    turn: Option<LocalTurn>,
}

impl LockGuard {
    /// Wraps a store's held lock.
    pub fn new(held: impl HeldLock) -> Self {
        Self { held: Box::new(held), turn: None }
    }

    /// Wraps a store's held lock taken after `turn` in this process's queue
    /// ([`LocalLocks::turn`](crate::LocalLocks::turn)); the turn passes to
    /// the next waiter once the lock is released.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use session_core::{Error, HeldLock, LocalLocks, LockGuard, SessionId, async_trait};
    ///
    /// struct ServerLock;
    ///
    /// #[async_trait]
    /// impl HeldLock for ServerLock {
    ///     async fn release(self: Box<Self>) -> Result<(), Error> {
    ///         Ok(()) // tell the server
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Error> {
    /// let queue = Arc::new(LocalLocks::default());
    /// let key = SessionId::random().storage_key();
    /// let turn = queue.turn(&key, Duration::from_secs(10)).await?;
    /// // ... take the server's lock with what is left of the wait ...
    /// let guard = LockGuard::queued(ServerLock, turn);
    /// guard.release().await?; // the server's lock, then the turn
    /// # Ok(()) }
    /// ```
    pub fn queued(held: impl HeldLock, turn: LocalTurn) -> Self {
        Self { held: Box::new(held), turn: Some(turn) }
    }

    /// Releases the lock now.
    ///
    /// # Errors
    ///
    /// The store's error if the release could not be confirmed; the lease
    /// still ends the lock.
    pub async fn release(self) -> Result<(), Error> {
        let Self { held, turn } = self;
        let released = held.release().await;
        drop(turn);
        released
    }

    /// Releases the lock now, logging (not returning) a failure.
    ///
    /// For paths that already have an outcome to report, such as a save that
    /// failed or a request that ends: a release that cannot be confirmed
    /// changes nothing for the caller, since the lease still ends the lock.
    ///
    /// ```
    /// # use session_core::{LockOptions, LockingStore, SessionId};
    /// # async fn demo(store: &dyn LockingStore) -> Result<(), session_core::Error> {
    /// let key = SessionId::random().storage_key();
    /// let guard = store.lock(&key, LockOptions::default()).await?;
    /// guard.release_quietly().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn release_quietly(self) {
        if let Err(error) = self.release().await {
            tracing::warn!(%error, "releasing a session lock failed; its lease will end it");
        }
    }

    /// Saves `record` through `store`'s plain [`save`](SessionStore::save),
    /// then releases the lock, even if the save failed. A guard that no
    /// longer holds its lock (its lease ran out) saves nothing and answers
    /// [`Error::LockLost`]: someone else may hold the lock by now.
    ///
    /// The default [`LockingStore::save_and_release`], and what a store
    /// that overrides it does with another store's guard.
    ///
    /// # Errors
    ///
    /// The save's error, or [`Error::LockLost`] for a lost lock (nothing
    /// written).
    ///
    /// ```
    /// # use session_core::{ExpiryPolicy, LockOptions, LockingStore, SessionId, Timestamp};
    /// # async fn demo(store: &dyn LockingStore) -> Result<(), session_core::Error> {
    /// let record = ExpiryPolicy::default().new_record(SessionId::random().storage_key(), Timestamp::now());
    /// store.create(&record).await?;
    /// let guard = store.lock(&record.key, LockOptions::default()).await?;
    /// guard.save_through(store, &record).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn save_through<S: SessionStore + ?Sized>(
        self,
        store: &S,
        record: &Record,
    ) -> Result<(), Error> {
        let saved = self.save_while_held(store, record).await;
        self.release_quietly().await;
        saved
    }

    /// Saves `record` through `store`'s plain [`save`](SessionStore::save)
    /// if this guard still holds its lock, keeping the lock: the default
    /// [`LockingStore::save_under_lock`], and what a store that overrides it
    /// does with another store's guard.
    ///
    /// # Errors
    ///
    /// The save's error, or [`Error::LockLost`] for a lost lock (nothing
    /// written).
    ///
    /// ```
    /// # use session_core::{ExpiryPolicy, LockOptions, LockingStore, SessionId, Timestamp};
    /// # async fn demo(store: &dyn LockingStore) -> Result<(), session_core::Error> {
    /// let record = ExpiryPolicy::default().new_record(SessionId::random().storage_key(), Timestamp::now());
    /// store.create(&record).await?;
    /// let guard = store.lock(&record.key, LockOptions::default()).await?;
    /// guard.save_while_held(store, &record).await?;
    /// guard.release().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn save_while_held<S: SessionStore + ?Sized>(
        &self,
        store: &S,
        record: &Record,
    ) -> Result<(), Error> {
        if !self.is_held() {
            return Err(Error::LockLost);
        }
        store.save(record).await
    }

    /// The first step of a [`LockingStore::save_and_release`] that saves and
    /// releases the store's own lock in one fenced round trip (a statement
    /// or script that writes only while the lock is still this holder's).
    ///
    /// `ours` is the store's own lock state, picked out of this guard with
    /// [`downcast_ref`](Self::downcast_ref); `None` for another store's
    /// guard, which is saved through `store`'s plain save and released
    /// ([`save_through`](Self::save_through)). A lock that is no longer held
    /// is released and answers [`Error::LockLost`], writing nothing.
    /// Otherwise the state is [finished](FencedRelease::finish), so that the
    /// guard, dropped here, does not release the lock: the fenced save must.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use session_core::{Error, FencedRelease, Handover, HeldLock, LockGuard, async_trait};
    ///
    /// struct Lease { released: AtomicBool }
    ///
    /// impl FencedRelease for Lease {
    ///     fn finish(&self) -> bool {
    ///         !self.released.swap(true, Ordering::AcqRel)
    ///     }
    /// }
    ///
    /// struct MyLock(Arc<Lease>);
    ///
    /// #[async_trait]
    /// impl HeldLock for MyLock {
    ///     async fn release(self: Box<Self>) -> Result<(), Error> {
    ///         if self.0.finish() { /* delete the lease */ }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # async fn demo(store: &dyn session_core::SessionStore, record: &session_core::Record) -> Result<(), Error> {
    /// let guard = LockGuard::new(MyLock(Arc::new(Lease { released: AtomicBool::new(false) })));
    /// let ours = guard.downcast_ref::<MyLock>().map(|lock| Arc::clone(&lock.0));
    /// let lease = match guard.hand_over(ours, store, record).await {
    ///     Handover::Save(lease) => lease,
    ///     Handover::Settled(outcome) => return outcome,
    /// };
    /// // One round trip: save `record` if `lease` is still the lock, and release it.
    /// # drop(lease);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn hand_over<T: FencedRelease, S: SessionStore + ?Sized>(
        self,
        ours: Option<T>,
        store: &S,
        record: &Record,
    ) -> Handover<T> {
        let Some(state) = ours else {
            return Handover::Settled(self.save_through(store, record).await);
        };
        if !self.is_held() {
            self.release_quietly().await;
            return Handover::Settled(Err(Error::LockLost));
        }
        state.finish();
        let Self { held, turn } = self;
        drop(held);
        Handover::Save(Fenced { state, _turn: turn })
    }

    /// Whether the lock is still held (see [`HeldLock::is_held`]).
    #[must_use]
    pub fn is_held(&self) -> bool {
        self.held.is_held()
    }

    /// The store's own lock type, if this guard holds a `T`. Stores use it in
    /// [`LockingStore::save_and_release`] to release in the same round trip
    /// as the save.
    #[must_use]
    pub fn downcast_ref<T: HeldLock>(&self) -> Option<&T> {
        let held: &dyn Any = self.held.as_ref();
        held.downcast_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mine(u8);
    struct Theirs;

    #[async_trait]
    impl HeldLock for Mine {
        async fn release(self: Box<Self>) -> Result<(), Error> {
            Ok(())
        }
    }

    #[async_trait]
    impl HeldLock for Theirs {
        async fn release(self: Box<Self>) -> Result<(), Error> {
            Ok(())
        }
    }

    #[test]
    fn guards_downcast_to_their_own_lock_type_only() {
        let guard = LockGuard::new(Mine(7));
        assert_eq!(guard.downcast_ref::<Mine>().map(|mine| mine.0), Some(7));
        assert!(guard.downcast_ref::<Theirs>().is_none());
        assert!(LockGuard::new(Theirs).downcast_ref::<Mine>().is_none());
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").field("held", &self.is_held()).finish()
    }
}

macro_rules! forward_lock {
    ($($wrapper:ty),*) => {$(
        #[async_trait]
        impl<S: LockingStore + ?Sized> LockingStore for $wrapper {
            async fn lock(&self, key: &StorageKey, options: LockOptions) -> Result<LockGuard, Error> {
                (**self).lock(key, options).await
            }
            async fn lock_and_load(
                &self,
                key: &StorageKey,
                options: LockOptions,
                now: Timestamp,
            ) -> Result<(LockGuard, Option<Record>), Error> {
                (**self).lock_and_load(key, options, now).await
            }
            async fn lock_and_reload(
                &self,
                key: &StorageKey,
                options: LockOptions,
                now: Timestamp,
                version: u64,
            ) -> Result<(LockGuard, Reloaded), Error> {
                (**self).lock_and_reload(key, options, now, version).await
            }
            async fn save_and_release(&self, record: &Record, guard: LockGuard) -> Result<(), Error> {
                (**self).save_and_release(record, guard).await
            }
            async fn save_under_lock(&self, record: &Record, guard: &LockGuard) -> Result<(), Error> {
                (**self).save_under_lock(record, guard).await
            }
        }
    )*};
}

forward_lock!(Arc<S>, Box<S>);

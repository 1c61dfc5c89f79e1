//! The distributed per-session lock: [`LockingStore`] for [`RedisStore`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use deadpool_redis::redis::{Cmd, Value};
use session_core::{
    BackgroundRelease, Backoff, Error, FencedRelease, Handover, HeldLock, LocalTurn, LockGuard,
    LockOptions, LockingStore, Record, ReleaseOnDrop, StorageKey, Timestamp, async_trait,
    release_until_done, spawn_release,
};

use crate::RedisStore;
use crate::error::RedisStoreError;
use crate::scripts;
use crate::store::{LockedSave, evalsha, log_corrupt, millis};
use crate::value::Corrupt;
use crate::wakeups::Watch;

/// The first wait between attempts to take a busy lock.
const FIRST_BACKOFF: Duration = Duration::from_millis(2);
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(64);

/// No renewal slot (no Tokio runtime when the lock was taken).
const NO_SLOT: usize = usize::MAX;

/// What the guard, the store's renewal task and `save_and_release` share.
pub(crate) struct LockState {
    store: RedisStore,
    lock_key: Vec<u8>,
    token: String,
    lease: Duration,
    /// When the request that took the lock was sent: the lease runs from
    /// there at the latest.
    acquired: Instant,
    /// Milliseconds after `acquired` until which the lease surely runs.
    lease_ends_ms: AtomicU64,
    /// Renewal found the lock gone or taken, or could not renew in time.
    lost: AtomicBool,
    /// Released (or handed to the save-and-release script).
    released: AtomicBool,
    /// Where the store's renewal task keeps this lock ([`NO_SLOT`]: none).
    slot: AtomicUsize,
}

impl LockState {
    /// Whether the lease surely still runs. Once it has said `false`, it
    /// says so for good: a renewal answered later does not bring the lock
    /// back to a holder that may have acted on the `false`.
    fn is_held(&self) -> bool {
        if self.lost.load(Ordering::Acquire) || self.released.load(Ordering::Acquire) {
            return false;
        }
        let within = self.within_lease();
        if !within {
            self.lost.store(true, Ordering::Release);
        }
        within
    }

    /// Whether the renewal task should still renew the lease.
    pub(crate) fn is_renewable(&self) -> bool {
        !self.lost.load(Ordering::Acquire) && !self.released.load(Ordering::Acquire)
    }

    fn within_lease(&self) -> bool {
        millis(self.acquired.elapsed()) < self.lease_ends_ms.load(Ordering::Acquire)
    }

    fn renewed(&self, sent: Instant) {
        let ends = millis(sent.duration_since(self.acquired).saturating_add(self.lease));
        self.lease_ends_ms.fetch_max(ends, Ordering::AcqRel);
    }

    fn lease_millis(&self) -> u64 {
        lease_millis(self.lease)
    }

    /// What fences a save under this lock.
    fn fencing(&self, release: bool) -> LockedSave<'_> {
        LockedSave { key: &self.lock_key, token: &self.token, release }
    }

    /// Compare-and-delete; `true` if the lock was still ours.
    async fn release_remote(&self) -> Result<bool, RedisStoreError> {
        release(&self.store, &self.lock_key, &self.token).await
    }
}

impl FencedRelease for LockState {
    /// Stops renewal and marks the lock released.
    fn finish(&self) -> bool {
        let first = !self.released.swap(true, Ordering::AcqRel);
        if first {
            let slot = self.slot.load(Ordering::Acquire);
            if slot != NO_SLOT {
                self.store.locks.unregister(slot, self);
            }
        }
        first
    }
}

/// Compare-and-delete: deletes the lock only if it holds `token`; `true` if
/// it did.
async fn release(
    store: &RedisStore,
    lock_key: &[u8],
    token: &str,
) -> Result<bool, RedisStoreError> {
    let mut command = evalsha(&scripts::RELEASE, 1);
    command.arg(lock_key).arg(token).arg(store.notice_flag());
    Ok(store.run_for_int(&command, &scripts::RELEASE, "release").await? == 1)
}

/// The background release of a lock request that may have taken the lock
/// and was abandoned before its reply was read (see [`ReleaseOnDrop`]): by
/// its token, which only this holder has.
fn unsettled<'a>(
    store: &'a RedisStore,
    lock_key: &'a [u8],
    token: &'a str,
    lease: Duration,
) -> ReleaseOnDrop<impl FnOnce() -> BackgroundRelease + 'a> {
    ReleaseOnDrop::new(move || released_later(store, lock_key, token, lease))
}

/// Compare-and-delete in the background, tried again until it is known to
/// be done or `lease` has ended the lock anyway.
fn released_later(
    store: &RedisStore,
    lock_key: &[u8],
    token: &str,
    lease: Duration,
) -> BackgroundRelease {
    let (store, lock_key, token) = (store.clone(), lock_key.to_vec(), token.to_owned());
    release_until_done(lease, move || {
        let (store, lock_key, token) = (store.clone(), lock_key.clone(), token.clone());
        async move { release(&store, &lock_key, &token).await.map(drop) }
    })
}

fn lease_millis(lease: Duration) -> u64 {
    // Redis takes PX up to i64::MAX and refuses 0.
    millis(lease).clamp(1, i64::MAX as u64 / 2)
}

/// A held Redis lock. Users see it as a [`LockGuard`].
struct RedisLock {
    state: Arc<LockState>,
}

#[async_trait]
impl HeldLock for RedisLock {
    async fn release(self: Box<Self>) -> Result<(), Error> {
        let state = Arc::clone(&self.state);
        let first = state.finish();
        // `self` is dropped here; `finish` already made its Drop a no-op.
        drop(self);
        if !first {
            return Ok(());
        }
        // Even a lost lock is released (compare-and-delete by token): "lost"
        // may only mean its lease ran out here while Redis still holds it.
        let unsettled = unsettled(&state.store, &state.lock_key, &state.token, state.lease);
        let released = state.release_remote().await;
        unsettled.settle();
        if !released? {
            tracing::debug!("session lock had already expired when it was released");
        }
        Ok(())
    }

    fn is_held(&self) -> bool {
        self.state.is_held()
    }
}

impl Drop for RedisLock {
    fn drop(&mut self) {
        if !self.state.finish() {
            return;
        }
        let state = &self.state;
        let spawned =
            spawn_release(released_later(&state.store, &state.lock_key, &state.token, state.lease));
        if !spawned {
            tracing::debug!("session lock dropped outside a Tokio runtime; its lease will end it");
        }
    }
}

/// Renews the lease once (the store's renewal task calls this every
/// third of the lease): on success the lease runs on from when the renewal
/// was sent; a lock found gone or taken by someone else is lost, and so is
/// one that could not be renewed before its lease ran out.
pub(crate) async fn renew_once(state: Arc<LockState>) {
    if !state.is_renewable() {
        return;
    }
    let sent = Instant::now();
    let mut command = evalsha(&scripts::RENEW, 1);
    command.arg(state.lock_key.as_slice()).arg(state.token.as_str()).arg(state.lease_millis());
    match state.store.run_for_int(&command, &scripts::RENEW, "renew").await {
        Ok(1) if !state.is_held() && !state.released.load(Ordering::Acquire) => {
            // The lease ran out while this renewal was on its way, and
            // `is_held` may have said so: it stays lost, although Redis took
            // the renewal. The lock is given back, so the next holder need
            // not wait a whole lease for it.
            tracing::warn!("session lock lost: its lease ran out before a renewal was answered");
            spawn_release(released_later(&state.store, &state.lock_key, &state.token, state.lease));
        }
        Ok(1) => state.renewed(sent),
        Ok(_) if state.released.load(Ordering::Acquire) => {}
        Ok(_) => {
            state.lost.store(true, Ordering::Release);
            tracing::warn!(
                "session lock lost: its lease ran out and it is gone or held by another"
            );
        }
        Err(error) if !state.within_lease() => {
            state.lost.store(true, Ordering::Release);
            tracing::warn!(%error, "session lock lost: could not renew it before its lease ran out");
        }
        Err(error) => {
            tracing::debug!(%error, "renewing the session lock failed; retrying");
        }
    }
}

/// What one attempt to take the lock found.
enum Outcome {
    Busy,
    Taken(Option<Record>),
}

impl RedisStore {
    /// Takes the lock on `key`, and with `load_at` also loads the record in
    /// the same round trip.
    async fn acquire(
        &self,
        key: &StorageKey,
        options: LockOptions,
        load_at: Option<Timestamp>,
    ) -> Result<(LockGuard, Option<Record>), Error> {
        let lock_key = self.lock_key(key);
        let (token, seed) = self.locks.token()?;
        let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF, seed, options.wait_timeout);
        // Behind the earlier waiters of this process: only the first of them
        // sends lock requests.
        let turn = self.locks.queue.turn(key, backoff.remaining()).await?;
        // Set once the lock was found busy: the release's notice wakes us.
        let mut watch = None;
        let lease_ms = lease_millis(options.lease);
        // One command, sent again on every attempt.
        let (command, script) = match load_at {
            Some(_) => {
                let mut command = evalsha(&scripts::LOCK_AND_LOAD, 2);
                command.arg(lock_key.as_slice());
                self.record_key_arg(&mut command, key);
                command.arg(token.as_str()).arg(lease_ms);
                (command, Some(&*scripts::LOCK_AND_LOAD))
            }
            None => {
                let mut command = Cmd::with_capacity(6, 160);
                command
                    .arg("SET")
                    .arg(lock_key.as_slice())
                    .arg(token.as_str())
                    .arg("NX")
                    .arg("PX")
                    .arg(lease_ms);
                (command, None)
            }
        };
        loop {
            // Armed before the attempt, so that a release between the
            // attempt and the wait below still wakes it.
            let notice = watch.as_ref().map(Watch::notice);
            let notified = notice.as_deref().map(Notify::notified);
            tokio::pin!(notified);
            if let Some(notified) = notified.as_mut().as_pin_mut() {
                notified.enable();
            }
            self.locks.attempts.fetch_add(1, Ordering::Relaxed);
            let sent = Instant::now();
            let attempt = unsettled(self, &lock_key, &token, options.lease);
            let reply = match self.run(&command, script).await {
                Ok(reply) => reply,
                // A slot on the move (Redis Cluster): the request was not
                // run, so nothing needs releasing; it waits for the move.
                Err(error) if error.not_executed() => {
                    attempt.settle();
                    tracing::debug!(%error, "session lock request refused while its slot moves; trying again");
                    if backoff.pause().await.is_err() {
                        return Err(error.into());
                    }
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            let outcome = match load_at {
                Some(now) => self.lock_and_load_reply(key, reply, now)?,
                None => match reply {
                    Value::Nil => Outcome::Busy,
                    _ => Outcome::Taken(None),
                },
            };
            attempt.settle();
            if let Outcome::Taken(record) = outcome {
                let guard = self.guard(lock_key, token, options.lease, sent, turn);
                return Ok((guard, record));
            }
            match (&self.wakeups, notified.as_pin_mut()) {
                // Busy for the first time: listen for its release, then try
                // again at once (it may have been released meanwhile).
                (Some(wakeups), None) if watch.is_none() => {
                    watch = Some(wakeups.watch(&lock_key).await);
                }
                (_, Some(notified)) => backoff.wait_for(notified, self.notice_poll).await?,
                _ => backoff.pause().await?,
            }
        }
    }

    fn lock_and_load_reply(
        &self,
        key: &StorageKey,
        reply: Value,
        now: Timestamp,
    ) -> Result<Outcome, Error> {
        Ok(match reply {
            Value::Int(0) => Outcome::Busy,
            Value::Int(1) => Outcome::Taken(None),
            Value::Int(2) => {
                log_corrupt(key, Corrupt("the key does not hold a string"));
                Outcome::Taken(None)
            }
            Value::BulkString(stored) => Outcome::Taken(self.record_from_value(key, &stored, now)),
            _ => return Err(RedisStoreError::UnexpectedReply("lock_and_load").into()),
        })
    }

    /// Wraps a freshly taken lock in a guard and has the store's renewal
    /// task renew its lease.
    fn guard(
        &self,
        lock_key: Vec<u8>,
        token: String,
        lease: Duration,
        sent: Instant,
        turn: LocalTurn,
    ) -> LockGuard {
        let state = Arc::new(LockState {
            store: self.clone(),
            lock_key,
            token,
            lease,
            acquired: sent,
            lease_ends_ms: AtomicU64::new(millis(lease)),
            lost: AtomicBool::new(false),
            released: AtomicBool::new(false),
            slot: AtomicUsize::new(NO_SLOT),
        });
        let interval = (lease / 3).max(Duration::from_millis(1));
        if let Some(slot) = self.locks.register(&state, interval, sent) {
            state.slot.store(slot, Ordering::Release);
        }
        LockGuard::queued(RedisLock { state }, turn)
    }
}

/// A per-session lock shared by every process using the same Redis and prefix.
///
/// - Taking it: `SET <prefix>lock:<hex> <random token> NX PX <lease>`,
///   retried with exponential backoff and jitter until
///   [`LockOptions::wait_timeout`], then [`Error::LockTimeout`].
///   [`LockingStore::lock_and_load`] does the `SET` and the record read in one
///   script call.
/// - Holding it: the store's renewal task (one per store, shared by all its
///   held locks) renews the lease (compare-and-`PEXPIRE`) every third of
///   the lease. If renewal finds the lock taken by someone
///   else, or cannot reach Redis before the lease runs out, the guard reports
///   [`LockGuard::is_held`] `false` and [`LockingStore::save_and_release`]
///   refuses to save.
/// - Releasing it: compare-and-delete, so a holder whose lease lapsed never
///   deletes the next holder's lock. [`LockingStore::save_and_release`] saves
///   and releases in one script call. Dropping the guard releases it in a
///   task spawned on the current Tokio runtime (best effort); if the process
///   dies, the lease ends the lock.
///
/// `lock_and_load` and `save_and_release` take one round trip each when the
/// lock is free.
#[async_trait]
impl LockingStore for RedisStore {
    async fn lock(&self, key: &StorageKey, options: LockOptions) -> Result<LockGuard, Error> {
        let (guard, _) = self.acquire(key, options, None).await?;
        Ok(guard)
    }

    async fn lock_and_load(
        &self,
        key: &StorageKey,
        options: LockOptions,
        now: Timestamp,
    ) -> Result<(LockGuard, Option<Record>), Error> {
        self.acquire(key, options, Some(now)).await
    }

    async fn save_and_release(&self, record: &Record, guard: LockGuard) -> Result<(), Error> {
        let ours = guard
            .downcast_ref::<RedisLock>()
            .map(|lock| Arc::clone(&lock.state))
            .filter(|state| Arc::ptr_eq(&state.store.connections, &self.connections));
        // From `Save` on, the script releases the lock; the guard cannot.
        let state = match guard.hand_over(ours, self, record).await {
            Handover::Save(state) => state,
            Handover::Settled(outcome) => return outcome,
        };
        let unsettled = unsettled(self, &state.lock_key, &state.token, state.lease);
        let saved = self.fenced_save(record, &state, true).await;
        unsettled.settle();
        match saved {
            Ok(answer) => fenced_save(answer, "save_and_release"),
            Err(error) => {
                // The lock may still be ours: free it for the waiters.
                if let Err(release_error) = state.release_remote().await {
                    tracing::warn!(error = %release_error, "releasing a session lock failed; its lease will end it");
                }
                Err(error)
            }
        }
    }

    /// One script call that writes only while the lock is still this
    /// holder's, and keeps it. Guards of other stores are saved through the
    /// plain save if they still hold their lock.
    async fn save_under_lock(&self, record: &Record, guard: &LockGuard) -> Result<(), Error> {
        let ours = guard
            .downcast_ref::<RedisLock>()
            .map(|lock| &lock.state)
            .filter(|state| Arc::ptr_eq(&state.store.connections, &self.connections));
        let Some(state) = ours else {
            return guard.save_while_held(self, record).await;
        };
        if !state.is_held() {
            return Err(Error::LockLost);
        }
        let answer = self.fenced_save(record, state, false).await?;
        fenced_save(answer, "save_under_lock")
    }
}

impl RedisStore {
    /// The fenced save script, sent again while a slot migration keeps it
    /// from running (an answer that says it did not run: see
    /// [`RedisStoreError::not_executed`]), for as long as the lock's lease
    /// surely runs; the renewal (one key, never refused that way) keeps it
    /// running meanwhile.
    async fn fenced_save(
        &self,
        record: &Record,
        state: &LockState,
        release: bool,
    ) -> Result<i64, Error> {
        let seed = state.acquired.elapsed().subsec_nanos().into();
        let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF, seed, state.lease);
        loop {
            match self.save_script(record, Some(state.fencing(release))).await {
                Err(error)
                    if RedisStoreError::is_not_executed(&error)
                        && state.within_lease()
                        && !state.lost.load(Ordering::Acquire) =>
                {
                    tracing::debug!(%error, "fenced save refused while its slot moves; trying again");
                    if backoff.pause().await.is_err() {
                        return Err(error);
                    }
                }
                answer => return answer,
            }
        }
    }
}

/// What the fenced save script's answer means.
fn fenced_save(answer: i64, operation: &'static str) -> Result<(), Error> {
    match answer {
        1 => Ok(()),
        0 => Err(Error::NotFound),
        -1 => {
            tracing::warn!("session lock lost before the save; nothing was written");
            Err(Error::LockLost)
        }
        _ => Err(RedisStoreError::UnexpectedReply(operation).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_is_clamped_for_redis() {
        assert_eq!(lease_millis(Duration::ZERO), 1);
        assert_eq!(lease_millis(Duration::from_secs(30)), 30_000);
        assert!(lease_millis(Duration::MAX) <= i64::MAX as u64);
    }
}

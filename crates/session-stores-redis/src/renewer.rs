//! What a store's locks share: lock tokens, and one task that renews the
//! leases of every held lock.
//!
//! A task per lock would cost a spawn and an abort on every request; the
//! shared task costs two short critical sections per lock instead (register
//! and unregister), and wakes up every half renewal interval (a sixth of
//! the lease) while locks are held. It is spawned on the runtime of the
//! first lock that needs it, and ends after [`IDLE`] with nothing to renew
//! (or with its runtime); the next lock starts a new one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use session_core::LocalLocks;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::error::RedisStoreError;
use crate::lock::{LockState, renew_once};

/// How long the renewal task waits with no lock to renew before it ends.
const IDLE: Duration = Duration::from_secs(30);

/// The locks of one store (and its clones).
pub(crate) struct Locks {
    /// The queue of this store's waiters per session, in front of Redis.
    pub(crate) queue: Arc<LocalLocks>,
    /// Lock requests sent so far (see `testing::lock_attempts`).
    pub(crate) attempts: AtomicU64,
    renewals: Mutex<Renewals>,
    wake: Notify,
    /// 128 random bits, drawn on first use: every token of this store
    /// starts with the first half and adds a counter to the second.
    seed: OnceLock<(u64, u64)>,
    issued: AtomicU64,
}

#[derive(Default)]
struct Renewals {
    slots: Vec<Option<Held>>,
    free: Vec<usize>,
    task: Option<JoinHandle<()>>,
    /// How long the task sleeps between looks at the slots.
    period: Duration,
}

/// A lock whose lease the task renews.
struct Held {
    state: Weak<LockState>,
    interval: Duration,
    due: Instant,
}

impl Locks {
    pub(crate) fn new() -> Self {
        Self {
            queue: Arc::default(),
            attempts: AtomicU64::new(0),
            renewals: Mutex::default(),
            wake: Notify::new(),
            seed: OnceLock::new(),
            issued: AtomicU64::new(0),
        }
    }

    fn renewals(&self) -> MutexGuard<'_, Renewals> {
        self.renewals.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A lock token (32 hex digits) no other holder has, and a seed for the
    /// holder's backoff jitter.
    ///
    /// Tokens only have to be unique (the lock is released by
    /// compare-and-delete on them), not secret: anyone who could use a
    /// token can already write to Redis. So each store draws 128 random bits
    /// once and counts from there, instead of asking the OS for randomness
    /// on every lock.
    pub(crate) fn token(&self) -> Result<(String, u64), RedisStoreError> {
        let (high, low) = match self.seed.get() {
            Some(seed) => *seed,
            None => {
                let mut bytes = [0u8; 16];
                getrandom::fill(&mut bytes).map_err(RedisStoreError::Random)?;
                let mut high = [0u8; 8];
                let mut low = [0u8; 8];
                high.copy_from_slice(&bytes[..8]);
                low.copy_from_slice(&bytes[8..]);
                *self.seed.get_or_init(|| (u64::from_le_bytes(high), u64::from_le_bytes(low)))
            }
        };
        let low = low.wrapping_add(self.issued.fetch_add(1, Ordering::Relaxed));
        let mut token = String::with_capacity(32);
        push_hex(&mut token, high);
        push_hex(&mut token, low);
        Ok((token, splitmix64(low)))
    }

    /// Renews `state`'s lease every `interval` from `from` until
    /// [`unregister`](Self::unregister). Returns its slot, or `None` if no
    /// renewal task runs and there is no Tokio runtime to start one on.
    pub(crate) fn register(
        self: &Arc<Self>,
        state: &Arc<LockState>,
        interval: Duration,
        from: Instant,
    ) -> Option<usize> {
        let mut renewals = self.renewals();
        let running = renewals.task.as_ref().is_some_and(|task| !task.is_finished());
        let tick = (interval / 2).max(Duration::from_millis(1));
        if !running {
            let runtime = tokio::runtime::Handle::try_current().ok()?;
            renewals.period = tick;
            renewals.task = Some(runtime.spawn(run(Arc::clone(self))));
        } else if tick < renewals.period {
            renewals.period = tick;
            self.wake.notify_one();
        }
        let held = Held { state: Arc::downgrade(state), interval, due: from + interval };
        Some(match renewals.free.pop() {
            Some(slot) => {
                renewals.slots[slot] = Some(held);
                slot
            }
            None => {
                renewals.slots.push(Some(held));
                renewals.slots.len() - 1
            }
        })
    }

    /// Stops renewing the lock in `slot`, if it still is `state`.
    pub(crate) fn unregister(&self, slot: usize, state: &LockState) {
        let mut renewals = self.renewals();
        let Some(entry) = renewals.slots.get_mut(slot) else { return };
        if entry.as_ref().is_some_and(|held| std::ptr::eq(held.state.as_ptr(), state)) {
            *entry = None;
            renewals.free.push(slot);
        }
    }

    /// The locks due for renewal at `now` (their next renewal is then
    /// scheduled), and how long to sleep; `None` when the task should end.
    fn due(&self, now: Instant, idle_since: &mut Option<Instant>) -> Option<Vec<Arc<LockState>>> {
        let mut renewals = self.renewals();
        let Renewals { slots, free, task, period } = &mut *renewals;
        let mut due = Vec::new();
        let mut shortest: Option<Duration> = None;
        for (slot, entry) in slots.iter_mut().enumerate() {
            let Some(held) = entry else { continue };
            let Some(state) = held.state.upgrade() else {
                // Gone without unregistering (cannot happen through the
                // guard, but costs nothing to tidy up).
                *entry = None;
                free.push(slot);
                continue;
            };
            if !state.is_renewable() {
                continue;
            }
            let tick = (held.interval / 2).max(Duration::from_millis(1));
            shortest = Some(shortest.map_or(tick, |shortest| shortest.min(tick)));
            if held.due <= now {
                held.due = now + held.interval;
                due.push(state);
            }
        }
        match shortest {
            Some(tick) => {
                *idle_since = None;
                *period = tick;
            }
            None if now.duration_since(*idle_since.get_or_insert(now)) >= IDLE => {
                // Under the lock: a `register` from now on starts a new task.
                *task = None;
                return None;
            }
            None => *period = IDLE,
        }
        Some(due)
    }
}

/// The renewal task.
async fn run(locks: Arc<Locks>) {
    let mut idle_since = None;
    loop {
        let Some(due) = locks.due(Instant::now(), &mut idle_since) else { return };
        for state in due {
            // Each renewal is one round trip; one slow reply must not hold
            // up the others.
            tokio::spawn(renew_once(state));
        }
        let period = locks.renewals().period;
        // Woken early when a lock with a shorter lease arrives.
        let _ = tokio::time::timeout(period, locks.wake.notified()).await;
    }
}

fn push_hex(out: &mut String, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(char::from(HEX[((n >> (shift * 4)) & 0xf) as usize]));
    }
}

/// A well-mixed 64-bit value from a counter (SplitMix64's finalizer).
fn splitmix64(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn tokens_are_unique_hex() {
        let locks = Locks::new();
        let other = Locks::new();
        let mut seen = HashSet::new();
        for _ in 0..1000 {
            for store in [&locks, &other] {
                let (token, _) = store.token().unwrap();
                assert_eq!(token.len(), 32);
                assert!(token.bytes().all(|c| c.is_ascii_hexdigit()));
                assert!(seen.insert(token), "tokens repeat");
            }
        }
    }

    #[test]
    fn backoff_seeds_differ() {
        let locks = Locks::new();
        let (_, a) = locks.token().unwrap();
        let (_, b) = locks.token().unwrap();
        assert_ne!(a, b);
    }
}

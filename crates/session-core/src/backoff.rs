//! [`Backoff`]: how a store's lock loop waits between two attempts at a lock
//! that someone else holds, within the caller's wait.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::Error;

/// The pauses of one lock acquisition: exponential, with jitter, and never
/// past the end of its wait.
///
/// Each pause is drawn from `[d/2, d]`, `d` doubling from `first` to `max`,
/// so waiters in different processes spread out instead of polling in step.
/// Started when the acquisition starts, so that the time spent queueing in
/// this process ([`LocalLocks::turn`](crate::LocalLocks::turn)) counts
/// against the same wait.
///
/// ```
/// use std::time::Duration;
/// use session_core::{Backoff, Error};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut backoff =
///     Backoff::new(Duration::from_millis(1), Duration::from_millis(4), 7, Duration::from_millis(20));
/// let mut attempts = 0;
/// let outcome = loop {
///     attempts += 1; // one attempt at a lock that stays busy
///     if let Err(error) = backoff.pause().await {
///         break error;
///     }
/// };
/// assert!(matches!(outcome, Error::LockTimeout { .. }));
/// assert!(attempts > 1);
/// # }
/// ```
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    rng: u64,
    wait: Duration,
    deadline: Instant,
}

impl Backoff {
    /// Starts the wait of one acquisition: `wait` from now, pauses from
    /// `first` up to `max`, jitter drawn from `seed` (anything that differs
    /// between waiters: a token, the key).
    #[must_use]
    pub fn new(first: Duration, max: Duration, seed: u64, wait: Duration) -> Self {
        Self { next: first, max, rng: seed | 1, wait, deadline: Instant::now() + wait }
    }

    /// What is left of the wait.
    #[must_use]
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The error of an acquisition whose wait is over:
    /// [`Error::LockTimeout`] with the whole wait.
    #[must_use]
    pub fn timed_out(&self) -> Error {
        Error::LockTimeout { waited: self.wait }
    }

    /// Sleeps until the next attempt.
    ///
    /// # Errors
    ///
    /// [`Error::LockTimeout`] once the wait is over (at once, without
    /// sleeping, if it already is).
    pub async fn pause(&mut self) -> Result<(), Error> {
        let pause = self.next_pause();
        self.wait_for(std::future::pending(), pause).await
    }

    /// Sleeps until `woken` completes (a release notice) or `every` passes
    /// (the slow poll that stands in for a lost notice), whichever comes
    /// first, never past the end of the wait.
    ///
    /// # Errors
    ///
    /// [`Error::LockTimeout`] once the wait is over (at once, without
    /// sleeping, if it already is).
    ///
    /// ```
    /// use std::time::Duration;
    /// use session_core::Backoff;
    /// use tokio::sync::Notify;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let released = Notify::new();
    /// let mut backoff =
    ///     Backoff::new(Duration::from_millis(1), Duration::from_millis(4), 7, Duration::from_secs(60));
    /// released.notify_one(); // the holder let go
    /// backoff.wait_for(released.notified(), Duration::from_secs(30)).await.unwrap();
    /// # }
    /// ```
    pub async fn wait_for(
        &mut self,
        woken: impl Future<Output = ()>,
        every: Duration,
    ) -> Result<(), Error> {
        let remaining = self.remaining();
        if remaining.is_zero() {
            return Err(self.timed_out());
        }
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep(every.min(remaining)) => {}
        }
        Ok(())
    }

    fn next_pause(&mut self) -> Duration {
        let step = self.next;
        self.next = step.saturating_mul(2).min(self.max);
        // xorshift64: spreading waiters out needs no better randomness.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = step / 2;
        let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX);
        half + Duration::from_micros(self.rng % spread.saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_within_bounds() {
        let (first, max) = (Duration::from_millis(2), Duration::from_millis(64));
        let mut backoff = Backoff::new(first, max, 42, Duration::from_secs(1));
        let mut previous_cap = Duration::ZERO;
        for _ in 0..20 {
            let cap = backoff.next;
            let pause = backoff.next_pause();
            assert!(pause >= cap / 2 && pause <= cap, "{pause:?} not in [{:?}, {cap:?}]", cap / 2);
            assert!(cap >= previous_cap && cap <= max);
            previous_cap = cap;
        }
        assert_eq!(backoff.next, max);
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_ends_with_a_timeout_and_no_pause_passes_it() {
        let wait = Duration::from_millis(100);
        let mut backoff = Backoff::new(Duration::from_millis(30), Duration::from_secs(1), 3, wait);
        let started = Instant::now();
        while backoff.pause().await.is_ok() {}
        assert_eq!(started.elapsed(), wait, "the last pause stops at the deadline");
        assert!(matches!(backoff.pause().await, Err(Error::LockTimeout { .. })));
    }
}

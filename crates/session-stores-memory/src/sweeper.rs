//! The background task that purges expired sessions.

use std::sync::Arc;
use std::time::Duration;

use session_core::{CleanupHandle, Clock, SystemClock};

use crate::MemoryStore;

impl MemoryStore {
    /// Starts a task on the current tokio runtime that calls
    /// [`delete_expired`](session_core::SessionStore::delete_expired) every `interval`.
    ///
    /// Expired sessions are invisible whether or not the sweeper runs; it only
    /// frees their memory. Stop it with [`CleanupHandle::stop`]; dropping the
    /// handle stops it too.
    ///
    /// # Panics
    ///
    /// Panics if called outside a tokio runtime.
    ///
    /// ```
    /// use std::time::Duration;
    /// use session_stores_memory::MemoryStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let store = MemoryStore::new();
    /// let sweeper = store.spawn_sweeper(Duration::from_secs(60));
    /// // ... serve requests ...
    /// sweeper.stop().await;
    /// # }
    /// ```
    #[must_use = "the sweeper stops when its handle is dropped"]
    pub fn spawn_sweeper(&self, interval: Duration) -> CleanupHandle {
        self.spawn_sweeper_with_clock(interval, Arc::new(SystemClock))
    }

    /// Like [`spawn_sweeper`](Self::spawn_sweeper), reading time from `clock`.
    #[must_use = "the sweeper stops when its handle is dropped"]
    pub fn spawn_sweeper_with_clock(
        &self,
        interval: Duration,
        clock: Arc<dyn Clock>,
    ) -> CleanupHandle {
        session_core::spawn_cleanup(Arc::new(self.clone()), interval, clock)
    }
}

#[cfg(test)]
mod tests {
    use session_core::{ExpiryPolicy, ManualClock, SessionId, SessionStore, Timestamp};

    use super::*;

    #[tokio::test]
    async fn sweeps_until_stopped() {
        let clock = ManualClock::starting_now();
        let store = MemoryStore::new();
        let policy = ExpiryPolicy::default().with_idle_timeout(Duration::from_secs(10));
        let record = policy.new_record(SessionId::random().storage_key(), clock.now());
        store.create(&record).await.unwrap();

        let sweeper =
            store.spawn_sweeper_with_clock(Duration::from_millis(5), Arc::new(clock.clone()));
        clock.advance(Duration::from_secs(10));
        // Bounded wait for the sweep: no timing assertion, just a cap.
        for _ in 0..2000 {
            if store.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(store.is_empty(), "the sweeper removed the expired record");
        sweeper.stop().await;

        let late =
            policy.new_record(SessionId::random().storage_key(), Timestamp::from_unix_seconds(0));
        store.create(&late).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(store.len(), 1, "a stopped sweeper sweeps no more");
    }
}

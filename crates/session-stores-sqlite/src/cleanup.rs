//! The background task that deletes expired sessions.

use std::sync::Arc;
use std::time::Duration;

use session_core::{CleanupHandle, Clock, SystemClock};

use crate::SqliteStore;

impl SqliteStore {
    /// Starts a task on the current tokio runtime that calls
    /// [`delete_expired`](session_core::SessionStore::delete_expired) every `interval`
    /// (first run at once).
    ///
    /// Expired sessions never load whether or not this runs; it only frees
    /// the space. Failures (say, the database is down) are logged and the
    /// task carries on. Stop it with [`CleanupHandle::stop`]; dropping the
    /// handle stops it too.
    ///
    /// # Panics
    ///
    /// Panics if called outside a tokio runtime.
    ///
    /// ```rust,no_run
    /// use std::time::Duration;
    /// use session_stores_sqlite::{SqlitePool, SqliteStore};
    ///
    /// # async fn demo(pool: SqlitePool) {
    /// let store = SqliteStore::new(pool);
    /// let cleanup = store.spawn_cleanup(Duration::from_secs(300));
    /// // ... serve requests ...
    /// cleanup.stop().await;
    /// # }
    /// ```
    #[must_use = "the cleanup task stops when its handle is dropped"]
    pub fn spawn_cleanup(&self, interval: Duration) -> CleanupHandle {
        self.spawn_cleanup_with_clock(interval, Arc::new(SystemClock))
    }

    /// Like [`spawn_cleanup`](Self::spawn_cleanup), reading time from `clock`.
    #[must_use = "the cleanup task stops when its handle is dropped"]
    pub fn spawn_cleanup_with_clock(
        &self,
        interval: Duration,
        clock: Arc<dyn Clock>,
    ) -> CleanupHandle {
        session_core::spawn_cleanup(Arc::new(self.clone()), interval, clock)
    }
}

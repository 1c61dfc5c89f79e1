//! The background task that deletes expired sessions.

use std::sync::Arc;
use std::time::Duration;

use session_core::{Clock, SessionStore, SystemClock};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::PostgresStore;

impl PostgresStore {
    /// Starts a task on the current tokio runtime that calls
    /// [`delete_expired`](SessionStore::delete_expired) every `interval`
    /// (first run at once).
    ///
    /// Expired sessions never load whether or not this runs; it only frees
    /// the space. Failures (say, the database is down) are logged and the
    /// task carries on. Stop it with [`CleanupHandle::stop`]; dropping the
    /// handle stops it too. Running it in several processes at once is fine.
    ///
    /// # Panics
    ///
    /// Panics if called outside a tokio runtime.
    ///
    /// ```rust,no_run
    /// use std::time::Duration;
    /// use session_stores_postgres::{PgPool, PostgresStore};
    ///
    /// # async fn demo(pool: PgPool) {
    /// let store = PostgresStore::new(pool);
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
        let store = self.clone();
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = ticks.tick() => match store.delete_expired(clock.now()).await {
                        Ok(0) => {}
                        Ok(removed) => tracing::debug!(
                            store = crate::error::STORE,
                            removed,
                            "deleted expired sessions",
                        ),
                        Err(error) => tracing::warn!(
                            store = crate::error::STORE,
                            %error,
                            "deleting expired sessions failed; retrying at the next interval",
                        ),
                    },
                }
            }
        });
        CleanupHandle { stop: Some(stop), task: Some(task) }
    }
}

/// Controls a running cleanup task (see [`PostgresStore::spawn_cleanup`]).
/// Dropping it stops the task.
#[derive(Debug)]
pub struct CleanupHandle {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl CleanupHandle {
    /// Stops the task, letting a cleanup in progress finish first.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take()
            && let Err(error) = task.await
        {
            tracing::warn!(store = crate::error::STORE, %error, "the session cleanup task failed");
        }
    }
}

impl Drop for CleanupHandle {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

//! The background task that deletes expired sessions, for every store.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{Clock, SessionStore, SystemClock};

/// Starts a task on the current tokio runtime that calls
/// [`store.delete_expired(clock.now())`](SessionStore::delete_expired) every
/// `interval`, the first time at once.
///
/// Expired sessions never load whether or not this runs; it only frees what
/// they hold. A failed pass (say, the database is down) is logged and the
/// task carries on at the next interval; a pass that takes longer than
/// `interval` delays the next one rather than piling up. Stop the task with
/// [`CleanupHandle::stop`]; dropping the handle stops it too.
///
/// Every store that is `Clone` has the same as a method through
/// [`SpawnCleanup`]; this function serves a store behind `Arc<dyn SessionStore>`.
///
/// # Panics
///
/// Panics if called outside a tokio runtime, or if `interval` is zero.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use session_core::{Clock, ManualClock, SessionStore, spawn_cleanup};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # #[derive(Debug)]
/// # struct MyStore;
/// # #[session_core::async_trait]
/// # impl SessionStore for MyStore {
/// #     async fn create(&self, _: &session_core::Record) -> Result<(), session_core::Error> { Ok(()) }
/// #     async fn load(&self, _: &session_core::StorageKey, _: session_core::Timestamp) -> Result<Option<session_core::Record>, session_core::Error> { Ok(None) }
/// #     async fn save(&self, _: &session_core::Record) -> Result<(), session_core::Error> { Ok(()) }
/// #     async fn delete(&self, _: &session_core::StorageKey) -> Result<(), session_core::Error> { Ok(()) }
/// #     async fn touch(&self, _: &session_core::Record) -> Result<(), session_core::Error> { Ok(()) }
/// #     async fn delete_expired(&self, _: session_core::Timestamp) -> Result<u64, session_core::Error> { Ok(0) }
/// #     async fn list_for_user(&self, _: &str, _: session_core::Timestamp) -> Result<Vec<session_core::Record>, session_core::Error> { Ok(Vec::new()) }
/// #     async fn delete_for_user(&self, _: &str) -> Result<u64, session_core::Error> { Ok(0) }
/// # }
/// let store: Arc<dyn SessionStore> = Arc::new(MyStore);
/// let clock: Arc<dyn Clock> = Arc::new(ManualClock::starting_now());
/// let cleanup = spawn_cleanup(store, Duration::from_secs(300), clock);
/// // ... serve requests ...
/// cleanup.stop().await;
/// # }
/// ```
#[must_use = "the cleanup task stops when its handle is dropped"]
pub fn spawn_cleanup(
    store: Arc<dyn SessionStore>,
    interval: Duration,
    clock: Arc<dyn Clock>,
) -> CleanupHandle {
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = ticks.tick() => match store.delete_expired(clock.now()).await {
                    Ok(0) => {}
                    Ok(removed) => tracing::debug!(removed, "deleted expired sessions"),
                    Err(error) => tracing::warn!(
                        %error,
                        "deleting expired sessions failed; retrying at the next interval",
                    ),
                },
            }
        }
    });
    CleanupHandle { stop: Some(stop), task: Some(task) }
}

/// [`spawn_cleanup`] as a method of every store, under one name for all of
/// them: `store.spawn_cleanup(interval)`.
///
/// Implemented for every [`SessionStore`] that is `Clone` (the stores share
/// their state between clones, so the task works on the caller's store).
///
/// ```
/// use std::time::Duration;
/// use session_core::SpawnCleanup;
/// # use session_core::{Error, Record, SessionStore, StorageKey, Timestamp};
/// # #[derive(Debug, Clone)]
/// # struct MyStore;
/// # #[session_core::async_trait]
/// # impl SessionStore for MyStore {
/// #     async fn create(&self, _: &Record) -> Result<(), Error> { Ok(()) }
/// #     async fn load(&self, _: &StorageKey, _: Timestamp) -> Result<Option<Record>, Error> { Ok(None) }
/// #     async fn save(&self, _: &Record) -> Result<(), Error> { Ok(()) }
/// #     async fn delete(&self, _: &StorageKey) -> Result<(), Error> { Ok(()) }
/// #     async fn touch(&self, _: &Record) -> Result<(), Error> { Ok(()) }
/// #     async fn delete_expired(&self, _: Timestamp) -> Result<u64, Error> { Ok(0) }
/// #     async fn list_for_user(&self, _: &str, _: Timestamp) -> Result<Vec<Record>, Error> { Ok(Vec::new()) }
/// #     async fn delete_for_user(&self, _: &str) -> Result<u64, Error> { Ok(0) }
/// # }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MyStore;
/// let cleanup = store.spawn_cleanup(Duration::from_secs(600));
/// // ... serve requests ...
/// cleanup.stop().await;
/// # }
/// ```
pub trait SpawnCleanup: SessionStore + Clone {
    /// Starts the cleanup task on the current tokio runtime, with the system
    /// clock (see [`spawn_cleanup`] for what it does and when it panics).
    #[must_use = "the cleanup task stops when its handle is dropped"]
    fn spawn_cleanup(&self, interval: Duration) -> CleanupHandle {
        self.spawn_cleanup_with_clock(interval, Arc::new(SystemClock))
    }

    /// Like [`spawn_cleanup`](Self::spawn_cleanup), reading time from `clock`.
    #[must_use = "the cleanup task stops when its handle is dropped"]
    fn spawn_cleanup_with_clock(&self, interval: Duration, clock: Arc<dyn Clock>) -> CleanupHandle {
        spawn_cleanup(Arc::new(self.clone()), interval, clock)
    }
}

impl<S: SessionStore + Clone> SpawnCleanup for S {}

/// Controls a running cleanup task (see [`spawn_cleanup`]). Dropping it stops
/// the task.
#[derive(Debug)]
pub struct CleanupHandle {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl CleanupHandle {
    /// Stops the task, letting a cleanup pass in progress finish first.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take()
            && let Err(error) = task.await
        {
            tracing::warn!(%error, "the session cleanup task failed");
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::{Error, ExpiryPolicy, ManualClock, Record, SessionId, StorageKey, Timestamp};

    /// Just enough of a store to watch the cleanup task work. Clones share
    /// the map, as the real stores' clones share their backend.
    #[derive(Debug, Default, Clone)]
    struct MapStore(Arc<Mutex<HashMap<StorageKey, Record>>>);

    impl MapStore {
        fn len(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    #[async_trait]
    impl SessionStore for MapStore {
        async fn create(&self, record: &Record) -> Result<(), Error> {
            self.0.lock().unwrap().insert(record.key, record.clone());
            Ok(())
        }
        async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, Error> {
            Ok(self.0.lock().unwrap().get(key).filter(|r| !r.is_expired(now)).cloned())
        }
        async fn save(&self, record: &Record) -> Result<(), Error> {
            self.create(record).await
        }
        async fn delete(&self, key: &StorageKey) -> Result<(), Error> {
            self.0.lock().unwrap().remove(key);
            Ok(())
        }
        async fn touch(&self, record: &Record) -> Result<(), Error> {
            self.create(record).await
        }
        async fn delete_expired(&self, now: Timestamp) -> Result<u64, Error> {
            let mut map = self.0.lock().unwrap();
            let before = map.len();
            map.retain(|_, record| !record.is_expired(now));
            Ok((before - map.len()) as u64)
        }
        async fn list_for_user(&self, _: &str, _: Timestamp) -> Result<Vec<Record>, Error> {
            Ok(Vec::new())
        }
        async fn delete_for_user(&self, _: &str) -> Result<u64, Error> {
            Ok(0)
        }
    }

    /// Spawns a sweep with `spawn` on a store holding one record that then
    /// expires: the record goes, and once the task is stopped, nothing more.
    async fn check_sweeps_until_stopped(
        spawn: impl FnOnce(MapStore, ManualClock) -> CleanupHandle,
    ) {
        let clock = ManualClock::starting_now();
        let store = MapStore::default();
        let policy = ExpiryPolicy::default().with_idle_timeout(Duration::from_secs(10));
        let record = policy.new_record(SessionId::random().storage_key(), clock.now());
        store.create(&record).await.unwrap();

        let cleanup = spawn(store.clone(), clock.clone());
        clock.advance(Duration::from_secs(10));
        // Bounded wait for the sweep: no timing assertion, just a cap.
        for _ in 0..2000 {
            if store.len() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(store.len(), 0, "the task removed the expired record");
        cleanup.stop().await;

        let late =
            policy.new_record(SessionId::random().storage_key(), Timestamp::from_unix_seconds(0));
        store.create(&late).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(store.len(), 1, "a stopped task deletes no more");
    }

    #[tokio::test]
    async fn sweeps_until_stopped() {
        check_sweeps_until_stopped(|store, clock| {
            spawn_cleanup(Arc::new(store), Duration::from_millis(5), Arc::new(clock))
        })
        .await;
    }

    /// The method every `Clone` store gets works on the caller's store (its
    /// clone shares the state) and stops like the free function.
    #[tokio::test]
    async fn the_method_sweeps_the_callers_store_until_stopped() {
        check_sweeps_until_stopped(|store, clock| {
            store.spawn_cleanup_with_clock(Duration::from_millis(5), Arc::new(clock))
        })
        .await;
    }
}

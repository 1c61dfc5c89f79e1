//! Releasing a distributed lock from `Drop`, for store crates.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::Backoff;

/// The first pause before a failed background release is tried again.
const FIRST_RETRY: Duration = Duration::from_millis(50);
/// The longest pause between two tries.
const MAX_RETRY: Duration = Duration::from_secs(1);

/// A release running in the background, as [`ReleaseOnDrop`] and
/// [`spawn_release`] take it.
pub type BackgroundRelease = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Runs `release` in the background on the current Tokio runtime; `false`
/// (and `release` dropped unrun) when there is none, for the caller to log
/// that the lease will end the lock instead.
///
/// `Drop` cannot wait, and a lock with nobody left to release it blocks its
/// session until the lease runs out: what a store does when its guard is
/// dropped unreleased.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use session_core::spawn_release;
///
/// assert!(spawn_release(async { /* DEL the lock key by token */ }));
/// # }
/// ```
pub fn spawn_release(release: impl Future<Output = ()> + Send + 'static) -> bool {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            drop(runtime.spawn(release));
            true
        }
        Err(_) => false,
    }
}

/// A background release that is tried again until it is known to be done:
/// `release` runs until it succeeds, pausing with backoff after each
/// failure (logged at `warn`), for at most `lease`, after which the lease
/// has ended the lock anyway.
///
/// A release whose reply was lost (a connection cut, a server restarting)
/// would otherwise leave the lock held with nobody to release it, and its
/// session blocked for the rest of the lease.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::time::Duration;
/// use session_core::{release_until_done, spawn_release};
///
/// let tries = Arc::new(AtomicUsize::new(0));
/// let counted = Arc::clone(&tries);
/// let release = release_until_done(Duration::from_secs(5), move || {
///     let tries = Arc::clone(&counted);
///     async move {
///         // Fails once (the server was out of reach), then goes through.
///         if tries.fetch_add(1, Ordering::SeqCst) == 0 { Err("connection reset") } else { Ok(()) }
///     }
/// });
/// release.await;
/// assert_eq!(tries.load(Ordering::SeqCst), 2);
/// # }
/// ```
pub fn release_until_done<F, Fut, E>(lease: Duration, mut release: F) -> BackgroundRelease
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send,
{
    Box::pin(async move {
        let seed = u64::try_from(lease.as_nanos() & 0xffff_ffff).unwrap_or(1);
        let mut backoff = Backoff::new(FIRST_RETRY, MAX_RETRY, seed, lease);
        loop {
            let Err(error) = release().await else { return };
            if backoff.pause().await.is_err() {
                tracing::warn!(%error, "releasing a session lock failed until its lease ended");
                return;
            }
            tracing::warn!(%error, "releasing a session lock failed; trying again");
        }
    })
}

/// A lock request whose reply has not been read yet (taking the lock,
/// saving and releasing it, releasing it), for stores whose lock is held
/// in a server. If the request is abandoned there (the caller's future
/// dropped, a reply that never came, one that could not be read) the lock
/// may be held with nobody left to release it: dropping this guard runs
/// `release` (built only then) in the background, best effort, unless
/// [`settle`](Self::settle) said the reply was read.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use session_core::ReleaseOnDrop;
///
/// let released = Arc::new(AtomicBool::new(false));
/// let flag = Arc::clone(&released);
/// let request = ReleaseOnDrop::new(move || {
///     Box::pin(async move { flag.store(true, Ordering::SeqCst) })
/// });
/// drop(request); // abandoned before its reply was read
/// tokio::task::yield_now().await;
/// assert!(released.load(Ordering::SeqCst));
/// # }
/// ```
#[must_use = "dropping it at once releases the lock"]
pub struct ReleaseOnDrop<R: FnOnce() -> BackgroundRelease> {
    release: Option<R>,
}

impl<R: FnOnce() -> BackgroundRelease> ReleaseOnDrop<R> {
    /// A request that `release` undoes if it is abandoned.
    pub fn new(release: R) -> Self {
        Self { release: Some(release) }
    }

    /// The reply was read: from here the caller knows who holds the lock.
    pub fn settle(mut self) {
        self.release = None;
    }
}

impl<R: FnOnce() -> BackgroundRelease> Drop for ReleaseOnDrop<R> {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = spawn_release(release());
        }
    }
}

impl<R: FnOnce() -> BackgroundRelease> fmt::Debug for ReleaseOnDrop<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReleaseOnDrop").field("settled", &self.release.is_none()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_settled_request_releases_nothing_an_abandoned_one_releases_once() {
        let releases = Arc::new(AtomicUsize::new(0));
        let counting = || {
            let releases = Arc::clone(&releases);
            move || -> BackgroundRelease {
                Box::pin(async move {
                    releases.fetch_add(1, Ordering::SeqCst);
                })
            }
        };
        ReleaseOnDrop::new(counting()).settle();
        drop(ReleaseOnDrop::new(counting()));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(releases.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn outside_a_runtime_nothing_is_spawned() {
        assert!(!spawn_release(async {}));
        drop(ReleaseOnDrop::new(|| -> BackgroundRelease { Box::pin(async {}) }));
    }
}

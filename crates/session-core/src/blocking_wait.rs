//! [`spawn_blocking_wait`]: waiting for an operating-system lock on a
//! blocking thread, with a bound on how many such waits run at once.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::task::JoinHandle;

/// How many blocking waits may run at once in this process.
pub const MAX_BLOCKING_WAITS: usize = 8;

static BLOCKING_WAITS: AtomicUsize = AtomicUsize::new(0);

/// Runs `wait(file)`, a call that blocks until an operating-system lock on
/// `file` is free (`flock`, `F_OFD_SETLKW`), on Tokio's blocking pool, so
/// that the lock's release wakes its waiter at once instead of a poll
/// finding it later.
///
/// `Err(file)`, given back, when [`MAX_BLOCKING_WAITS`] are under way
/// already: the caller polls with it instead. A blocked call cannot be
/// cancelled safely, so a waiter that gives up (its timeout) leaves its
/// thread blocked until the lock is free; then `wait`'s result is dropped,
/// which must let the lock go again (hold the open file that holds it). The
/// bound keeps a holder that never lets go from taking the pool's threads
/// one by one.
///
/// ```
/// use session_core::spawn_blocking_wait;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let waiting = spawn_blocking_wait("lock file", |file| format!("{file} locked"));
/// let Ok(waiting) = waiting else { panic!("a free slot") };
/// assert_eq!(waiting.await.unwrap(), "lock file locked");
/// # }
/// ```
pub fn spawn_blocking_wait<R, T, F>(file: R, wait: F) -> Result<JoinHandle<T>, R>
where
    R: Send + 'static,
    F: FnOnce(R) -> T + Send + 'static,
    T: Send + 'static,
{
    if BLOCKING_WAITS.fetch_add(1, Ordering::AcqRel) >= MAX_BLOCKING_WAITS {
        BLOCKING_WAITS.fetch_sub(1, Ordering::AcqRel);
        return Err(file);
    }
    Ok(tokio::task::spawn_blocking(move || {
        let _slot = Slot;
        wait(file)
    }))
}

/// Gives a blocking wait's slot back however the wait ends (a panic too).
struct Slot;

impl Drop for Slot {
    fn drop(&mut self) {
        BLOCKING_WAITS.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waits_beyond_the_bound_are_refused_until_a_slot_is_free() {
        let (release, released) = mpsc::channel::<()>();
        let released = std::sync::Arc::new(std::sync::Mutex::new(released));
        let mut blocked = Vec::new();
        while let Ok(waiting) = spawn_blocking_wait(std::sync::Arc::clone(&released), |released| {
            let _ = released.lock().map(|r| r.recv());
        }) {
            blocked.push(waiting);
            assert!(blocked.len() <= MAX_BLOCKING_WAITS, "more waits than the bound");
        }
        assert_eq!(blocked.len(), MAX_BLOCKING_WAITS);
        for _ in 0..MAX_BLOCKING_WAITS {
            release.send(()).unwrap();
        }
        for waiting in blocked {
            waiting.await.unwrap();
        }
        assert!(spawn_blocking_wait((), |()| ()).is_ok(), "a slot is free again");
    }
}

//! [`LockingStore`] for [`FsStore`]: an OS file lock per session.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use session_core::{
    Backoff, Error, HeldLock, LockGuard, LockOptions, LockingStore, StorageKey, async_trait,
    spawn_blocking_wait,
};

use crate::FsStore;
use crate::error::FsError;
use crate::files::{self, FILE_MODE};

/// First pause between two attempts to take a busy lock.
const FIRST_BACKOFF: Duration = Duration::from_millis(2);
/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(25);

/// One attempt at the lock file.
enum Attempt {
    /// We hold the lock on the file the lock path names.
    Acquired(File),
    /// Someone else holds it; keep the file open for the next attempt.
    Busy(File),
    /// We locked a file that was unlinked or replaced meanwhile: reopen.
    Stale,
}

fn attempt(path: &PathBuf, file: Option<File>) -> Result<Attempt, FsError> {
    let file = match file {
        Some(file) => file,
        None => OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| FsError::io("open", path, e))?,
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(Attempt::Busy(file)),
        Err(TryLockError::Error(e)) => return Err(FsError::io("lock", path, e)),
    }
    if files::is_current(&file, path)? { Ok(Attempt::Acquired(file)) } else { Ok(Attempt::Stale) }
}

#[async_trait]
impl LockingStore for FsStore {
    /// Takes an exclusive OS lock (`flock`) on `locks/<key>.lock`: after the
    /// earlier waiters of this store in this process, one `try_lock`, then a
    /// blocking `flock` on a blocking thread (or, past
    /// [`MAX_BLOCKING_WAITS`](session_core::MAX_BLOCKING_WAITS), polling with
    /// a jittered backoff of 2 to 25 ms) until `options.wait_timeout`, then
    /// [`Error::LockTimeout`].
    ///
    /// `options.lease` is not used: the operating system releases the lock
    /// when its holder closes the file or dies, so a crashed process never
    /// blocks a session.
    async fn lock(&self, key: &StorageKey, options: LockOptions) -> Result<LockGuard, Error> {
        let path = self.inner.lock_path(key);
        let session = self.inner.session_path(key);
        let mut backoff =
            Backoff::new(FIRST_BACKOFF, MAX_BACKOFF, key.prefix_u64(), options.wait_timeout);
        // Behind the earlier waiters of this process: only the first of them
        // tries the file.
        let turn = self.inner.queue.turn(key, backoff.remaining()).await?;
        let mut open: Option<File> = None;
        loop {
            let attempt_path = path.clone();
            let file = open.take();
            // If this future is dropped while the attempt runs, the attempt's
            // result (possibly a locked file) is dropped too, which unlocks it.
            let outcome = self.blocking(move |_| Ok(attempt(&attempt_path, file)?)).await?;
            match outcome {
                Attempt::Acquired(file) => {
                    let held = FsHeldLock { file: Some(file), path, session };
                    return Ok(LockGuard::queued(held, turn));
                }
                Attempt::Busy(file) => {
                    // Wait in the operating system's lock queue on a blocking
                    // thread, so that the holder's close wakes it at once;
                    // poll when too many such waits are under way.
                    let owned = path.clone();
                    // Given up on meanwhile, the result is dropped with the
                    // file, which unlocks it.
                    let waiting = spawn_blocking_wait(file, move |file| {
                        wait_for(&file, &owned).map(|current| current.then_some(file))
                    });
                    let waiting = match waiting {
                        Ok(waiting) => waiting,
                        Err(file) => {
                            open = Some(file);
                            backoff.pause().await?;
                            continue;
                        }
                    };
                    match tokio::time::timeout(backoff.remaining(), waiting).await {
                        Err(_elapsed) => return Err(backoff.timed_out()),
                        Ok(waited) => {
                            if let Some(file) = waited.map_err(FsError::from)?? {
                                let held = FsHeldLock { file: Some(file), path, session };
                                return Ok(LockGuard::queued(held, turn));
                            }
                            // Locked a file that was replaced meanwhile: reopen.
                        }
                    }
                }
                // Stale: retry at once with a fresh file.
                Attempt::Stale if backoff.remaining().is_zero() => {
                    return Err(backoff.timed_out());
                }
                Attempt::Stale => {}
            }
        }
    }
}

/// Blocks until this open lock file is ours (a blocking call: for a thread
/// of the blocking pool); `false` if the path names another file by then.
fn wait_for(file: &File, path: &Path) -> Result<bool, FsError> {
    file.lock().map_err(|e| FsError::io("lock", path, e))?;
    files::is_current(file, path)
}

/// A held file lock. Closing the file (on release, on drop, or when the
/// process dies) releases it.
struct FsHeldLock {
    file: Option<File>,
    path: PathBuf,
    session: PathBuf,
}

#[async_trait]
impl HeldLock for FsHeldLock {
    async fn release(mut self: Box<Self>) -> Result<(), Error> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let (path, session) = (self.path.clone(), self.session.clone());
        tokio::task::spawn_blocking(move || -> Result<(), FsError> {
            // The session is gone (deleted under the lock, or never created):
            // remove the lock file while we still hold it, so lock files do
            // not pile up. Waiters that opened it notice and reopen.
            let session_gone = matches!(
                fs::symlink_metadata(&session),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound
            );
            if session_gone && files::is_current(&file, &path)? {
                files::remove_if_exists(&path)?;
            }
            file.unlock().map_err(|e| FsError::io("unlock", &path, e))
        })
        .await
        .map_err(FsError::from)??;
        Ok(())
    }
}

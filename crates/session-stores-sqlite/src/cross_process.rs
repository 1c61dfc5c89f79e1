//! The cross-process half of the session lock (Linux): one byte of
//! `<database>-locks` per session, locked with an open-file-description
//! lock (`F_OFD_SETLK`).
//!
//! Why this shape: processes sharing a SQLite file are on one machine, so an
//! operating-system lock reaches all of them, and the system ends it when
//! its holder closes the file or dies, so no lease or renewal is needed. An
//! open-file-description lock (unlike a classic POSIX record lock) belongs
//! to the open file, not to the process: two opens in one process exclude
//! each other, and closing one file does not drop the locks of another. Each
//! acquisition opens the file anew, so closing it is the release. One byte
//! per session (at an offset from the storage key's first 63 bits) keeps one
//! file for all sessions; two sessions sharing those bits merely wait for
//! each other.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};
use nix::libc;
use session_core::{
    Backoff, Error, HeldLock, LocalTurn, LockGuard, StorageKey, async_trait, spawn_blocking_wait,
};

use crate::error::SqliteStoreError;

/// First pause between two attempts at a byte another process holds.
const FIRST_BACKOFF: Duration = Duration::from_millis(2);
/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(25);

/// The pauses of one acquisition of `key`'s lock, within `wait_timeout`;
/// started before the in-process half, so that its wait counts too.
pub(crate) fn backoff(key: &StorageKey, wait_timeout: Duration) -> Backoff {
    Backoff::new(FIRST_BACKOFF, MAX_BACKOFF, key.prefix_u64(), wait_timeout)
}

/// Takes the byte of `key` in the lock file at `path`. If another process
/// holds it, waits for it in the operating system's lock queue
/// (`F_OFD_SETLKW` on a blocking thread), so the holder's release wakes it
/// at once, for what is left of `backoff`'s wait; when too many such waits
/// are under way ([`spawn_blocking_wait`]), polls with `backoff` instead. `turn`, the in-process
/// half, is held throughout and kept in the guard.
pub(crate) async fn lock(
    path: &Path,
    key: &StorageKey,
    turn: LocalTurn,
    mut backoff: Backoff,
) -> Result<LockGuard, Error> {
    // A local file, opened and locked without waiting: neither call blocks
    // on I/O, so they run on the async task, not on the blocking pool.
    let file = open(path)?;
    let offset = offset_of(key);
    if try_lock(&file, offset, path)? {
        return Ok(LockGuard::queued(ProcessLock { file }, turn));
    }
    let owned = path.to_owned();
    // Given up on meanwhile, the result is dropped with the file, which
    // lets the byte go again.
    let waiting =
        spawn_blocking_wait(file, move |file| lock_waiting(&file, offset, &owned).map(|()| file));
    let file = match waiting {
        Ok(waiting) => {
            return match tokio::time::timeout(backoff.remaining(), waiting).await {
                Ok(Ok(locked)) => Ok(LockGuard::queued(ProcessLock { file: locked? }, turn)),
                Ok(Err(panicked)) => Err(SqliteStoreError::Wait(panicked.to_string()).into()),
                Err(_elapsed) => Err(backoff.timed_out()),
            };
        }
        Err(file) => file,
    };
    loop {
        backoff.pause().await?;
        if try_lock(&file, offset, path)? {
            return Ok(LockGuard::queued(ProcessLock { file }, turn));
        }
    }
}

fn open(path: &Path) -> Result<File, SqliteStoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|source| SqliteStoreError::LockFile { path: path.to_owned(), source })
}

/// The byte of a session: the key's first 63 bits, a non-negative offset.
fn offset_of(key: &StorageKey) -> i64 {
    (key.prefix_u64() >> 1).cast_signed()
}

/// The one byte at `offset`, to lock for writing.
fn byte_at(offset: i64) -> libc::flock {
    libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: offset,
        l_len: 1,
        // Must be 0 for open-file-description locks.
        l_pid: 0,
    }
}

/// Blocks until this open file holds the byte (a blocking call: for a
/// thread of the blocking pool).
fn lock_waiting(file: &File, offset: i64, path: &Path) -> Result<(), SqliteStoreError> {
    let byte = byte_at(offset);
    loop {
        match fcntl(file, FcntlArg::F_OFD_SETLKW(&byte)) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => {}
            Err(errno) => {
                return Err(SqliteStoreError::LockFile {
                    path: path.to_owned(),
                    source: std::io::Error::from(errno),
                });
            }
        }
    }
}

/// One non-blocking attempt: `true` if this open file now holds the byte.
fn try_lock(file: &File, offset: i64, path: &Path) -> Result<bool, SqliteStoreError> {
    let byte = byte_at(offset);
    match fcntl(file, FcntlArg::F_OFD_SETLK(&byte)) {
        Ok(_) => Ok(true),
        Err(Errno::EAGAIN | Errno::EACCES) => Ok(false),
        Err(errno) => Err(SqliteStoreError::LockFile {
            path: path.to_owned(),
            source: std::io::Error::from(errno),
        }),
    }
}

/// The byte held by an open lock file: closing the file releases it. The
/// guard lets the in-process half go after this, so that the next holder
/// in this process finds the byte free.
struct ProcessLock {
    file: File,
}

#[async_trait]
impl HeldLock for ProcessLock {
    async fn release(self: Box<Self>) -> Result<(), Error> {
        drop(self.file);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_core::{LocalLocks, SessionId};

    /// Takes `key`'s byte as a store of its own would (its own in-process
    /// queue): only the byte lock excludes here.
    async fn lock_alone(path: &Path, key: &StorageKey, wait: Duration) -> Result<LockGuard, Error> {
        let table = std::sync::Arc::new(LocalLocks::default());
        let turn = table.turn(key, wait).await.unwrap();
        lock(path, key, turn, backoff(key, wait)).await
    }

    #[tokio::test]
    async fn two_opens_of_the_lock_file_exclude_each_other_until_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db-locks");
        let key = SessionId::random().storage_key();
        let wait = Duration::from_millis(30);
        let first = lock_alone(&path, &key, wait).await.unwrap();
        let second = lock_alone(&path, &key, wait).await;
        assert!(matches!(second, Err(Error::LockTimeout { .. })), "{second:?}");
        let other = SessionId::random().storage_key();
        let other = lock_alone(&path, &other, wait).await;
        assert!(other.is_ok(), "another session's byte is free");
        first.release().await.unwrap();
        let third = lock_alone(&path, &key, wait).await;
        assert!(third.is_ok(), "free again after the release");
        drop(third);
        let after_drop = lock_alone(&path, &key, wait).await;
        assert!(after_drop.is_ok(), "free again after a drop");
    }

    /// A waiter for a byte another process holds waits in the operating
    /// system's lock queue, not by polling: `/proc/locks` shows its request
    /// blocked on the byte (a poller never shows there), and the holder's
    /// release wakes it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_blocks_in_the_system_lock_queue_until_the_release() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db-locks");
        let key = SessionId::random().storage_key();
        let held = lock_alone(&path, &key, Duration::from_secs(1)).await.unwrap();
        let waiting = {
            let path = path.clone();
            tokio::spawn(async move { lock_alone(&path, &key, Duration::from_secs(20)).await })
        };
        let inode = std::fs::metadata(&path).unwrap().ino();
        let byte = offset_of(&key);
        let blocked_request = format!(":{inode} {byte} {byte}");
        let mut queued = false;
        for _ in 0..200 {
            let locks = std::fs::read_to_string("/proc/locks").unwrap();
            if locks.lines().any(|line| line.contains("->") && line.contains(&blocked_request)) {
                queued = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(queued, "the waiter never blocked in the system's lock queue");
        assert!(!waiting.is_finished());
        held.release().await.unwrap();
        let taken = waiting.await.unwrap().unwrap_or_else(|e| panic!("not woken: {e}"));
        taken.release().await.unwrap();
    }

    #[test]
    fn offsets_are_non_negative() {
        for _ in 0..1000 {
            assert!(offset_of(&SessionId::random().storage_key()) >= 0);
        }
    }
}

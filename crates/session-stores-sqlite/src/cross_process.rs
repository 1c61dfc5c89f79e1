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
use session_core::{Error, HeldLock, LockGuard, StorageKey, async_trait};
use tokio::time::Instant;

use crate::error::SqliteStoreError;

/// First pause between two attempts at a byte another process holds.
const FIRST_BACKOFF: Duration = Duration::from_millis(2);
/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(25);

/// Takes the byte of `key` in the lock file at `path`, polling with backoff
/// while another process holds it, until `wait_timeout` after `started`.
/// `local`, the in-process half, is held throughout and kept in the guard.
pub(crate) async fn lock(
    path: &Path,
    key: &StorageKey,
    local: LockGuard,
    started: Instant,
    wait_timeout: Duration,
) -> Result<LockGuard, Error> {
    // A local file, opened and locked without waiting: neither call blocks
    // on I/O, so they run on the async task, not on the blocking pool.
    let file = open(path)?;
    let offset = offset_of(key);
    let deadline = started + wait_timeout;
    let mut backoff = FIRST_BACKOFF;
    let mut seed = key.prefix_u64() | 1;
    while !try_lock(&file, offset, path)? {
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::LockTimeout { waited: now - started });
        }
        tokio::time::sleep(jittered(backoff, &mut seed).min(deadline - now)).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    Ok(LockGuard::new(ProcessLock { file, local }))
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

/// One non-blocking attempt: `true` if this open file now holds the byte.
fn try_lock(file: &File, offset: i64, path: &Path) -> Result<bool, SqliteStoreError> {
    let byte = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: offset,
        l_len: 1,
        // Must be 0 for open-file-description locks.
        l_pid: 0,
    };
    match fcntl(file, FcntlArg::F_OFD_SETLK(&byte)) {
        Ok(_) => Ok(true),
        Err(Errno::EAGAIN | Errno::EACCES) => Ok(false),
        Err(errno) => Err(SqliteStoreError::LockFile {
            path: path.to_owned(),
            source: std::io::Error::from(errno),
        }),
    }
}

/// A random pause in `[backoff / 2, backoff]`, so waiters spread out.
fn jittered(backoff: Duration, seed: &mut u64) -> Duration {
    // xorshift64: spreading waiters needs no better randomness.
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    let percent = 50 + (*seed % 51);
    backoff * u32::try_from(percent).unwrap_or(100) / 100
}

/// Both halves of a held lock. Fields drop in order: the file first (its
/// close releases the byte), then the in-process guard, so that the next
/// holder in this process finds the byte free.
struct ProcessLock {
    file: File,
    local: LockGuard,
}

#[async_trait]
impl HeldLock for ProcessLock {
    async fn release(self: Box<Self>) -> Result<(), Error> {
        let Self { file, local } = *self;
        drop(file);
        local.release().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_core::{LocalLocks, LockOptions, SessionId};

    async fn local(key: &StorageKey) -> LockGuard {
        // A table of its own per call: only the byte lock excludes here.
        let table = std::sync::Arc::new(LocalLocks::default());
        table.lock(key, LockOptions::default()).await.unwrap()
    }

    #[tokio::test]
    async fn two_opens_of_the_lock_file_exclude_each_other_until_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db-locks");
        let key = SessionId::random().storage_key();
        let wait = Duration::from_millis(30);
        let first = lock(&path, &key, local(&key).await, Instant::now(), wait).await.unwrap();
        let second = lock(&path, &key, local(&key).await, Instant::now(), wait).await;
        assert!(matches!(second, Err(Error::LockTimeout { .. })), "{second:?}");
        let other = SessionId::random().storage_key();
        let other = lock(&path, &other, local(&other).await, Instant::now(), wait).await;
        assert!(other.is_ok(), "another session's byte is free");
        first.release().await.unwrap();
        let third = lock(&path, &key, local(&key).await, Instant::now(), wait).await;
        assert!(third.is_ok(), "free again after the release");
        drop(third);
        let after_drop = lock(&path, &key, local(&key).await, Instant::now(), wait).await;
        assert!(after_drop.is_ok(), "free again after a drop");
    }

    #[test]
    fn offsets_are_non_negative() {
        for _ in 0..1000 {
            assert!(offset_of(&SessionId::random().storage_key()) >= 0);
        }
    }
}

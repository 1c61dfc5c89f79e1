//! What `delete_expired` does on disk: batched scans of `sessions/`, `locks/`
//! and `users/` that remove expired sessions and the leftovers of crashes.
//! The background task that calls it periodically is core's
//! [`SpawnCleanup`](session_core::SpawnCleanup).

use std::fs::{self, DirEntry, ReadDir};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use session_core::{Error, StorageKey, Timestamp};

use crate::FsStore;
use crate::error::FsError;
use crate::files::{self, Current, Opened};
use crate::store::{Inner, STALE_AFTER, decode, user_hash};

/// Visits one directory entry; returns how many sessions it removed.
type Visit = dyn Fn(&Inner, &DirEntry) -> Result<u64, Error> + Send + Sync;

impl FsStore {
    /// The body of `delete_expired`: three batched scans.
    pub(crate) async fn sweep(&self, now: Timestamp) -> Result<u64, Error> {
        let sessions = self.inner.sessions.clone();
        let locks = self.inner.locks.clone();
        let users = self.inner.users.clone();
        let removed = self
            .scan(
                sessions,
                Arc::new(move |inner: &Inner, entry: &DirEntry| inner.sweep_session(entry, now)),
            )
            .await;
        let locks = self.scan(locks, Arc::new(Inner::sweep_lock)).await;
        let users = self.scan(users, Arc::new(Inner::sweep_user)).await;
        let removed = removed?;
        locks?;
        users?;
        Ok(removed)
    }

    /// Visits every entry of `dir`, `scan_batch` entries per blocking task.
    /// A failing entry is logged and skipped; the first failure is returned
    /// once the whole directory was visited.
    async fn scan(&self, dir: PathBuf, visit: Arc<Visit>) -> Result<u64, Error> {
        let opened = dir.clone();
        let mut entries: Option<ReadDir> = Some(
            self.blocking(move |_| {
                fs::read_dir(&opened).map_err(|e| FsError::io("read_dir", &opened, e).into())
            })
            .await?,
        );
        let mut total = 0;
        let mut first_error = None;
        while let Some(batch) = entries.take() {
            let visit = Arc::clone(&visit);
            let dir = dir.clone();
            let (rest, count, error) =
                self.blocking(move |inner| Ok(visit_batch(inner, &dir, batch, &*visit))).await?;
            total += count;
            if first_error.is_none() {
                first_error = error;
            }
            entries = rest;
        }
        match first_error {
            None => Ok(total),
            Some(error) => Err(error),
        }
    }
}

/// Returns the rest of the directory (`None` when done), the count, and the
/// first error.
fn visit_batch(
    inner: &Inner,
    dir: &Path,
    mut entries: ReadDir,
    visit: &Visit,
) -> (Option<ReadDir>, u64, Option<Error>) {
    let mut count = 0;
    let mut first_error = None;
    for _ in 0..inner.scan_batch {
        let outcome = match entries.next() {
            None => return (None, count, first_error),
            Some(Ok(entry)) => visit(inner, &entry),
            Some(Err(e)) => Err(FsError::io("read_dir", dir, e).into()),
        };
        match outcome {
            Ok(n) => count += n,
            Err(error) => {
                tracing::warn!(%error, "session file cleanup skipped an entry");
                first_error.get_or_insert(error);
            }
        }
    }
    (Some(entries), count, first_error)
}

/// The storage key in a file name `<64 hex><suffix>`.
fn key_of(name: &str, suffix: &str) -> Option<StorageKey> {
    name.strip_suffix(suffix)?.parse().ok()
}

/// Whether the session in `file` is indexed under the user whose index
/// directory is named `user_dir`.
fn belongs_to(file: &fs::File, path: &Path, key: &StorageKey, user_dir: &str) -> bool {
    files::read_all(file, path)
        .ok()
        .and_then(|bytes| decode(&bytes, key).ok())
        .and_then(|record| record.user)
        .is_some_and(|user| user_hash(&user) == user_dir)
}

impl Inner {
    /// `sessions/`: removes expired sessions and old temporary files. Corrupt
    /// files are left for an operator to inspect (they load as absent).
    fn sweep_session(&self, entry: &DirEntry, now: Timestamp) -> Result<u64, Error> {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Ok(0);
        };
        if let Some(key) = key_of(name, ".json") {
            return self.remove_if_expired(&key, now);
        }
        if files::is_temp_name(name) && files::older_than(&entry.path(), STALE_AFTER) {
            tracing::debug!(name, "removing a leftover temporary session file");
            files::remove_if_exists(&entry.path())?;
        }
        Ok(0)
    }

    fn remove_if_expired(&self, key: &StorageKey, now: Timestamp) -> Result<u64, Error> {
        let path = self.session_path(key);
        // A cheap look without the lock; most sessions are live.
        let Opened::File(file) = files::open_existing(&path)? else {
            return Ok(0);
        };
        let bytes = files::read_all(&file, &path)?;
        drop(file);
        match decode(&bytes, key) {
            Ok(record) if record.is_expired(now) => {}
            Ok(_) => return Ok(0),
            Err(reason) => {
                tracing::debug!(path = %path.display(), %reason, "skipping a corrupt session file");
                return Ok(0);
            }
        }
        // Confirm under the lock: it may have been touched meanwhile.
        let Current::Locked(file) = files::lock_current(&path)? else {
            return Ok(0);
        };
        let bytes = files::read_all(&file, &path)?;
        let Ok(record) = decode(&bytes, key) else {
            return Ok(0);
        };
        if !record.is_expired(now) {
            return Ok(0);
        }
        self.unlink_locked(key, &path, record.user.as_deref())?;
        drop(file);
        self.try_remove_lock_file(key)?;
        Ok(1)
    }

    /// `locks/`: removes lock files of sessions that no longer exist, unless
    /// they are held (left by a crash, or by a `delete` under the lock).
    fn sweep_lock(&self, entry: &DirEntry) -> Result<u64, Error> {
        let name = entry.file_name();
        let Some(key) = name.to_str().and_then(|name| key_of(name, ".lock")) else {
            return Ok(0);
        };
        match fs::symlink_metadata(self.session_path(&key)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.try_remove_lock_file(&key)?,
            _ => {}
        }
        Ok(0)
    }

    /// `users/<hash>/`: removes index markers that name a session of another
    /// user (checked under that session's lock) or an absent session (once
    /// the marker is old enough that no `create` can be in progress), then
    /// the directory if it is empty.
    fn sweep_user(&self, entry: &DirEntry) -> Result<u64, Error> {
        let name = entry.file_name();
        let Some(user_dir) = name.to_str() else {
            return Ok(0);
        };
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if user_dir.len() != 64 || !is_dir {
            return Ok(0);
        }
        let dir = entry.path();
        let markers = match fs::read_dir(&dir) {
            Ok(markers) => markers,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(FsError::io("read_dir", &dir, e).into()),
        };
        for marker in markers {
            let marker = marker.map_err(|e| FsError::io("read_dir", &dir, e))?;
            let Some(key) = marker.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            self.check_marker(user_dir, &key, &marker.path())?;
        }
        match fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::NotFound
                ) => {}
            Err(e) => return Err(FsError::io("rmdir", &dir, e).into()),
        }
        Ok(0)
    }

    fn check_marker(&self, user_dir: &str, key: &StorageKey, marker: &Path) -> Result<(), Error> {
        let path = self.session_path(key);
        if let Opened::File(file) = files::open_existing(&path)?
            && belongs_to(&file, &path, key, user_dir)
        {
            return Ok(());
        }
        match files::lock_current(&path)? {
            Current::Locked(file) => {
                if !belongs_to(&file, &path, key, user_dir) {
                    files::remove_if_exists(marker)?;
                }
            }
            Current::Missing | Current::NotRegular => {
                if files::older_than(marker, STALE_AFTER) {
                    files::remove_if_exists(marker)?;
                }
            }
        }
        Ok(())
    }
}

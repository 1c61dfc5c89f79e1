//! [`FsStore`]: one JSON file per session.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use session_core::{Error, LocalLocks, Record, SessionStore, StorageKey, Timestamp, async_trait};
use sha2::{Digest, Sha256};

use crate::error::FsError;
use crate::files::{self, Current, Opened, TempFile};

/// Default number of directory entries the cleanup handles per blocking task.
pub(crate) const DEFAULT_SCAN_BATCH: usize = 1000;

/// Temporary files and index markers without a session are only removed once
/// they are this old, so a write or a `create` in progress is never disturbed.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(600);

/// A session store keeping one JSON file per session in a local directory.
///
/// See the [crate documentation](crate) for the directory layout and the
/// guarantees. Clones share the same directory handle; several `FsStore`s
/// (in one process or several) may use the same directory at once.
///
/// ```
/// use session_core::{ExpiryPolicy, SessionId, SessionStore, Timestamp};
/// use session_stores_fs::FsStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), session_core::Error> {
/// # let tmp = tempfile::tempdir().unwrap();
/// # let dir = tmp.path().join("sessions");
/// let store = FsStore::new(&dir)?; // e.g. "/var/lib/myapp/sessions"
/// let now = Timestamp::now();
/// let record = ExpiryPolicy::default().new_record(SessionId::random().storage_key(), now);
/// store.create(&record).await?;
/// assert!(store.load(&record.key, now).await?.is_some());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FsStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) root: PathBuf,
    pub(crate) sessions: PathBuf,
    pub(crate) locks: PathBuf,
    pub(crate) users: PathBuf,
    pub(crate) scan_batch: usize,
    /// The queue of this store's waiters per session, in front of the lock
    /// files.
    pub(crate) queue: Arc<LocalLocks>,
}

impl FsStore {
    /// Opens the store in `dir`, creating it (mode 0700, with missing parents)
    /// and its `sessions`, `locks` and `users` subdirectories if needed.
    ///
    /// This does a few blocking file system calls; call it once at startup.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] if a directory cannot be created, if something other
    /// than a directory is in the way (subdirectories must not be symlinks),
    /// or if an existing directory is accessible by group or others (any of
    /// the `0o077` mode bits set): the store refuses to run rather than share
    /// sessions with other users of the machine. Fix it with `chmod 700`.
    pub fn new(dir: impl AsRef<Path>) -> Result<Self, Error> {
        let root = dir.as_ref().to_owned();
        files::ensure_private_dir(&root, true)?;
        let inner = Inner {
            sessions: root.join("sessions"),
            locks: root.join("locks"),
            users: root.join("users"),
            root,
            scan_batch: DEFAULT_SCAN_BATCH,
            queue: Arc::default(),
        };
        for sub in [&inner.sessions, &inner.locks, &inner.users] {
            files::ensure_private_dir(sub, false)?;
        }
        Ok(Self { inner: Arc::new(inner) })
    }

    /// How many directory entries [`delete_expired`](SessionStore::delete_expired)
    /// handles per blocking task (default 1000, at least 1). Smaller batches
    /// hold a blocking thread for less time; the whole directory is scanned
    /// either way.
    #[must_use]
    pub fn with_scan_batch(self, entries: usize) -> Self {
        let inner = Inner {
            root: self.inner.root.clone(),
            sessions: self.inner.sessions.clone(),
            locks: self.inner.locks.clone(),
            users: self.inner.users.clone(),
            scan_batch: entries.max(1),
            queue: Arc::clone(&self.inner.queue),
        };
        Self { inner: Arc::new(inner) }
    }

    /// The directory the store lives in.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.inner.root
    }

    /// Runs `work` on tokio's blocking pool. The work runs to completion even
    /// if the caller's future is dropped, so a cancelled request never leaves
    /// an operation half done.
    pub(crate) async fn blocking<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, Error> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&inner)).await.map_err(FsError::from)?
    }
}

impl fmt::Debug for FsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FsStore").field("dir", &self.inner.root).finish_non_exhaustive()
    }
}

/// Hex SHA-256 of a user id: the name of the user's index directory, so no
/// user-supplied text ever becomes a path.
pub(crate) fn user_hash(user: &str) -> String {
    to_hex(&Sha256::digest(user.as_bytes()))
}

fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

fn encode(record: &Record) -> Result<Vec<u8>, Error> {
    Ok(serde_json::to_vec(record)?)
}

/// Decodes a session file. A record filed under another name (a file copied
/// or renamed by hand) is as corrupt as broken JSON.
pub(crate) fn decode(bytes: &[u8], key: &StorageKey) -> Result<Record, String> {
    let record: Record = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if record.key != *key {
        return Err(format!("the file holds the record of {:?}, not {key:?}", record.key));
    }
    Ok(record)
}

/// Reads and decodes an open session file; logs and returns `None` if it is
/// corrupt.
fn read_record(file: &fs::File, path: &Path, key: &StorageKey) -> Result<Option<Record>, Error> {
    let bytes = files::read_all(file, path)?;
    match decode(&bytes, key) {
        Ok(record) => Ok(Some(record)),
        Err(reason) => {
            tracing::warn!(
                path = %path.display(),
                %reason,
                "corrupt session file; treating the session as absent"
            );
            Ok(None)
        }
    }
}

fn warn_not_regular(path: &Path) {
    tracing::warn!(
        path = %path.display(),
        "a symlink or other non-regular file is in place of a session file; \
         not following it, treating the session as absent"
    );
}

impl Inner {
    pub(crate) fn session_path(&self, key: &StorageKey) -> PathBuf {
        self.sessions.join(format!("{}.json", key.to_hex()))
    }

    pub(crate) fn lock_path(&self, key: &StorageKey) -> PathBuf {
        self.locks.join(format!("{}.lock", key.to_hex()))
    }

    fn user_dir(&self, user: &str) -> PathBuf {
        self.users.join(user_hash(user))
    }

    pub(crate) fn marker_path(&self, user_dir: &Path, key: &StorageKey) -> PathBuf {
        user_dir.join(key.to_hex())
    }

    fn add_marker(&self, user: &str, key: &StorageKey) -> Result<(), Error> {
        let dir = self.user_dir(user);
        let marker = self.marker_path(&dir, key);
        Ok(files::add_marker(&self.users, &dir, &marker)?)
    }

    fn remove_marker(&self, user: &str, key: &StorageKey) -> Result<(), Error> {
        let dir = self.user_dir(user);
        Ok(files::remove_if_exists(&self.marker_path(&dir, key))?)
    }

    fn create(&self, record: &Record, bytes: &[u8]) -> Result<(), Error> {
        // Index first: the index may name a session that does not exist (it
        // is checked on every read), but never miss one that does.
        if let Some(user) = &record.user {
            self.add_marker(user, &record.key)?;
        }
        let target = self.session_path(&record.key);
        let temp = TempFile::write(&self.sessions, &record.key.to_hex(), bytes)?;
        // link() fails if the name exists, so two creates of one key cannot
        // both win, and the name only ever holds a complete file.
        if !temp.link_to(&target)? {
            return Err(Error::IdCollision);
        }
        files::sync_dir(&self.sessions)?;
        Ok(())
    }

    pub(crate) fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, Error> {
        let path = self.session_path(key);
        let file = match files::open_existing(&path)? {
            Opened::Missing => return Ok(None),
            Opened::NotRegular => {
                warn_not_regular(&path);
                return Ok(None);
            }
            Opened::File(file) => file,
        };
        Ok(read_record(&file, &path, key)?.filter(|record| !record.is_expired(now)))
    }

    /// Replaces the session file of `key` with `update(old record)`, under
    /// the session file's lock. [`Error::NotFound`] if there is no (readable)
    /// session file.
    fn rewrite(
        &self,
        key: &StorageKey,
        update: impl FnOnce(Record) -> Result<Record, Error>,
    ) -> Result<(), Error> {
        let path = self.session_path(key);
        let file = match files::lock_current(&path)? {
            Current::Missing => return Err(Error::NotFound),
            Current::NotRegular => {
                warn_not_regular(&path);
                return Err(Error::NotFound);
            }
            Current::Locked(file) => file,
        };
        let Some(old) = read_record(&file, &path, key)? else {
            return Err(Error::NotFound);
        };
        let old_user = old.user.clone();
        let new = update(old)?;
        if let Some(user) = &new.user {
            // Also repairs a missing marker for an unchanged user.
            self.add_marker(user, key)?;
        }
        let bytes = encode(&new)?;
        TempFile::write(&self.sessions, &key.to_hex(), &bytes)?.rename_to(&path)?;
        files::sync_dir(&self.sessions)?;
        if let Some(old_user) = old_user
            && new.user.as_ref() != Some(&old_user)
        {
            self.remove_marker(&old_user, key)?;
        }
        drop(file);
        Ok(())
    }

    fn delete(&self, key: &StorageKey) -> Result<(), Error> {
        let path = self.session_path(key);
        match files::lock_current(&path)? {
            Current::Missing => {}
            Current::NotRegular => {
                warn_not_regular(&path);
                // Removes the link itself, never its target.
                files::remove_if_exists(&path)?;
                files::sync_dir(&self.sessions)?;
            }
            Current::Locked(file) => {
                let user = read_record(&file, &path, key)?.and_then(|record| record.user);
                self.unlink_locked(key, &path, user.as_deref())?;
                drop(file);
            }
        }
        self.try_remove_lock_file(key)
    }

    /// Removes a session file whose lock the caller holds, then its marker.
    pub(crate) fn unlink_locked(
        &self,
        key: &StorageKey,
        path: &Path,
        user: Option<&str>,
    ) -> Result<(), Error> {
        files::remove_if_exists(path)?;
        files::sync_dir(&self.sessions)?;
        if let Some(user) = user {
            self.remove_marker(user, key)?;
        }
        Ok(())
    }

    /// Removes the lock file of `key` if nobody holds it. Safe against a
    /// concurrent `lock`: the file is only unlinked while we hold its lock,
    /// and a locker re-checks after locking that its file is still the one the
    /// path names.
    pub(crate) fn try_remove_lock_file(&self, key: &StorageKey) -> Result<(), Error> {
        let path = self.lock_path(key);
        let file = match files::open_existing(&path)? {
            Opened::Missing => return Ok(()),
            Opened::NotRegular => {
                tracing::warn!(path = %path.display(), "removing a non-regular lock file");
                return Ok(files::remove_if_exists(&path)?);
            }
            Opened::File(file) => file,
        };
        match file.try_lock() {
            Ok(()) => {
                if files::is_current(&file, &path)? {
                    files::remove_if_exists(&path)?;
                }
                Ok(())
            }
            Err(fs::TryLockError::WouldBlock) => Ok(()),
            Err(fs::TryLockError::Error(e)) => Err(FsError::io("lock", &path, e).into()),
        }
    }

    /// The keys the user's index names; may include stale entries.
    fn user_keys(&self, user: &str) -> Result<Vec<StorageKey>, Error> {
        let dir = self.user_dir(user);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(FsError::io("read_dir", &dir, e).into()),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| FsError::io("read_dir", &dir, e))?;
            if let Some(key) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                keys.push(key);
            }
        }
        Ok(keys)
    }

    fn list_for_user(&self, user: &str, now: Timestamp) -> Result<Vec<Record>, Error> {
        let mut records = Vec::new();
        for key in self.user_keys(user)? {
            if let Some(record) = self.load(&key, now)?
                && record.user.as_deref() == Some(user)
            {
                records.push(record);
            }
        }
        Ok(records)
    }

    fn delete_for_user(&self, user: &str) -> Result<u64, Error> {
        let mut removed = 0;
        for key in self.user_keys(user)? {
            let path = self.session_path(&key);
            let Current::Locked(file) = files::lock_current(&path)? else {
                // Missing: a stale marker, or a `create` in progress that the
                // cleanup task leaves alone until it is old.
                continue;
            };
            let owner = read_record(&file, &path, &key)?.and_then(|record| record.user);
            if owner.as_deref() == Some(user) {
                self.unlink_locked(&key, &path, Some(user))?;
                removed += 1;
            } else {
                // Stale: the session belongs to someone else (or is corrupt).
                // Under the session's lock, no save is adding this marker.
                self.remove_marker(user, &key)?;
            }
            drop(file);
            self.try_remove_lock_file(&key)?;
        }
        Ok(removed)
    }
}

#[async_trait]
impl SessionStore for FsStore {
    async fn create(&self, record: &Record) -> Result<(), Error> {
        let bytes = encode(record)?;
        let record = record.clone();
        self.blocking(move |inner| inner.create(&record, &bytes)).await
    }

    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, Error> {
        let key = *key;
        self.blocking(move |inner| inner.load(&key, now)).await
    }

    async fn save(&self, record: &Record) -> Result<(), Error> {
        let record = record.clone();
        self.blocking(move |inner| {
            let key = record.key;
            inner.rewrite(&key, |_old| Ok(record))
        })
        .await
    }

    async fn delete(&self, key: &StorageKey) -> Result<(), Error> {
        let key = *key;
        self.blocking(move |inner| inner.delete(&key)).await
    }

    async fn touch(&self, record: &Record) -> Result<(), Error> {
        let (key, last_seen, idle_deadline) = (record.key, record.last_seen, record.idle_deadline);
        self.blocking(move |inner| {
            inner.rewrite(&key, |mut stored| {
                stored.last_seen = last_seen;
                stored.idle_deadline = idle_deadline;
                Ok(stored)
            })
        })
        .await
    }

    async fn delete_expired(&self, now: Timestamp) -> Result<u64, Error> {
        self.sweep(now).await
    }

    async fn list_for_user(&self, user: &str, now: Timestamp) -> Result<Vec<Record>, Error> {
        let user = user.to_owned();
        self.blocking(move |inner| inner.list_for_user(&user, now)).await
    }

    async fn delete_for_user(&self, user: &str) -> Result<u64, Error> {
        let user = user.to_owned();
        self.blocking(move |inner| inner.delete_for_user(&user)).await
    }
}

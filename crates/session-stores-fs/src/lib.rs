//! The filesystem session store: [`FsStore`], one JSON file per session.
//!
//! For single-machine deployments that want sessions to survive a restart
//! without running a database. Several processes on the same machine may
//! share one directory: writes are atomic and `lock()` is an OS file lock.
//! Unix only; the directory must be on a local file system with POSIX
//! `rename`, `link` and `flock` semantics (not NFS or SMB).
//!
//! Not for direct use; see the `session-axum` crate.
//!
//! # Layout
//!
//! ```text
//! <dir>/                          0700, created by FsStore::new
//!   sessions/<key>.json           0600, one Record as JSON
//!   sessions/.<key>.<pid>.<n>.tmp 0600, a write in progress
//!   locks/<key>.lock              0600, empty; flock()ed by LockingStore
//!   users/<sha256(user)>/         0700, the per-user index
//!   users/<sha256(user)>/<key>    0600, empty marker: "key may belong to user"
//! ```
//!
//! `<key>` is [`StorageKey::to_hex`](session_core::StorageKey::to_hex) (the
//! SHA-256 of the session id, 64 lowercase hex characters) and user ids are
//! hashed too, so no file name ever comes from a request or a user name.
//! A file under one key that holds another key's record is treated as
//! corrupt.
//!
//! # Permissions
//!
//! [`FsStore::new`] creates missing directories with mode 0700 and **refuses**
//! an existing directory (the root or a subdirectory) that group or others can
//! access, returning an error instead of serving sessions that other local
//! users can read. Files are created with mode 0600. The store does not check
//! who owns the directory; keep it out of world-writable places like `/tmp`.
//!
//! # Guarantees
//!
//! - **Atomic writes.** Every write goes to a fresh temporary file in
//!   `sessions/` (`O_EXCL`, mode 0600), is `fsync`ed, then renamed over the
//!   session file (or hard-linked, for `create`), and the directory is
//!   `fsync`ed. A crash, a full disk or any write error leaves either the old
//!   file or the new one, never a mix; a failed write removes its temporary
//!   file, and the cleanup task removes those a crash left behind.
//! - **Collision-safe `create`.** `link(2)` of the temporary file to the
//!   session name fails if the name exists, so of two `create`s of one key
//!   exactly one wins; the other gets
//!   [`Error::IdCollision`](session_core::Error::IdCollision).
//! - **No resurrection.** `save`, `touch`, `delete` and the cleanup take an
//!   exclusive `flock` on the session file itself and re-check, once locked,
//!   that the path still names that file. Renames over and unlinks of a
//!   session file only happen under that lock, so a `save` either completes
//!   before a racing `delete` (which then removes the saved file) or finds
//!   the file gone and returns
//!   [`Error::NotFound`](session_core::Error::NotFound). A `save` can never
//!   recreate a deleted session. (This short lock on the data file is
//!   separate from the request-long [`LockingStore`](session_core::LockingStore)
//!   on `locks/<key>.lock`.)
//! - **No symlinks followed.** Session files are opened with `O_NOFOLLOW`
//!   (and `O_NONBLOCK`, so a FIFO cannot hang a request). A symlink or other
//!   non-regular file in place of a session loads as absent and is logged;
//!   `save` and `touch` return `NotFound` without touching the link's target,
//!   `create` sees the name as taken, and `delete` removes the link itself.
//! - **Corruption is local.** A session file that is not a valid record
//!   (truncated, edited, not JSON) is logged with `tracing::warn!` and treated
//!   as absent; other sessions are unaffected. The cleanup leaves such files
//!   in place for inspection.
//! - **Non-blocking.** All file work runs on tokio's blocking thread pool
//!   (`spawn_blocking`) and runs to completion even if the request that
//!   started it is cancelled.
//!
//! # Locks
//!
//! [`LockingStore::lock`](session_core::LockingStore::lock) takes an exclusive
//! `flock` on `locks/<key>.lock`. Waiters of one store in this process
//! queue first (first come, first served); the first of them tries the
//! file, and if another process holds it, waits for it in the operating
//! system's lock queue on a blocking thread (at most
//! [`MAX_BLOCKING_WAITS`](session_core::MAX_BLOCKING_WAITS) such waits per
//! process; past that, it polls with a short jittered backoff), until the
//! wait timeout. It excludes other tasks of this process, other [`FsStore`]
//! instances and other processes alike. The lock dies with
//! the open file: on release, on drop of the guard, or when the process exits
//! or crashes. So the `lease` of
//! [`LockOptions`](session_core::LockOptions) is not needed and is ignored.
//!
//! Lock files are removed only by someone holding their lock, and a locker
//! checks after locking that its file is still the one the path names
//! (otherwise it reopens), so removing a lock file never lets two holders in.
//! They are removed when a guard is released (with
//! [`LockGuard::release`](session_core::LockGuard::release)) and the session
//! no longer exists, by `delete` when nobody holds the lock, and by the
//! cleanup for sessions that are gone (this also covers guards that were
//! dropped rather than released, and crashed processes). A live session keeps
//! its (empty) lock file.
//!
//! # Costs
//!
//! - `load` is one open and read; `save`/`touch` add a lock, a temporary
//!   file, two `fsync`s and a rename; `create` the same with a link.
//! - The user index is a directory per user with one empty marker per
//!   session. Markers are written before the session (so the index never
//!   misses a session) and checked on every read, so a stale marker is
//!   harmless. `list_for_user` and `delete_for_user` cost one directory read
//!   of that user's index plus one file read per session of that user,
//!   independent of the total number of sessions. Logging in (the first
//!   save with a new user) adds a marker and one more `fsync`.
//! - `delete_expired` reads every session file (it must decode the deadlines),
//!   so it costs O(all sessions); it walks `sessions/`, `locks/` and `users/`
//!   in batches ([`FsStore::with_scan_batch`], 1000 entries by default), each
//!   on a blocking thread. Run it every few minutes with
//!   [`SpawnCleanup::spawn_cleanup`], not per request; with several processes
//!   on one directory, running it in one of them is enough, though running it
//!   in all is safe. It also removes temporary files and index markers
//!   without a session once they are ten minutes old (by the system clock),
//!   orphaned lock files and empty user directories.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use session_core::{ExpiryPolicy, LockOptions, SessionId, LockingStore, SessionStore, Timestamp};
//! use session_stores_fs::{FsStore, SpawnCleanup};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), session_core::Error> {
//! # let tmp = tempfile::tempdir().unwrap();
//! # let dir = tmp.path().join("sessions");
//! let store = FsStore::new(&dir)?;
//! let cleanup = store.spawn_cleanup(Duration::from_secs(300));
//!
//! let now = Timestamp::now();
//! let mut record = ExpiryPolicy::default().new_record(SessionId::random().storage_key(), now);
//! store.create(&record).await?;
//!
//! let guard = store.lock(&record.key, LockOptions::default()).await?;
//! record.data.insert("visits", 1)?;
//! record.version += 1;
//! store.save(&record).await?;
//! guard.release().await?;
//!
//! cleanup.stop().await;
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(unix))]
compile_error!("session-stores-fs supports Unix only");

mod error;
mod files;
mod lock;
mod store;
mod sweep;

/// The background task that deletes expired sessions: `store.spawn_cleanup(interval)`
/// through [`SpawnCleanup`], stopped through its [`CleanupHandle`].
pub use session_core::{CleanupHandle, SpawnCleanup};
pub use store::FsStore;

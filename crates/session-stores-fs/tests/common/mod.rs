//! Helpers for the filesystem store's test binaries: stores in a temporary
//! directory that is removed with them, records and file paths.
#![allow(dead_code, unreachable_pub)] // Each test binary uses a different part.

use std::path::{Path, PathBuf};
use std::time::Duration;

use session_core::testing::Backend;
use session_core::{ExpiryPolicy, LockOptions, Record, SessionId, StorageKey, Timestamp};
use session_stores_fs::FsStore;
use tempfile::TempDir;

/// A store on `<dir>/store`.
pub fn open(dir: &Path) -> FsStore {
    FsStore::new(dir.join("store")).unwrap_or_else(|e| panic!("open store: {e}"))
}

/// Two stores on one fresh directory (standing for two processes sharing
/// it), and the temporary directory holding it: the one temp-dir helper.
pub fn two_stores() -> (FsStore, FsStore, TempDir) {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    (open(tmp.path()), open(tmp.path()), tmp)
}

/// [`two_stores`] for the conformance suite, which keeps the directory until
/// the test ends.
pub async fn backend() -> Backend {
    let (store, other, tmp) = two_stores();
    Backend::new(store, other).keeping(tmp)
}

/// A fresh anonymous record with a ten-minute idle timeout.
pub fn record(now: Timestamp) -> Record {
    ExpiryPolicy::default()
        .with_idle_timeout(Duration::from_secs(600))
        .new_record(SessionId::random().storage_key(), now)
}

/// Where `store` keeps the session under `key`.
pub fn session_file(store: &FsStore, key: &StorageKey) -> PathBuf {
    store.dir().join("sessions").join(format!("{}.json", key.to_hex()))
}

/// A lock wait short enough to time out quickly.
pub fn short_wait() -> LockOptions {
    LockOptions { lease: Duration::from_secs(30), wait_timeout: Duration::from_millis(200) }
}

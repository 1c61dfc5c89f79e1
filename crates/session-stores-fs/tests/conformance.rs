//! The shared store conformance suite, on the filesystem store. Every test
//! gets its own temporary directory, removed when the store is dropped.
#![allow(clippy::expect_used)] // Test helpers outside #[test] functions.

use session_core::{
    Error, LockGuard, LockOptions, LockingStore, Record, SessionStore, StorageKey, Timestamp,
    async_trait,
};
use session_stores_fs::FsStore;
use tempfile::TempDir;

/// An [`FsStore`] that owns its temporary directory.
#[derive(Debug)]
struct TempStore {
    store: FsStore,
    _dir: TempDir,
}

async fn make_store() -> TempStore {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FsStore::new(dir.path().join("store")).expect("open store");
    TempStore { store, _dir: dir }
}

#[async_trait]
impl SessionStore for TempStore {
    async fn create(&self, record: &Record) -> Result<(), Error> {
        self.store.create(record).await
    }
    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, Error> {
        self.store.load(key, now).await
    }
    async fn save(&self, record: &Record) -> Result<(), Error> {
        self.store.save(record).await
    }
    async fn delete(&self, key: &StorageKey) -> Result<(), Error> {
        self.store.delete(key).await
    }
    async fn touch(&self, record: &Record) -> Result<(), Error> {
        self.store.touch(record).await
    }
    async fn delete_expired(&self, now: Timestamp) -> Result<u64, Error> {
        self.store.delete_expired(now).await
    }
    async fn list_for_user(&self, user: &str, now: Timestamp) -> Result<Vec<Record>, Error> {
        self.store.list_for_user(user, now).await
    }
    async fn delete_for_user(&self, user: &str) -> Result<u64, Error> {
        self.store.delete_for_user(user).await
    }
}

#[async_trait]
impl LockingStore for TempStore {
    async fn lock(&self, key: &StorageKey, options: LockOptions) -> Result<LockGuard, Error> {
        self.store.lock(key, options).await
    }
}

session_core::conformance_tests!(make_store);

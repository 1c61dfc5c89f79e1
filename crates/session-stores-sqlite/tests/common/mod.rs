//! Shared helpers for the SQLite tests.
#![allow(dead_code, unreachable_pub)]

use session_core::{
    Error, LockGuard, LockOptions, LockingStore, Record, SessionStore, StorageKey, Timestamp,
    async_trait,
};
use session_stores_sqlite::SqliteStore;
use tempfile::TempDir;

/// A store on a fresh database file that is deleted with it.
#[derive(Debug)]
pub struct TempStore {
    // Declared first so it is dropped (pool closed) before the directory.
    pub store: SqliteStore,
    pub dir: TempDir,
}

impl TempStore {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let store = SqliteStore::open(dir.path().join("sessions.db"))
            .await
            .unwrap_or_else(|e| panic!("open: {e}"));
        Self { store, dir }
    }
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

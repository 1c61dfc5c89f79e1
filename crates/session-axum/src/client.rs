//! The stand-in store behind client-side sessions.

use session_core::{
    Error, LockGuard, LockOptions, LockingStore, Record, SessionStore, StorageKey, Timestamp,
    async_trait,
};

/// Client-side sessions keep nothing on the server. The layer never calls
/// this store for them; code that asks for server-side features (listing a
/// user's sessions, logging out everywhere) gets [`Error::Unsupported`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct NoServerStore;

fn unsupported(operation: &'static str) -> Error {
    Error::Unsupported { store: "client-side cookie", operation }
}

#[async_trait]
impl SessionStore for NoServerStore {
    async fn create(&self, _: &Record) -> Result<(), Error> {
        Err(unsupported("create"))
    }
    async fn load(&self, _: &StorageKey, _: Timestamp) -> Result<Option<Record>, Error> {
        Err(unsupported("load"))
    }
    async fn save(&self, _: &Record) -> Result<(), Error> {
        Err(unsupported("save"))
    }
    async fn delete(&self, _: &StorageKey) -> Result<(), Error> {
        Err(unsupported("delete"))
    }
    async fn touch(&self, _: &Record) -> Result<(), Error> {
        Err(unsupported("touch"))
    }
    async fn delete_expired(&self, _: Timestamp) -> Result<u64, Error> {
        Err(unsupported("delete_expired"))
    }
    async fn list_for_user(&self, _: &str, _: Timestamp) -> Result<Vec<Record>, Error> {
        Err(unsupported("listing a user's sessions"))
    }
    async fn delete_for_user(&self, _: &str) -> Result<u64, Error> {
        Err(unsupported("ending a user's sessions"))
    }
}

#[async_trait]
impl LockingStore for NoServerStore {
    async fn lock(&self, _: &StorageKey, _: LockOptions) -> Result<LockGuard, Error> {
        Err(unsupported("lock"))
    }
}

//! The server-side store trait.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{Error, Record, StorageKey, Timestamp};

/// Where server-side sessions live.
///
/// Records are filed under their [`StorageKey`] (a hash of the session id);
/// a store never sees a raw id.
///
/// # Contract
///
/// Every store must pass the conformance suite in `session_core::testing`
/// (feature `testing`). In words:
///
/// - **`create`** is atomic: if a record with the same key exists (live or
///   expired but not yet purged), it returns [`Error::IdCollision`] and writes
///   nothing. The caller then retries with a new id.
/// - **`load`** returns `None` for a missing record and for one that is expired
///   at `now` ([`Record::is_expired`]). A record that cannot be decoded is
///   logged and reported as `None`; it never fails the other sessions.
/// - **`save`** overwrites an existing record. It never creates one: if the
///   record was deleted (or purged after expiry) it returns
///   [`Error::NotFound`], so a request racing a logout cannot resurrect the
///   session. It keeps the per-user index in step with [`Record::user`].
/// - **`touch`** writes only `last_seen` and `idle_deadline` (and the store's
///   own TTL), not the data; [`Error::NotFound`] if the record is gone.
/// - **`delete`** is idempotent.
/// - **`delete_expired`** removes the records expired at `now` and returns how
///   many it removed. Stores whose backend expires keys by itself (Redis) may
///   return 0.
/// - **`list_for_user`** returns the user's live records;
///   **`delete_for_user`** deletes all of them and returns how many.
///
/// Time is always passed in, never read by the store, so expiry is testable
/// with a [`ManualClock`](crate::ManualClock). Stores with a native TTL derive
/// it from the record's deadlines.
///
/// The trait is object safe (`Arc<dyn SessionStore>` works); implement it with
/// [`async_trait`](https://docs.rs/async-trait).
///
/// ```
/// use session_core::{SessionStore, LockingStore};
///
/// fn assert_store<S: SessionStore>() {}
/// fn assert_dyn(_: &dyn LockingStore) {}
/// ```
#[async_trait]
pub trait SessionStore: Debug + Send + Sync + 'static {
    /// Inserts a new record; [`Error::IdCollision`] if the key is taken.
    async fn create(&self, record: &Record) -> Result<(), Error>;

    /// The record under `key`, unless it is missing or expired at `now`.
    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, Error>;

    /// Overwrites an existing record; [`Error::NotFound`] if there is none.
    async fn save(&self, record: &Record) -> Result<(), Error>;

    /// Deletes the record under `key`, if any.
    async fn delete(&self, key: &StorageKey) -> Result<(), Error>;

    /// Moves `record.last_seen` and `record.idle_deadline` into the stored
    /// record without rewriting its data.
    async fn touch(&self, record: &Record) -> Result<(), Error>;

    /// Deletes every record expired at `now`; returns how many.
    async fn delete_expired(&self, now: Timestamp) -> Result<u64, Error>;

    /// The live records whose [`Record::user`] is `user`.
    async fn list_for_user(&self, user: &str, now: Timestamp) -> Result<Vec<Record>, Error>;

    /// Deletes every record of `user`; returns how many.
    async fn delete_for_user(&self, user: &str) -> Result<u64, Error>;
}

macro_rules! forward_store {
    ($($wrapper:ty),*) => {$(
        #[async_trait]
        impl<S: SessionStore + ?Sized> SessionStore for $wrapper {
            async fn create(&self, record: &Record) -> Result<(), Error> {
                (**self).create(record).await
            }
            async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, Error> {
                (**self).load(key, now).await
            }
            async fn save(&self, record: &Record) -> Result<(), Error> {
                (**self).save(record).await
            }
            async fn delete(&self, key: &StorageKey) -> Result<(), Error> {
                (**self).delete(key).await
            }
            async fn touch(&self, record: &Record) -> Result<(), Error> {
                (**self).touch(record).await
            }
            async fn delete_expired(&self, now: Timestamp) -> Result<u64, Error> {
                (**self).delete_expired(now).await
            }
            async fn list_for_user(&self, user: &str, now: Timestamp) -> Result<Vec<Record>, Error> {
                (**self).list_for_user(user, now).await
            }
            async fn delete_for_user(&self, user: &str) -> Result<u64, Error> {
                (**self).delete_for_user(user).await
            }
        }
    )*};
}

forward_store!(Arc<S>, Box<S>);

//! [`Mirrored`]: one primary store plus replicas that receive every write.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{
    Error, LockGuard, LockOptions, LockingStore, Record, Reloaded, SessionStore, StorageKey,
    Timestamp,
};

/// What a [`Mirrored`] store does when a replica write fails (the primary's
/// own result always counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReplicaFailure {
    /// Fail the operation with the replica's error, so the request gets the
    /// error response. For replicas that must never fall behind.
    #[default]
    FailRequest,
    /// Log the failure at `warn` and report success. For replicas that are
    /// a convenience (an analytics copy, a warm standby).
    LogAndContinue,
}

/// A store that reads from a primary and writes to the primary and every
/// replica.
///
/// - `load`, `list_for_user` and locks come from the primary only.
/// - `create` goes to the primary first (it alone decides about id
///   collisions), then to the replicas concurrently.
/// - `save`, `touch`, `delete`, `delete_expired` and `delete_for_user` go to
///   all stores concurrently.
/// - A replica failure follows the [`ReplicaFailure`] policy.
///
/// ```
/// use std::sync::Arc;
/// use session_core::{Mirrored, ReplicaFailure, LockingStore, SessionStore};
///
/// fn mirror(primary: Arc<dyn LockingStore>, replica: Arc<dyn SessionStore>) -> Mirrored {
///     Mirrored::new(primary).with_replica(replica).on_replica_failure(ReplicaFailure::LogAndContinue)
/// }
/// ```
#[derive(Clone)]
pub struct Mirrored {
    primary: Arc<dyn LockingStore>,
    replicas: Vec<Arc<dyn SessionStore>>,
    policy: ReplicaFailure,
}

impl Mirrored {
    /// A mirror of `primary` with no replicas yet, failing requests on
    /// replica errors.
    #[must_use]
    pub fn new(primary: Arc<dyn LockingStore>) -> Self {
        Self { primary, replicas: Vec::new(), policy: ReplicaFailure::default() }
    }

    /// Adds a replica.
    #[must_use]
    pub fn with_replica(mut self, replica: Arc<dyn SessionStore>) -> Self {
        self.replicas.push(replica);
        self
    }

    /// Sets the replica failure policy.
    #[must_use]
    pub fn on_replica_failure(mut self, policy: ReplicaFailure) -> Self {
        self.policy = policy;
        self
    }

    /// Runs `write` on every replica concurrently and applies the policy.
    async fn replicate<'a, F, Fut, T>(
        &'a self,
        operation: &'static str,
        write: F,
    ) -> Result<(), Error>
    where
        F: Fn(&'a dyn SessionStore) -> Fut,
        Fut: Future<Output = Result<T, Error>> + Send + 'a,
    {
        let results = futures_util::future::join_all(
            self.replicas.iter().map(|replica| write(replica.as_ref())),
        )
        .await;
        self.judge(operation, results)
    }

    fn judge<T>(
        &self,
        operation: &'static str,
        results: Vec<Result<T, Error>>,
    ) -> Result<(), Error> {
        for (index, result) in results.into_iter().enumerate() {
            let Err(error) = result else { continue };
            // A replica that already lacks a deleted session is in the state we want.
            if matches!(error, Error::NotFound) && operation == "delete" {
                continue;
            }
            match self.policy {
                ReplicaFailure::FailRequest => return Err(error),
                ReplicaFailure::LogAndContinue => {
                    tracing::warn!(replica = index, operation, %error, "session replica write failed");
                }
            }
        }
        Ok(())
    }

    /// Runs `write` on the primary and every replica concurrently; the
    /// primary's result is returned if the replicas pass the policy.
    async fn everywhere<'a, F, Fut, T>(
        &'a self,
        operation: &'static str,
        write: F,
    ) -> Result<T, Error>
    where
        F: Fn(&'a dyn SessionStore) -> Fut,
        Fut: Future<Output = Result<T, Error>> + Send + 'a,
    {
        let primary: &dyn SessionStore = self.primary.as_ref();
        let (primary_result, replicas) = futures_util::future::join(
            write(primary),
            futures_util::future::join_all(
                self.replicas.iter().map(|replica| write(replica.as_ref())),
            ),
        )
        .await;
        let value = primary_result?;
        self.judge(operation, replicas)?;
        Ok(value)
    }
}

impl fmt::Debug for Mirrored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mirrored")
            .field("primary", &self.primary)
            .field("replicas", &self.replicas)
            .field("policy", &self.policy)
            .finish()
    }
}

#[async_trait]
impl SessionStore for Mirrored {
    async fn create(&self, record: &Record) -> Result<(), Error> {
        self.primary.as_ref().create(record).await?;
        self.replicate("create", |replica| replica.create(record)).await
    }

    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, Error> {
        self.primary.as_ref().load(key, now).await
    }

    async fn save(&self, record: &Record) -> Result<(), Error> {
        self.everywhere("save", |store| store.save(record)).await
    }

    async fn delete(&self, key: &StorageKey) -> Result<(), Error> {
        self.everywhere("delete", |store| store.delete(key)).await
    }

    async fn touch(&self, record: &Record) -> Result<(), Error> {
        self.everywhere("touch", |store| store.touch(record)).await
    }

    async fn delete_expired(&self, now: Timestamp) -> Result<u64, Error> {
        self.everywhere("delete_expired", |store| store.delete_expired(now)).await
    }

    async fn list_for_user(&self, user: &str, now: Timestamp) -> Result<Vec<Record>, Error> {
        self.primary.as_ref().list_for_user(user, now).await
    }

    async fn delete_for_user(&self, user: &str) -> Result<u64, Error> {
        self.everywhere("delete_for_user", |store| store.delete_for_user(user)).await
    }
}

/// Locks come from the primary alone, and so do locked reads; a locked save
/// goes to the primary (which releases its lock in the same call, as a
/// store that does both in one round trip does) and to every replica.
#[async_trait]
impl LockingStore for Mirrored {
    async fn lock(&self, key: &StorageKey, options: LockOptions) -> Result<LockGuard, Error> {
        self.primary.as_ref().lock(key, options).await
    }

    async fn lock_and_load(
        &self,
        key: &StorageKey,
        options: LockOptions,
        now: Timestamp,
    ) -> Result<(LockGuard, Option<Record>), Error> {
        self.primary.as_ref().lock_and_load(key, options, now).await
    }

    async fn lock_and_reload(
        &self,
        key: &StorageKey,
        options: LockOptions,
        now: Timestamp,
        version: u64,
    ) -> Result<(LockGuard, Reloaded), Error> {
        self.primary.as_ref().lock_and_reload(key, options, now, version).await
    }

    async fn save_and_release(&self, record: &Record, guard: LockGuard) -> Result<(), Error> {
        let (primary_result, replicas) = futures_util::future::join(
            self.primary.as_ref().save_and_release(record, guard),
            futures_util::future::join_all(
                self.replicas.iter().map(|replica| replica.as_ref().save(record)),
            ),
        )
        .await;
        primary_result?;
        self.judge("save", replicas)
    }
}

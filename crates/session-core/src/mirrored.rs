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
/// The primary is the truth:
///
/// - `load`, `list_for_user` and locks come from the primary only.
/// - Every write goes to the primary first; only once the primary has
///   accepted it does it go to the replicas (concurrently). A write the
///   primary refuses ([`Error::NotFound`], [`Error::IdCollision`], a lost
///   lock, a store error) reaches no replica.
/// - A replica that lacks a record the primary saved or touched (a replica
///   restarted empty, say) gets the primary's record back, re-created; one
///   that holds a record the primary just created gets it overwritten. Only
///   a replica that cannot be written at all is a replica failure, which
///   follows the [`ReplicaFailure`] policy.
/// - A locked save ([`LockingStore::save_and_release`]) writes the primary
///   and then the replicas while the primary's lock is still held, so the
///   replicas get one session's locked writes in the primary's order. Plain
///   writes without the lock are last-writer-wins, on the replicas as on the
///   primary.
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

    fn primary(&self) -> &dyn SessionStore {
        self.primary.as_ref()
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
        for (index, result) in results.into_iter().enumerate() {
            let Err(error) = result else { continue };
            match self.policy {
                ReplicaFailure::FailRequest => return Err(error),
                ReplicaFailure::LogAndContinue => {
                    tracing::warn!(replica = index, operation, %error, "session replica write failed");
                }
            }
        }
        Ok(())
    }

    /// Puts the primary's `record` on `replica`, whatever the replica holds
    /// under its key: saved over an existing record, created where there is
    /// none.
    async fn mirror(replica: &dyn SessionStore, record: &Record) -> Result<(), Error> {
        match replica.save(record).await {
            Err(Error::NotFound) => match replica.create(record).await {
                // Created by a racing write of the same session meanwhile.
                Err(Error::IdCollision) => replica.save(record).await,
                created => created,
            },
            saved => saved,
        }
    }

    /// Moves the replica's deadlines as the primary's `touch` did; a replica
    /// lacking the record gets the primary's whole record, read back from
    /// the primary (`record`'s own data may be older than the primary's).
    async fn mirror_touch(&self, replica: &dyn SessionStore, record: &Record) -> Result<(), Error> {
        match replica.touch(record).await {
            Err(Error::NotFound) => match self.primary().load(&record.key, record.last_seen).await?
            {
                Some(current) => Self::mirror(replica, &current).await,
                None => Ok(()), // ended on the primary meanwhile
            },
            touched => touched,
        }
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
        self.primary().create(record).await?;
        // The primary alone decides about collisions: a replica's record
        // under this key is a leftover the primary no longer has.
        self.replicate("create", |replica| async move {
            match replica.create(record).await {
                Err(Error::IdCollision) => replica.save(record).await,
                created => created,
            }
        })
        .await
    }

    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, Error> {
        self.primary().load(key, now).await
    }

    async fn save(&self, record: &Record) -> Result<(), Error> {
        self.primary().save(record).await?;
        self.replicate("save", |replica| Self::mirror(replica, record)).await
    }

    async fn delete(&self, key: &StorageKey) -> Result<(), Error> {
        self.primary().delete(key).await?;
        self.replicate("delete", |replica| replica.delete(key)).await
    }

    async fn touch(&self, record: &Record) -> Result<(), Error> {
        self.primary().touch(record).await?;
        self.replicate("touch", |replica| self.mirror_touch(replica, record)).await
    }

    async fn delete_expired(&self, now: Timestamp) -> Result<u64, Error> {
        let deleted = self.primary().delete_expired(now).await?;
        self.replicate("delete_expired", |replica| replica.delete_expired(now)).await?;
        Ok(deleted)
    }

    async fn list_for_user(&self, user: &str, now: Timestamp) -> Result<Vec<Record>, Error> {
        self.primary().list_for_user(user, now).await
    }

    async fn delete_for_user(&self, user: &str) -> Result<u64, Error> {
        let deleted = self.primary().delete_for_user(user).await?;
        self.replicate("delete_for_user", |replica| replica.delete_for_user(user)).await?;
        Ok(deleted)
    }
}

/// Locks come from the primary alone, and so do locked reads. A locked save
/// goes to the primary, fenced by its lock, then to every replica, and only
/// then is the lock released.
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
        let saved = self.save_under_lock(record, &guard).await;
        guard.release_quietly().await;
        saved
    }

    async fn save_under_lock(&self, record: &Record, guard: &LockGuard) -> Result<(), Error> {
        self.primary.as_ref().save_under_lock(record, guard).await?;
        self.replicate("save", |replica| Self::mirror(replica, record)).await
    }
}

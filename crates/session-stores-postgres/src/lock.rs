//! Session locks as PostgreSQL advisory locks.
//!
//! A lock is a session-level `pg_advisory_lock` on the first 64 bits of the
//! session's [`StorageKey`], taken on a connection checked out of the pool
//! and kept for as long as the guard lives. The lock belongs to that
//! database session, so it is released by `pg_advisory_unlock` on the same
//! connection, or by the server when the connection closes (a crashed
//! process cannot leave a lock behind).
//!
//! The invariant that keeps pooled connections safe: a connection goes back
//! to the pool only when it is known to hold no advisory lock. Every other
//! path (a failed or cancelled unlock, a cancelled attempt, a drop without a
//! runtime) closes the connection instead, and the server drops its locks.

use std::time::Duration;

use session_core::{
    Error, HeldLock, LockGuard, LockOptions, Record, SessionLock, StorageKey, Timestamp,
    async_trait,
};
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};
use tokio::time::Instant;

use crate::PostgresStore;
use crate::error::{PgStoreError, backend};

/// First pause between attempts to take a busy lock.
const FIRST_BACKOFF: Duration = Duration::from_millis(2);
/// Longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(50);

/// A pooled connection that may hold an advisory lock. Unless marked clean,
/// it is closed rather than returned to the pool when dropped.
struct LockConnection {
    conn: Option<PoolConnection<Postgres>>,
    clean: bool,
}

impl LockConnection {
    fn new(conn: PoolConnection<Postgres>) -> Self {
        Self { conn: Some(conn), clean: false }
    }

    fn get(&mut self) -> Result<&mut PgConnection, Error> {
        match self.conn.as_mut() {
            Some(conn) => Ok(&mut **conn),
            None => Err(PgStoreError::LockLost.into()),
        }
    }

    /// Releases the lock; on success the connection may go back to the pool.
    async fn unlock(mut self, lock_id: i64) -> Result<(), Error> {
        let released: bool = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
            .bind(lock_id)
            .fetch_one(self.get()?)
            .await
            .map_err(backend)?;
        if released {
            self.clean = true;
            Ok(())
        } else {
            Err(PgStoreError::LockLost.into())
        }
    }
}

impl Drop for LockConnection {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if self.clean {
            return; // dropping returns it to the pool
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            // Closing ends the database session, which releases its locks.
            conn.close_on_drop();
            drop(conn);
        } else {
            // No runtime to close it gracefully: drop the socket; the server
            // ends the session when it notices.
            drop(conn.detach());
        }
    }
}

/// One attempt: a connection from the pool and `pg_try_advisory_lock`.
async fn try_lock(pool: &PgPool, lock_id: i64) -> Result<Option<LockConnection>, Error> {
    let mut conn = LockConnection::new(pool.acquire().await.map_err(backend)?);
    // If this future is dropped mid-query the lock may or may not have been
    // taken; `conn` is not clean, so it is closed, never pooled.
    let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(lock_id)
        .fetch_one(conn.get()?)
        .await
        .map_err(backend)?;
    if taken {
        Ok(Some(conn))
    } else {
        conn.clean = true;
        Ok(None)
    }
}

/// A little randomness so waiters on one lock do not poll in step.
fn jittered(backoff: Duration, seed: &mut u64) -> Duration {
    // xorshift64
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    let percent = 50 + (*seed % 51); // 50..=100 %
    backoff * u32::try_from(percent).unwrap_or(100) / 100
}

/// A held advisory lock: the connection that holds it.
struct PgLock {
    conn: Option<LockConnection>,
    lock_id: i64,
}

#[async_trait]
impl HeldLock for PgLock {
    async fn release(mut self: Box<Self>) -> Result<(), Error> {
        match self.conn.take() {
            Some(conn) => conn.unlock(self.lock_id).await,
            None => Ok(()),
        }
    }
}

impl Drop for PgLock {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let lock_id = self.lock_id;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(error) = conn.unlock(lock_id).await {
                        tracing::warn!(
                            store = crate::error::STORE,
                            %error,
                            "unlocking a dropped session lock failed; its connection was closed",
                        );
                    }
                });
            }
            Err(_) => drop(conn), // closes the connection
        }
    }
}

impl PostgresStore {
    /// Polls `pg_try_advisory_lock` with backoff until it succeeds or
    /// `options.wait_timeout` passes. Between attempts no connection is held,
    /// so waiters never starve the holder of the connections it needs.
    async fn take_lock(&self, key: &StorageKey, options: LockOptions) -> Result<PgLock, Error> {
        let lock_id = key.prefix_u64().cast_signed();
        let timed_out = || Error::LockTimeout { waited: options.wait_timeout };
        let deadline = Instant::now() + options.wait_timeout;
        let mut backoff = FIRST_BACKOFF;
        let mut seed = key.prefix_u64() | 1;
        loop {
            match tokio::time::timeout_at(deadline, try_lock(&self.pool, lock_id)).await {
                Err(_elapsed) => return Err(timed_out()),
                Ok(Err(error)) => return Err(error),
                Ok(Ok(Some(conn))) => {
                    return Ok(PgLock { conn: Some(conn), lock_id });
                }
                Ok(Ok(None)) => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(timed_out());
            }
            tokio::time::sleep(jittered(backoff, &mut seed).min(deadline - now)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Session-level advisory locks, exclusive across every process and machine
/// using the same database.
///
/// `options.lease` does not apply: the lock lives exactly as long as the
/// database session holding it, so a crashed process releases it at once.
/// Waiting polls `pg_try_advisory_lock` with backoff and gives up with
/// [`Error::LockTimeout`] after `options.wait_timeout`. A guard dropped
/// without [`release`](LockGuard::release) is unlocked by a spawned task; if
/// that fails, the connection is closed instead of being returned to the
/// pool.
///
/// Locks are keyed by the first 64 bits of the session's storage key (in the
/// database-wide advisory lock space shared with other applications); two
/// sessions sharing those bits would merely wait for each other.
#[async_trait]
impl SessionLock for PostgresStore {
    async fn lock(&self, key: &StorageKey, options: LockOptions) -> Result<LockGuard, Error> {
        Ok(LockGuard::new(self.take_lock(key, options).await?))
    }

    /// Loads on the lock's own connection: one pool checkout for both.
    async fn lock_and_load(
        &self,
        key: &StorageKey,
        options: LockOptions,
        now: Timestamp,
    ) -> Result<(LockGuard, Option<Record>), Error> {
        let mut lock = self.take_lock(key, options).await?;
        let loaded = match lock.conn.as_mut() {
            Some(conn) => self.load_with(conn.get()?, key, now).await,
            None => Err(PgStoreError::LockLost.into()),
        };
        match loaded {
            Ok(record) => Ok((LockGuard::new(lock), record)),
            Err(error) => {
                if let Err(unlock) = (Box::new(lock) as Box<dyn HeldLock>).release().await {
                    tracing::warn!(store = crate::error::STORE, error = %unlock, "unlocking after a failed load");
                }
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_to_full() {
        let mut seed = 12345;
        for _ in 0..1000 {
            let d = jittered(Duration::from_millis(100), &mut seed);
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(100));
        }
    }
}

//! Session locks as PostgreSQL advisory locks ([`LockMode::Advisory`]), and
//! the [`LockingStore`] impl that picks the store's mode (the lease mode is
//! in `lease.rs`).
//!
//! A lock is a session-level `pg_advisory_lock` on the first 64 bits of the
//! session's [`StorageKey`], taken on a connection checked out of the pool
//! and kept for as long as the guard lives. The lock belongs to that
//! database session, so it is released by `pg_advisory_unlock` on the same
//! connection, or by the server when the connection closes (a crashed
//! process cannot leave a lock behind); the connection goes back to the
//! pool only when it is known to hold none (see `session_stores_sql`'s
//! [`ConnectionLock`]).

use std::time::Duration;

use session_core::{
    Error, LockGuard, LockOptions, LockingStore, Record, StorageKey, Timestamp, async_trait,
};
use session_stores_sql::{ConnectionLock, Encoded, SessionLevelLock, SessionTable, Write};
use sqlx::{PgConnection, Postgres, Row};
use tokio::time::Instant;

use crate::driver::Pg;
use crate::error::{PgStoreError, STORE, backend};
use crate::{LockMode, PostgresStore};

/// First pause between attempts to take a busy lease (lease mode polls:
/// its holder keeps no transaction open that a waiter could queue behind).
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(2);
/// Longest pause between attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_millis(50);

/// A PostgreSQL advisory lock: its 64-bit key, the first 64 bits of the
/// session's storage key.
#[derive(Clone, Copy)]
struct Advisory(i64);

#[async_trait]
impl SessionLevelLock for Advisory {
    type Database = Postgres;
    const STORE: &'static str = STORE;

    async fn unlock(&self, conn: &mut PgConnection) -> Result<bool, Error> {
        sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
            .bind(self.0)
            .fetch_one(conn)
            .await
            .map_err(backend)
    }
}

/// A pooled connection that may hold an advisory lock.
type LockConnection = session_stores_sql::LockConnection<Postgres>;

/// A held advisory lock: the connection that holds it.
type PgLock = ConnectionLock<Advisory>;

/// What an attempt to take the lock does besides taking it.
#[derive(Clone, Copy)]
enum Attempt {
    /// `pg_try_advisory_lock` alone.
    Lock,
    /// The `lock_and_load` procedure: the lock, then the record as of `now`.
    LockAndLoad(Timestamp),
}

/// Waits in PostgreSQL's own lock queue for the lock, on one connection from
/// the pool, for at most `wait` (`lock_timeout`, set for this one
/// statement): the holder's unlock wakes it at once, without polling, and
/// the waiters of every process are served in the order they came. Then,
/// for `LockAndLoad`, the record, read on the same connection in a
/// statement that starts after the lock was taken (so it sees the previous
/// holder's save, committed before its unlock). `None` when the wait ran
/// out; the connection then holds no lock and goes back to the pool.
async fn wait_for_lock(
    store: &PostgresStore,
    key: &StorageKey,
    lock: Advisory,
    attempt: Attempt,
    wait: Duration,
) -> Result<Option<(LockConnection, Option<Record>)>, Error> {
    let acquire = Box::pin(store.pool.acquire());
    let mut conn = LockConnection::new(acquire.await.map_err(backend)?);
    let timeout = format!("{}ms", wait.as_millis().clamp(1, i32::MAX as u128));
    // Dropped mid-wait, the connection is not clean, so it is closed, which
    // ends the wait in the server.
    let waited = sqlx::query("SELECT set_config('lock_timeout', $1, true), pg_advisory_lock($2)")
        .bind(timeout)
        .bind(lock.0)
        .execute(conn.get()?)
        .await;
    match waited {
        Ok(_) => {}
        Err(sqlx::Error::Database(error))
            if error.code().as_deref() == Some(LOCK_NOT_AVAILABLE) =>
        {
            conn.set_clean(); // the statement failed: it took nothing
            return Ok(None);
        }
        Err(error) => return Err(backend(error)),
    }
    let record = match attempt {
        Attempt::Lock => Ok(None),
        Attempt::LockAndLoad(now) => store.table.sessions.load(conn.get()?, key, now).await,
    };
    conn.loaded(&lock, record).await.map(Some)
}

/// SQLSTATE `55P03`: `lock_timeout` ran out.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// How much longer than the server's `lock_timeout` the client waits for
/// its answer before it gives up on the connection (a server that stopped
/// answering): normally the server's timeout answers first, and the
/// connection goes back to the pool.
const SERVER_ANSWER_GRACE: Duration = Duration::from_secs(1);

/// One attempt: a connection from the pool, then the lock (and the record).
/// `None` if the lock is taken by someone else; the connection then holds no
/// lock and goes back to the pool.
async fn try_lock(
    store: &PostgresStore,
    key: &StorageKey,
    lock: Advisory,
    attempt: Attempt,
) -> Result<Option<(LockConnection, Option<Record>)>, Error> {
    // Boxed: sqlx's acquire future is ~8.6 KB (it can open a connection),
    // and inline it made this future, `take_lock`'s and the boxed `lock` and
    // `lock_and_load` futures (one per waiting request) as large.
    let acquire = Box::pin(store.pool.acquire());
    let mut conn = LockConnection::new(acquire.await.map_err(backend)?);
    // If this future is dropped mid-query the lock may or may not have been
    // taken; `conn` is not clean, so it is closed, never pooled.
    let row = match attempt {
        Attempt::Lock => sqlx::query("SELECT pg_try_advisory_lock($1)").bind(lock.0),
        Attempt::LockAndLoad(now) => sqlx::query(store.table.lock_and_load.clone())
            .bind(key.as_bytes().as_slice())
            .bind(lock.0)
            .bind(now.unix_seconds()),
    }
    .fetch_one(conn.get()?)
    .await
    .map_err(backend)?;
    let taken: bool = row.try_get(0).map_err(backend)?;
    if !taken {
        conn.set_clean();
        return Ok(None);
    }
    let record = match attempt {
        Attempt::Lock => Ok(None),
        Attempt::LockAndLoad(_) => match row.try_get::<Option<bool>, _>(1) {
            Ok(Some(true)) => store.table.sessions.decode(&row, 2, Some(*key)),
            Ok(_) => Ok(None),
            Err(error) => Err(backend(error)),
        },
    };
    conn.loaded(&lock, record).await.map(Some)
}

impl PostgresStore {
    /// Waits for its turn among this store's waiters for `key` in this
    /// process, then tries the lock (one round trip, the load included,
    /// when it is free); if another process holds it, waits for it in
    /// PostgreSQL's own lock queue ([`wait_for_lock`]) for the rest of
    /// `options.wait_timeout`. Only the first waiter of a process holds a
    /// connection while it waits; the holder needs no other (its save runs
    /// on the lock's connection).
    async fn take_lock(
        &self,
        key: &StorageKey,
        options: LockOptions,
        attempt: Attempt,
    ) -> Result<(LockGuard, Option<Record>), Error> {
        let lock = Advisory(key.prefix_u64().cast_signed());
        let timed_out = || Error::LockTimeout { waited: options.wait_timeout };
        let deadline = Instant::now() + options.wait_timeout;
        let turn = self.queue.turn(key, options.wait_timeout).await?;
        let held = |(conn, record)| (LockGuard::queued(PgLock::new(conn, lock), turn), record);
        match tokio::time::timeout_at(deadline, try_lock(self, key, lock, attempt)).await {
            Err(_elapsed) => return Err(timed_out()),
            Ok(result) => {
                if let Some(taken) = result? {
                    return Ok(held(taken));
                }
            }
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return Err(timed_out());
        }
        let waiting = wait_for_lock(self, key, lock, attempt, wait);
        match tokio::time::timeout_at(deadline + SERVER_ANSWER_GRACE, waiting).await {
            Err(_) | Ok(Ok(None)) => Err(timed_out()),
            Ok(Ok(Some(taken))) => Ok(held(taken)),
            Ok(Err(error)) => Err(error),
        }
    }

    /// Saves with the `save_and_unlock` procedure on the lock's own
    /// connection: the `UPDATE` commits, then the lock is released, in one
    /// round trip and without a second connection from the pool.
    async fn save_on(
        &self,
        record: &Record,
        mut conn: LockConnection,
        lock: Advisory,
    ) -> Result<(), Error> {
        let row = match Encoded::new(record) {
            Ok(row) => row,
            Err(error) => {
                conn.unlock_quietly(&lock, "encode").await;
                return Err(error);
            }
        };
        // The procedure takes an update's parameters, then the lock id.
        let save = sqlx::query(self.table.save_and_unlock.clone());
        let done = SessionTable::<Pg>::bind(Write::Update, save, &row)
            .bind(lock.0)
            .fetch_one(conn.get()?)
            .await
            .and_then(|row| Ok((row.try_get::<bool, _>(0)?, row.try_get::<bool, _>(1)?)));
        match done {
            Ok((saved, unlocked)) => {
                if unlocked {
                    conn.set_clean();
                } else {
                    tracing::warn!(
                        store = STORE,
                        error = %PgStoreError::LockLost,
                        "the session was saved, but its lock was gone; closing the connection",
                    );
                }
                if saved { Ok(()) } else { Err(Error::NotFound) }
            }
            Err(error) => {
                // Not saved, or unknown: the lock may still be held.
                conn.unlock_quietly(&lock, "save").await;
                Err(backend(error))
            }
        }
    }
}

/// Per-session locks, exclusive across every process and machine using the
/// same database, in the store's [`LockMode`].
///
/// # [`LockMode::Advisory`] (the default)
///
/// Session-level advisory locks. `options.lease` does not apply: the lock
/// lives exactly as long as the database session holding it, so a crashed
/// process releases it at once. Waiters of one store in this process queue
/// first (first come, first served); the first of them tries the lock, and
/// if another process holds it, waits for it in PostgreSQL's own lock queue
/// (`pg_advisory_lock` under a `lock_timeout` of what is left of the wait),
/// so the holder's unlock wakes it at once, with no polling, and waiters of
/// every process are served in turn. It gives up with
/// [`Error::LockTimeout`] after `options.wait_timeout`. A waiting process
/// holds one pooled connection per contended session. A guard dropped
/// without [`release`](LockGuard::release) is unlocked by a spawned task; if
/// that fails, the connection is closed instead of being returned to the
/// pool.
///
/// A locked read-modify-write takes one connection from the pool and two
/// round trips ([`lock_and_load`](LockingStore::lock_and_load) and
/// [`save_and_release`](LockingStore::save_and_release), each one call of a
/// procedure that [`migrate`](PostgresStore::migrate) creates), so a pool of
/// `N` connections serves `N` locked sessions at once without deadlock.
///
/// Locks are keyed by the first 64 bits of the session's storage key (in the
/// database-wide advisory lock space shared with other applications); two
/// sessions sharing those bits would merely wait for each other.
///
/// # [`LockMode::Lease`]
///
/// A row per locked session in `<table>_leases`, holding a random token and
/// the end of the lease on the database's clock:
///
/// - Taking it: one `INSERT ... ON CONFLICT DO UPDATE ... WHERE` the lease
///   ended, retried with backoff (by the first waiter of each process)
///   until `options.wait_timeout`. Lease mode polls: it serves PgBouncer in
///   transaction pooling, where a waiter can neither queue behind a
///   transaction the holder keeps open (it keeps none) nor `LISTEN`;
///   [`lock_and_load`](LockingStore::lock_and_load) reads the session in
///   the same round trip, after the lease is taken.
/// - Holding it: a task renews the lease every third of `options.lease`. If
///   it finds the token gone, or cannot reach the database before the lease
///   ends, [`LockGuard::is_held`] turns `false` and `save_and_release`
///   refuses to save. No connection is held between statements.
/// - Saving: [`save_and_release`](LockingStore::save_and_release) deletes the
///   lease by token and updates the session in one statement, writing only
///   if the token was still there: a holder whose lease ended and was taken
///   by another gets [`Error::LockLost`] and never overwrites.
/// - Releasing: compare-and-delete by token. A guard dropped without
///   `release` is released by a spawned task; a process that dies leaves
///   its lease to end, after which the next holder takes it over.
#[async_trait]
impl LockingStore for PostgresStore {
    async fn lock(&self, key: &StorageKey, options: LockOptions) -> Result<LockGuard, Error> {
        if self.mode == LockMode::Lease {
            let (guard, _) = self.lease_acquire(key, options, None).await?;
            return Ok(guard);
        }
        let (guard, _) = self.take_lock(key, options, Attempt::Lock).await?;
        Ok(guard)
    }

    /// Takes the lock and loads the record in one round trip, the load after
    /// the lock was taken (advisory: in a transaction that starts after it;
    /// lease: in a statement that starts after it).
    async fn lock_and_load(
        &self,
        key: &StorageKey,
        options: LockOptions,
        now: Timestamp,
    ) -> Result<(LockGuard, Option<Record>), Error> {
        if self.mode == LockMode::Lease {
            return self.lease_acquire(key, options, Some(now)).await;
        }
        self.take_lock(key, options, Attempt::LockAndLoad(now)).await
    }

    /// Saves and unlocks in one round trip (advisory: on the lock's own
    /// connection, the save committed before the unlock; lease: one fenced
    /// statement). Guards of other stores are saved through the pool, then
    /// released.
    async fn save_and_release(&self, record: &Record, guard: LockGuard) -> Result<(), Error> {
        if self.mode == LockMode::Lease {
            return self.lease_save_and_release(record, guard).await;
        }
        let Some(lock) = guard.downcast_ref::<PgLock>() else {
            // Another store's lock, or another key's: save, then release it.
            return guard.save_through(self, record).await;
        };
        let (conn, advisory) = (lock.take(), *lock.lock());
        drop(guard); // holds no connection any more: nothing to unlock
        match conn {
            Some(conn) => self.save_on(record, conn, advisory).await,
            None => Err(PgStoreError::LockLost.into()),
        }
    }

    /// Saves on the lock's own connection and keeps the lock (advisory;
    /// lease: one fenced statement). Guards of other stores are saved
    /// through the pool if they still hold their lock.
    async fn save_under_lock(&self, record: &Record, guard: &LockGuard) -> Result<(), Error> {
        if self.mode == LockMode::Lease {
            return self.lease_save_under_lock(record, guard).await;
        }
        let Some(lock) = guard.downcast_ref::<PgLock>() else {
            return guard.save_while_held(self, record).await;
        };
        // Out of the guard while the update runs (the mutex is not held
        // across it); dropped mid-update, the connection closes, which
        // releases the lock.
        let Some(mut conn) = lock.take() else {
            return Err(PgStoreError::LockLost.into());
        };
        let saved = match conn.get() {
            Ok(connection) => self.table.sessions.save(connection, record).await,
            Err(error) => Err(error),
        };
        lock.put_back(conn);
        saved
    }
}

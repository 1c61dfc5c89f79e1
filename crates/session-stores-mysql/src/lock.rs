//! Session locks as MySQL user-level locks (`GET_LOCK`), held by a pooled
//! connection.
//!
//! A lock is `GET_LOCK` on a name derived from the table and the session's
//! [`StorageKey`] (see [`TableName::lock_name`](crate::table::TableName)),
//! taken on a connection checked out of the pool and kept for as long as the
//! guard lives. It belongs to that connection's server session, so it is
//! released by `RELEASE_LOCK` on the same connection, or by the server when
//! the connection closes (a crashed process cannot leave a lock behind); the
//! connection goes back to the pool only when it is known to hold none (see
//! `session_stores_sql`'s [`ConnectionLock`]).

use std::time::Duration;

use session_core::{
    Error, LockGuard, LockOptions, LockingStore, Record, StorageKey, Timestamp, async_trait,
};
use session_stores_sql::{ConnectionLock, Encoded, SessionLevelLock, SessionTable, Write};
use sqlx::{MySqlConnection, MySqlExecutor};
use tokio::time::Instant;

use crate::MySqlStore;
use crate::driver::MySql;
use crate::error::{MySqlStoreError, STORE, backend};

/// A `GET_LOCK` name (see `TableName::lock_name`).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct LockName(pub(crate) String);

#[async_trait]
impl SessionLevelLock for LockName {
    type Database = sqlx::MySql;
    const STORE: &'static str = STORE;

    /// `RELEASE_LOCK`: 1 if this connection held it, 0 if another does,
    /// `NULL` if nobody does.
    async fn unlock(&self, conn: &mut MySqlConnection) -> Result<bool, Error> {
        let released: Option<i64> = sqlx::query_scalar("SELECT RELEASE_LOCK(?)")
            .bind(self.0.as_str())
            .fetch_one(conn)
            .await
            .map_err(backend)?;
        Ok(released == Some(1))
    }
}

/// A pooled connection that may hold a user-level lock.
type LockConnection = session_stores_sql::LockConnection<sqlx::MySql>;

/// A held lock: the connection that holds it, and its name.
type MySqlLock = ConnectionLock<LockName>;

/// How much longer than the wait given to `GET_LOCK` the client waits for
/// its answer before it gives up on the connection (a server that stopped
/// answering, or a MySQL that rounded the wait up to whole seconds):
/// normally the server's timeout answers first, and the connection goes back
/// to the pool.
const SERVER_ANSWER_GRACE: Duration = Duration::from_secs(1);

/// The longest wait written into `GET_LOCK`: a day, far more than any
/// request waits (a negative wait would mean forever).
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// Whether `conn` holds `lock` (`IS_USED_LOCK` names the holding connection).
async fn holds(conn: &mut MySqlConnection, lock: &LockName) -> Result<bool, Error> {
    let held: Option<i64> = sqlx::query_scalar("SELECT IS_USED_LOCK(?) = CONNECTION_ID()")
        .bind(lock.0.as_str())
        .fetch_one(conn)
        .await
        .map_err(backend)?;
    Ok(held == Some(1))
}

/// The fenced `UPDATE` of `record` on `conn`: it writes only while `conn`
/// holds `lock`. The rows it matched (0 or 1).
async fn fenced_save<'c>(
    store: &MySqlStore,
    conn: impl MySqlExecutor<'c>,
    lock: &LockName,
    row: &Encoded<'_>,
) -> Result<u64, Error> {
    // The update's columns and key, then the lock's name.
    let save = sqlx::query(store.table.fenced_save.clone());
    let done = SessionTable::<MySql>::bind(Write::Update, save, row)
        .bind(lock.0.as_str())
        .execute(conn)
        .await
        .map_err(backend)?;
    Ok(done.rows_affected())
}

impl MySqlStore {
    /// Waits for its turn among this store's waiters for `key` in this
    /// process, then for the lock itself in the server's queue: one
    /// `GET_LOCK` with what is left of `options.wait_timeout`, which the
    /// holder's release (or its connection closing) ends at once, with no
    /// polling. Then, with `load_at`, the record, on the same connection in
    /// a statement that starts after the lock was taken (so it sees the
    /// previous holder's save, committed before its release).
    async fn take_lock(
        &self,
        key: &StorageKey,
        options: LockOptions,
        load_at: Option<Timestamp>,
    ) -> Result<(LockGuard, Option<Record>), Error> {
        let timed_out = || Error::LockTimeout { waited: options.wait_timeout };
        let deadline = Instant::now() + options.wait_timeout;
        let turn = self.queue.turn(key, options.wait_timeout).await?;
        // Boxed: sqlx's acquire future is several KB, and inline it would
        // make every waiting request's lock future as large.
        let acquire = Box::pin(self.pool.acquire());
        let conn = match tokio::time::timeout_at(deadline, acquire).await {
            Err(_elapsed) => return Err(timed_out()),
            Ok(conn) => LockConnection::new(conn.map_err(backend)?),
        };
        let lock = self.table.name.lock_name(key);
        let wait = deadline.saturating_duration_since(Instant::now());
        let waiting = self.wait_for_lock(conn, key, &lock, load_at, wait);
        match tokio::time::timeout_at(deadline + SERVER_ANSWER_GRACE, waiting).await {
            Err(_) | Ok(Ok(None)) => Err(timed_out()),
            Ok(Ok(Some((conn, record)))) => {
                Ok((LockGuard::queued(MySqlLock::new(conn, lock), turn), record))
            }
            Ok(Err(error)) => Err(error),
        }
    }

    /// `GET_LOCK` on `conn` for at most `wait`, then the record as of
    /// `load_at`. `None` when the wait ran out; the connection then holds no
    /// lock and goes back to the pool. Dropped mid-wait, the connection is
    /// not clean, so it is closed, which ends the wait in the server.
    async fn wait_for_lock(
        &self,
        mut conn: LockConnection,
        key: &StorageKey,
        lock: &LockName,
        load_at: Option<Timestamp>,
        wait: Duration,
    ) -> Result<Option<(LockConnection, Option<Record>)>, Error> {
        // Seconds with a fraction: MariaDB waits to the microsecond.
        let seconds = wait.min(MAX_WAIT).as_secs_f64();
        let taken: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, ?)")
            .bind(lock.0.as_str())
            .bind(seconds)
            .fetch_one(conn.get()?)
            .await
            .map_err(backend)?;
        match taken {
            Some(1) => {}
            Some(_) => {
                conn.set_clean(); // the wait ran out: it took nothing
                return Ok(None);
            }
            // The wait was killed, or failed in the server: whether it took
            // the lock is unknown, so the connection is closed.
            None => return Err(MySqlStoreError::UnexpectedReply("GET_LOCK returned NULL").into()),
        }
        let record = match load_at {
            None => Ok(None),
            Some(now) => self.table.sessions.load(conn.get()?, key, now).await,
        };
        conn.loaded(lock, record).await.map(Some)
    }

    /// `guard`'s lock, if it is one of this store's table on `record`'s
    /// session: only such a lock fences a save on its own connection.
    fn own_lock<'g>(&self, guard: &'g LockGuard, record: &Record) -> Option<&'g MySqlLock> {
        guard
            .downcast_ref::<MySqlLock>()
            .filter(|lock| *lock.lock() == self.table.name.lock_name(&record.key))
    }

    /// Saves on the lock's own connection, fenced, then releases the lock:
    /// the `UPDATE` commits before the release, so the next holder reads it.
    async fn save_on(
        &self,
        record: &Record,
        mut conn: LockConnection,
        lock: &LockName,
    ) -> Result<(), Error> {
        let row = match Encoded::new(record) {
            Ok(row) => row,
            Err(error) => {
                conn.unlock_quietly(lock, "encode").await;
                return Err(error);
            }
        };
        let saved = match conn.get() {
            Ok(connection) => fenced_save(self, connection, lock, &row).await,
            Err(error) => Err(error),
        };
        let matched = match saved {
            Ok(matched) => matched,
            Err(error) => {
                // Not saved, or unknown: the lock may still be held.
                conn.unlock_quietly(lock, "save").await;
                return Err(error);
            }
        };
        match (matched, conn.unlock(lock).await) {
            (0, Ok(())) => Err(Error::NotFound),
            (_, Ok(())) => Ok(()),
            // Released by nobody: the lock was not this connection's, so the
            // fenced update wrote nothing.
            (_, Err(Error::LockLost)) => Err(Error::LockLost),
            (0, Err(error)) => Err(error),
            // Saved under the lock; the release failed, and the connection
            // was closed, which releases it.
            (_, Err(error)) => {
                tracing::warn!(store = STORE, %error, "releasing a session lock after its save");
                Ok(())
            }
        }
    }
}

/// Per-session locks, exclusive across every process and machine using the
/// same server: MySQL user-level locks (`GET_LOCK`).
///
/// `options.lease` does not apply: the lock lives exactly as long as the
/// server session holding it, so a crashed process releases it as soon as
/// the server sees its connection close. Waiters of one store in this
/// process queue first (first come, first served); the first of them waits
/// for the lock in the server's own queue (`GET_LOCK` with what is left of
/// the wait), so the holder's release wakes it at once, with no polling. It
/// gives up with [`Error::LockTimeout`] after `options.wait_timeout`. A
/// waiting process holds one pooled connection per contended session. A
/// guard dropped without [`release`](LockGuard::release) is released by a
/// spawned task; if that fails, the connection is closed instead of being
/// returned to the pool.
///
/// A locked read-modify-write takes one connection from the pool and four
/// round trips: `GET_LOCK`, the read, the fenced `UPDATE`, `RELEASE_LOCK`.
/// Saves under the lock run on its connection and check, in the same
/// statement, that this connection still holds it (`IS_USED_LOCK(name) =
/// CONNECTION_ID()`): a holder whose connection died cannot save at all, and
/// one whose statement reached another server connection writes nothing and
/// gets [`Error::LockLost`].
#[async_trait]
impl LockingStore for MySqlStore {
    async fn lock(&self, key: &StorageKey, options: LockOptions) -> Result<LockGuard, Error> {
        let (guard, _) = self.take_lock(key, options, None).await?;
        Ok(guard)
    }

    /// Takes the lock, then loads the record on the lock's connection in a
    /// statement that starts after it.
    async fn lock_and_load(
        &self,
        key: &StorageKey,
        options: LockOptions,
        now: Timestamp,
    ) -> Result<(LockGuard, Option<Record>), Error> {
        self.take_lock(key, options, Some(now)).await
    }

    /// Saves on the lock's own connection, fenced, then releases it, without
    /// a second connection from the pool. Guards of other stores are saved
    /// through the pool, then released.
    async fn save_and_release(&self, record: &Record, guard: LockGuard) -> Result<(), Error> {
        let Some(lock) = self.own_lock(&guard, record) else {
            return guard.save_through(self, record).await;
        };
        let (conn, name) = (lock.take(), lock.lock().clone());
        drop(guard); // holds no connection any more: nothing to release
        match conn {
            Some(conn) => self.save_on(record, conn, &name).await,
            None => Err(Error::LockLost),
        }
    }

    /// Saves on the lock's own connection, fenced, and keeps the lock.
    /// Guards of other stores are saved through the pool if they still hold
    /// their lock.
    async fn save_under_lock(&self, record: &Record, guard: &LockGuard) -> Result<(), Error> {
        let Some(lock) = self.own_lock(guard, record) else {
            return guard.save_while_held(self, record).await;
        };
        let row = Encoded::new(record)?;
        // Out of the guard while the update runs (the mutex is not held
        // across it); dropped mid-update, the connection closes, which
        // releases the lock.
        let Some(mut conn) = lock.take() else {
            return Err(Error::LockLost);
        };
        let saved = match conn.get() {
            Ok(connection) => match fenced_save(self, &mut *connection, lock.lock(), &row).await {
                Ok(0) => match holds(connection, lock.lock()).await {
                    Ok(true) => Err(Error::NotFound),
                    Ok(false) => Err(Error::LockLost),
                    Err(error) => Err(error),
                },
                Ok(_) => Ok(()),
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        lock.put_back(conn);
        saved
    }
}

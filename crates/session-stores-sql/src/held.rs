//! Session locks that a database session holds (PostgreSQL's advisory locks,
//! MySQL's `GET_LOCK`): taken on a connection checked out of the pool and
//! kept, with that connection, for as long as the guard lives.
//!
//! Such a lock is released on the connection that holds it, or by the
//! server when that connection closes (so a crashed process cannot leave one
//! behind). The invariant that keeps pooled connections safe: a connection
//! goes back to the pool only when it is known to hold no lock. Every other
//! path (a failed or cancelled unlock, a cancelled attempt, a drop without a
//! runtime) closes the connection instead, and the server drops its locks.

use std::sync::{Mutex, PoisonError};

use session_core::{Error, HeldLock, Record, async_trait};
use sqlx::Database;
use sqlx::pool::PoolConnection;

/// One lock a database session may hold, and how to release it there.
///
/// ```
/// use session_core::{Error, async_trait};
/// use session_stores_sql::SessionLevelLock;
///
/// /// A lock named in the server's lock space.
/// #[derive(Clone)]
/// struct Named(String);
///
/// #[async_trait]
/// impl SessionLevelLock for Named {
///     type Database = sqlx::Sqlite;
///     const STORE: &'static str = "example";
///
///     async fn unlock(&self, conn: &mut sqlx::SqliteConnection) -> Result<bool, Error> {
///         // Run the server's unlock for `self.0` on `conn`, the holder.
///         let _ = (conn, &self.0);
///         Ok(true)
///     }
/// }
/// ```
#[async_trait]
pub trait SessionLevelLock: Clone + Send + Sync + 'static {
    /// The sqlx database.
    type Database: Database;

    /// The store name in log lines.
    const STORE: &'static str;

    /// Releases the lock on `conn`, the connection that took it: `true` if
    /// it was held there, `false` if the database says it was not (the
    /// connection was reset meanwhile).
    async fn unlock(
        &self,
        conn: &mut <Self::Database as Database>::Connection,
    ) -> Result<bool, Error>;
}

/// A pooled connection that may hold a session-level lock. Unless marked
/// clean, it is closed rather than returned to the pool when dropped.
pub struct LockConnection<DB: Database> {
    conn: Option<PoolConnection<DB>>,
    clean: bool,
}

impl<DB: Database> LockConnection<DB> {
    /// `conn`, about to take a lock: from now on it is closed when dropped,
    /// unless [`set_clean`](Self::set_clean) says it holds no lock.
    #[must_use]
    pub fn new(conn: PoolConnection<DB>) -> Self {
        Self { conn: Some(conn), clean: false }
    }

    /// The connection, to run statements on.
    ///
    /// # Errors
    ///
    /// [`Error::LockLost`] once it is gone.
    pub fn get(&mut self) -> Result<&mut DB::Connection, Error> {
        match self.conn.as_mut() {
            Some(conn) => Ok(&mut **conn),
            None => Err(Error::LockLost),
        }
    }

    /// Marks the connection as holding no lock (the attempt took none, or
    /// the unlock succeeded): dropped, it goes back to the pool.
    pub fn set_clean(&mut self) {
        self.clean = true;
    }

    /// Releases `lock`; on success the connection may go back to the pool.
    ///
    /// # Errors
    ///
    /// The database's error, or [`Error::LockLost`] if the lock was not held
    /// any more; the connection is then closed, which releases whatever it
    /// still holds.
    pub async fn unlock<L>(mut self, lock: &L) -> Result<(), Error>
    where
        L: SessionLevelLock<Database = DB>,
    {
        if lock.unlock(self.get()?).await? {
            self.clean = true;
            Ok(())
        } else {
            Err(Error::LockLost)
        }
    }

    /// [`unlock`](Self::unlock), logging rather than returning a failure:
    /// for paths that already have an error to report (a failed load or
    /// save under the lock, named by `after`).
    pub async fn unlock_quietly<L>(self, lock: &L, after: &str)
    where
        L: SessionLevelLock<Database = DB>,
    {
        if let Err(error) = self.unlock(lock).await {
            tracing::warn!(store = L::STORE, %error, "unlocking after a failed {after}");
        }
    }

    /// The lock just taken on this connection, with what loading the record
    /// under it gave; a load that failed unlocks again.
    ///
    /// # Errors
    ///
    /// The load's error.
    pub async fn loaded<L>(
        self,
        lock: &L,
        record: Result<Option<Record>, Error>,
    ) -> Result<(Self, Option<Record>), Error>
    where
        L: SessionLevelLock<Database = DB>,
    {
        match record {
            Ok(record) => Ok((self, record)),
            Err(error) => {
                self.unlock_quietly(lock, "load").await;
                Err(error)
            }
        }
    }
}

impl<DB: Database> Drop for LockConnection<DB> {
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

/// A held session-level lock: the connection that holds it, and the lock.
/// Users see it as a [`LockGuard`](session_core::LockGuard).
///
/// Released by [`HeldLock::release`] on its connection; dropped without it,
/// by a spawned task, and if that fails, or there is no runtime, by closing
/// the connection.
pub struct ConnectionLock<L: SessionLevelLock> {
    /// Taken out by a save that releases the lock on it, or by `release` and
    /// `drop`.
    conn: Mutex<Option<LockConnection<L::Database>>>,
    lock: L,
}

impl<L: SessionLevelLock> ConnectionLock<L> {
    /// `lock`, held by `conn`.
    #[must_use]
    pub fn new(conn: LockConnection<L::Database>, lock: L) -> Self {
        Self { conn: Mutex::new(Some(conn)), lock }
    }

    /// The lock.
    #[must_use]
    pub fn lock(&self) -> &L {
        &self.lock
    }

    /// The connection holding the lock, taken out to save on it (and put
    /// back with [`put_back`](Self::put_back) to keep the lock); `None` once
    /// taken.
    #[must_use]
    pub fn take(&self) -> Option<LockConnection<L::Database>> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Puts back the connection [`take`](Self::take) took out.
    pub fn put_back(&self, conn: LockConnection<L::Database>) {
        *self.conn.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn);
    }
}

#[async_trait]
impl<L: SessionLevelLock> HeldLock for ConnectionLock<L> {
    async fn release(self: Box<Self>) -> Result<(), Error> {
        match self.take() {
            Some(conn) => conn.unlock(&self.lock).await,
            None => Ok(()),
        }
    }
}

impl<L: SessionLevelLock> Drop for ConnectionLock<L> {
    fn drop(&mut self) {
        let Some(conn) = self.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return drop(conn); // closes the connection
        };
        let lock = self.lock.clone();
        runtime.spawn(async move {
            if let Err(error) = conn.unlock(&lock).await {
                tracing::warn!(
                    store = L::STORE,
                    %error,
                    "unlocking a dropped session lock failed; its connection was closed",
                );
            }
        });
    }
}

//! [`SqliteStore`]: construction, migration and the [`SessionStore`] impl.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use session_core::Error;
use session_stores_sql::{
    DEFAULT_CLEANUP_BATCH_SIZE, DEFAULT_TABLE_NAME, InvalidTableName, SessionTable, trusted_sql,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqlStr, SqlitePool};

use crate::driver::Sqlite;
use crate::error::backend;
use crate::lock::SessionLocks;
use crate::table::TableName;

/// Sessions in a SQLite database file: the embedded, persistent store.
///
/// Cloning is cheap and clones share the pool and the lock table. Open a file
/// with [`open`](Self::open) (creates and migrates it), or bring your own pool
/// with [`new`](Self::new) and call [`migrate`](Self::migrate).
///
/// # The table
///
/// | column              | type                   | meaning                                        |
/// |---------------------|------------------------|------------------------------------------------|
/// | `session_key`       | `BLOB` primary key     | SHA-256 of the session id (never the id)       |
/// | `data`              | `TEXT`                 | the session dict as JSON                       |
/// | `created_at`        | `INTEGER`              | Unix seconds                                   |
/// | `last_seen`         | `INTEGER`              | Unix seconds                                   |
/// | `idle_deadline`     | `INTEGER`              | Unix seconds                                   |
/// | `absolute_deadline` | `INTEGER NULL`         | Unix seconds; `NULL`: no absolute limit        |
/// | `expires_at`        | `INTEGER`, generated   | the earlier deadline; indexed for cleanup      |
/// | `expiry`            | `TEXT NULL`            | per-session expiry override as JSON            |
/// | `user_id`           | `TEXT NULL`, indexed   | owner, for `list_for_user` / `delete_for_user` |
/// | `version`           | `INTEGER`              | bumped on every save                           |
///
/// ```rust,no_run
/// use session_stores_sqlite::SqliteStore;
///
/// # async fn demo() -> Result<(), session_core::Error> {
/// let store = SqliteStore::open("sessions.db").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    pub(crate) table: Arc<Table>,
    pub(crate) locks: Arc<SessionLocks>,
}

/// A table name with the statements that use it, built once.
pub(crate) struct Table {
    name: TableName,
    migrate: SqlStr,
    /// The statements SQLite shares with PostgreSQL.
    sessions: SessionTable<Sqlite>,
}

impl Table {
    fn new(name: TableName, batch_size: u32) -> Self {
        let t = name.quoted();
        let migrate = format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                session_key BLOB NOT NULL PRIMARY KEY,
                data TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                last_seen INTEGER NOT NULL,
                idle_deadline INTEGER NOT NULL,
                absolute_deadline INTEGER,
                expires_at INTEGER GENERATED ALWAYS AS
                    (MIN(idle_deadline, COALESCE(absolute_deadline, idle_deadline))) STORED,
                expiry TEXT,
                user_id TEXT,
                version INTEGER NOT NULL
            ) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS {expires_idx} ON {t} (expires_at);
            CREATE INDEX IF NOT EXISTS {user_idx} ON {t} (user_id) WHERE user_id IS NOT NULL;",
            expires_idx = name.derived("expires_at_idx"),
            user_idx = name.derived("user_id_idx"),
        );
        Self {
            migrate: trusted_sql(migrate),
            sessions: SessionTable::new(&t, &name, batch_size),
            name,
        }
    }
}

impl SqliteStore {
    /// Opens (creating it if missing) the database file at `path` and the
    /// table [`DEFAULT_TABLE_NAME`] in it, ready to use.
    ///
    /// The file is opened in WAL mode (readers do not block the writer) with
    /// `synchronous = NORMAL` and a 5 second busy timeout. The parent
    /// directory must exist.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] if the file cannot be opened or created, or is not
    /// a SQLite database.
    ///
    /// ```rust,no_run
    /// # async fn demo() -> Result<(), session_core::Error> {
    /// let store = session_stores_sqlite::SqliteStore::open("data/sessions.db").await?;
    /// # Ok(()) }
    /// ```
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(backend)?;
        let store = Self::new(pool);
        store.migrate().await?;
        Ok(store)
    }

    /// A store on `pool`, using the table [`DEFAULT_TABLE_NAME`]. Call
    /// [`migrate`](Self::migrate) before first use.
    ///
    /// Every store on the same database file in this process shares one
    /// lock table (see the crate docs on locking).
    #[must_use]
    pub fn new(pool: SqlitePool) -> Self {
        let locks = crate::lock::for_database(pool.connect_options().get_filename());
        Self {
            pool,
            table: Arc::new(Table::new(
                TableName::unchecked(DEFAULT_TABLE_NAME),
                DEFAULT_CLEANUP_BATCH_SIZE,
            )),
            locks,
        }
    }

    /// Uses the table `name`, which must match `[A-Za-z_][A-Za-z0-9_]{0,62}`
    /// and not start with `sqlite_`. The name is quoted in SQL, so it is used
    /// exactly as given. Call [`migrate`](Self::migrate) afterwards.
    ///
    /// # Errors
    ///
    /// [`InvalidTableName`] for anything else (empty, too long, quotes,
    /// spaces, punctuation, a schema prefix).
    ///
    /// ```
    /// # async fn demo(pool: session_stores_sqlite::SqlitePool) {
    /// use session_stores_sqlite::SqliteStore;
    ///
    /// assert!(SqliteStore::new(pool.clone()).with_table_name("app_sessions").is_ok());
    /// let err = SqliteStore::new(pool).with_table_name("sessions; --").unwrap_err();
    /// assert!(err.to_string().contains("invalid table name"));
    /// # }
    /// ```
    pub fn with_table_name(self, name: &str) -> Result<Self, InvalidTableName> {
        let name = TableName::parse(name)?;
        Ok(Self { table: Arc::new(Table::new(name, self.table.sessions.batch_size())), ..self })
    }

    /// Sets how many rows one cleanup statement deletes at most (default
    /// [`DEFAULT_CLEANUP_BATCH_SIZE`]; at least 1). Small batches keep each
    /// write transaction short, so requests are not kept waiting.
    #[must_use]
    pub fn with_cleanup_batch_size(self, batch_size: u32) -> Self {
        Self { table: Arc::new(Table::new(self.table.name.clone(), batch_size.max(1))), ..self }
    }

    /// Creates the table and its indexes if they do not exist. Idempotent.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] if the database refuses (read-only file, busy for
    /// longer than the busy timeout).
    pub async fn migrate(&self) -> Result<(), Error> {
        // Each statement is atomic and idempotent on its own.
        sqlx::raw_sql(self.table.migrate.clone()).execute(&self.pool).await.map_err(backend)?;
        Ok(())
    }

    /// The pool this store uses.
    #[must_use]
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The statements shared with the other SQL store, for
    /// `impl_session_store!`.
    fn sessions(&self) -> &SessionTable<Sqlite> {
        &self.table.sessions
    }

    /// The table name, as given (unquoted).
    #[must_use]
    pub fn table_name(&self) -> String {
        self.table.name.to_string()
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("file", &self.pool.connect_options().get_filename())
            .field("table", &self.table.name)
            .finish_non_exhaustive()
    }
}

session_stores_sql::impl_session_store!(SqliteStore);

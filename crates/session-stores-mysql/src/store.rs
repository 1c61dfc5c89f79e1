//! [`MySqlStore`]: construction, migration and the
//! [`SessionStore`](session_core::SessionStore) impl.

use std::fmt;
use std::sync::Arc;

use session_core::{Error, LocalLocks, StorageKey};
use session_stores_sql::{
    DEFAULT_CLEANUP_BATCH_SIZE, InvalidTableName, SessionTable, trusted_sql, update_statement,
};
use sqlx::{MySqlPool, SqlStr};

use crate::driver::MySql;
use crate::error::backend;
use crate::table::TableName;

/// Sessions in a MySQL or MariaDB table, with session locks across
/// processes (`GET_LOCK`).
///
/// Cloning is cheap and clones share the pool. Create the table once with
/// [`migrate`](Self::migrate) (idempotent; safe to run at every start).
///
/// # The table
///
/// | column              | type                            | meaning                                        |
/// |---------------------|---------------------------------|------------------------------------------------|
/// | `session_key`       | `BINARY(32)` primary key        | SHA-256 of the session id (never the id)       |
/// | `data`              | `LONGTEXT` (utf8mb4)            | the session dict as JSON                       |
/// | `created_at`        | `BIGINT`                        | Unix seconds                                   |
/// | `last_seen`         | `BIGINT`                        | Unix seconds                                   |
/// | `idle_deadline`     | `BIGINT`                        | Unix seconds                                   |
/// | `absolute_deadline` | `BIGINT NULL`                   | Unix seconds; `NULL`: no absolute limit        |
/// | `expires_at`        | `BIGINT`, generated             | the earlier deadline; indexed for cleanup      |
/// | `expiry`            | `TEXT NULL` (utf8mb4)           | per-session expiry override as JSON            |
/// | `user_id`           | `LONGBLOB NULL`, indexed        | owner, for `list_for_user` / `delete_for_user` |
/// | `version`           | `BIGINT`                        | bumped on every save                           |
///
/// The table is InnoDB, with `utf8mb4_bin` text. User ids are bytes
/// (`LONGBLOB`): they hold any string (a NUL included) and compare byte for
/// byte, where a text collation would take `"a"`, `"A"` and `"a "` for one
/// user; long enough that no id is cut short to fit. Data is JSON in
/// `LONGTEXT` rather than MySQL's `JSON` type, so a corrupt value stays
/// readable, to be reported rather than fail the query.
///
/// # Locks and the pool
///
/// [`lock`](session_core::LockingStore::lock) holds a `GET_LOCK` on a
/// pooled connection for as long as the guard lives, so size the pool for
/// the number of sessions locked at once plus the connections other requests
/// need; a locked read-modify-write needs no second connection. The pool's
/// acquire timeout bounds every operation: with the pool exhausted, calls
/// fail with [`Error::Backend`] after that timeout (a lock whose wait ends
/// first, with [`Error::LockTimeout`]). See the crate docs for proxies.
///
/// ```rust,no_run
/// use session_stores_mysql::{MySqlPool, MySqlStore};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = MySqlPool::connect("mysql://app@localhost/app").await?;
/// let store = MySqlStore::new(pool).with_table_name("app.sessions")?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MySqlStore {
    pub(crate) pool: MySqlPool,
    pub(crate) table: Arc<Table>,
    /// The queue of this store's waiters per session, in front of the
    /// server's lock.
    pub(crate) queue: Arc<LocalLocks>,
}

/// A table name with the statements that use it, built once.
pub(crate) struct Table {
    pub(crate) name: TableName,
    migrate: SqlStr,
    /// The statements MySQL shares with PostgreSQL and SQLite.
    pub(crate) sessions: SessionTable<MySql>,
    /// The save under a lock: the shared `UPDATE`, writing only while the
    /// connection that runs it holds the session's lock (bound after the
    /// key: the lock's name).
    pub(crate) fenced_save: SqlStr,
}

impl Table {
    fn new(name: TableName, batch_size: u32) -> Self {
        let t = name.quoted();
        // `expires_at`: MySQL's `LEAST` is NULL if any argument is.
        // `user_id(255)`: a BLOB is indexed by a prefix; lookups compare the
        // whole value.
        let migrate = format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                session_key BINARY(32) NOT NULL,
                data LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
                created_at BIGINT NOT NULL,
                last_seen BIGINT NOT NULL,
                idle_deadline BIGINT NOT NULL,
                absolute_deadline BIGINT NULL,
                expires_at BIGINT AS
                    (LEAST(idle_deadline, COALESCE(absolute_deadline, idle_deadline))) STORED,
                expiry TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
                user_id LONGBLOB NULL,
                version BIGINT NOT NULL,
                PRIMARY KEY (session_key),
                KEY expires_at_idx (expires_at),
                KEY user_id_idx (user_id(255))
            ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin"
        );
        Self {
            migrate: trusted_sql(migrate),
            sessions: SessionTable::new(&t, &name, batch_size),
            fenced_save: trusted_sql(update_statement::<MySql>(
                &t,
                "IS_USED_LOCK(?) = CONNECTION_ID()",
            )),
            name,
        }
    }
}

impl MySqlStore {
    /// A store on `pool`, using the table
    /// [`DEFAULT_TABLE_NAME`](crate::DEFAULT_TABLE_NAME). Call
    /// [`migrate`](Self::migrate) before first use.
    #[must_use]
    pub fn new(pool: MySqlPool) -> Self {
        Self {
            pool,
            table: Arc::new(Table::new(TableName::default(), DEFAULT_CLEANUP_BATCH_SIZE)),
            queue: Arc::default(),
        }
    }

    /// Uses the table `name`: one identifier or `database.table`, each part
    /// matching `[A-Za-z_][A-Za-z0-9_]{0,62}`. The name is quoted in SQL;
    /// whether it is case-sensitive is the server's
    /// `lower_case_table_names`. The database must exist;
    /// [`migrate`](Self::migrate) creates only the table.
    ///
    /// # Errors
    ///
    /// [`InvalidTableName`] for anything else (empty, too long, quotes,
    /// spaces, punctuation).
    ///
    /// ```
    /// # async fn demo(pool: session_stores_mysql::MySqlPool) {
    /// use session_stores_mysql::MySqlStore;
    ///
    /// assert!(MySqlStore::new(pool.clone()).with_table_name("auth.sessions").is_ok());
    /// let err = MySqlStore::new(pool).with_table_name("sessions; --").unwrap_err();
    /// assert!(err.to_string().contains("invalid table name"));
    /// # }
    /// ```
    pub fn with_table_name(self, name: &str) -> Result<Self, InvalidTableName> {
        let name = TableName::parse(name)?;
        Ok(Self { table: Arc::new(Table::new(name, self.table.sessions.batch_size())), ..self })
    }

    /// Sets how many rows one cleanup statement deletes at most (default
    /// [`DEFAULT_CLEANUP_BATCH_SIZE`]; at least 1). Small batches keep each
    /// statement's row locks short on a busy table.
    #[must_use]
    pub fn with_cleanup_batch_size(self, batch_size: u32) -> Self {
        Self { table: Arc::new(Table::new(self.table.name.clone(), batch_size.max(1))), ..self }
    }

    /// Creates the table and its indexes if they do not exist: one
    /// `CREATE TABLE IF NOT EXISTS`, so it is idempotent and safe to run from
    /// several processes at once.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] if the server refuses (no such database, no
    /// privilege, connection failure).
    pub async fn migrate(&self) -> Result<(), Error> {
        sqlx::raw_sql(self.table.migrate.clone()).execute(&self.pool).await.map_err(backend)?;
        Ok(())
    }

    /// The pool this store uses.
    #[must_use]
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// The table name, as given (unquoted).
    #[must_use]
    pub fn table_name(&self) -> String {
        self.table.name.to_string()
    }

    /// The `GET_LOCK` name of the session stored under `key`, for operators
    /// and tests: `SELECT IS_USED_LOCK(name)` gives the id of the connection
    /// holding it (`NULL` when free), for `SHOW PROCESSLIST` or `KILL`.
    ///
    /// ```
    /// # async fn demo(pool: session_stores_mysql::MySqlPool) {
    /// use session_core::SessionId;
    /// use session_stores_mysql::MySqlStore;
    ///
    /// let store = MySqlStore::new(pool);
    /// let name = store.lock_name(&SessionId::random().storage_key());
    /// assert!(name.starts_with("session_") && name.len() <= 64);
    /// # }
    /// ```
    #[must_use]
    pub fn lock_name(&self, key: &StorageKey) -> String {
        self.table.name.lock_name(key).0
    }

    /// The statements shared with the other SQL stores, for
    /// `impl_session_store!`.
    fn sessions(&self) -> &SessionTable<MySql> {
        &self.table.sessions
    }
}

impl fmt::Debug for MySqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MySqlStore")
            .field("table", &self.table.name)
            .field("pool_size", &self.pool.size())
            .finish_non_exhaustive()
    }
}

session_stores_sql::impl_session_store!(MySqlStore);

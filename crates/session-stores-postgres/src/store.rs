//! [`PostgresStore`]: construction, migration and the [`SessionStore`] impl.

use std::fmt;
use std::sync::Arc;

use session_core::{Error, LocalLocks, Record, SessionStore, StorageKey, Timestamp, async_trait};
use session_stores_sql::{DEFAULT_CLEANUP_BATCH_SIZE, InvalidTableName, SessionTable, trusted_sql};
use sqlx::{PgPool, SqlStr};

use crate::LockMode;
use crate::driver::Pg;
use crate::error::backend;
use crate::lease::LeaseStatements;
use crate::table::TableName;

/// Sessions in a PostgreSQL table, with advisory locks or (behind PgBouncer)
/// lease locks.
///
/// Cloning is cheap and clones share the pool. Create the table once with
/// [`migrate`](Self::migrate) (idempotent; safe to run at every start).
///
/// # The table
///
/// | column              | type                  | meaning                                        |
/// |---------------------|-----------------------|------------------------------------------------|
/// | `session_key`       | `BYTEA` primary key   | SHA-256 of the session id (never the id)       |
/// | `data`              | `TEXT`                | the session dict as JSON                       |
/// | `created_at`        | `BIGINT`              | Unix seconds                                   |
/// | `last_seen`         | `BIGINT`              | Unix seconds                                   |
/// | `idle_deadline`     | `BIGINT`              | Unix seconds                                   |
/// | `absolute_deadline` | `BIGINT NULL`         | Unix seconds; `NULL`: no absolute limit        |
/// | `expires_at`        | `BIGINT`, generated   | the earlier deadline; indexed for cleanup      |
/// | `expiry`            | `TEXT NULL`           | per-session expiry override as JSON            |
/// | `user_id`           | `TEXT NULL`, indexed  | owner, for `list_for_user` / `delete_for_user` |
/// | `version`           | `BIGINT`              | bumped on every save                           |
///
/// Data is JSON in a `TEXT` column rather than `JSONB`: `JSONB` refuses
/// strings containing `\u0000` that JSON (and session data) allow, and a
/// corrupt value must be readable to be reported rather than fail the query.
///
/// [`LockMode::Lease`] also uses `<table>_leases` (`session_key BYTEA`
/// primary key, `token BYTEA`, `lease_until TIMESTAMPTZ`), one row per
/// locked session; `migrate` creates it in either mode.
///
/// # Locks and the pool
///
/// In the default [`LockMode::Advisory`],
/// [`lock`](session_core::LockingStore::lock) holds a session-level advisory
/// lock on a pooled connection for as long as the guard lives, so size the
/// pool for the number of sessions locked at once plus the connections other
/// requests need. In [`LockMode::Lease`] a held lock takes no connection.
/// The pool's acquire timeout bounds every operation: with the pool
/// exhausted, calls fail with [`Error::Backend`] after that timeout.
///
/// # PgBouncer
///
/// Behind PgBouncer in transaction pooling mode, use
/// [`with_lock_mode(LockMode::Lease)`](Self::with_lock_mode): see
/// [`LockMode`] for what it changes and what the pool needs. In that mode
/// every statement of the store is a simple query, so it is safe through
/// PgBouncer; queries of your own on the same pool are not made so. sqlx
/// prepares every query with parameters, and neither of its ways is safe
/// under transaction pooling without an explicit transaction: named
/// statements (the default, and still with `statement_cache_capacity(0)`)
/// stay on one server connection, and unnamed ones (`.persistent(false)`)
/// are prepared and executed in two round trips that PgBouncer may send to
/// two server connections, running another client's statement. Run such
/// queries with `.persistent(false)` inside a transaction (`pool.begin()`),
/// which keeps one server connection until it ends, or with
/// `sqlx::raw_sql` and no parameters.
///
/// ```rust,no_run
/// use session_stores_postgres::{PgPool, PostgresStore};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = PgPool::connect("postgres://postgres@localhost/app").await?;
/// let store = PostgresStore::new(pool).with_table_name("app.sessions")?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pub(crate) pool: PgPool,
    pub(crate) table: Arc<Table>,
    pub(crate) mode: LockMode,
    /// The queue of this store's waiters per session, in front of the
    /// database's lock.
    pub(crate) queue: Arc<LocalLocks>,
}

/// A table name with the statements that use it, built once.
pub(crate) struct Table {
    pub(crate) name: TableName,
    migrate: SqlStr,
    user_id_type: SqlStr,
    user_id_to_bytea: SqlStr,
    routines: SqlStr,
    /// The statements PostgreSQL shares with SQLite.
    pub(crate) sessions: SessionTable<Pg>,
    /// `CALL` of the procedure that takes the lock and loads (see `lock.rs`).
    pub(crate) lock_and_load: SqlStr,
    /// `CALL` of the procedure that saves, commits and unlocks.
    pub(crate) save_and_unlock: SqlStr,
    /// The statements of [`LockMode::Lease`] (see `lease.rs`).
    pub(crate) lease: LeaseStatements,
}

impl Table {
    fn new(name: TableName, batch_size: u32) -> Self {
        let t = name.quoted();
        let lock_and_load = name.routine("lock_and_load");
        let save_and_unlock = name.routine("save_and_unlock");
        let lease = LeaseStatements::new(&name);
        let migrate = format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                session_key BYTEA PRIMARY KEY,
                data TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                last_seen BIGINT NOT NULL,
                idle_deadline BIGINT NOT NULL,
                absolute_deadline BIGINT,
                expires_at BIGINT GENERATED ALWAYS AS (LEAST(idle_deadline, absolute_deadline)) STORED,
                expiry TEXT,
                user_id BYTEA,
                version BIGINT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS {expires_idx} ON {t} (expires_at);
            CREATE INDEX IF NOT EXISTS {user_idx} ON {t} (user_id) WHERE user_id IS NOT NULL;
            CREATE TABLE IF NOT EXISTS {leases} (
                session_key BYTEA PRIMARY KEY,
                token BYTEA NOT NULL,
                lease_until TIMESTAMPTZ NOT NULL
            );",
            expires_idx = name.derived("expires_at_idx"),
            user_idx = name.derived("user_id_idx"),
            leases = lease.leases,
        );
        // The two halves of a locked read-modify-write, one round trip each.
        // Procedures (not functions) because they can COMMIT between
        // statements: the read after taking the lock runs in a transaction
        // that starts after the lock was taken, and the write commits before
        // the unlock, so the next holder always reads it (at any isolation
        // level). Values stay bound parameters, and the plans are cached.
        let routines = format!(
            "CREATE OR REPLACE PROCEDURE {lock_and_load}(
                p_key BYTEA, p_lock_id BIGINT, p_now BIGINT,
                INOUT o_locked BOOLEAN DEFAULT NULL, INOUT o_found BOOLEAN DEFAULT NULL,
                INOUT o_data TEXT DEFAULT NULL, INOUT o_created_at BIGINT DEFAULT NULL,
                INOUT o_last_seen BIGINT DEFAULT NULL, INOUT o_idle_deadline BIGINT DEFAULT NULL,
                INOUT o_absolute_deadline BIGINT DEFAULT NULL, INOUT o_expiry TEXT DEFAULT NULL,
                INOUT o_user_id BYTEA DEFAULT NULL, INOUT o_version BIGINT DEFAULT NULL)
            LANGUAGE plpgsql AS $proc$
            BEGIN
                o_locked := pg_try_advisory_lock(p_lock_id);
                IF NOT o_locked THEN
                    RETURN;
                END IF;
                COMMIT;
                SELECT s.data, s.created_at, s.last_seen, s.idle_deadline, s.absolute_deadline,
                       s.expiry, s.user_id, s.version
                  INTO o_data, o_created_at, o_last_seen, o_idle_deadline, o_absolute_deadline,
                       o_expiry, o_user_id, o_version
                  FROM {t} AS s
                 WHERE s.session_key = p_key AND s.expires_at > p_now;
                o_found := FOUND;
            END
            $proc$;
            CREATE OR REPLACE PROCEDURE {save_and_unlock}(
                p_key BYTEA, p_data TEXT, p_last_seen BIGINT, p_idle_deadline BIGINT,
                p_absolute_deadline BIGINT, p_expiry TEXT, p_user_id BYTEA, p_version BIGINT,
                p_lock_id BIGINT,
                INOUT o_saved BOOLEAN DEFAULT NULL, INOUT o_unlocked BOOLEAN DEFAULT NULL)
            LANGUAGE plpgsql AS $proc$
            BEGIN
                UPDATE {t} AS s
                   SET data = p_data, last_seen = p_last_seen, idle_deadline = p_idle_deadline,
                       absolute_deadline = p_absolute_deadline, expiry = p_expiry,
                       user_id = p_user_id, version = p_version
                 WHERE s.session_key = p_key;
                o_saved := FOUND;
                COMMIT;
                o_unlocked := pg_advisory_unlock(p_lock_id);
            END
            $proc$;"
        );
        Self {
            migrate: trusted_sql(migrate),
            user_id_type: trusted_sql(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
                 WHERE attrelid = to_regclass($1) AND attname = 'user_id' AND NOT attisdropped"
                    .to_owned(),
            ),
            // Tables made before user ids became bytes (TEXT cannot hold NUL).
            user_id_to_bytea: trusted_sql(format!(
                "ALTER TABLE {t} ALTER COLUMN user_id TYPE BYTEA USING convert_to(user_id, 'UTF8')"
            )),
            routines: trusted_sql(routines),
            sessions: SessionTable::new(&t, &name, batch_size),
            lock_and_load: trusted_sql(format!("CALL {lock_and_load}($1, $2, $3)")),
            save_and_unlock: trusted_sql(format!(
                "CALL {save_and_unlock}($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            )),
            lease,
            name,
        }
    }
}

impl PostgresStore {
    /// A store on `pool`, using the table
    /// [`DEFAULT_TABLE_NAME`](crate::DEFAULT_TABLE_NAME). Call
    /// [`migrate`](Self::migrate) before first use.
    #[must_use]
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            table: Arc::new(Table::new(TableName::default(), DEFAULT_CLEANUP_BATCH_SIZE)),
            mode: LockMode::Advisory,
            queue: Arc::default(),
        }
    }

    /// Uses the table `name`: one identifier or `schema.table`, each part
    /// matching `[A-Za-z_][A-Za-z0-9_]{0,62}`. The name is quoted in SQL, so it
    /// is case-sensitive. The schema must exist; [`migrate`](Self::migrate)
    /// creates only the table and its indexes.
    ///
    /// # Errors
    ///
    /// [`InvalidTableName`] for anything else (empty, too long, quotes,
    /// spaces, punctuation).
    ///
    /// ```
    /// # async fn demo(pool: session_stores_postgres::PgPool) {
    /// use session_stores_postgres::PostgresStore;
    ///
    /// assert!(PostgresStore::new(pool.clone()).with_table_name("auth.sessions").is_ok());
    /// let err = PostgresStore::new(pool).with_table_name("sessions; --").unwrap_err();
    /// assert!(err.to_string().contains("invalid table name"));
    /// # }
    /// ```
    pub fn with_table_name(self, name: &str) -> Result<Self, InvalidTableName> {
        let name = TableName::parse(name)?;
        Ok(Self { table: Arc::new(Table::new(name, self.table.sessions.batch_size())), ..self })
    }

    /// Sets how many rows one cleanup statement deletes at most (default
    /// [`DEFAULT_CLEANUP_BATCH_SIZE`]; at least 1). Small batches keep each
    /// statement's locks short on a busy table.
    #[must_use]
    pub fn with_cleanup_batch_size(self, batch_size: u32) -> Self {
        Self { table: Arc::new(Table::new(self.table.name.clone(), batch_size.max(1))), ..self }
    }

    /// Sets how sessions are locked: [`LockMode::Advisory`] (the default)
    /// for a direct connection, [`LockMode::Lease`] behind PgBouncer in
    /// transaction pooling mode. See [`LockMode`] for when to use which;
    /// every process sharing the table must use the same mode.
    ///
    /// [`LockMode::Lease`] also turns off sqlx's `extra_float_digits`
    /// startup parameter, which PgBouncer refuses, in the pool's options for
    /// the connections it opens from now on (this store's statements read no
    /// floating-point values; queries of yours that do, in text format, get
    /// the server's default precision, exact since PostgreSQL 12).
    ///
    /// ```
    /// use session_stores_postgres::{LockMode, PgPoolOptions, PostgresStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = PgPoolOptions::new().connect_lazy("postgres://app@127.0.0.1:6432/app")?;
    /// let store = PostgresStore::new(pool).with_lock_mode(LockMode::Lease);
    /// assert_eq!(store.lock_mode(), LockMode::Lease);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_lock_mode(self, mode: LockMode) -> Self {
        if mode == LockMode::Lease {
            let options = (*self.pool.connect_options()).clone();
            self.pool.set_connect_options(options.extra_float_digits(None));
        }
        Self { mode, ..self }
    }

    /// How this store locks sessions (see [`with_lock_mode`](Self::with_lock_mode)).
    #[must_use]
    pub fn lock_mode(&self) -> LockMode {
        self.mode
    }

    /// Creates the table, its indexes and the lease table of
    /// [`LockMode::Lease`] if they do not exist. Idempotent, and safe to run
    /// from several processes at once (it takes a transaction-scoped advisory
    /// lock) and through PgBouncer's transaction pooling (it runs in one
    /// transaction, with unnamed statements only).
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] if the database refuses (no such schema, no
    /// privilege, connection failure).
    pub async fn migrate(&self) -> Result<(), Error> {
        // Unnamed statements (`persistent(false)`), so nothing stays behind on
        // a server connection that PgBouncer hands to other clients; inside
        // the transaction, which keeps one server connection, they are safe
        // (see the `PgBouncer` section above).
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .persistent(false)
            .bind(self.table.name.lock_id())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::raw_sql(self.table.migrate.clone()).execute(&mut *tx).await.map_err(backend)?;
        let user_id_type: Option<String> = sqlx::query_scalar(self.table.user_id_type.clone())
            .persistent(false)
            .bind(self.table.name.quoted())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        if user_id_type.as_deref() == Some("text") {
            sqlx::query(self.table.user_id_to_bytea.clone())
                .persistent(false)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        sqlx::raw_sql(self.table.routines.clone()).execute(&mut *tx).await.map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    /// The pool this store uses.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The table name, as given (unquoted).
    #[must_use]
    pub fn table_name(&self) -> String {
        self.table.name.to_string()
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.table.name)
            .field("lock_mode", &self.mode)
            .field("pool_size", &self.pool.size())
            .finish_non_exhaustive()
    }
}

/// In [`LockMode::Advisory`] the statements shared with the SQLite store, on
/// the pool (prepared and cached by sqlx); in [`LockMode::Lease`] the same
/// SQL as simple queries (see `lease.rs`).
#[async_trait]
impl SessionStore for PostgresStore {
    async fn create(&self, record: &Record) -> Result<(), Error> {
        match self.mode {
            LockMode::Advisory => self.sessions().create(&self.pool, record).await,
            LockMode::Lease => self.lease_create(record).await,
        }
    }

    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, Error> {
        match self.mode {
            LockMode::Advisory => self.sessions().load(&self.pool, key, now).await,
            LockMode::Lease => self.lease_load(key, now).await,
        }
    }

    async fn save(&self, record: &Record) -> Result<(), Error> {
        match self.mode {
            LockMode::Advisory => self.sessions().save(&self.pool, record).await,
            LockMode::Lease => self.lease_save(record).await,
        }
    }

    async fn delete(&self, key: &StorageKey) -> Result<(), Error> {
        match self.mode {
            LockMode::Advisory => self.sessions().delete(&self.pool, key).await,
            LockMode::Lease => self.lease_delete(key).await,
        }
    }

    async fn touch(&self, record: &Record) -> Result<(), Error> {
        match self.mode {
            LockMode::Advisory => self.sessions().touch(&self.pool, record).await,
            LockMode::Lease => self.lease_touch(record).await,
        }
    }

    async fn delete_expired(&self, now: Timestamp) -> Result<u64, Error> {
        match self.mode {
            LockMode::Advisory => self.sessions().delete_expired(&self.pool, now).await,
            LockMode::Lease => self.lease_delete_expired(now).await,
        }
    }

    async fn list_for_user(&self, user: &str, now: Timestamp) -> Result<Vec<Record>, Error> {
        match self.mode {
            LockMode::Advisory => self.sessions().list_for_user(&self.pool, user, now).await,
            LockMode::Lease => self.lease_list_for_user(user, now).await,
        }
    }

    async fn delete_for_user(&self, user: &str) -> Result<u64, Error> {
        match self.mode {
            LockMode::Advisory => self.sessions().delete_for_user(&self.pool, user).await,
            LockMode::Lease => self.lease_delete_for_user(user).await,
        }
    }
}

impl PostgresStore {
    /// The statements shared with the other SQL store.
    fn sessions(&self) -> &SessionTable<Pg> {
        &self.table.sessions
    }
}

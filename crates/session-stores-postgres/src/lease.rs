//! [`LockMode::Lease`](crate::LockMode::Lease): session locks as lease rows,
//! and every statement of the store in a form PgBouncer's transaction
//! pooling keeps intact.
//!
//! A lock is a row of `<table>_leases`: the session's storage key, a random
//! token only its holder knows, and the time its lease ends, on the
//! database's clock (so holders on machines whose clocks disagree still
//! agree on when a lease ended). Taking it is one `INSERT ... ON CONFLICT DO
//! UPDATE ... WHERE <the lease ended>`; the save under it deletes the row by
//! token and updates the session in the same statement, and only if the
//! delete found the token; releasing deletes the row by token. No statement
//! relies on anything the server connection kept from an earlier one, so
//! PgBouncer may hand each to another server connection.
//!
//! Every statement goes out with the simple query protocol, one round trip,
//! values written in as literals (see `inline.rs` for why, and why that is
//! safe). Results then come back as text, which sqlx decodes like binary
//! ones; `bytea_output` is set to `hex` for the transaction of each read,
//! which is what sqlx's text decoding of `BYTEA` expects.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use session_core::{
    BackgroundRelease, Backoff, Error, FencedRelease, Handover, HeldLock, LocalTurn, LockGuard,
    LockOptions, Record, ReleaseOnDrop, StorageKey, Timestamp, async_trait, release_until_done,
    spawn_release,
};
use session_stores_sql::{COLUMNS, Encoded, RECORD_COLUMNS, UPDATED_COLUMNS, Write};
use sqlx::postgres::PgRow;
use sqlx::{Row, SqlStr};
use tokio::task::JoinHandle;

use crate::PostgresStore;
use crate::error::{PgStoreError, STORE, backend};
use crate::inline::{Template, Value};
use crate::lock::{FIRST_BACKOFF, MAX_BACKOFF};
use crate::table::TableName;

/// The longest lease written to the database: 100 years, far inside what a
/// `timestamptz` plus an `interval` can hold, so any [`LockOptions::lease`]
/// works.
const MAX_LEASE_MS: i64 = 100 * 365 * 24 * 3600 * 1000;

/// Run before a read in the same implicit transaction: sqlx decodes a
/// text-format `BYTEA` only in the `hex` format, the default that a server
/// or role may have changed. `SET LOCAL` ends with the transaction, so
/// nothing is left on the server connection.
const HEX_BYTEA: &str = "SET LOCAL bytea_output = 'hex'; ";

/// Run first in the implicit transaction of every lock statement: they rely
/// on READ COMMITTED, whatever the server's or role's default. A row lock
/// that waited for another transaction then re-reads the row it committed
/// (REPEATABLE READ would fail with a serialization error instead), and
/// each statement reads from a snapshot taken when it starts (see
/// `lock_and_load`). It ends with the transaction, like `SET LOCAL`.
const READ_COMMITTED: &str = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; ";

/// The lease-mode statements on one table, built once.
pub(crate) struct LeaseStatements {
    /// The quoted lease table, for `migrate`.
    pub(crate) leases: String,
    create: Template<9>,
    load: Template<2>,
    save: Template<8>,
    delete: Template<1>,
    touch: Template<3>,
    delete_expired: Template<2>,
    delete_ended_leases: Template<1>,
    list_for_user: Template<2>,
    delete_for_user: Template<1>,
    lock: Template<3>,
    lock_and_load: Template<4>,
    save_and_release: Template<9>,
    save_under_lock: Template<9>,
    release: Template<2>,
    renew: Template<3>,
}

impl LeaseStatements {
    pub(crate) fn new(name: &TableName) -> Self {
        let t = name.quoted();
        let l = name.qualified("leases");
        // `session_key` is $1, the updated columns follow in order, as in the
        // shared statements.
        let set: Vec<String> =
            UPDATED_COLUMNS.iter().zip(2..).map(|(column, n)| format!("{column} = ${n}")).collect();
        let set = set.join(", ");
        let values: Vec<String> = (1..=9).map(|n| format!("${n}")).collect();
        let values = values.join(", ");
        let lease_until = "statement_timestamp() + $3 * interval '1 millisecond'";
        // Taken when free, or when its lease ended (the row of a holder that
        // crashed or paused for longer than the lease).
        let take = format!(
            "INSERT INTO {l} AS l (session_key, token, lease_until) VALUES ($1, $2, {lease_until}) \
             ON CONFLICT (session_key) DO UPDATE \
             SET token = EXCLUDED.token, lease_until = EXCLUDED.lease_until \
             WHERE l.lease_until <= statement_timestamp()"
        );
        let record: Vec<String> = RECORD_COLUMNS.split(", ").map(|c| format!("s.{c}")).collect();
        let record = record.join(", ");
        Self {
            create: Template::new(&format!(
                "INSERT INTO {t} ({COLUMNS}) VALUES ({values}) ON CONFLICT (session_key) DO NOTHING"
            )),
            load: Template::new(&format!(
                "{HEX_BYTEA}SELECT {RECORD_COLUMNS} FROM {t} WHERE session_key = $1 AND expires_at > $2"
            )),
            save: Template::new(&format!("UPDATE {t} SET {set} WHERE session_key = $1")),
            delete: Template::new(&format!("DELETE FROM {t} WHERE session_key = $1")),
            touch: Template::new(&format!(
                "UPDATE {t} SET last_seen = $2, idle_deadline = $3 WHERE session_key = $1"
            )),
            delete_expired: Template::new(&format!(
                "DELETE FROM {t} WHERE session_key IN (\
                 SELECT session_key FROM {t} WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)"
            )),
            // Rows of holders that crashed (or whose release never arrived)
            // for sessions nobody locked again. Deleting an ended lease is
            // safe: a holder that still thinks it holds it finds its token
            // gone and saves nothing.
            delete_ended_leases: Template::new(&format!(
                "DELETE FROM {l} WHERE session_key IN (\
                 SELECT session_key FROM {l} WHERE lease_until <= statement_timestamp() \
                 LIMIT $1 FOR UPDATE SKIP LOCKED)"
            )),
            list_for_user: Template::new(&format!(
                "{HEX_BYTEA}SELECT {COLUMNS} FROM {t} WHERE user_id = $1 AND expires_at > $2"
            )),
            delete_for_user: Template::new(&format!("DELETE FROM {t} WHERE user_id = $1")),
            lock: Template::new(&format!("{READ_COMMITTED}{take}")),
            // Take the lease, then read the session, in one message. The read
            // must see the last holder's save: that holder deleted its lease
            // in the same transaction as its save, and our `INSERT` waited
            // for that transaction if it was still running. Under READ
            // COMMITTED each statement reads from a snapshot taken when it
            // starts, so the `SELECT`, which starts after the `INSERT`
            // returned, sees that commit (a REPEATABLE READ snapshot would be
            // taken before the wait, hence `READ_COMMITTED`).
            lock_and_load: Template::new(&format!(
                "{READ_COMMITTED}{HEX_BYTEA}{take}; \
                 SELECT l.session_key IS NOT NULL, s.session_key IS NOT NULL, {record} \
                 FROM (SELECT 1) AS one \
                 LEFT JOIN {l} AS l ON l.session_key = $1 AND l.token = $2 \
                 LEFT JOIN {t} AS s ON l.session_key IS NOT NULL \
                 AND s.session_key = $1 AND s.expires_at > $4"
            )),
            // Fenced: the update joins the deleted lease row, so it writes
            // only if this holder's token was still there. A holder whose
            // lease ended and was taken over finds another token and writes
            // nothing. Both in one statement, one transaction: the next
            // holder cannot take the lease between the check and the write.
            save_and_release: Template::new(&format!(
                "{READ_COMMITTED}WITH released AS (\
                 DELETE FROM {l} WHERE session_key = $1 AND token = $9 RETURNING session_key), \
                 saved AS (\
                 UPDATE {t} AS s SET {set} FROM released \
                 WHERE s.session_key = released.session_key RETURNING 1) \
                 SELECT EXISTS (SELECT 1 FROM released), EXISTS (SELECT 1 FROM saved)"
            )),
            // Fenced as above, keeping the lease: `FOR UPDATE` holds the
            // lease row until the update commits, so the next holder cannot
            // take it over in between.
            save_under_lock: Template::new(&format!(
                "{READ_COMMITTED}WITH held AS (\
                 SELECT session_key FROM {l} WHERE session_key = $1 AND token = $9 FOR UPDATE), \
                 saved AS (\
                 UPDATE {t} AS s SET {set} FROM held \
                 WHERE s.session_key = held.session_key RETURNING 1) \
                 SELECT EXISTS (SELECT 1 FROM held), EXISTS (SELECT 1 FROM saved)"
            )),
            release: Template::new(&format!(
                "{READ_COMMITTED}DELETE FROM {l} WHERE session_key = $1 AND token = $2"
            )),
            renew: Template::new(&format!(
                "{READ_COMMITTED}UPDATE {l} SET lease_until = {lease_until} WHERE session_key = $1 AND token = $2"
            )),
            leases: l,
        }
    }
}

/// A record's columns as [`LeaseStatements::create`] takes them, in
/// [`COLUMNS`] order.
fn insert_values<'a>(row: &'a Encoded<'a>) -> [Value<'a>; 9] {
    [
        Value::Bytes(row.key),
        Value::Text(&row.data),
        Value::Int(row.created_at),
        Value::Int(row.last_seen),
        Value::Int(row.idle_deadline),
        Value::int(row.absolute_deadline),
        Value::text(row.expiry.as_deref()),
        // User ids are bytes (TEXT cannot hold NUL), as in `Driver::USER_IDS`.
        Value::bytes(row.user.map(str::as_bytes)),
        Value::Int(row.version),
    ]
}

/// `session_key`, then [`UPDATED_COLUMNS`], as the updates take them.
fn update_values<'a>(row: &'a Encoded<'a>) -> [Value<'a>; 8] {
    let [key, data, _created_at, last_seen, idle, absolute, expiry, user, version] =
        insert_values(row);
    [key, data, last_seen, idle, absolute, expiry, user, version]
}

fn lease_millis(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(MAX_LEASE_MS).clamp(1, MAX_LEASE_MS)
}

/// 128 bits from the OS CSPRNG: a token no other holder has (and no one can
/// guess, though anyone able to use it could write to the table anyway).
fn new_token() -> Result<[u8; 16], PgStoreError> {
    let mut token = [0u8; 16];
    getrandom::fill(&mut token).map_err(PgStoreError::Random)?;
    Ok(token)
}

// The SessionStore operations in lease mode: the shared statements' SQL, sent
// as simple queries.
impl PostgresStore {
    async fn run(&self, sql: SqlStr) -> Result<u64, Error> {
        let done = sqlx::raw_sql(sql).execute(&self.pool).await.map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn rows(&self, sql: SqlStr) -> Result<Vec<PgRow>, Error> {
        sqlx::raw_sql(sql).fetch_all(&self.pool).await.map_err(backend)
    }

    pub(crate) async fn lease_create(&self, record: &Record) -> Result<(), Error> {
        let row = Encoded::new(record)?;
        let inserted = self.run(self.table.lease.create.fill(insert_values(&row))).await?;
        Write::Insert.outcome(inserted)
    }

    pub(crate) async fn lease_load(
        &self,
        key: &StorageKey,
        now: Timestamp,
    ) -> Result<Option<Record>, Error> {
        let sql = self
            .table
            .lease
            .load
            .fill([Value::Bytes(key.as_bytes()), Value::Int(now.unix_seconds())]);
        match self.rows(sql).await?.first() {
            Some(row) => self.table.sessions.decode(row, 0, Some(*key)),
            None => Ok(None),
        }
    }

    pub(crate) async fn lease_save(&self, record: &Record) -> Result<(), Error> {
        let row = Encoded::new(record)?;
        let updated = self.run(self.table.lease.save.fill(update_values(&row))).await?;
        Write::Update.outcome(updated)
    }

    pub(crate) async fn lease_delete(&self, key: &StorageKey) -> Result<(), Error> {
        self.run(self.table.lease.delete.fill([Value::Bytes(key.as_bytes())])).await?;
        Ok(())
    }

    pub(crate) async fn lease_touch(&self, record: &Record) -> Result<(), Error> {
        let sql = self.table.lease.touch.fill([
            Value::Bytes(record.key.as_bytes()),
            Value::Int(record.last_seen.unix_seconds()),
            Value::Int(record.idle_deadline.unix_seconds()),
        ]);
        Write::Update.outcome(self.run(sql).await?)
    }

    /// Expired sessions in batches, as in advisory mode, then the ended
    /// leases of sessions nobody locked again (which are not counted).
    pub(crate) async fn lease_delete_expired(&self, now: Timestamp) -> Result<u64, Error> {
        let batch = i64::from(self.table.sessions.batch_size());
        let mut total = 0;
        loop {
            let sql = self
                .table
                .lease
                .delete_expired
                .fill([Value::Int(now.unix_seconds()), Value::Int(batch)]);
            let deleted = self.run(sql).await?;
            total += deleted;
            // A short batch means nothing expired is left.
            if deleted < batch.unsigned_abs() {
                break;
            }
        }
        loop {
            let deleted =
                self.run(self.table.lease.delete_ended_leases.fill([Value::Int(batch)])).await?;
            if deleted < batch.unsigned_abs() {
                return Ok(total);
            }
        }
    }

    pub(crate) async fn lease_list_for_user(
        &self,
        user: &str,
        now: Timestamp,
    ) -> Result<Vec<Record>, Error> {
        let sql = self
            .table
            .lease
            .list_for_user
            .fill([Value::Bytes(user.as_bytes()), Value::Int(now.unix_seconds())]);
        let mut records = Vec::new();
        for row in &self.rows(sql).await? {
            if let Some(record) = self.table.sessions.decode(row, 0, None)? {
                records.push(record);
            }
        }
        Ok(records)
    }

    pub(crate) async fn lease_delete_for_user(&self, user: &str) -> Result<u64, Error> {
        self.run(self.table.lease.delete_for_user.fill([Value::Bytes(user.as_bytes())])).await
    }

    /// Compare-and-delete: `true` if the lease still held `token`.
    async fn release_lease(&self, key: &StorageKey, token: &[u8; 16]) -> Result<bool, Error> {
        let sql =
            self.table.lease.release.fill([Value::Bytes(key.as_bytes()), Value::Bytes(token)]);
        Ok(self.run(sql).await? == 1)
    }
}

/// What the guard, its renewal task and `save_and_release` share.
struct LeaseState {
    store: PostgresStore,
    key: StorageKey,
    token: [u8; 16],
    lease: Duration,
    /// When the request that took the lease was sent: the lease (which the
    /// database started when the request arrived) runs from there at least.
    acquired: Instant,
    /// Milliseconds after `acquired` until which the lease surely runs.
    lease_ends_ms: AtomicU64,
    /// Renewal found the token gone, or could not renew before the lease ended.
    lost: AtomicBool,
    /// Released, or handed to the save-and-release statement.
    released: AtomicBool,
    /// The task renewing the lease, stopped when the lock is released.
    renewal: Mutex<Option<JoinHandle<()>>>,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl LeaseState {
    /// Whether the lease surely still runs. Once it has said `false`, it
    /// says so for good: a renewal answered later does not bring the lock
    /// back to a holder that may have acted on the `false`.
    fn is_held(&self) -> bool {
        if self.lost.load(Ordering::Acquire) || self.released.load(Ordering::Acquire) {
            return false;
        }
        let within = millis(self.acquired.elapsed()) < self.lease_ends_ms.load(Ordering::Acquire);
        if !within {
            self.lost.store(true, Ordering::Release);
        }
        within
    }

    fn is_renewable(&self) -> bool {
        !self.lost.load(Ordering::Acquire) && !self.released.load(Ordering::Acquire)
    }

    /// Renews the lease once: on success it runs on from when the renewal
    /// was sent; a token found gone means someone took the lease after it
    /// ended (or the cleanup deleted it), and the lock is lost; so it is
    /// when the database stays unreachable until the lease ends.
    async fn renew_once(&self) {
        // A lease that ran out here stays lost, even if a late renewal would
        // still find the token: `is_held` said `false`, and a holder may have
        // acted on that.
        if !self.is_held() {
            self.lost.store(true, Ordering::Release);
            return;
        }
        let sent = Instant::now();
        let sql = self.store.table.lease.renew.fill([
            Value::Bytes(self.key.as_bytes()),
            Value::Bytes(&self.token),
            Value::Int(lease_millis(self.lease)),
        ]);
        match self.store.run(sql).await {
            Ok(1) if !self.is_held() && !self.released.load(Ordering::Acquire) => {
                // The lease ran out while this renewal was on its way, and
                // `is_held` may have said so: it stays lost, although the
                // database took the renewal. The row is given back, so the
                // next holder need not wait a whole lease for it.
                tracing::warn!(
                    store = STORE,
                    "session lock lost: its lease ran out before a renewal was answered"
                );
                spawn_release(released_later(&self.store, &self.key, &self.token, self.lease));
            }
            Ok(1) => {
                let ends = millis(sent.duration_since(self.acquired).saturating_add(self.lease));
                self.lease_ends_ms.fetch_max(ends, Ordering::AcqRel);
            }
            Ok(_) if self.released.load(Ordering::Acquire) => {}
            Ok(_) => {
                self.lost.store(true, Ordering::Release);
                tracing::warn!(
                    store = STORE,
                    "session lock lost: its lease ended and it is gone or held by another"
                );
            }
            Err(error) if !self.is_held() => {
                self.lost.store(true, Ordering::Release);
                tracing::warn!(
                    store = STORE,
                    %error,
                    "session lock lost: could not renew its lease before it ended",
                );
            }
            Err(error) => {
                tracing::debug!(store = STORE, %error, "renewing a session lease failed; retrying");
            }
        }
    }
}

impl FencedRelease for LeaseState {
    /// Marks the lock released and stops its renewal.
    fn finish(&self) -> bool {
        let first = !self.released.swap(true, Ordering::AcqRel);
        if first
            && let Some(task) = self.renewal.lock().unwrap_or_else(PoisonError::into_inner).take()
        {
            task.abort();
        }
        first
    }
}

/// Renews `state`'s lease every third of the lease until the lock is
/// released (which aborts the task) or lost. `None` without a Tokio runtime.
///
/// One small task per held lock rather than the Redis store's shared
/// renewer: a spawn and an abort cost microseconds, next to the two round
/// trips every locked request makes anyway.
fn spawn_renewal(state: &Arc<LeaseState>) -> Option<JoinHandle<()>> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let weak = Arc::downgrade(state);
    let interval = (state.lease / 3).max(Duration::from_millis(1));
    Some(runtime.spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            // A guard that was forgotten rather than dropped keeps renewing,
            // as its holder would; one that is gone stops.
            let Some(state) = weak.upgrade() else { return };
            if !state.is_renewable() {
                return;
            }
            state.renew_once().await;
        }
    }))
}

/// The background release of a request that may have taken the lease and
/// was abandoned before its answer was read (see [`ReleaseOnDrop`]): by
/// token, so it never ends another holder's lease.
fn unsettled<'a>(
    store: &'a PostgresStore,
    key: &'a StorageKey,
    token: &'a [u8; 16],
    lease: Duration,
) -> ReleaseOnDrop<impl FnOnce() -> BackgroundRelease + 'a> {
    ReleaseOnDrop::new(move || released_later(store, key, token, lease))
}

/// Compare-and-delete in the background, tried again until it is known to
/// be done or `lease` has ended the lock anyway.
fn released_later(
    store: &PostgresStore,
    key: &StorageKey,
    token: &[u8; 16],
    lease: Duration,
) -> BackgroundRelease {
    let (store, key, token) = (store.clone(), *key, *token);
    release_until_done(lease, move || {
        let store = store.clone();
        async move { store.release_lease(&key, &token).await.map(drop) }
    })
}

/// A held lease. Users see it as a [`LockGuard`].
pub(crate) struct LeaseLock {
    state: Arc<LeaseState>,
}

#[async_trait]
impl HeldLock for LeaseLock {
    async fn release(self: Box<Self>) -> Result<(), Error> {
        let state = Arc::clone(&self.state);
        let first = state.finish();
        // `finish` made the guard's Drop a no-op.
        drop(self);
        if !first {
            return Ok(());
        }
        // Even a lost lock is released: "lost" may only mean the database
        // was out of reach, and the row may still hold our token.
        let unsettled = unsettled(&state.store, &state.key, &state.token, state.lease);
        let released = state.store.release_lease(&state.key, &state.token).await;
        unsettled.settle();
        if !released? {
            tracing::debug!(store = STORE, "the session lease had ended before its release");
        }
        Ok(())
    }

    fn is_held(&self) -> bool {
        self.state.is_held()
    }
}

impl Drop for LeaseLock {
    fn drop(&mut self) {
        if !self.state.finish() {
            return;
        }
        let state = &self.state;
        let spawned =
            spawn_release(released_later(&state.store, &state.key, &state.token, state.lease));
        if !spawned {
            tracing::debug!(
                store = STORE,
                "session lease dropped outside a Tokio runtime; its lease will end it"
            );
        }
    }
}

impl PostgresStore {
    /// Takes the lease on `key`, and with `load_at` also loads the record
    /// in the same round trip; retried with backoff until
    /// `options.wait_timeout`.
    pub(crate) async fn lease_acquire(
        &self,
        key: &StorageKey,
        options: LockOptions,
        load_at: Option<Timestamp>,
    ) -> Result<(LockGuard, Option<Record>), Error> {
        let token = new_token()?;
        let (key_value, token_value, lease_value) = (
            Value::Bytes(key.as_bytes()),
            Value::Bytes(&token),
            Value::Int(lease_millis(options.lease)),
        );
        // One statement, sent again on every attempt.
        let sql = match load_at {
            Some(now) => self.table.lease.lock_and_load.fill([
                key_value,
                token_value,
                lease_value,
                Value::Int(now.unix_seconds()),
            ]),
            None => self.table.lease.lock.fill([key_value, token_value, lease_value]),
        };
        // The token is random: its first bits seed the jitter, so waiters
        // on one session do not poll in step.
        let seed = token.iter().take(8).fold(1, |seed, &byte| (seed << 8) | u64::from(byte));
        let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF, seed, options.wait_timeout);
        // Behind the earlier waiters of this process: only the first of them
        // sends lock statements.
        let turn = self.queue.turn(key, backoff.remaining()).await?;
        loop {
            let sent = Instant::now();
            let attempt = unsettled(self, key, &token, options.lease);
            // An attempt cut short by the end of the wait may have taken the
            // lease: `attempt` is dropped unsettled and gives it back.
            let taken = match tokio::time::timeout(
                backoff.remaining(),
                self.try_lease(sql.clone(), key, load_at.is_some()),
            )
            .await
            {
                Err(_elapsed) => return Err(backoff.timed_out()),
                Ok(result) => result?,
            };
            attempt.settle();
            if let Some(record) = taken {
                return Ok((self.lease_guard(*key, token, options.lease, sent, turn), record));
            }
            backoff.pause().await?;
        }
    }

    /// One attempt: `None` if another holder's lease is running, else the
    /// record (if asked for and there is one).
    async fn try_lease(
        &self,
        sql: SqlStr,
        key: &StorageKey,
        load: bool,
    ) -> Result<Option<Option<Record>>, Error> {
        if !load {
            return Ok((self.run(sql).await? == 1).then_some(None));
        }
        let rows = self.rows(sql).await?;
        // The SETs and the INSERT return no rows; the SELECT exactly one.
        let [row] = rows.as_slice() else {
            return Err(PgStoreError::UnexpectedReply("lock_and_load").into());
        };
        if !row.try_get::<bool, _>(0).map_err(backend)? {
            return Ok(None);
        }
        if !row.try_get::<bool, _>(1).map_err(backend)? {
            return Ok(Some(None));
        }
        Ok(Some(self.table.sessions.decode(row, 2, Some(*key))?))
    }

    fn lease_guard(
        &self,
        key: StorageKey,
        token: [u8; 16],
        lease: Duration,
        sent: Instant,
        turn: LocalTurn,
    ) -> LockGuard {
        let state = Arc::new(LeaseState {
            store: self.clone(),
            key,
            token,
            lease,
            acquired: sent,
            lease_ends_ms: AtomicU64::new(millis(lease)),
            lost: AtomicBool::new(false),
            released: AtomicBool::new(false),
            renewal: Mutex::new(None),
        });
        let renewal = spawn_renewal(&state);
        *state.renewal.lock().unwrap_or_else(PoisonError::into_inner) = renewal;
        LockGuard::queued(LeaseLock { state }, turn)
    }

    /// Saves and releases in one fenced statement; see
    /// [`LeaseStatements::save_and_release`].
    pub(crate) async fn lease_save_and_release(
        &self,
        record: &Record,
        guard: LockGuard,
    ) -> Result<(), Error> {
        // Only a lease of this store's table on this very session can be
        // saved under in one statement; any other guard is saved through,
        // then released.
        let ours = self.own_lease(&guard, record).map(Arc::clone);
        // From `Save` on, the statement releases the lease; the guard cannot.
        let state = match guard.hand_over(ours, self, record).await {
            Handover::Save(state) => state,
            Handover::Settled(outcome) => return outcome,
        };
        let unsettled = unsettled(self, &state.key, &state.token, state.lease);
        // Not answered (an error, or this future dropped): `unsettled`
        // gives the lease back, if it is still ours.
        let saved = self
            .fenced_save(&self.table.lease.save_and_release, record, &state, "save_and_release")
            .await;
        // Answered: the statement released the lease, or it was not ours.
        if matches!(saved, Ok(()) | Err(Error::NotFound | Error::LockLost)) {
            unsettled.settle();
        }
        saved
    }

    /// Saves in one fenced statement that keeps the lease; see
    /// [`LeaseStatements::save_under_lock`]. Any other guard is saved
    /// through if it still holds its lock.
    pub(crate) async fn lease_save_under_lock(
        &self,
        record: &Record,
        guard: &LockGuard,
    ) -> Result<(), Error> {
        let Some(state) = self.own_lease(guard, record) else {
            return guard.save_while_held(self, record).await;
        };
        if !state.is_held() {
            return Err(Error::LockLost);
        }
        self.fenced_save(&self.table.lease.save_under_lock, record, state, "save_under_lock").await
    }

    /// `guard`'s lease, if it is one of this store's table on `record`'s
    /// session: only such a lease can fence a save in the same statement.
    fn own_lease<'g>(&self, guard: &'g LockGuard, record: &Record) -> Option<&'g Arc<LeaseState>> {
        guard
            .downcast_ref::<LeaseLock>()
            .map(|lock| &lock.state)
            .filter(|state| Arc::ptr_eq(&state.store.table, &self.table) && state.key == record.key)
    }

    /// Runs a fenced save `statement` (the updated columns, then the
    /// lease's token) and reads its answer: whether the lease was still
    /// `state`'s, and whether the record was there to save.
    async fn fenced_save(
        &self,
        statement: &Template<9>,
        record: &Record,
        state: &LeaseState,
        operation: &'static str,
    ) -> Result<(), Error> {
        let row = Encoded::new(record)?;
        let [key, data, last_seen, idle, absolute, expiry, user, version] = update_values(&row);
        let sql = statement.fill([
            key,
            data,
            last_seen,
            idle,
            absolute,
            expiry,
            user,
            version,
            Value::Bytes(&state.token),
        ]);
        let rows = self.rows(sql).await?;
        let [row] = rows.as_slice() else {
            return Err(PgStoreError::UnexpectedReply(operation).into());
        };
        let held: bool = row.try_get(0).map_err(backend)?;
        let saved: bool = row.try_get(1).map_err(backend)?;
        match (held, saved) {
            (true, true) => Ok(()),
            (true, false) => Err(Error::NotFound),
            (false, _) => {
                tracing::warn!(
                    store = STORE,
                    "session lease lost before the save (it ended and was taken over); nothing was written"
                );
                Err(Error::LockLost)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_clamped_to_what_the_database_takes() {
        assert_eq!(lease_millis(Duration::ZERO), 1);
        assert_eq!(lease_millis(Duration::from_secs(30)), 30_000);
        assert_eq!(lease_millis(Duration::MAX), MAX_LEASE_MS);
    }

    #[test]
    fn every_statement_builds_with_all_its_values() {
        for name in ["sessions", "app.Sessions", &"a".repeat(63)] {
            let name = TableName::parse(name).unwrap();
            let statements = LeaseStatements::new(&name);
            let key = [7u8; 32];
            let filled = [
                statements.lock.fill([Value::Bytes(&key), Value::Bytes(&[1]), Value::Int(5)]),
                statements.renew.fill([Value::Bytes(&key), Value::Bytes(&[1]), Value::Int(5)]),
                statements.release.fill([Value::Bytes(&key), Value::Bytes(&[1])]),
                statements.lock_and_load.fill([
                    Value::Bytes(&key),
                    Value::Bytes(&[1]),
                    Value::Int(5),
                    Value::Int(6),
                ]),
            ];
            for sql in &filled {
                assert!(!sql.as_str().contains('$'), "{}", sql.as_str());
            }
            assert!(statements.leases.ends_with("_leases\""), "{}", statements.leases);
        }
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(new_token().unwrap(), new_token().unwrap());
    }
}

//! [`LockMode`]: how [`PostgresStore`](crate::PostgresStore) locks sessions.

/// How [`PostgresStore`](crate::PostgresStore) implements
/// [`LockingStore`](session_core::LockingStore), set with
/// [`with_lock_mode`](crate::PostgresStore::with_lock_mode).
///
/// | | [`Advisory`](Self::Advisory) (default) | [`Lease`](Self::Lease) |
/// |---|---|---|
/// | use when the app connects | to PostgreSQL directly (or through PgBouncer in session pooling) | through PgBouncer in transaction pooling (or any pooler that moves clients between server connections) |
/// | the lock | a session-level `pg_advisory_lock`, held on a pooled connection | a row in `<table>_leases`: a random token and a lease expiry |
/// | round trips of a locked read-modify-write | 2 | 2 |
/// | while a lock is held | one pooled connection is taken | no connection is taken; the lease is renewed every third of [`LockOptions::lease`](session_core::LockOptions::lease) |
/// | a holder that crashed | releases at once (its connection closes) | blocks the session until its lease ends (4 s by default) |
/// | a holder that lost the lock saves late | refused: the save runs on the lock's connection, which is gone | refused: the save is accepted only while the lease row holds the holder's token |
/// | writes for locking | none (advisory locks live in memory) | a row written and deleted per lock |
///
/// Advisory is the faster of the two when it works: locking writes nothing,
/// and a crashed process frees its locks at once. Under PgBouncer's
/// transaction pooling it does not work (the lock belongs to a server
/// connection that PgBouncer hands to other clients between statements),
/// so use Lease there.
///
/// In [`Lease`](Self::Lease) mode every statement of the store (not only
/// the lock's) is sent with the simple query protocol, values written in as
/// hex or integer literals: no prepared statement, named or unnamed, and no
/// setting outlives its transaction. The pool needs one change for
/// PgBouncer 1.18, which refuses sqlx's `extra_float_digits` startup
/// parameter: `PgConnectOptions::extra_float_digits(None)`, or
/// `ignore_startup_parameters = extra_float_digits` in `pgbouncer.ini`.
/// `with_lock_mode(LockMode::Lease)` sets the former on the pool itself
/// for the connections it opens from then on, so a pool made with
/// `connect_lazy` needs nothing; one made with `connect` has already
/// connected by then, and needs it set beforehand. Your own queries on the
/// same pool must avoid prepared statements too (see the store's docs).
///
/// Every process sharing a table must use the same mode: an advisory lock
/// and a lease do not exclude each other. Switch modes with all of them
/// stopped. [`migrate`](crate::PostgresStore::migrate) creates what both
/// modes need, so the switch needs no other step.
///
/// ```
/// use session_stores_postgres::{LockMode, PgConnectOptions, PgPoolOptions, PostgresStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // PgBouncer in transaction pooling mode in front of the database.
/// let options: PgConnectOptions = "postgres://app@pgbouncer.internal:6432/app".parse()?;
/// let pool = PgPoolOptions::new()
///     .max_connections(20)
///     .connect_lazy_with(options.extra_float_digits(None));
/// let store = PostgresStore::new(pool).with_lock_mode(LockMode::Lease);
/// assert_eq!(store.lock_mode(), LockMode::Lease);
/// assert_eq!(LockMode::default(), LockMode::Advisory);
/// // store.migrate().await?, then hand `store` to the session layer.
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum LockMode {
    /// Session-level advisory locks on a pooled connection held for as long
    /// as the guard lives. The default; for direct connections.
    #[default]
    Advisory,
    /// A lease row per locked session, fenced by a random token, and only
    /// simple-protocol statements. For PgBouncer's transaction pooling.
    Lease,
}

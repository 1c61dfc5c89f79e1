//! The conformance suite every [`SessionStore`] + [`LockingStore`] must pass.
//!
//! A store crate runs it from its tests with one macro, given an async fn
//! that opens two instances of the store on one fresh [`Backend`]:
//!
//! ```ignore
//! async fn backend() -> session_core::testing::Backend {
//!     let store = MyStore::new();
//!     session_core::testing::Backend::new(store.clone(), store)
//! }
//!
//! session_core::conformance_tests!(backend);
//! ```
//!
//! which expands to one `#[tokio::test]` per behaviour (the store crate needs
//! `tokio` with `macros` and `rt-multi-thread` as a dev-dependency), or calls
//! [`run_all`] directly. Every check uses fresh random keys and user names, so
//! the suite can run against a shared Redis or Postgres alongside other tests.
//!
//! Besides the contract checks, the macro runs the rows of the hostile-input
//! catalogue (`docs/hostile-inputs.md`) that only need the store traits, as `rowNN_*`
//! checks; a store's own tests add what only it can check (its files, rows or
//! keys).
//!
//! Not semver-stable: checks are added as the contract is refined.

use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::{
    Error, ExpiryPolicy, IdGenerator, LockOptions, LockingStore, Record, Reloaded, SessionId,
    SessionStore, StorageKey, Timestamp,
};

/// What the store under test can be held to beyond the core contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// `delete_expired` physically removes expired records (false for stores
    /// whose backend expires keys on its own clock, like Redis).
    pub purges_expired: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self { purges_expired: true }
    }
}

impl Capabilities {
    /// For stores whose backend expires records by itself.
    #[must_use]
    pub fn expires_natively() -> Self {
        Self { purges_expired: false }
    }
}

/// The store under test, as the suite sees it.
pub type DynStore = Arc<dyn LockingStore>;

/// What [`conformance_tests!`](crate::conformance_tests) runs on: two
/// instances of the store on one fresh backend, standing for two processes
/// that share it (each with its own pool or handle where the store has one),
/// and whatever must outlive them, such as a temporary directory.
///
/// ```ignore
/// async fn backend() -> Backend {
///     let dir = tempfile::tempdir().expect("tempdir");
///     let open = || FsStore::new(dir.path().join("store")).expect("open store");
///     Backend::new(open(), open()).keeping(dir)
/// }
/// ```
#[derive(Debug)]
pub struct Backend {
    store: DynStore,
    other: DynStore,
    // Declared last, so it is dropped after both stores: a store may still
    // hold its files (or a pool on them) until it is dropped.
    _keep: Box<dyn Any + Send + Sync>,
}

impl Backend {
    /// Two instances on one backend: what `store` writes, `other` must see,
    /// and a lock held through one must exclude the other.
    pub fn new(store: impl LockingStore, other: impl LockingStore) -> Self {
        Self { store: Arc::new(store), other: Arc::new(other), _keep: Box::new(()) }
    }

    /// Keeps `keep` alive until the backend is dropped, after both stores
    /// (for a temporary directory that the stores live in).
    #[must_use]
    pub fn keeping(self, keep: impl Any + Send + Sync) -> Self {
        Self { _keep: Box::new(keep), ..self }
    }

    /// The instance the single-store checks run on.
    #[must_use]
    pub fn store(&self) -> DynStore {
        Arc::clone(&self.store)
    }

    /// The second instance, for the checks across instances.
    #[must_use]
    pub fn other(&self) -> DynStore {
        Arc::clone(&self.other)
    }
}

/// Number of concurrent increments in [`lock_serializes_increments`].
pub const CONCURRENT_INCREMENTS: usize = 50;

/// An [`IdGenerator`] that hands out the same id `repeats` times before
/// moving on to fresh random ids: it forces id collisions in tests.
#[derive(Debug)]
pub struct RepeatingIds {
    id: SessionId,
    repeats: usize,
    issued: AtomicUsize,
}

impl RepeatingIds {
    /// Repeats `id` for the first `repeats` calls.
    #[must_use]
    pub fn new(id: SessionId, repeats: usize) -> Self {
        Self { id, repeats, issued: AtomicUsize::new(0) }
    }

    /// How many ids were issued so far.
    #[must_use]
    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }
}

impl IdGenerator for RepeatingIds {
    fn generate(&self) -> SessionId {
        if self.issued.fetch_add(1, Ordering::SeqCst) < self.repeats {
            self.id
        } else {
            SessionId::random()
        }
    }
}

fn policy() -> ExpiryPolicy {
    ExpiryPolicy::default()
        .with_idle_timeout(Duration::from_secs(600))
        .with_absolute_timeout(Some(Duration::from_secs(3600)))
}

fn fresh_record(now: Timestamp) -> Record {
    policy().new_record(SessionId::random().storage_key(), now)
}

fn fresh_user() -> String {
    format!("user-{}", &SessionId::random().storage_key().to_hex()[..16])
}

fn counter(record: &Record) -> u64 {
    match record.data.get::<u64>("n") {
        Ok(value) => value.unwrap_or(0),
        Err(error) => panic!("counter is not a number: {error}"),
    }
}

async fn load_live(store: &DynStore, record: &Record, now: Timestamp) -> Record {
    match store.load(&record.key, now).await {
        Ok(Some(loaded)) => loaded,
        Ok(None) => panic!("record {:?} should load at {now:?}", record.key),
        Err(error) => panic!("load failed: {error}"),
    }
}

async fn assert_absent(store: &DynStore, record: &Record, now: Timestamp, why: &str) {
    match store.load(&record.key, now).await {
        Ok(None) => {}
        Ok(Some(_)) => panic!("{why}: record {:?} still loads", record.key),
        Err(error) => panic!("{why}: load failed: {error}"),
    }
}

async fn create(store: &DynStore, record: &Record) {
    if let Err(error) = store.create(record).await {
        panic!("create failed: {error}");
    }
}

/// Unknown keys load as `None`; delete of an unknown key succeeds.
pub async fn unknown_key_loads_nothing(store: DynStore) {
    let now = Timestamp::now();
    let record = fresh_record(now);
    assert_absent(&store, &record, now, "never created").await;
    store.delete(&record.key).await.unwrap_or_else(|e| panic!("delete of unknown key: {e}"));
}

/// What `create` writes, `load` returns: data, deadlines, user, version.
pub async fn create_then_load_round_trips(store: DynStore) {
    let now = Timestamp::now();
    let mut record = fresh_record(now);
    let values = [
        ("int", serde_json::json!(42)),
        ("text", serde_json::json!("héllo ✓ \u{0} \"quoted\" ' OR 1=1--")),
        ("nested", serde_json::json!({"a": [1, 2.5, null, true], "b": {"c": "d"}})),
        ("big", serde_json::json!(u64::MAX)),
    ];
    for (key, value) in &values {
        record.data.insert_value(key, value.clone());
    }
    record.user = Some(fresh_user());
    record.version = 3;
    create(&store, &record).await;
    let loaded = load_live(&store, &record, now).await;
    for (key, value) in &values {
        assert_eq!(loaded.data.get_value(key), Some(value), "value under {key}");
    }
    assert_eq!(loaded.data.len(), values.len());
    assert!(!loaded.data.is_changed(), "loaded data starts unchanged");
    assert_eq!(loaded.key, record.key);
    assert_eq!(loaded.created_at, record.created_at);
    assert_eq!(loaded.last_seen, record.last_seen);
    assert_eq!(loaded.idle_deadline, record.idle_deadline);
    assert_eq!(loaded.absolute_deadline, record.absolute_deadline);
    assert_eq!(loaded.user, record.user);
    assert_eq!(loaded.version, record.version);
}

/// A second `create` under a taken key (forced with [`RepeatingIds`]) fails
/// with [`Error::IdCollision`] and leaves the first record untouched.
pub async fn create_refuses_collision(store: DynStore) {
    let now = Timestamp::now();
    let ids = RepeatingIds::new(SessionId::random(), 2);
    let mut first = policy().new_record(ids.generate().storage_key(), now);
    first.data.insert_value("owner", "first".into());
    create(&store, &first).await;

    let mut second = policy().new_record(ids.generate().storage_key(), now);
    second.data.insert_value("owner", "second".into());
    match store.create(&second).await {
        Err(Error::IdCollision) => {}
        other => panic!("expected IdCollision, got {other:?}"),
    }
    let loaded = load_live(&store, &first, now).await;
    assert_eq!(loaded.data.get::<String>("owner").ok().flatten().as_deref(), Some("first"));

    let third = policy().new_record(ids.generate().storage_key(), now);
    assert_ne!(third.key, first.key, "the generator moves on after its repeats");
    create(&store, &third).await;
}

/// `save` overwrites data and version.
pub async fn save_overwrites(store: DynStore) {
    let now = Timestamp::now();
    let mut record = fresh_record(now);
    record.data.insert_value("a", 1.into());
    create(&store, &record).await;
    record.data.remove("a");
    record.data.insert_value("b", 2.into());
    record.version += 1;
    store.save(&record).await.unwrap_or_else(|e| panic!("save: {e}"));
    let loaded = load_live(&store, &record, now).await;
    assert_eq!(loaded.data.get_value("a"), None);
    assert_eq!(loaded.data.get_value("b"), Some(&2.into()));
    assert_eq!(loaded.version, 1);
}

/// `save` after `delete` returns [`Error::NotFound`] and writes nothing.
pub async fn save_never_resurrects(store: DynStore) {
    let now = Timestamp::now();
    let mut record = fresh_record(now);
    create(&store, &record).await;
    store.delete(&record.key).await.unwrap_or_else(|e| panic!("delete: {e}"));
    store.delete(&record.key).await.unwrap_or_else(|e| panic!("second delete: {e}"));
    record.data.insert_value("stale", true.into());
    match store.save(&record).await {
        Err(Error::NotFound) => {}
        other => panic!("save of a deleted session must be NotFound, got {other:?}"),
    }
    assert_absent(&store, &record, now, "save after delete").await;

    let never_created = fresh_record(now);
    match store.save(&never_created).await {
        Err(Error::NotFound) => {}
        other => panic!("save of an unknown session must be NotFound, got {other:?}"),
    }
    assert_absent(&store, &never_created, now, "save of unknown").await;
}

/// Records are invisible from their deadline on (idle and absolute), judged
/// by the `now` passed in.
pub async fn load_hides_expired(store: DynStore) {
    let now = Timestamp::now();
    let record = fresh_record(now);
    create(&store, &record).await;
    let idle = record.idle_deadline;
    load_live(&store, &record, idle - Duration::from_secs(1)).await;
    assert_absent(&store, &record, idle, "at the idle deadline").await;

    let mut capped = fresh_record(now);
    capped.idle_deadline = now + Duration::from_secs(7200);
    capped.absolute_deadline = Some(now + Duration::from_secs(60));
    create(&store, &capped).await;
    load_live(&store, &capped, now + Duration::from_secs(59)).await;
    assert_absent(&store, &capped, now + Duration::from_secs(60), "at the absolute deadline").await;
}

/// `touch` moves the deadline and `last_seen`, keeps data and version.
pub async fn touch_extends_without_rewriting(store: DynStore) {
    let now = Timestamp::now();
    let mut record = fresh_record(now);
    record.data.insert_value("keep", "me".into());
    record.version = 7;
    create(&store, &record).await;

    let later = now + Duration::from_secs(500);
    let mut touched = record.clone();
    // A touch must not write data, even if the caller's copy differs.
    touched.data.insert_value("keep", "overwritten".into());
    touched.version = 99;
    policy().refresh(&mut touched, later);
    store.touch(&touched).await.unwrap_or_else(|e| panic!("touch: {e}"));

    let beyond_old_deadline = record.idle_deadline + Duration::from_secs(1);
    let loaded = load_live(&store, &record, beyond_old_deadline).await;
    assert_eq!(loaded.idle_deadline, touched.idle_deadline);
    assert_eq!(loaded.last_seen, later);
    assert_eq!(loaded.data.get::<String>("keep").ok().flatten().as_deref(), Some("me"));
    assert_eq!(loaded.version, 7);

    let missing = fresh_record(now);
    match store.touch(&missing).await {
        Err(Error::NotFound) => {}
        other => panic!("touch of an unknown session must be NotFound, got {other:?}"),
    }
    assert_absent(&store, &missing, now, "touch must not create").await;
}

/// `delete_expired` removes what is expired at `now` and nothing else.
pub async fn delete_expired_removes_only_expired(store: DynStore, capabilities: Capabilities) {
    let now = Timestamp::now();
    let mut expired = fresh_record(now - Duration::from_secs(100));
    expired.idle_deadline = now - Duration::from_secs(1);
    // Stores with native TTLs may refuse to write an already-expired record;
    // create it while it is still live from the store's point of view.
    let mut live = fresh_record(now);
    live.idle_deadline = now + Duration::from_secs(3600);
    create(&store, &live).await;
    let created_expired = store.create(&expired).await.is_ok();

    let removed = store.delete_expired(now).await.unwrap_or_else(|e| panic!("delete_expired: {e}"));
    if capabilities.purges_expired {
        assert!(created_expired, "create of a past-deadline record");
        assert!(removed >= 1, "delete_expired removed {removed}, expected the expired record");
        // Physically gone: not even visible to a reader whose clock is behind.
        assert_absent(&store, &expired, now - Duration::from_secs(50), "purged").await;
    }
    assert_absent(&store, &expired, now, "expired").await;
    load_live(&store, &live, now).await;
}

/// The per-user index lists live sessions, follows `save`, and
/// `delete_for_user` ends them all without touching other users.
pub async fn user_index(store: DynStore) {
    let now = Timestamp::now();
    let (alice, bob) = (fresh_user(), fresh_user());
    let mut alice_sessions = Vec::new();
    for _ in 0..3 {
        let mut record = fresh_record(now);
        record.user = Some(alice.clone());
        create(&store, &record).await;
        alice_sessions.push(record);
    }
    let mut bobs = fresh_record(now);
    bobs.user = Some(bob.clone());
    create(&store, &bobs).await;

    // A session that logs in later (anonymous at create, user set by save).
    let mut late = fresh_record(now);
    create(&store, &late).await;
    late.user = Some(alice.clone());
    late.version += 1;
    store.save(&late).await.unwrap_or_else(|e| panic!("save: {e}"));
    alice_sessions.push(late.clone());

    let listed =
        store.list_for_user(&alice, now).await.unwrap_or_else(|e| panic!("list_for_user: {e}"));
    let listed: HashSet<_> = listed.iter().map(|r| r.key).collect();
    let expected: HashSet<_> = alice_sessions.iter().map(|r| r.key).collect();
    assert_eq!(listed, expected);

    // Moving a session to another user removes it from the first user's index.
    late.user = Some(bob.clone());
    late.version += 1;
    store.save(&late).await.unwrap_or_else(|e| panic!("save: {e}"));
    let listed = store.list_for_user(&alice, now).await.unwrap_or_else(|e| panic!("list: {e}"));
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|r| r.key != late.key));

    // Deleted sessions disappear from the index.
    store.delete(&alice_sessions[0].key).await.unwrap_or_else(|e| panic!("delete: {e}"));
    let listed = store.list_for_user(&alice, now).await.unwrap_or_else(|e| panic!("list: {e}"));
    assert_eq!(listed.len(), 2);

    let removed =
        store.delete_for_user(&alice).await.unwrap_or_else(|e| panic!("delete_for_user: {e}"));
    assert_eq!(removed, 2);
    for record in &alice_sessions[1..3] {
        assert_absent(&store, record, now, "after delete_for_user").await;
    }
    load_live(&store, &bobs, now).await;
    load_live(&store, &late, now).await;
    let listed = store.list_for_user(&alice, now).await.unwrap_or_else(|e| panic!("list: {e}"));
    assert!(listed.is_empty());
    assert_eq!(
        store.list_for_user(&bob, now).await.unwrap_or_else(|e| panic!("list: {e}")).len(),
        2
    );
}

/// Hostile user ids (SQL-, glob- or path-shaped) in the per-user index:
/// each entry of `users` (with a random suffix) owns one session, which the
/// index finds exactly, through `other` (a second instance on the same
/// backend) too; deleting it spares a bystander whose name shares the suffix.
pub async fn hostile_user_ids(store: &dyn LockingStore, other: &dyn LockingStore, users: &[&str]) {
    let now = Timestamp::now();
    let suffix = &SessionId::random().storage_key().to_hex()[..8];
    let bystander = format!("bystander-{suffix}");
    let mut theirs = fresh_record(now);
    theirs.user = Some(bystander.clone());
    store.create(&theirs).await.unwrap_or_else(|e| panic!("create bystander: {e}"));
    for user in users {
        let user = format!("{user}-{suffix}");
        let mut mine = fresh_record(now);
        mine.user = Some(user.clone());
        store.create(&mine).await.unwrap_or_else(|e| panic!("create {user:?}: {e}"));
        let listed = other.list_for_user(&user, now).await.unwrap_or_else(|e| panic!("list: {e}"));
        assert_eq!(listed.iter().map(|r| r.key).collect::<Vec<_>>(), [mine.key], "{user:?}");
        let deleted =
            other.delete_for_user(&user).await.unwrap_or_else(|e| panic!("delete_for_user: {e}"));
        assert_eq!(deleted, 1, "{user:?}");
        let gone = store.load(&mine.key, now).await.unwrap_or_else(|e| panic!("load: {e}"));
        assert!(gone.is_none(), "{user:?}");
        let listed =
            store.list_for_user(&bystander, now).await.unwrap_or_else(|e| panic!("list: {e}"));
        assert_eq!(listed.iter().map(|r| r.key).collect::<Vec<_>>(), [theirs.key], "{user:?}");
    }
}

/// Fencing, for a store whose lock can be lost while its holder lives (a
/// lease that ran out, a connection that died): `late_guard` is such a lost
/// lock on `late`'s session, which the caller loaded under it with a count
/// (`"n"`) of one. Another holder (`next`) locks at once and saves two; then
/// the late holder's saves of 99 ([`LockingStore::save_under_lock`], then
/// [`LockingStore::save_and_release`]) must each fail with a 503-class error
/// and leave two stored, and the session must lock again. Returns the late save's error, for the
/// caller to check its kind.
pub async fn late_save_under_a_lost_lock_is_refused(
    store: &dyn LockingStore,
    next: &dyn LockingStore,
    late_guard: crate::LockGuard,
    mut late: Record,
) -> Error {
    let now = Timestamp::now();
    let options =
        LockOptions { lease: Duration::from_secs(30), wait_timeout: Duration::from_secs(10) };
    let (guard, loaded) = next
        .lock_and_load(&late.key, options, now)
        .await
        .unwrap_or_else(|e| panic!("the next holder's lock: {e}"));
    let mut newer = loaded.unwrap_or_else(|| panic!("the session exists"));
    newer.data.insert_value("n", 2.into());
    newer.version += 1;
    next.save_and_release(&newer, guard).await.unwrap_or_else(|e| panic!("next save: {e}"));

    late.data.insert_value("n", 99.into());
    late.version += 1;
    match store.save_under_lock(&late, &late_guard).await {
        Err(error) => assert!(error.is_unavailable(), "a lost lock answers 503, got {error}"),
        Ok(()) => panic!("a save under a lost lock went through (save_under_lock)"),
    }
    let error = match store.save_and_release(&late, late_guard).await {
        Err(error) => error,
        Ok(()) => panic!("a save under a lost lock went through"),
    };
    assert!(error.is_unavailable(), "a lost lock answers 503, got {error}");
    let stored = next.load(&late.key, now).await.unwrap_or_else(|e| panic!("load: {e}"));
    let stored = stored.unwrap_or_else(|| panic!("the session exists"));
    assert_eq!(counter(&stored), 2, "the next holder's data is kept");
    let (guard, loaded) = store
        .lock_and_load(&late.key, options, now)
        .await
        .unwrap_or_else(|e| panic!("locking again after the refused save: {e}"));
    assert_eq!(loaded.map(|record| counter(&record)), Some(2));
    guard.release().await.unwrap_or_else(|e| panic!("release: {e}"));
    error
}

/// Increments a counter in one session `n` times concurrently, each under the
/// lock, spread round-robin over `stores` (several instances on one backend
/// stand for several processes). With an `await` between read and write, any
/// gap in the lock shows up as a lost update.
pub async fn concurrent_increments(stores: &[DynStore], n: usize) {
    assert!(!stores.is_empty(), "at least one store instance");
    let now = Timestamp::now();
    let record = fresh_record(now);
    create(&stores[0], &record).await;
    let options =
        LockOptions { lease: Duration::from_secs(30), wait_timeout: Duration::from_secs(60) };

    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let store = Arc::clone(&stores[i % stores.len()]);
        let key = record.key;
        tasks.push(tokio::spawn(async move {
            let (guard, loaded) = store
                .lock_and_load(&key, options, now)
                .await
                .unwrap_or_else(|e| panic!("lock_and_load: {e}"));
            let mut loaded = loaded.unwrap_or_else(|| panic!("session vanished"));
            let value = counter(&loaded);
            tokio::time::sleep(Duration::from_millis(1)).await;
            loaded.data.insert_value("n", (value + 1).into());
            loaded.version += 1;
            store
                .save_and_release(&loaded, guard)
                .await
                .unwrap_or_else(|e| panic!("save_and_release: {e}"));
        }));
    }
    for task in tasks {
        if let Err(error) = task.await {
            std::panic::resume_unwind(error.into_panic());
        }
    }
    let loaded = load_live(&stores[0], &record, now).await;
    assert_eq!(counter(&loaded), n as u64, "lost updates under the lock");
    assert_eq!(loaded.version, n as u64);
}

/// [`CONCURRENT_INCREMENTS`] increments under the lock end at exactly that.
pub async fn lock_serializes_increments(store: DynStore) {
    concurrent_increments(&[store], CONCURRENT_INCREMENTS).await;
}

/// A held lock makes a second `lock` time out with [`Error::LockTimeout`];
/// other keys are not blocked; after release the lock can be taken again.
pub async fn lock_is_exclusive_per_key(store: DynStore) {
    let now = Timestamp::now();
    let (a, b) = (fresh_record(now), fresh_record(now));
    let options =
        LockOptions { lease: Duration::from_secs(30), wait_timeout: Duration::from_secs(10) };
    let short = LockOptions { lease: options.lease, wait_timeout: Duration::from_millis(200) };

    let held = store.lock(&a.key, options).await.unwrap_or_else(|e| panic!("lock a: {e}"));
    match store.lock(&a.key, short).await {
        Err(Error::LockTimeout { .. }) => {}
        Err(other) => panic!("expected LockTimeout, got {other}"),
        Ok(_) => panic!("lock on a was granted twice"),
    }
    let other = store.lock(&b.key, short).await.unwrap_or_else(|e| panic!("lock b: {e}"));
    other.release().await.unwrap_or_else(|e| panic!("release b: {e}"));
    held.release().await.unwrap_or_else(|e| panic!("release a: {e}"));

    let again = store.lock(&a.key, short).await.unwrap_or_else(|e| panic!("relock a: {e}"));
    drop(again);
    // Dropping releases too (best effort, so allow the full wait).
    let after_drop =
        store.lock(&a.key, options).await.unwrap_or_else(|e| panic!("lock after drop: {e}"));
    after_drop.release().await.unwrap_or_else(|e| panic!("release: {e}"));
}

/// Waiters for one session in one process (`other`) get the lock in the
/// order they asked for it once its holder (`store`, standing for another
/// process) lets go: they queue in this process, and only the first of
/// them asks the store (see [`LocalLocks::turn`](crate::LocalLocks::turn)).
/// A store whose waiters each polled on their own would hand the lock out
/// in whatever order their polls happened to land.
pub async fn waiters_in_one_process_take_turns_in_order(store: DynStore, other: DynStore) {
    const WAITERS: usize = 4;
    let key = SessionId::random().storage_key();
    let options =
        LockOptions { lease: Duration::from_secs(30), wait_timeout: Duration::from_secs(30) };
    let held = store.lock(&key, options).await.unwrap_or_else(|e| panic!("lock: {e}"));
    let order = Arc::new(std::sync::Mutex::new(Vec::with_capacity(WAITERS)));
    let mut waiters = Vec::with_capacity(WAITERS);
    for waiter in 0..WAITERS {
        let (other, order) = (Arc::clone(&other), Arc::clone(&order));
        let mut waiting: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
            Box::pin(async move {
                let guard =
                    other.lock(&key, options).await.unwrap_or_else(|e| panic!("waiter: {e}"));
                order.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(waiter);
                tokio::task::yield_now().await;
                guard.release().await.unwrap_or_else(|e| panic!("waiter's release: {e}"));
            });
        // Polled once: this waiter has asked for the lock before the next
        // one is made.
        std::future::poll_fn(|cx| {
            assert!(waiting.as_mut().poll(cx).is_pending(), "the lock is held");
            std::task::Poll::Ready(())
        })
        .await;
        waiters.push(waiting);
    }
    held.release().await.unwrap_or_else(|e| panic!("release: {e}"));
    futures_util::future::join_all(waiters).await;
    let order = order.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    assert_eq!(order, (0..WAITERS).collect::<Vec<_>>(), "first come, first served");
}

/// [`LockingStore::save_under_lock`] writes and keeps the lock: the other
/// instance sees the save but cannot lock the session until the guard is
/// released.
pub async fn save_under_lock_keeps_the_lock(store: DynStore, other: DynStore) {
    let now = Timestamp::now();
    let mut record = fresh_record(now);
    create(&store, &record).await;
    let short =
        LockOptions { lease: Duration::from_secs(30), wait_timeout: Duration::from_millis(200) };
    let (guard, _) = store
        .lock_and_load(&record.key, LockOptions::default(), now)
        .await
        .unwrap_or_else(|e| panic!("lock_and_load: {e}"));
    record.data.insert_value("n", 1.into());
    record.version += 1;
    store.save_under_lock(&record, &guard).await.unwrap_or_else(|e| panic!("save_under_lock: {e}"));
    assert_eq!(counter(&load_live(&other, &record, now).await), 1, "saved");
    match other.lock(&record.key, short).await {
        Err(Error::LockTimeout { .. }) => {}
        Err(error) => panic!("lock after save_under_lock: expected LockTimeout, got {error}"),
        Ok(_) => panic!("save_under_lock released the lock"),
    }
    record.data.insert_value("n", 2.into());
    record.version += 1;
    store.save_and_release(&record, guard).await.unwrap_or_else(|e| panic!("save: {e}"));
    let (guard, loaded) = other
        .lock_and_load(&record.key, short, now)
        .await
        .unwrap_or_else(|e| panic!("lock once released: {e}"));
    assert_eq!(loaded.map(|loaded| counter(&loaded)), Some(2));
    guard.release().await.unwrap_or_else(|e| panic!("release: {e}"));
}

/// `lock_and_reload` answers [`Reloaded::Unchanged`] while the stored
/// version is the caller's, and the newer record (or `None` once deleted)
/// after a save.
pub async fn lock_and_reload_reports_changes(store: DynStore) {
    let now = Timestamp::now();
    let options = LockOptions::default();
    let mut record = fresh_record(now);
    record.data.insert_value("n", 1.into());
    create(&store, &record).await;
    let held = record.version;

    let (guard, reloaded) = store
        .lock_and_reload(&record.key, options, now, held)
        .await
        .unwrap_or_else(|e| panic!("lock_and_reload: {e}"));
    assert_eq!(reloaded, Reloaded::Unchanged, "nothing was saved since the load");
    record.data.insert_value("n", 2.into());
    record.version += 1;
    store.save_and_release(&record, guard).await.unwrap_or_else(|e| panic!("save: {e}"));

    let (guard, reloaded) = store
        .lock_and_reload(&record.key, options, now, held)
        .await
        .unwrap_or_else(|e| panic!("lock_and_reload after a save: {e}"));
    match reloaded {
        Reloaded::Changed(Some(newer)) => {
            assert_eq!(newer.version, record.version);
            assert_eq!(newer.data.get_value("n"), Some(&2.into()));
        }
        other => panic!("a saved record must come back as Changed, got {other:?}"),
    }
    guard.release().await.unwrap_or_else(|e| panic!("release: {e}"));

    store.delete(&record.key).await.unwrap_or_else(|e| panic!("delete: {e}"));
    let (guard, reloaded) = store
        .lock_and_reload(&record.key, options, now, record.version)
        .await
        .unwrap_or_else(|e| panic!("lock_and_reload after delete: {e}"));
    assert_eq!(reloaded, Reloaded::Changed(None), "a deleted record is gone");
    guard.release().await.unwrap_or_else(|e| panic!("release: {e}"));
}

/// The user ids of [`row07_path_like_user_ids`]: shaped like paths, path
/// traversal or Windows device names, or empty, NUL or key separators.
pub const PATH_LIKE_USER_IDS: &[&str] =
    &["../../etc/passwd", "..%2f..", "a\\b", "/etc/passwd", "NUL", "CON", "", "\0", ".", "..", ":"];

/// The user ids of [`row08_sql_shaped_user_ids`]: SQL injection, `LIKE` and
/// glob patterns, placeholders, and an injected Redis command.
pub const SQL_SHAPED_USER_IDS: &[&str] = &[
    "' OR 1=1--",
    "'; DROP TABLE sessions; --",
    "\" OR \"\"=\"",
    "%",
    "_",
    "*",
    "?",
    "[a-z]",
    "$1",
    "?1",
    "\\",
    "\r\nFLUSHALL\r\n",
];

/// Row 5, a well-formed key that was never issued (a forged or stale
/// cookie): it loads as absent through either instance, and neither `save`
/// nor a lock on it creates a session.
pub async fn row05_unknown_key_is_not_created(store: DynStore, other: DynStore) {
    unknown_key_loads_nothing(Arc::clone(&store)).await;
    save_never_resurrects(Arc::clone(&store)).await;
    let now = Timestamp::now();
    let record = fresh_record(now);
    let (guard, loaded) = store
        .lock_and_load(&record.key, LockOptions::default(), now)
        .await
        .unwrap_or_else(|e| panic!("lock_and_load of an unknown key: {e}"));
    assert!(loaded.is_none(), "an unknown key loads nothing under the lock");
    guard.release().await.unwrap_or_else(|e| panic!("release: {e}"));
    assert_absent(&store, &record, now, "after a lock on an unknown key").await;
    assert_absent(&other, &record, now, "through the other instance").await;
}

/// Row 7, user ids shaped like paths ([`PATH_LIKE_USER_IDS`]): the per-user
/// index keeps each apart, across instances.
pub async fn row07_path_like_user_ids(store: DynStore, other: DynStore) {
    hostile_user_ids(&*store, &*other, PATH_LIKE_USER_IDS).await;
}

/// Row 8, user ids shaped like SQL or patterns ([`SQL_SHAPED_USER_IDS`]):
/// the per-user index matches each exactly, never as a pattern.
pub async fn row08_sql_shaped_user_ids(store: DynStore, other: DynStore) {
    hostile_user_ids(&*store, &*other, SQL_SHAPED_USER_IDS).await;
}

/// Row 23, a session whose lock someone holds forever: `lock` and
/// `lock_and_load` through the other instance give up with
/// [`Error::LockTimeout`] after the wait, and take it once it is released.
pub async fn row23_held_lock_times_out_elsewhere(store: DynStore, other: DynStore) {
    let key = SessionId::random().storage_key();
    let short =
        LockOptions { lease: Duration::from_secs(30), wait_timeout: Duration::from_millis(200) };
    let held =
        store.lock(&key, LockOptions::default()).await.unwrap_or_else(|e| panic!("lock: {e}"));
    match other.lock(&key, short).await {
        Err(Error::LockTimeout { .. }) => {}
        Err(error) => panic!("lock of a held key: expected LockTimeout, got {error}"),
        Ok(_) => panic!("lock of a held key was granted through the other instance"),
    }
    match other.lock_and_load(&key, short, Timestamp::now()).await {
        Err(Error::LockTimeout { .. }) => {}
        Err(error) => panic!("lock_and_load of a held key: expected LockTimeout, got {error}"),
        Ok(_) => panic!("lock_and_load of a held key was granted through the other instance"),
    }
    held.release().await.unwrap_or_else(|e| panic!("release: {e}"));
    let taken = other.lock(&key, short).await.unwrap_or_else(|e| panic!("lock once free: {e}"));
    taken.release().await.unwrap_or_else(|e| panic!("release: {e}"));
}

/// Row 25, concurrent read-modify-write of one session from two instances:
/// under the lock, none of [`CONCURRENT_INCREMENTS`] increments is lost.
pub async fn row25_concurrent_locked_writers_lose_nothing(store: DynStore, other: DynStore) {
    concurrent_increments(&[store, other], CONCURRENT_INCREMENTS).await;
}

/// Row 26, a `create` under a key that is taken (an id collision), also
/// from the other instance: it fails with [`Error::IdCollision`] and hands
/// over nothing of the first session.
pub async fn row26_id_collision_on_create_hands_over_nothing(store: DynStore, other: DynStore) {
    create_refuses_collision(Arc::clone(&store)).await;
    let now = Timestamp::now();
    let mut first = fresh_record(now);
    first.data.insert_value("owner", "first".into());
    create(&store, &first).await;
    let mut second = first.clone();
    second.data.insert_value("owner", "second".into());
    match other.create(&second).await {
        Err(Error::IdCollision) => {}
        result => panic!("create of a taken key: expected IdCollision, got {result:?}"),
    }
    let loaded = load_live(&other, &first, now).await;
    assert_eq!(loaded.data.get::<String>("owner").ok().flatten().as_deref(), Some("first"));
}

/// Row 28, a session used after it was deleted (logout in another tab, or
/// on another instance): it is gone for the other instance, under the lock
/// too, and a late `save` or `touch` brings nothing back.
pub async fn row28_deleted_session_is_gone_everywhere(store: DynStore, other: DynStore) {
    let now = Timestamp::now();
    let mut record = fresh_record(now);
    create(&store, &record).await;
    load_live(&other, &record, now).await;
    store.delete(&record.key).await.unwrap_or_else(|e| panic!("delete: {e}"));
    assert_absent(&other, &record, now, "deleted through the first instance").await;
    let (guard, loaded) = other
        .lock_and_load(&record.key, LockOptions::default(), now)
        .await
        .unwrap_or_else(|e| panic!("lock_and_load: {e}"));
    assert!(loaded.is_none(), "a deleted session loads nothing under the lock");
    guard.release().await.unwrap_or_else(|e| panic!("release: {e}"));
    record.version += 1;
    match other.save(&record).await {
        Err(Error::NotFound) => {}
        result => panic!("save of a deleted session must be NotFound, got {result:?}"),
    }
    match other.touch(&record).await {
        Err(Error::NotFound) => {}
        result => panic!("touch of a deleted session must be NotFound, got {result:?}"),
    }
    assert_absent(&store, &record, now, "no resurrection").await;
}

/// Which stored session [`row19_corrupt_rows_are_absent_and_cleanup_goes_on`]
/// asks the store's own test to corrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corrupted {
    /// A live session whose data held `{"n": 1}`.
    Live,
    /// A session that expires ten seconds from now.
    Expired,
}

/// Row 19, for a store whose records a test can corrupt in its backend:
/// `corrupt` damages the stored session under a key (its data, its expiry,
/// a value of the wrong type: whatever the store can be handed), once for
/// each [`Corrupted`] session. A corrupt session is absent for readers of
/// either instance, locked or not, and spares its neighbours; the cleanup
/// still removes the expired one (corrupt or not) and nothing else; a save
/// from a request that loaded the session before it was corrupted replaces
/// the record whole: repaired, never merged.
pub async fn row19_corrupt_rows_are_absent_and_cleanup_goes_on(
    store: &dyn LockingStore,
    other: &dyn LockingStore,
    corrupt: impl AsyncFn(Corrupted, StorageKey),
) {
    let now = Timestamp::now();
    let (mut live, mut expired, good) = (fresh_record(now), fresh_record(now), fresh_record(now));
    expired.created_at = now - Duration::from_secs(100);
    expired.idle_deadline = now + Duration::from_secs(10);
    live.data.insert_value("n", 1.into());
    for record in [&live, &expired, &good] {
        store.create(record).await.unwrap_or_else(|e| panic!("create: {e}"));
    }
    corrupt(Corrupted::Live, live.key).await;
    corrupt(Corrupted::Expired, expired.key).await;
    let short =
        LockOptions { lease: Duration::from_secs(30), wait_timeout: Duration::from_secs(5) };
    for reader in [store, other] {
        let loaded = reader.load(&live.key, now).await.unwrap_or_else(|e| panic!("load: {e}"));
        assert!(loaded.is_none(), "a corrupt session loads as absent");
        let (guard, loaded) = reader
            .lock_and_load(&live.key, short, now)
            .await
            .unwrap_or_else(|e| panic!("lock_and_load: {e}"));
        assert!(loaded.is_none(), "a corrupt session loads as absent under the lock");
        guard.release().await.unwrap_or_else(|e| panic!("release: {e}"));
        let neighbour = reader.load(&good.key, now).await.unwrap_or_else(|e| panic!("load: {e}"));
        assert!(neighbour.is_some(), "neighbours load");
    }
    let later = now + Duration::from_secs(20);
    let deleted = other.delete_expired(later).await.unwrap_or_else(|e| panic!("cleanup: {e}"));
    assert_eq!(deleted, 1, "the expired corrupt session, and nothing else");
    let neighbour = store.load(&good.key, now).await.unwrap_or_else(|e| panic!("load: {e}"));
    assert!(neighbour.is_some(), "neighbours untouched by the cleanup");
    live.version += 1;
    store.save(&live).await.unwrap_or_else(|e| panic!("save: {e}"));
    let repaired = other.load(&live.key, now).await.unwrap_or_else(|e| panic!("load: {e}"));
    assert_eq!(repaired.map(|record| counter(&record)), Some(1), "repaired whole");
}

/// Row 23, an exhausted pool, for a store on a pool of one connection with a
/// short acquire timeout: while `hold` keeps that connection, a load, a save
/// and a lock (waiting longer than the acquire timeout) each fail with
/// [`Error::Backend`] instead of waiting for good; once it is given back, the
/// store works again.
pub async fn row23_exhausted_pool_fails_then_recovers<H>(
    store: &dyn LockingStore,
    hold: impl AsyncFnOnce() -> H,
) {
    let now = Timestamp::now();
    let record = fresh_record(now);
    store.create(&record).await.unwrap_or_else(|e| panic!("create: {e}"));
    let held = hold().await;
    let load = store.load(&record.key, now).await;
    assert!(matches!(load, Err(Error::Backend { .. })), "load, pool exhausted: {load:?}");
    let save = store.save(&record).await;
    assert!(matches!(save, Err(Error::Backend { .. })), "save, pool exhausted: {save:?}");
    let options =
        LockOptions { lease: Duration::from_secs(30), wait_timeout: Duration::from_secs(5) };
    let lock = store.lock(&record.key, options).await;
    assert!(matches!(lock, Err(Error::Backend { .. })), "lock, pool exhausted: {lock:?}");
    drop(held);
    let loaded = store.load(&record.key, now).await.unwrap_or_else(|e| panic!("load: {e}"));
    assert!(loaded.is_some(), "the store works again");
}

/// `delete_expired` on a store told to delete at most `batch` sessions a
/// statement (its `with_cleanup_batch_size`): more expired sessions than two
/// batches all go, over as many statements as it takes, and the live one
/// stays.
pub async fn delete_expired_in_batches(store: &dyn SessionStore, batch: u64) {
    let now = Timestamp::now();
    let expired = 2 * batch + 1;
    for i in 0..expired {
        let mut record = fresh_record(now - Duration::from_secs(1000));
        record.idle_deadline = now - Duration::from_secs(i);
        store.create(&record).await.unwrap_or_else(|e| panic!("create: {e}"));
    }
    let mut live = fresh_record(now - Duration::from_secs(1000));
    live.idle_deadline = now + Duration::from_secs(60);
    store.create(&live).await.unwrap_or_else(|e| panic!("create: {e}"));
    let deleted = store.delete_expired(now).await.unwrap_or_else(|e| panic!("cleanup: {e}"));
    assert_eq!(deleted, expired);
    assert_eq!(store.delete_expired(now).await.unwrap_or_else(|e| panic!("cleanup: {e}")), 0);
    let kept = store.load(&live.key, now).await.unwrap_or_else(|e| panic!("load: {e}"));
    assert!(kept.is_some(), "the live session stays");
}

/// The cleanup task ([`SpawnCleanup::spawn_cleanup`](crate::SpawnCleanup))
/// on `store` deletes an expired session within seconds, and stops when
/// told to.
pub async fn cleanup_task_deletes_expired<S: SessionStore + Clone>(store: S) {
    use crate::SpawnCleanup as _;
    let now = Timestamp::now();
    let mut expired = fresh_record(now - Duration::from_secs(100));
    expired.idle_deadline = now - Duration::from_secs(1);
    store.create(&expired).await.unwrap_or_else(|e| panic!("create: {e}"));
    let cleanup = store.spawn_cleanup(Duration::from_millis(20));
    // Loaded as of before it expired: only a deleted session is absent.
    let past = now - Duration::from_secs(50);
    let mut gone = false;
    for _ in 0..500 {
        if store.load(&expired.key, past).await.unwrap_or_else(|e| panic!("load: {e}")).is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "the cleanup task deleted the expired session");
    cleanup.stop().await;
}

/// Runs every check in order.
pub async fn run_all(store: DynStore, capabilities: Capabilities) {
    unknown_key_loads_nothing(Arc::clone(&store)).await;
    create_then_load_round_trips(Arc::clone(&store)).await;
    create_refuses_collision(Arc::clone(&store)).await;
    save_overwrites(Arc::clone(&store)).await;
    save_never_resurrects(Arc::clone(&store)).await;
    load_hides_expired(Arc::clone(&store)).await;
    touch_extends_without_rewriting(Arc::clone(&store)).await;
    delete_expired_removes_only_expired(Arc::clone(&store), capabilities).await;
    user_index(Arc::clone(&store)).await;
    lock_is_exclusive_per_key(Arc::clone(&store)).await;
    lock_and_reload_reports_changes(Arc::clone(&store)).await;
    lock_serializes_increments(store).await;
}

/// Expands to one `#[tokio::test]` per conformance check and per
/// store-level hostile-input row (`row05_*` and so on), in a module named
/// `conformance`.
///
/// `$make_backend` is an `async fn() -> Backend` opening two instances of the
/// store on one fresh [`Backend`]; the single-store checks run on
/// [`Backend::store`]. An optional second argument gives the store's
/// [`Capabilities`].
#[macro_export]
macro_rules! conformance_tests {
    ($make_backend:path) => {
        $crate::conformance_tests!($make_backend, $crate::testing::Capabilities::default());
    };
    ($make_backend:path, $capabilities:expr) => {
        mod conformance {
            use super::*;

            $crate::conformance_tests!(@each $make_backend;
                unknown_key_loads_nothing,
                create_then_load_round_trips,
                create_refuses_collision,
                save_overwrites,
                save_never_resurrects,
                load_hides_expired,
                touch_extends_without_rewriting,
                user_index,
                lock_is_exclusive_per_key,
                lock_and_reload_reports_changes,
                lock_serializes_increments,
            );

            $crate::conformance_tests!(@across $make_backend;
                save_under_lock_keeps_the_lock,
                waiters_in_one_process_take_turns_in_order,
                row05_unknown_key_is_not_created,
                row07_path_like_user_ids,
                row08_sql_shaped_user_ids,
                row23_held_lock_times_out_elsewhere,
                row25_concurrent_locked_writers_lose_nothing,
                row26_id_collision_on_create_hands_over_nothing,
                row28_deleted_session_is_gone_everywhere,
            );

            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn delete_expired_removes_only_expired() {
                let backend: $crate::testing::Backend = $make_backend().await;
                $crate::testing::delete_expired_removes_only_expired(
                    backend.store(),
                    $capabilities,
                )
                .await;
            }
        }
    };
    (@each $make_backend:path; $($check:ident),* $(,)?) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $check() {
            let backend: $crate::testing::Backend = $make_backend().await;
            $crate::testing::$check(backend.store()).await;
        }
    )*};
    (@across $make_backend:path; $($check:ident),* $(,)?) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $check() {
            let backend: $crate::testing::Backend = $make_backend().await;
            $crate::testing::$check(backend.store(), backend.other()).await;
        }
    )*};
}

//! Acknowledged writes under faults (issue #17, item 2): client tasks do
//! locked increments (`/incr`) over real sockets against the app served by a
//! child process, while the store is killed with SIGKILL and started again,
//! and the app process itself is killed and started again. Afterwards every
//! increment the app answered 200 for must be in the store (accounting in
//! `common::ledger`); requests in flight at a kill may have landed without
//! an answer, and are reported.
//!
//! The stores are the durable configurations: Redis with `appendonly yes`
//! and `appendfsync always`, PostgreSQL with `fsync` on, the filesystem store
//! on a directory and SQLite on a file. The last two live in the app's
//! process, so for them the store dies with the app.
//!
//! The `acknowledged_writes_*` tests are short (a few seconds per store, two
//! store kills and one app kill) and run with `cargo test`; `soak_every_store`
//! is the long run of `cargo xtask soak`, sized by `SOAK_SECONDS` (per store),
//! `SOAK_STORE_KILLS`, `SOAK_APP_KILLS`, `SOAK_CLIENTS` and `SOAK_SESSIONS`.
//!
//! The app server is this test binary run again with [`SERVER_ENV`] set: the
//! test function that sees it serves `common::app` on the given port instead
//! of testing.
#![cfg(all(feature = "redis", feature = "postgres", feature = "sqlite", feature = "fs"))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::child::ChildServer;
use common::ledger::{Figures, Tally};
use common::wire::WireClient;
use common::{app, config};
use http::StatusCode;
use session_axum::SessionLayer;
use session_axum::core::LockOptions;
use session_axum::fs::FsStore;
use session_axum::postgres::{PgPoolOptions, PostgresStore};
use session_axum::redis::RedisStore;
use session_axum::sqlite::SqliteStore;
use session_stores_postgres::testing::PrivatePostgres;
use session_stores_redis::testing::PrivateRedis;
use tempfile::TempDir;

/// Set in the app server process: `<store>|<url or path>|<port>`.
const SERVER_ENV: &str = "SESSION_AXUM_SOAK_SERVER";
/// How long a killed store or app stays dead before it is started again.
const DEAD: Duration = Duration::from_millis(500);
/// A client gives up on a request after this long. Well above the layer's
/// own waits (lock wait, pool acquire, Redis response timeout), so that a
/// request it gives up on has finished in the server too.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longer than this without any increment answered after a restart fails
/// the test: the system did not recover.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// The lock of an app that was killed while holding it ends with its lease
/// (Redis keeps it); a lease shorter than the wait lets the next request
/// take over.
fn locks() -> LockOptions {
    LockOptions { lease: Duration::from_secs(2), wait_timeout: Duration::from_secs(3) }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Redis,
    Postgres,
    Fs,
    Sqlite,
}

impl Kind {
    const ALL: [Self; 4] = [Self::Redis, Self::Postgres, Self::Fs, Self::Sqlite];

    fn name(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Postgres => "postgres",
            Self::Fs => "fs",
            Self::Sqlite => "sqlite",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Redis => "redis (appendfsync always)",
            Self::Postgres => "postgres (fsync on)",
            Self::Fs => "fs (directory)",
            Self::Sqlite => "sqlite (file, WAL)",
        }
    }

    fn parse(name: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .unwrap_or_else(|| panic!("unknown store `{name}`"))
    }

    /// Whether the store lives in the app's process, and so dies with it.
    fn in_process(self) -> bool {
        matches!(self, Self::Fs | Self::Sqlite)
    }
}

/// The store's server or files, owned by the test process.
enum Backing {
    Redis(PrivateRedis),
    Postgres(PrivatePostgres),
    Files(TempDir),
}

impl Backing {
    fn start(kind: Kind) -> Self {
        match kind {
            Kind::Redis => Self::Redis(PrivateRedis::start_durable()),
            Kind::Postgres => Self::Postgres(PrivatePostgres::start_durable()),
            Kind::Fs | Kind::Sqlite => Self::Files(tempfile::tempdir().expect("temp dir")),
        }
    }

    /// What the app server is told to open: a URL, a directory or a file.
    fn locator(&self, kind: Kind) -> String {
        match (self, kind) {
            (Self::Redis(redis), _) => redis.url(),
            (Self::Postgres(postgres), _) => postgres.url(),
            (Self::Files(dir), Kind::Fs) => dir.path().join("store").display().to_string(),
            (Self::Files(dir), _) => dir.path().join("sessions.db").display().to_string(),
        }
    }

    /// SIGKILLs the store's server (like a crash). Blocks until it is gone.
    fn kill(&mut self) {
        match self {
            Self::Redis(redis) => redis.kill(),
            Self::Postgres(postgres) => postgres.kill(),
            Self::Files(_) => unreachable!("an in-process store dies with the app"),
        }
    }

    /// Starts the killed server again, on its data. Blocks until it answers.
    fn start_again(&mut self) {
        match self {
            Self::Redis(redis) => redis.start_again(),
            Self::Postgres(postgres) => postgres.start_again(),
            Self::Files(_) => unreachable!("an in-process store dies with the app"),
        }
    }
}

/// Starts the app server (this test binary, run again as `test` with
/// [`SERVER_ENV`]) on `port` (0: any) and waits until it listens. Blocks.
fn spawn_app(test: &str, kind: Kind, locator: &str, port: u16) -> ChildServer {
    ChildServer::spawn(test, SERVER_ENV, &format!("{}|{locator}|{port}", kind.name()))
}

/// In the app server process: serves `common::app` on the store until killed.
async fn serve_app(spec: &str) {
    let mut parts = spec.splitn(3, '|');
    let (kind, locator, port) = (
        Kind::parse(parts.next().unwrap()),
        parts.next().unwrap(),
        parts.next().unwrap().parse::<u16>().unwrap(),
    );
    let layer = match kind {
        Kind::Redis => SessionLayer::new(
            RedisStore::from_url(locator)
                .unwrap()
                .with_connect_timeout(Duration::from_millis(500))
                .with_response_timeout(Duration::from_millis(1500)),
        ),
        Kind::Postgres => {
            let pool = PgPoolOptions::new()
                .max_connections(24)
                .acquire_timeout(Duration::from_secs(1))
                .connect(locator)
                .await
                .unwrap();
            let store = PostgresStore::new(pool).with_table_name("soak_sessions").unwrap();
            store.migrate().await.unwrap();
            SessionLayer::new(store)
        }
        Kind::Fs => SessionLayer::new(FsStore::new(locator).unwrap()),
        Kind::Sqlite => SessionLayer::new(SqliteStore::open(locator).await.unwrap()),
    };
    common::child::serve(
        app(layer.with_config(config().with_lock_options(locks())).unwrap()),
        port,
    )
    .await;
}

/// How long a run lasts and what it kills.
#[derive(Debug, Clone, Copy)]
struct Plan {
    seconds: f64,
    store_kills: u32,
    app_kills: u32,
    clients: usize,
    sessions: usize,
}

impl Plan {
    /// The run of `cargo test`: two store kills and one app kill in seven
    /// seconds.
    fn short() -> Self {
        Self { seconds: 7.0, store_kills: 2, app_kills: 1, clients: 8, sessions: 4 }
    }

    /// The run of `cargo xtask soak`, from `SOAK_*`.
    fn long() -> Self {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
            std::env::var(name).map_or(default, |value| {
                value.parse().unwrap_or_else(|_| panic!("{name}={value} is not a number"))
            })
        }
        Self {
            seconds: var("SOAK_SECONDS", 60.0),
            store_kills: var("SOAK_STORE_KILLS", 6),
            app_kills: var("SOAK_APP_KILLS", 3),
            clients: var("SOAK_CLIENTS", 16),
            sessions: var("SOAK_SESSIONS", 8),
        }
    }

    /// What each fault kills, the app kills spread among the store kills.
    fn faults(&self) -> Vec<Fault> {
        let total = self.store_kills + self.app_kills;
        let apps_before = |i: u32| (i * self.app_kills + total / 2) / total.max(1);
        (0..total)
            .map(|i| if apps_before(i + 1) > apps_before(i) { Fault::App } else { Fault::Store })
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Store,
    App,
}

/// One fault as it happened.
#[derive(Debug)]
struct Happened {
    fault: Fault,
    /// Seconds into the run.
    at: f64,
    /// Requests that may have landed without an answer: those in flight
    /// when the kill began and those started until it was done.
    at_risk: u64,
    /// From the kill to the first increment answered after the restart.
    unavailable: f64,
}

/// Shared between the clients and the fault schedule.
#[derive(Default)]
struct Counters {
    stop: AtomicBool,
    in_flight: AtomicUsize,
    started: AtomicU64,
    answered: AtomicU64,
}

/// One client task: increments `cookie`'s session until told to stop.
async fn client(port: u16, cookie: String, counters: Arc<Counters>) -> Tally {
    let mut wire = WireClient::new(port, CLIENT_TIMEOUT);
    let mut tally = Tally::default();
    while !counters.stop.load(Ordering::Relaxed) {
        counters.started.fetch_add(1, Ordering::SeqCst);
        counters.in_flight.fetch_add(1, Ordering::SeqCst);
        let outcome = wire.get("/incr", Some(&cookie)).await;
        counters.in_flight.fetch_sub(1, Ordering::SeqCst);
        match outcome {
            Ok(reply) if reply.status == StatusCode::OK => {
                tally.acknowledged.push(reply.body.parse().expect("a count"));
                counters.answered.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            Ok(reply) if reply.status == StatusCode::SERVICE_UNAVAILABLE => tally.error(),
            Ok(reply) => panic!("{} under faults: {}", reply.status, reply.body),
            Err(_) => tally.no_answer(),
        }
        // Down: no busy loop against a refused port.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tally
}

/// A run on one store: its figures and faults.
async fn run(test: &str, kind: Kind, plan: Plan) -> (Figures, Vec<Happened>) {
    let mut backing = tokio::task::block_in_place(|| Backing::start(kind));
    let locator = backing.locator(kind);
    let mut server = tokio::task::block_in_place(|| spawn_app(test, kind, &locator, 0));
    let port = server.port;

    let mut setup = WireClient::new(port, CLIENT_TIMEOUT);
    let mut cookies = Vec::new();
    for _ in 0..plan.sessions {
        let reply = setup.get("/incr", None).await.expect("the app answers");
        assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "1"));
        cookies.push(reply.cookies.first().expect("a session cookie").clone());
    }
    let counters = Arc::new(Counters::default());
    let clients: Vec<_> = (0..plan.clients)
        .map(|i| {
            let cookie = cookies[i % plan.sessions].clone();
            tokio::spawn(client(port, cookie, Arc::clone(&counters)))
        })
        .collect();

    let started = Instant::now();
    let faults = plan.faults();
    let spacing = plan.seconds / f64::from(u32::try_from(faults.len()).unwrap() + 1);
    let mut happened = Vec::new();
    for (i, fault) in faults.into_iter().enumerate() {
        let due = started + Duration::from_secs_f64(spacing * (i as f64 + 1.0));
        tokio::time::sleep_until(due.into()).await;
        let in_flight = counters.in_flight.load(Ordering::SeqCst) as u64;
        let started_before = counters.started.load(Ordering::SeqCst);
        let killed = Instant::now();
        let at_risk = if fault == Fault::App || kind.in_process() {
            server.kill();
            let started_during = counters.started.load(Ordering::SeqCst) - started_before;
            tokio::time::sleep(DEAD).await;
            server = tokio::task::block_in_place(|| spawn_app(test, kind, &locator, port));
            in_flight + started_during
        } else {
            tokio::task::block_in_place(|| backing.kill());
            let started_during = counters.started.load(Ordering::SeqCst) - started_before;
            tokio::time::sleep(DEAD).await;
            tokio::task::block_in_place(|| backing.start_again());
            in_flight + started_during
        };
        let answered = counters.answered.load(Ordering::SeqCst);
        while counters.answered.load(Ordering::SeqCst) == answered {
            assert!(
                killed.elapsed() < RECOVERY_TIMEOUT,
                "{}: no increment answered within {RECOVERY_TIMEOUT:?} of a {fault:?} kill",
                kind.name()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        happened.push(Happened {
            fault,
            at: killed.duration_since(started).as_secs_f64(),
            at_risk,
            unavailable: killed.elapsed().as_secs_f64(),
        });
    }
    tokio::time::sleep_until((started + Duration::from_secs_f64(plan.seconds)).into()).await;
    counters.stop.store(true, Ordering::SeqCst);

    let mut tallies: Vec<Tally> = (0..plan.sessions).map(|_| Tally::starting_at(1)).collect();
    for (i, task) in clients.into_iter().enumerate() {
        tallies[i % plan.sessions].merge(&task.await.expect("a client task"));
    }
    let mut figures = Figures::default();
    for (cookie, tally) in cookies.iter().zip(&tallies) {
        // One more increment answers with the stored count + 1.
        let reply = setup.get("/incr", Some(cookie)).await.expect("the app answers at the end");
        assert_eq!(reply.status, StatusCode::OK, "reading the count at the end: {}", reply.body);
        let stored = reply.body.parse::<u64>().unwrap() - 1;
        figures.add(&tally.settle(stored));
    }
    figures.seconds_unavailable = happened.iter().map(|fault| fault.unavailable).sum();
    drop(server);
    drop(backing);
    (figures, happened)
}

/// The table of a run's figures, with its faults.
fn report(rows: &[(Kind, Figures, Vec<Happened>)]) {
    let mut out = format!("{}\n", Figures::header());
    for (kind, figures, _) in rows {
        out.push_str(&figures.row(kind.label()));
        out.push('\n');
    }
    for (kind, _, happened) in rows {
        let faults: Vec<String> = happened
            .iter()
            .map(|h| {
                format!(
                    "{} at {:.1}s ({} at risk, {:.2}s unavailable)",
                    match (h.fault, kind.in_process()) {
                        (Fault::App, _) => "app",
                        (Fault::Store, true) => "app+store",
                        (Fault::Store, false) => "store",
                    },
                    h.at,
                    h.at_risk,
                    h.unavailable
                )
            })
            .collect();
        out.push_str(&format!("{}: {}\n", kind.name(), faults.join(", ")));
    }
    println!("{out}");
}

/// The assertions of every run: nothing acknowledged lost, nothing stored
/// beyond what the faults put at risk, and the faults were felt.
fn check(kind: Kind, figures: &Figures, happened: &[Happened]) {
    let name = kind.name();
    assert_eq!(figures.lost, 0, "{name}: acknowledged increments lost");
    let at_risk: u64 = happened.iter().map(|h| h.at_risk).sum();
    assert!(
        figures.unacknowledged_stored <= at_risk,
        "{name}: {} increments stored without an answer, but only {at_risk} were in flight \
         at the kills",
        figures.unacknowledged_stored
    );
    assert!(figures.errors + figures.in_doubt > 0, "{name}: the kills were felt");
    assert!(figures.acknowledged as u64 > figures.errors + figures.in_doubt, "{name}: it served");
}

/// The short run on one store, or the app server if this is its process.
async fn short(test: &str, kind: Kind) {
    if let Ok(spec) = std::env::var(SERVER_ENV) {
        return serve_app(&spec).await;
    }
    let rows = [(kind, run(test, kind, Plan::short()).await)];
    let rows = rows.map(|(kind, (figures, happened))| (kind, figures, happened));
    report(&rows);
    let (_, figures, happened) = &rows[0];
    check(kind, figures, happened);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_redis_and_app_kills() {
    short("acknowledged_writes_survive_redis_and_app_kills", Kind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_postgres_and_app_kills() {
    short("acknowledged_writes_survive_postgres_and_app_kills", Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_fs_app_kills() {
    short("acknowledged_writes_survive_fs_app_kills", Kind::Fs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sqlite_app_kills() {
    short("acknowledged_writes_survive_sqlite_app_kills", Kind::Sqlite).await;
}

/// The long run of `cargo xtask soak`: every store in turn, one table.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "minutes long; run by `cargo xtask soak`"]
async fn soak_every_store() {
    if let Ok(spec) = std::env::var(SERVER_ENV) {
        return serve_app(&spec).await;
    }
    let plan = Plan::long();
    println!("soak: {plan:?} per store");
    let mut rows = Vec::new();
    for kind in Kind::ALL {
        let (figures, happened) = run("soak_every_store", kind, plan).await;
        rows.push((kind, figures, happened));
        report(&rows[rows.len() - 1..]);
    }
    println!("soak: every store");
    report(&rows);
    for (kind, figures, happened) in &rows {
        check(*kind, figures, happened);
    }
}

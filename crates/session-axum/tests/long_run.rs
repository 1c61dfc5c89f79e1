//! Long runs that leak nothing: an app on a real loopback socket serves a mix
//! of browsers (create, read, locked write, cycle, login, logout) while the
//! process's resident memory, open file descriptors and live tasks, the
//! store's entries and locks, and the Redis pool are sampled.
//!
//! Two sizes. The short runs (`short_run_memory`, `short_run_redis`, 20 000
//! requests) run with every `cargo test` and assert that the lock table and the
//! store come back to their baseline once every session logged out. The long
//! runs (`long_run_memory`, `long_run_redis`; `#[ignore]`d, `LONG_RUN_REQUESTS`
//! requests, one million by default) are what `cargo xtask soak` runs in
//! release mode; they print the samples and assert the same, plus flatness.
//!
//! Flat means, from the first sample after the warm-up (the first tenth of
//! the requests: allocator arenas, hash-map capacities and pool connections
//! reach their working size there) to the end of the run:
//! - resident memory grows by at most [`RSS_GROWTH_BOUND_KIB`] (16 MiB; a leak
//!   of 17 bytes a request would pass it in a million requests),
//! - open file descriptors by at most [`FD_GROWTH_BOUND`], live tasks by at most
//!   [`TASK_GROWTH_BOUND`],
//! - store entries, locks and user indexes never exceed twice what the
//!   browsers alive at once hold (see [`Gauge::bound`]), and the pool never
//!   exceeds its maximum size.
//!
//! These are resource assertions; the run's duration is reported, never
//! asserted. Redis comes from `REDIS_URL` (which `cargo xtask test` and
//! `cargo xtask soak` set); without it the Redis runs fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use http::StatusCode;
use session_axum::auth::AuthRejection;
use session_axum::memory::MemoryStore;
use session_axum::{Auth, AuthLayer, AuthUser, CurrentUser, SessionLayer, UserLoader};

use common::wire::{WireClient, WireReply};

/// Browsers played at once, one keep-alive connection each.
const CLIENTS: usize = 16;
/// Requests of the short runs.
const SHORT_REQUESTS: u64 = 20_000;
/// Requests of the long runs unless `LONG_RUN_REQUESTS` says otherwise.
const LONG_REQUESTS: u64 = 1_000_000;
/// Samples taken during a run (plus one before and one after).
const SAMPLES: u64 = 40;
/// The share of the requests that is warm-up, excluded from the flatness checks.
const WARM_UP_DIVISOR: u64 = 10;
/// Resident memory may grow this much after the warm-up.
const RSS_GROWTH_BOUND_KIB: u64 = 16 * 1024;
/// Open file descriptors may grow this much after the warm-up: a pool
/// connection opened late, a reconnection.
const FD_GROWTH_BOUND: usize = 4;
/// Live tokio tasks may grow this much after the warm-up.
const TASK_GROWTH_BOUND: usize = 8;

/// Runs in one binary share the process whose memory and descriptors are
/// measured, so they take turns.
static SERIAL: Mutex<()> = Mutex::new(());

/// Anyone is a user: these runs are about sessions, not passwords.
#[derive(Debug, Clone)]
struct User {
    id: String,
}

impl AuthUser for User {
    type Id = String;

    fn id(&self) -> String {
        self.id.clone()
    }

    fn session_auth_hash(&self) -> &[u8] {
        b"long-run"
    }
}

#[derive(Debug, Clone)]
struct Users;

impl UserLoader<User> for Users {
    type Error = Infallible;

    async fn load(&self, id: &String) -> Result<Option<User>, Infallible> {
        Ok(Some(User { id: id.clone() }))
    }
}

/// `common::app`'s session routes, plus login, the logged-in user and logout
/// behind the auth layer, all on one store.
fn app(layer: SessionLayer) -> Router {
    let auth = Router::new()
        .route(
            "/login/{id}",
            get(|auth: Auth<User>, Path(id): Path<String>| async move {
                auth.login(&User { id }).await?;
                Ok::<_, AuthRejection>("logged in")
            }),
        )
        .route("/me", get(|user: CurrentUser<User>| async move { user.id.clone() }))
        .route(
            "/logout",
            get(|auth: Auth<User>| async move {
                auth.logout().await?;
                Ok::<_, AuthRejection>("logged out")
            }),
        )
        .layer(AuthLayer::new(Users))
        .layer(layer.clone());
    common::app(layer).merge(auth)
}

/// What the store holds at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct StoreFigures {
    /// Records (memory: `len()`; Redis: record keys under the prefix).
    entries: usize,
    /// Sessions locked (memory: `locks_in_use()`; Redis: lock keys).
    locks: usize,
    /// Per-user index keys (Redis only; the memory store's index is internal).
    indexes: usize,
    /// The pool's (size, available, max size) (Redis only).
    pool: Option<(usize, usize, usize)>,
    /// Whether the release-notice connection is open (Redis only): one more
    /// connection, driven by two tasks, for as long as the store lives.
    notices: bool,
}

/// Reads a store's figures.
enum Gauge {
    Memory(MemoryStore),
    #[cfg(feature = "redis")]
    Redis(redis_gauge::RedisGauge),
}

impl Gauge {
    async fn figures(&self) -> StoreFigures {
        match self {
            Self::Memory(store) => StoreFigures {
                entries: store.len(),
                locks: store.locks_in_use(),
                ..StoreFigures::default()
            },
            #[cfg(feature = "redis")]
            Self::Redis(gauge) => gauge.figures().await,
        }
    }

    /// The most entries, locks and index keys allowed in one count. Each
    /// client plays one browser at a time, so at most `CLIENTS` sessions (and
    /// locks, and users) exist at once; but while a session's id moves (a
    /// cycle, a login) its new record is written before the old one is
    /// deleted, and a count is no snapshot either (the memory store's goes
    /// shard by shard, Redis' `SCAN` key by key): it can see both.
    fn bound(&self) -> usize {
        2 * CLIENTS
    }
}

#[cfg(feature = "redis")]
mod redis_gauge {
    use session_axum::redis::RedisStore;
    use session_axum::redis::deadpool_redis::redis::{self, aio::MultiplexedConnection};

    use super::StoreFigures;

    /// Counts the keys under the store's prefix over a connection of its
    /// own, so the pool's figures are the store's alone.
    pub(super) struct RedisGauge {
        pub(super) store: RedisStore,
        connection: MultiplexedConnection,
    }

    impl RedisGauge {
        pub(super) async fn new(store: RedisStore, url: &str) -> Self {
            let client = redis::Client::open(url).unwrap();
            let connection = client.get_multiplexed_async_connection().await.unwrap();
            Self { store, connection }
        }

        pub(super) async fn keys(&self) -> Vec<String> {
            let pattern = format!("{}*", self.store.prefix());
            let mut connection = self.connection.clone();
            let (mut keys, mut cursor) = (Vec::new(), 0u64);
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut connection)
                    .await
                    .unwrap();
                keys.extend(batch);
                if next == 0 {
                    return keys;
                }
                cursor = next;
            }
        }

        pub(super) async fn figures(&self) -> StoreFigures {
            let prefix = self.store.prefix();
            let mut figures = StoreFigures::default();
            for key in self.keys().await {
                let name = &key[prefix.len()..];
                if name.starts_with("lock:") {
                    figures.locks += 1;
                } else if name.starts_with("user:") {
                    figures.indexes += 1;
                } else {
                    figures.entries += 1;
                }
            }
            let status = self.store.pool().expect("a standalone pool").status();
            figures.pool = Some((status.size, status.available, status.max_size));
            figures.notices = session_stores_redis::testing::release_notices_open(&self.store);
            figures
        }
    }
}

/// The process and the store at one moment.
#[derive(Debug, Clone, Copy)]
struct Sample {
    requests: u64,
    seconds: f64,
    rss_kib: u64,
    fds: usize,
    tasks: usize,
    store: StoreFigures,
}

/// Resident set size, from `/proc/self/status`.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Open file descriptors, not counting the one that lists them.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count() - 1
}

async fn sample(gauge: &Gauge, requests: u64, started: Instant) -> Sample {
    Sample {
        requests,
        seconds: started.elapsed().as_secs_f64(),
        rss_kib: rss_kib(),
        fds: open_fds(),
        tasks: tokio::runtime::Handle::current().metrics().num_alive_tasks(),
        store: gauge.figures().await,
    }
}

/// A small deterministic generator, so each browser mixes its requests
/// differently but every run is the same.
struct Mix(u64);

impl Mix {
    fn below(&mut self, n: u64) -> u64 {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One client: browser after browser on one connection until its share of
/// the requests is done, every browser ending with a logout.
struct Browsers {
    client: WireClient,
    mix: Mix,
    /// Requests done by all clients, for the sampler.
    done: Arc<AtomicU64>,
    /// Requests done by this one.
    mine: u64,
    task: usize,
}

impl Browsers {
    async fn get(&mut self, path: &str, cookie: Option<&str>) -> WireReply {
        let reply = self.client.get(path, cookie).await.unwrap_or_else(|e| panic!("{path}: {e:?}"));
        self.done.fetch_add(1, Ordering::Relaxed);
        self.mine += 1;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
        reply
    }

    async fn expect(&mut self, path: &str, cookie: &str, body: &str) -> WireReply {
        let reply = self.get(path, Some(cookie)).await;
        assert_eq!(reply.body, body, "{path}");
        reply
    }

    /// The cookie a reply set, which must be another one than `old`.
    fn moved(reply: &WireReply, old: &str) -> String {
        let new = reply.cookies.first().expect("a new session cookie").clone();
        assert_ne!(new, old, "the id moved");
        new
    }

    /// One browser: create, reads, locked writes, a cycle, a login, more of
    /// the same, a logout, and the dead cookie read once more.
    async fn browse(&mut self, browser: u64) {
        let value = format!("b{}-{browser}", self.task);
        let reply = self.get(&format!("/set?v={value}"), None).await;
        let mut cookie = reply.cookies.first().expect("a session cookie").clone();
        let mut n = 0;
        for _ in 0..=self.mix.below(3) {
            self.expect("/get", &cookie, &value).await;
        }
        for _ in 0..=self.mix.below(3) {
            n += 1;
            self.expect("/incr", &cookie, &n.to_string()).await;
        }
        if self.mix.below(2) == 0 {
            let reply = self.expect("/cycle", &cookie, "cycled").await;
            cookie = Self::moved(&reply, &cookie);
            self.expect("/get", &cookie, &value).await;
        }
        // A few users, so their indexes hold several sessions at times.
        let user = format!("user-{}", self.mix.below(4));
        let reply = self.expect(&format!("/login/{user}"), &cookie, "logged in").await;
        cookie = Self::moved(&reply, &cookie);
        self.expect("/me", &cookie, &user).await;
        for _ in 0..self.mix.below(3) {
            n += 1;
            self.expect("/incr", &cookie, &n.to_string()).await;
        }
        self.expect("/get", &cookie, &value).await;
        let reply = self.expect("/logout", &cookie, "logged out").await;
        assert!(reply.removed && reply.cookies.is_empty(), "logout clears the cookie");
        let reply = self.expect("/get", &cookie, "none").await;
        assert!(reply.cookies.is_empty(), "a dead cookie starts no session");
    }

    async fn run(mut self, share: u64) {
        let mut browser = 0;
        while self.mine < share {
            self.browse(browser).await;
            browser += 1;
        }
    }
}

/// What a run measured.
struct Run {
    store: &'static str,
    start: Sample,
    during: Vec<Sample>,
    end: Sample,
    /// The most entries, locks and index keys allowed at once.
    bound: usize,
}

/// Serves the app on a loopback socket, plays `CLIENTS` clients until
/// `requests` are done, samples throughout, then shuts the server down
/// (every connection closed) and samples once more.
async fn run(store: &'static str, layer: SessionLayer, gauge: Gauge, requests: u64) -> Run {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app(layer))
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    let gauge = Arc::new(gauge);
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let start = sample(&gauge, 0, started).await;

    let finished = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn({
        let (gauge, done, finished) =
            (Arc::clone(&gauge), Arc::clone(&done), Arc::clone(&finished));
        async move {
            let step = (requests / SAMPLES).max(1);
            let (mut samples, mut next) = (Vec::new(), step);
            while !finished.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let requests = done.load(Ordering::Relaxed);
                if requests >= next {
                    samples.push(sample(&gauge, requests, started).await);
                    next = requests + step;
                }
            }
            samples
        }
    });

    let share = requests.div_ceil(CLIENTS as u64);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|task| {
            let browsers = Browsers {
                // Generous: only a hung server should ever hit it.
                client: WireClient::new(port, Duration::from_secs(60)),
                mix: Mix(0x9e37_79b9_7f4a_7c15 ^ (task as u64 + 1).wrapping_mul(0x2545_f491)),
                done: Arc::clone(&done),
                mine: 0,
                task,
            };
            tokio::spawn(browsers.run(share))
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    finished.store(true, Ordering::Relaxed);
    let during = sampler.await.unwrap();
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    let end = sample(&gauge, done.load(Ordering::Relaxed), started).await;
    Run { store, start, during, end, bound: gauge.bound() }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn pool(figures: &StoreFigures) -> String {
    figures.pool.map_or_else(
        || "-".to_owned(),
        |(size, available, max)| format!("{size}/{available}/{max}"),
    )
}

fn row(label: &str, sample: &Sample) -> String {
    format!(
        "{label:>16} {:>9} {:>8.1} {:>8} {:>5} {:>6} {:>8} {:>6} {:>8} {:>10}",
        sample.requests,
        sample.seconds,
        mib(sample.rss_kib),
        sample.fds,
        sample.tasks,
        sample.store.entries,
        sample.store.locks,
        sample.store.indexes,
        pool(&sample.store),
    )
}

impl Run {
    /// The first sample past the warm-up.
    fn warmed_up(&self) -> &Sample {
        let warm_up = self.end.requests / WARM_UP_DIVISOR;
        self.during.iter().find(|sample| sample.requests >= warm_up).unwrap_or(&self.end)
    }

    /// Samples from the warm-up on, while the clients ran.
    fn after_warm_up(&self) -> &[Sample] {
        let warm_up = self.end.requests / WARM_UP_DIVISOR;
        let first = self.during.iter().position(|sample| sample.requests >= warm_up);
        first.map_or(&[], |first| &self.during[first..])
    }

    /// The largest of each figure after the warm-up, in one sample-shaped row.
    fn max_after_warm_up(&self) -> Sample {
        let mut max = *self.warmed_up();
        for sample in self.after_warm_up() {
            max.rss_kib = max.rss_kib.max(sample.rss_kib);
            max.fds = max.fds.max(sample.fds);
            max.tasks = max.tasks.max(sample.tasks);
            max.store.entries = max.store.entries.max(sample.store.entries);
            max.store.locks = max.store.locks.max(sample.store.locks);
            max.store.indexes = max.store.indexes.max(sample.store.indexes);
            max.store.pool = max.store.pool.max(sample.store.pool);
            (max.requests, max.seconds) = (sample.requests, sample.seconds);
        }
        max
    }

    fn report(&self) {
        let header = format!(
            "{:>16} {:>9} {:>8} {:>8} {:>5} {:>6} {:>8} {:>6} {:>8} {:>10}",
            "",
            "requests",
            "seconds",
            "rss MiB",
            "fds",
            "tasks",
            "entries",
            "locks",
            "indexes",
            "pool s/a/m"
        );
        println!(
            "\nlong run on {}: {} requests, {CLIENTS} clients, {:.1} s ({:.0} requests/s)",
            self.store,
            self.end.requests,
            self.end.seconds,
            self.end.requests as f64 / self.end.seconds
        );
        println!("{header}");
        println!("{}", row("start", &self.start));
        for (i, sample) in self.during.iter().enumerate() {
            println!("{}", row(&format!("sample {i}"), sample));
        }
        println!("{}", row("end (shut down)", &self.end));
        println!("summary");
        println!("{header}");
        println!("{}", row("start", &self.start));
        println!("{}", row("after warm-up", self.warmed_up()));
        println!("{}", row("max after w-up", &self.max_after_warm_up()));
        println!("{}", row("end (shut down)", &self.end));
        println!(
            "bounds after warm-up: rss +{} MiB, fds +{FD_GROWTH_BOUND}, tasks \
             +{TASK_GROWTH_BOUND}; entries, locks, indexes <= {} at any time; pool size <= max",
            RSS_GROWTH_BOUND_KIB / 1024,
            self.bound
        );
    }

    /// Flat after the warm-up, and the store back to its baseline.
    fn check(&self) {
        assert!(
            self.during.len() as u64 >= SAMPLES / 2,
            "sampled {} times, too few to call it flat",
            self.during.len()
        );
        let (warm, max) = (self.warmed_up(), self.max_after_warm_up());
        assert!(
            max.rss_kib <= warm.rss_kib + RSS_GROWTH_BOUND_KIB,
            "resident memory grew from {} to {} MiB after the warm-up",
            mib(warm.rss_kib),
            mib(max.rss_kib)
        );
        assert!(
            max.fds <= warm.fds + FD_GROWTH_BOUND,
            "open descriptors grew from {} to {} after the warm-up",
            warm.fds,
            max.fds
        );
        assert!(
            max.tasks <= warm.tasks + TASK_GROWTH_BOUND,
            "live tasks grew from {} to {} after the warm-up",
            warm.tasks,
            max.tasks
        );
        for sample in std::iter::once(&self.start).chain(&self.during).chain([&self.end]) {
            let store = &sample.store;
            assert!(
                store.entries <= self.bound
                    && store.locks <= self.bound
                    && store.indexes <= self.bound,
                "more than {} sessions' worth in the store: {store:?}",
                self.bound
            );
            if let Some((size, _, max)) = store.pool {
                assert!(size <= max, "pool of {size} over its maximum {max}");
            }
        }
        assert_eq!(
            (self.end.store.entries, self.end.store.locks, self.end.store.indexes),
            (self.start.store.entries, 0, self.start.store.indexes),
            "every browser logged out: the store is back to its baseline, no lock is left"
        );
        // Every connection the server accepted is closed, and the clients' too;
        // only the store's own connections (Redis: pool, shared one, and the
        // release-notice connection once a waiter opened it) remain.
        let notices = usize::from(self.end.store.notices);
        let store_connections = self.end.store.pool.map_or(0, |(size, ..)| size + 1) + notices;
        assert!(
            self.end.fds <= self.start.fds + store_connections,
            "{} descriptors open at the end, {} at the start",
            self.end.fds,
            self.start.fds
        );
        // Each of those connections has one task driving it (the notice
        // connection one more: its subscriber); nothing else the requests
        // started (lock renewals, connection tasks) may outlive them.
        assert!(
            self.end.tasks <= self.start.tasks + store_connections + notices,
            "{} tasks alive at the end, {} at the start",
            self.end.tasks,
            self.start.tasks
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn long_requests() -> u64 {
    std::env::var("LONG_RUN_REQUESTS").map_or(LONG_REQUESTS, |n| {
        n.replace('_', "").parse().expect("LONG_RUN_REQUESTS is a number of requests")
    })
}

async fn memory_run(requests: u64) {
    let store = MemoryStore::new();
    let layer = SessionLayer::new(store.clone()).with_config(common::config()).unwrap();
    let run = run("memory", layer, Gauge::Memory(store.clone()), requests).await;
    run.report();
    run.check();
    assert!(store.is_empty() && store.locks_in_use() == 0);
}

#[test]
fn short_run_memory() {
    let _serial = serial();
    runtime().block_on(memory_run(SHORT_REQUESTS));
}

#[test]
#[ignore = "a million requests: `cargo xtask soak` runs it in release mode"]
fn long_run_memory() {
    let _serial = serial();
    runtime().block_on(memory_run(long_requests()));
}

#[cfg(feature = "redis")]
async fn redis_run(requests: u64) {
    use session_axum::redis::RedisStore;

    let url = common::service_url("REDIS_URL");
    let store =
        RedisStore::from_url(&url).unwrap().with_prefix(format!("long-run:{}:", common::unique()));
    let gauge = redis_gauge::RedisGauge::new(store.clone(), &url).await;
    assert!(gauge.keys().await.is_empty(), "a fresh prefix");
    let layer = SessionLayer::new(store).with_config(common::config()).unwrap();
    let run = run("redis", layer, Gauge::Redis(gauge), requests).await;
    run.report();
    run.check();
    assert_eq!(run.end.store.entries, 0, "no key left under the prefix");
}

#[cfg(feature = "redis")]
#[test]
fn short_run_redis() {
    let _serial = serial();
    runtime().block_on(redis_run(SHORT_REQUESTS));
}

#[cfg(feature = "redis")]
#[test]
#[ignore = "a million requests: `cargo xtask soak` runs it in release mode"]
fn long_run_redis() {
    let _serial = serial();
    runtime().block_on(redis_run(long_requests()));
}

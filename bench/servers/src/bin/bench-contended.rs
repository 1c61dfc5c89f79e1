//! `cargo xtask bench contended`: what a session's lock costs when it is
//! contended.
//!
//! For each store, N concurrent locked increments of one session (the
//! layer's `lock()` path: `lock_and_load`, then `save_and_release`), all
//! through one store instance ("one process") or split over two instances
//! of the store on one backend, each with its own pool, queue and release
//! notices ("two processes"; for SQLite the two instances share this
//! process's lock table, so only a second real process would exercise its
//! cross-process lock). Prints one Markdown row per store and N: the total
//! time against N times one uncontended increment, the 99th percentile and
//! the longest wait of one request for its lock, the latter against
//! (N - 1) times one uncontended increment, each the median of several
//! rounds. No update may be lost: the counter is checked after each round.

use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::{ExpiryPolicy, LockOptions, LockingStore, SessionId, Timestamp};
use session_stores_postgres::{LockMode, PostgresStore};
use session_stores_redis::RedisStore;

type Store = Arc<dyn LockingStore>;

/// Rounds per figure; the median is reported.
const ROUNDS: usize = 7;
/// Sequential increments that give the uncontended time (their median).
const UNCONTENDED: usize = 40;

fn options() -> LockOptions {
    LockOptions { lease: Duration::from_secs(4), wait_timeout: Duration::from_secs(60) }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// Two instances of the store `name` on one backend; `None` when its
/// service is not configured.
async fn open(name: &str, scratch: &std::path::Path) -> Option<(Store, Store)> {
    let prefix = format!("contended:{}:", &SessionId::random().storage_key().to_hex()[..12]);
    Some(match name {
        "memory" => {
            let store = session_axum::memory::MemoryStore::new();
            (Arc::new(store.clone()), Arc::new(store))
        }
        "sqlite" => {
            let path = scratch.join("contended.sqlite3");
            let a = session_stores_sqlite::SqliteStore::open(&path).await.ok()?;
            let b = session_stores_sqlite::SqliteStore::open(&path).await.ok()?;
            (Arc::new(a), Arc::new(b))
        }
        "fs" => {
            let dir = scratch.join("contended-fs");
            let a = session_stores_fs::FsStore::new(&dir).ok()?;
            let b = session_stores_fs::FsStore::new(&dir).ok()?;
            (Arc::new(a), Arc::new(b))
        }
        "redis" => {
            let url = env("REDIS_URL")?;
            let open = || RedisStore::from_url(&url).map(|s| s.with_prefix(prefix.clone()));
            (Arc::new(open().ok()?), Arc::new(open().ok()?))
        }
        "redis-cluster" => {
            let urls = env("REDIS_CLUSTER_URLS")?;
            let open = || {
                RedisStore::cluster(urls.split(',').map(str::to_owned))
                    .map(|s| s.with_prefix(prefix.clone()))
            };
            (Arc::new(open().ok()?), Arc::new(open().ok()?))
        }
        "postgres" | "postgres-lease" | "postgres-lease-pgbouncer" => {
            let (variable, mode) = match name {
                "postgres" => ("DATABASE_URL", LockMode::Advisory),
                "postgres-lease" => ("DATABASE_URL", LockMode::Lease),
                _ => ("PGBOUNCER_URL", LockMode::Lease),
            };
            let url = env(variable)?;
            let mut stores = Vec::new();
            for _ in 0..2 {
                let options: session_stores_postgres::PgConnectOptions = url.parse().ok()?;
                let pool = session_stores_postgres::PgPoolOptions::new()
                    .max_connections(8)
                    .connect_with(options.extra_float_digits(None))
                    .await
                    .ok()?;
                let store = PostgresStore::new(pool)
                    .with_table_name("bench_contended")
                    .ok()?
                    .with_lock_mode(mode);
                store.migrate().await.ok()?;
                stores.push(Arc::new(store) as Store);
            }
            let b = stores.pop()?;
            (stores.pop()?, b)
        }
        _ => return None,
    })
}

/// One locked increment; how long it waited for the lock.
async fn increment(store: &Store, key: &session_core::StorageKey) -> Duration {
    let asked = Instant::now();
    let (guard, record) = match store.lock_and_load(key, options(), Timestamp::now()).await {
        Ok(locked) => locked,
        Err(error) => panic!("lock: {error}"),
    };
    let waited = asked.elapsed();
    let Some(mut record) = record else { panic!("the session is gone") };
    let n = record.data.get::<u64>("n").ok().flatten().unwrap_or(0);
    record.data.insert_value("n", (n + 1).into());
    record.version += 1;
    if let Err(error) = store.save_and_release(&record, guard).await {
        panic!("save: {error}");
    }
    waited
}

async fn new_session(store: &Store) -> session_core::StorageKey {
    let record =
        ExpiryPolicy::default().new_record(SessionId::random().storage_key(), Timestamp::now());
    if let Err(error) = store.create(&record).await {
        panic!("create: {error}");
    }
    record.key
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// One round of `n` concurrent increments, spread round-robin over
/// `stores`: the total time, the waits' 99th percentile and maximum.
async fn round(stores: &[Store], n: usize) -> (Duration, Duration, Duration) {
    let key = new_session(&stores[0]).await;
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let store = Arc::clone(&stores[i % stores.len()]);
            tokio::spawn(async move { increment(&store, &key).await })
        })
        .collect();
    let mut waits = Vec::with_capacity(n);
    for task in tasks {
        match task.await {
            Ok(waited) => waits.push(waited),
            Err(error) => panic!("increment: {error}"),
        }
    }
    let total = started.elapsed();
    let stored = stores[0].load(&key, Timestamp::now()).await.ok().flatten();
    let count = stored.and_then(|r| r.data.get::<u64>("n").ok().flatten());
    assert_eq!(count, Some(n as u64), "lost updates");
    waits.sort();
    let p99 = waits[(waits.len() * 99).div_ceil(100) - 1];
    (total, p99, waits[waits.len() - 1])
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let names: Vec<String> = std::env::args().skip(1).collect();
    let names: Vec<&str> = if names.is_empty() {
        vec![
            "memory",
            "sqlite",
            "fs",
            "redis",
            "redis-cluster",
            "postgres",
            "postgres-lease",
            "postgres-lease-pgbouncer",
        ]
    } else {
        names.iter().map(String::as_str).collect()
    };
    let scratch = std::env::temp_dir().join(format!("bench-contended-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&scratch);
    println!(
        "| store | layout | N | uncontended | total | total / (N x uncontended) | p99 wait | longest wait | longest / ((N-1) x uncontended) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for name in names {
        let Some((a, b)) = open(name, &scratch).await else {
            println!("| {name} | - | - | not configured | | | | | |");
            continue;
        };
        let key = new_session(&a).await;
        for _ in 0..5 {
            increment(&a, &key).await; // warm the connections
        }
        let mut alone = Vec::with_capacity(UNCONTENDED);
        for _ in 0..UNCONTENDED {
            let started = Instant::now();
            increment(&a, &key).await;
            alone.push(started.elapsed());
        }
        let one = median(alone);
        for (layout, stores) in [
            ("one process", vec![Arc::clone(&a)]),
            ("two processes", vec![Arc::clone(&a), Arc::clone(&b)]),
        ] {
            for n in [4, 16] {
                let (mut totals, mut p99s, mut longest) = (Vec::new(), Vec::new(), Vec::new());
                for _ in 0..ROUNDS {
                    let (total, p99, max) = round(&stores, n).await;
                    totals.push(total);
                    p99s.push(p99);
                    longest.push(max);
                }
                let (total, p99, max) = (median(totals), median(p99s), median(longest));
                let n32 = u32::try_from(n).unwrap_or(u32::MAX);
                println!(
                    "| {name} | {layout} | {n} | {:.0} µs | {:.0} µs | {:.2} | {:.0} µs | {:.0} µs | {:.2} |",
                    micros(one),
                    micros(total),
                    total.as_secs_f64() / (one * n32).as_secs_f64(),
                    micros(p99),
                    micros(max),
                    max.as_secs_f64() / (one * (n32 - 1)).as_secs_f64(),
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

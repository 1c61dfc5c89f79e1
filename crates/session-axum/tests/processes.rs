//! Lifecycle races between two app server processes sharing one store:
//! the scenarios of `common::races` (logout racing locked and unlocked
//! writes, `cycle_id` racing locked increments), with each app a child
//! process serving on a loopback port, and the store checked from this one.
//!
//! Redis, PostgreSQL and the filesystem store: the stores whose lock works
//! across processes. (SQLite's lock is in-process only, as its docs say; the
//! memory store is one process by nature.)
//!
//! Each test is also the entry of its own app servers: run again with
//! [`SERVER_ENV`] set, it serves `common::app` instead of testing.
#![cfg(all(feature = "redis", feature = "postgres", feature = "fs"))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers.

mod common;

use common::child::{ChildServer, serve};
use common::races::{cycle_racing_locked_increments_on, destroy_racing_writes_on};
use common::target::Target;
use common::{app, config, service_url, unique};
use session_axum::SessionLayer;
use session_axum::core::LockingStore;
use session_axum::fs::FsStore;
use session_axum::postgres::{PgPool, PostgresStore};
use session_axum::redis::RedisStore;

/// Set in an app server process: `<store>|<url or directory>|<key prefix or table>`.
const SERVER_ENV: &str = "SESSION_AXUM_PROCESSES_SERVER";

#[derive(Debug, Clone, Copy)]
enum Kind {
    Redis,
    Postgres,
    Fs,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Postgres => "postgres",
            Self::Fs => "fs",
        }
    }
}

/// The store both processes (and this one) open.
struct Shared {
    kind: Kind,
    locator: String,
    name: String,
    /// Keeps the filesystem store's directory until the test ends.
    _dir: Option<tempfile::TempDir>,
}

impl Shared {
    fn new(kind: Kind) -> Self {
        let (locator, name, dir) = match kind {
            Kind::Redis => (service_url("REDIS_URL"), format!("processes:{}:", unique()), None),
            Kind::Postgres => (service_url("DATABASE_URL"), "axum_process_races".to_owned(), None),
            Kind::Fs => {
                let dir = tempfile::tempdir().expect("temp dir");
                (dir.path().join("sessions").display().to_string(), String::new(), Some(dir))
            }
        };
        Self { kind, locator, name, _dir: dir }
    }

    fn spec(&self) -> String {
        format!("{}|{}|{}", self.kind.name(), self.locator, self.name)
    }

    /// Two app servers on this store, running the test `test`.
    fn two_servers(&self, test: &str) -> ([ChildServer; 2], [Target; 2]) {
        let servers = [
            ChildServer::spawn(test, SERVER_ENV, &self.spec()),
            ChildServer::spawn(test, SERVER_ENV, &self.spec()),
        ];
        let targets = [Target::Port(servers[0].port), Target::Port(servers[1].port)];
        (servers, targets)
    }
}

/// The parts of a spec: kind, locator, name.
fn parts(spec: &str) -> (&str, &str, &str) {
    let mut parts = spec.splitn(3, '|');
    (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap())
}

async fn postgres(locator: &str, table: &str) -> PostgresStore {
    let store =
        PostgresStore::new(PgPool::connect(locator).await.unwrap()).with_table_name(table).unwrap();
    store.migrate().await.unwrap();
    store
}

/// Opens the store `spec` names, for this process's checks.
async fn open(spec: &str) -> Box<dyn LockingStore> {
    match parts(spec) {
        ("redis", url, prefix) => Box::new(RedisStore::from_url(url).unwrap().with_prefix(prefix)),
        ("postgres", url, table) => Box::new(postgres(url, table).await),
        ("fs", dir, _) => Box::new(FsStore::new(dir).unwrap()),
        (other, ..) => panic!("unknown store `{other}`"),
    }
}

/// In an app server process (`SERVER_ENV` set): serves `common::app` on
/// the store until killed, and never returns. Elsewhere returns at once.
async fn serve_if_child() {
    let Ok(spec) = std::env::var(SERVER_ENV) else { return };
    let layer = match parts(&spec) {
        ("redis", url, prefix) => {
            SessionLayer::new(RedisStore::from_url(url).unwrap().with_prefix(prefix))
        }
        ("postgres", url, table) => SessionLayer::new(postgres(url, table).await),
        ("fs", dir, _) => SessionLayer::new(FsStore::new(dir).unwrap()),
        (other, ..) => panic!("unknown store `{other}`"),
    };
    serve(app(layer.with_config(config()).unwrap()), 0).await;
    unreachable!("the app server serves until it is killed");
}

/// Expands to the two race tests across processes on `$kind`.
macro_rules! across_processes {
    ($module:ident, $kind:expr) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn destroy_racing_writes() {
                serve_if_child().await;
                let shared = Shared::new($kind);
                let test = concat!(stringify!($module), "::destroy_racing_writes");
                let (_servers, targets) = shared.two_servers(test);
                let store = open(&shared.spec()).await;
                destroy_racing_writes_on(&targets, &*store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cycle_racing_locked_increments() {
                serve_if_child().await;
                let shared = Shared::new($kind);
                let test = concat!(stringify!($module), "::cycle_racing_locked_increments");
                let (_servers, targets) = shared.two_servers(test);
                let store = open(&shared.spec()).await;
                cycle_racing_locked_increments_on(&targets, &*store).await;
            }
        }
    };
}

across_processes!(redis, Kind::Redis);
across_processes!(postgres, Kind::Postgres);
across_processes!(fs, Kind::Fs);

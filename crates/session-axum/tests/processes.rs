//! Lifecycle races between two app server processes sharing one store:
//! the scenarios of `common::races` (logout racing locked and unlocked
//! writes, `cycle_id` racing locked increments) and of
//! `auth_common::races` (log out everywhere and a password change racing
//! writes, login racing logout, two logins racing), with each app a child
//! process serving on a loopback port, and the store checked from this one.
//! The auth apps share one user database too: a directory of user files.
//!
//! Redis, PostgreSQL, MySQL, the filesystem store and SQLite: the stores whose
//! lock works across processes. (The memory store is one process by nature.)
//!
//! Each test is also the entry of its own app servers: run again with
//! [`SERVER_ENV`] set, it serves the app instead of testing.
#![cfg(all(
    feature = "redis",
    feature = "postgres",
    feature = "mysql",
    feature = "fs",
    feature = "sqlite"
))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers.

// Both support modules bring the shared wire client and handlers; two copies
// here are harmless.
#[allow(clippy::duplicate_mod)]
mod auth_common;
mod common;

use std::path::PathBuf;
use std::time::Duration;

use auth_common::{NumericUsers, TestUsers};
use common::child::{ChildServer, serve};
use common::{service_url, unique};
use session_axum::SessionLayer;
use session_axum::core::{LockOptions, LockingStore, SessionId};
use session_axum::fs::FsStore;
use session_axum::mysql::{MySqlPool, MySqlStore};
use session_axum::postgres::{PgPool, PostgresStore};
use session_axum::redis::RedisStore;
use session_axum::sqlite::SqliteStore;

/// Set in an app server process: `<store>|<url or directory>|<key prefix
/// or table>|<user directory>`; the auth app when a user directory is
/// given, else the session app.
const SERVER_ENV: &str = "SESSION_AXUM_PROCESSES_SERVER";

#[derive(Debug, Clone, Copy)]
enum Kind {
    Redis,
    Postgres,
    MySql,
    Fs,
    Sqlite,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Postgres => "postgres",
            Self::MySql => "mysql",
            Self::Fs => "fs",
            Self::Sqlite => "sqlite",
        }
    }
}

/// The store (and user database) both processes and this one open.
struct Shared {
    kind: Kind,
    locator: String,
    name: String,
    /// The auth apps' user database.
    users: Option<PathBuf>,
    /// Keeps the directories until the test ends.
    _dir: tempfile::TempDir,
}

impl Shared {
    /// The store of `kind`, with a user database if `with_users`.
    fn new(kind: Kind, with_users: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (locator, name) = match kind {
            Kind::Redis => (service_url("REDIS_URL"), format!("processes:{}:", unique())),
            Kind::Postgres => (service_url("DATABASE_URL"), "axum_process_races".to_owned()),
            Kind::MySql => (service_url("MYSQL_URL"), "axum_process_races".to_owned()),
            Kind::Fs => (dir.path().join("sessions").display().to_string(), String::new()),
            Kind::Sqlite => (dir.path().join("sessions.db").display().to_string(), String::new()),
        };
        let users = with_users.then(|| dir.path().join("users"));
        if let Some(users) = &users {
            std::fs::create_dir(users).expect("the user directory");
        }
        Self { kind, locator, name, users, _dir: dir }
    }

    fn spec(&self) -> String {
        let users = self.users.as_ref().map(|dir| dir.display().to_string()).unwrap_or_default();
        format!("{}|{}|{}|{users}", self.kind.name(), self.locator, self.name)
    }

    /// The user database the auth apps share, as this process opens it.
    fn users(&self) -> TestUsers {
        TestUsers::in_dir(self.users.clone().expect("a test with users"))
    }

    /// Two app servers on this store, running the test `test`; their ports.
    fn two_servers(&self, test: &str) -> ([ChildServer; 2], [u16; 2]) {
        let servers = [
            ChildServer::spawn(test, SERVER_ENV, &self.spec()),
            ChildServer::spawn(test, SERVER_ENV, &self.spec()),
        ];
        let ports = [servers[0].port, servers[1].port];
        (servers, ports)
    }
}

/// The parts of a spec: kind, locator, name, user directory.
fn parts(spec: &str) -> [&str; 4] {
    let mut parts = spec.splitn(4, '|');
    [(); 4].map(|()| parts.next().unwrap())
}

async fn postgres(locator: &str, table: &str) -> PostgresStore {
    let store =
        PostgresStore::new(PgPool::connect(locator).await.unwrap()).with_table_name(table).unwrap();
    store.migrate().await.unwrap();
    store
}

async fn mysql(locator: &str, table: &str) -> MySqlStore {
    let store =
        MySqlStore::new(MySqlPool::connect(locator).await.unwrap()).with_table_name(table).unwrap();
    store.migrate().await.unwrap();
    store
}

/// Opens the store `spec` names, for this process's checks.
async fn open(spec: &str) -> Box<dyn LockingStore> {
    match parts(spec) {
        ["redis", url, prefix, _] => {
            Box::new(RedisStore::from_url(url).unwrap().with_prefix(prefix))
        }
        ["postgres", url, table, _] => Box::new(postgres(url, table).await),
        ["mysql", url, table, _] => Box::new(mysql(url, table).await),
        ["fs", dir, ..] => Box::new(FsStore::new(dir).unwrap()),
        ["sqlite", file, ..] => Box::new(SqliteStore::open(file).await.unwrap()),
        [other, ..] => panic!("unknown store `{other}`"),
    }
}

/// In an app server process (`SERVER_ENV` set): serves `common::app` (with a
/// user directory, `auth_common::app`) on the store until killed, and never
/// returns. Elsewhere returns at once.
async fn serve_if_child() {
    let Ok(spec) = std::env::var(SERVER_ENV) else { return };
    let [kind, locator, name, users] = parts(&spec);
    let layer = match kind {
        "redis" => SessionLayer::new(RedisStore::from_url(locator).unwrap().with_prefix(name)),
        "postgres" => SessionLayer::new(postgres(locator, name).await),
        "mysql" => SessionLayer::new(mysql(locator, name).await),
        "fs" => SessionLayer::new(FsStore::new(locator).unwrap()),
        "sqlite" => SessionLayer::new(SqliteStore::open(locator).await.unwrap()),
        other => panic!("unknown store `{other}`"),
    };
    let app = if users.is_empty() {
        common::app(layer.with_config(common::config()).unwrap())
    } else {
        let users = TestUsers::in_dir(users.into());
        auth_common::app(
            layer.with_config(auth_common::config()).unwrap(),
            users,
            NumericUsers::default(),
        )
    };
    serve(app, 0).await;
    unreachable!("the app server serves until it is killed");
}

/// Expands to every race test across processes on `$kind`.
macro_rules! across_processes {
    ($module:ident, $kind:expr) => {
        mod $module {
            use super::*;

            across_processes!(@sessions $module, $kind,
                destroy_racing_writes, destroy_racing_writes_on);
            across_processes!(@sessions $module, $kind,
                cycle_racing_locked_increments, cycle_racing_locked_increments_on);
            across_processes!(@auth $module, $kind,
                logout_everywhere_racing_writes, logout_everywhere_racing_writes_on);
            across_processes!(@auth $module, $kind,
                password_change_racing_writes, password_change_racing_writes_on);
            across_processes!(@auth $module, $kind, login_racing_logout, login_racing_logout_on);
            across_processes!(@auth $module, $kind, two_logins_racing, two_logins_racing_on);
        }
    };
    (@sessions $module:ident, $kind:expr, $scenario:ident, $on:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $scenario() {
            serve_if_child().await;
            let shared = Shared::new($kind, false);
            let (_servers, ports) =
                shared.two_servers(concat!(stringify!($module), "::", stringify!($scenario)));
            let store = open(&shared.spec()).await;
            let targets = ports.map(common::target::Target::Port);
            common::races::$on(&targets, &*store).await;
        }
    };
    (@auth $module:ident, $kind:expr, $scenario:ident, $on:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $scenario() {
            serve_if_child().await;
            let shared = Shared::new($kind, true);
            let (_servers, ports) =
                shared.two_servers(concat!(stringify!($module), "::", stringify!($scenario)));
            let store = open(&shared.spec()).await;
            let targets = ports.map(auth_common::target::Target::Port);
            auth_common::races::$on(&targets, &*store, &shared.users()).await;
        }
    };
}

/// An app server killed while it holds a session's lock (its lease renewed
/// until the kill): with default settings, the session's next request, on
/// another app server, waits for the lease to end and gets the lock. It
/// answers 200, not an error, and loses nothing.
async fn a_killed_holder_frees_its_session(kind: Kind, test: &str) {
    serve_if_child().await;
    let shared = Shared::new(kind, false);
    let ([mut holder, _other], [holder_port, other_port]) = shared.two_servers(test);
    let (holder_app, other) =
        (common::target::Target::Port(holder_port), common::target::Target::Port(other_port));
    let cookie = holder_app.send("/incr", &[]).await.cookie();
    let key = cookie.strip_prefix("id=").unwrap().parse::<SessionId>().unwrap().storage_key();
    let hold = {
        let cookie = cookie.clone();
        tokio::spawn(async move {
            let mut client = common::wire::WireClient::new(holder_port, Duration::from_secs(60));
            let _ = client.get("/hold", Some(&cookie)).await;
        })
    };
    let store = open(&shared.spec()).await;
    let short = LockOptions { wait_timeout: Duration::from_millis(100), ..LockOptions::default() };
    let mut held = false;
    for _ in 0..100 {
        match store.lock(&key, short).await {
            Err(session_axum::core::Error::LockTimeout { .. }) => {
                held = true;
                break;
            }
            Ok(guard) => guard.release().await.unwrap(),
            Err(error) => panic!("{error}"),
        }
    }
    assert!(held, "the holder took the lock");
    holder.kill();
    hold.abort();
    let reply = other.send("/incr", &[&cookie]).await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "2"), "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_holder_frees_its_session_within_the_lease() {
    a_killed_holder_frees_its_session(
        Kind::Redis,
        "a_killed_redis_holder_frees_its_session_within_the_lease",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_postgres_holder_frees_its_session_at_once() {
    a_killed_holder_frees_its_session(
        Kind::Postgres,
        "a_killed_postgres_holder_frees_its_session_at_once",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_mysql_holder_frees_its_session_at_once() {
    a_killed_holder_frees_its_session(
        Kind::MySql,
        "a_killed_mysql_holder_frees_its_session_at_once",
    )
    .await;
}

across_processes!(redis, Kind::Redis);
across_processes!(postgres, Kind::Postgres);
across_processes!(mysql, Kind::MySql);
across_processes!(fs, Kind::Fs);
across_processes!(sqlite, Kind::Sqlite);

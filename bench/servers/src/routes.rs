//! The benchmark rows: one [`Route`] entry each.
//!
//! To add a row (e.g. when a store crate lands): add its path dependency to
//! `Cargo.toml`, write its `router` function next to the others (`ours.rs`
//! for our stores), and add one entry to [`ROUTES`]. `cargo xtask bench`
//! reads this table through `bench-server --list`, so it needs no change.

use std::future::Future;
use std::pin::Pin;

use axum::Router;

use crate::{Options, Result, bare, cookie_jar, ours, tower};

/// Builds a row's router.
type Build = fn(Options) -> Pin<Box<dyn Future<Output = Result<Router>> + Send>>;

/// Where a row keeps the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// No session at all.
    None,
    /// On the server: the lost-update check applies.
    Server,
    /// In the cookie: nothing to lock, last writer wins by design.
    Client,
}

/// One benchmark row.
pub(crate) struct Route {
    /// The row's name (`--route`).
    pub(crate) name: &'static str,
    /// The comparison row doing the same work (tower-sessions, or axum-extra's
    /// private cookie jar for cookie-held sessions).
    pub(crate) peer: Option<&'static str>,
    /// Services it needs: `redis`, `redis-cluster`, `postgres`, `pgbouncer`,
    /// `mysql`.
    pub(crate) needs: &'static [&'static str],
    pub(crate) kind: Kind,
    /// Whether `--prefill N` is supported (memory stores).
    pub(crate) prefill: bool,
    /// One line for the table legend.
    pub(crate) what: &'static str,
    pub(crate) build: Build,
}

/// Every row, in the order `cargo xtask bench` runs and prints them.
pub(crate) const ROUTES: &[Route] = &[
    Route {
        name: "bare",
        peer: None,
        needs: &[],
        kind: Kind::None,
        prefill: false,
        what: "axum alone: the counter is a global atomic, no session, no cookie",
        build: |_| Box::pin(async { Ok(bare::router()) }),
    },
    Route {
        name: "tower-sessions-memory",
        peer: None,
        needs: &[],
        kind: Kind::Server,
        prefill: true,
        what: "tower-sessions 0.14 MemoryStore, Session::get + insert",
        build: |o| Box::pin(async move { Ok(tower::memory(&o).await) }),
    },
    Route {
        name: "tower-sessions-login",
        peer: None,
        needs: &[],
        kind: Kind::Server,
        prefill: false,
        what: "tower-sessions 0.14 MemoryStore + axum-login 0.18 login_required!, AuthSession user",
        build: |_| Box::pin(async { Ok(tower::login()) }),
    },
    Route {
        name: "axum-extra-private-cookie",
        peer: None,
        needs: &[],
        kind: Kind::Client,
        prefill: false,
        what: "axum-extra 0.12 PrivateCookieJar (AES-GCM) holding the counter",
        build: |_| Box::pin(async { Ok(cookie_jar::router()) }),
    },
    Route {
        name: "ours-memory",
        peer: Some("tower-sessions-memory"),
        needs: &[],
        kind: Kind::Server,
        prefill: true,
        what: "session-axum MemoryStore, Session::lock() then get + insert",
        build: |o| Box::pin(async move { Ok(ours::memory(&o, ours::Locking::Lock).await) }),
    },
    Route {
        name: "ours-memory-nolock",
        peer: Some("tower-sessions-memory"),
        needs: &[],
        kind: Kind::Server,
        prefill: true,
        what: "session-axum MemoryStore, get + insert without lock() (last writer wins)",
        build: |o| Box::pin(async move { Ok(ours::memory(&o, ours::Locking::NoLock).await) }),
    },
    Route {
        name: "ours-login",
        peer: Some("tower-sessions-login"),
        needs: &[],
        kind: Kind::Server,
        prefill: false,
        what: "session-axum MemoryStore + login_required + CurrentUser, counter under lock()",
        build: |_| Box::pin(async { Ok(ours::login()) }),
    },
    Route {
        name: "tower-sessions-redis",
        peer: None,
        needs: &["redis"],
        kind: Kind::Server,
        prefill: false,
        what: "tower-sessions 0.14 + tower-sessions-redis-store 0.16 (fred, one connection)",
        build: |_| Box::pin(tower::redis()),
    },
    Route {
        name: "ours-redis",
        peer: Some("tower-sessions-redis"),
        needs: &["redis"],
        kind: Kind::Server,
        prefill: false,
        what: "session-axum RedisStore, Session::lock() (distributed lock) then get + insert",
        build: |_| Box::pin(async { ours::redis() }),
    },
    Route {
        name: "ours-redis-cluster",
        peer: None,
        needs: &["redis-cluster"],
        kind: Kind::Server,
        prefill: false,
        what: "session-axum RedisStore::cluster on a local 3+3 node Redis Cluster, Session::lock()",
        build: |_| Box::pin(async { ours::redis_cluster() }),
    },
    Route {
        name: "tower-sessions-postgres",
        peer: None,
        needs: &["postgres"],
        kind: Kind::Server,
        prefill: false,
        what: "tower-sessions 0.14 + tower-sessions-sqlx-store 0.15 PostgresStore (sqlx 0.8), 48 connections",
        build: |_| Box::pin(tower::postgres()),
    },
    Route {
        name: "ours-postgres",
        peer: Some("tower-sessions-postgres"),
        needs: &["postgres"],
        kind: Kind::Server,
        prefill: false,
        what: "session-axum PostgresStore (sqlx 0.9), 48 connections, Session::lock() (advisory lock)",
        build: |_| Box::pin(ours::postgres()),
    },
    Route {
        name: "ours-postgres-pgbouncer",
        peer: None,
        needs: &["pgbouncer"],
        kind: Kind::Server,
        prefill: false,
        what: "session-axum PostgresStore LockMode::Lease through PgBouncer (transaction pooling, 4 server connections), 48 client connections, Session::lock()",
        build: |_| Box::pin(ours::postgres_pgbouncer()),
    },
    Route {
        name: "tower-sessions-mysql",
        peer: None,
        needs: &["mysql"],
        kind: Kind::Server,
        prefill: false,
        what: "tower-sessions 0.14 + tower-sessions-sqlx-store 0.15 MySqlStore (sqlx 0.8) on MariaDB, 48 connections",
        build: |_| Box::pin(tower::mysql()),
    },
    Route {
        name: "ours-mysql",
        peer: Some("tower-sessions-mysql"),
        needs: &["mysql"],
        kind: Kind::Server,
        prefill: false,
        what: "session-axum MySqlStore (sqlx 0.9) on MariaDB, 48 connections, Session::lock() (GET_LOCK)",
        build: |_| Box::pin(ours::mysql()),
    },
    Route {
        name: "ours-sqlite",
        peer: None,
        needs: &[],
        kind: Kind::Server,
        prefill: false,
        what: "session-axum SqliteStore (a file under bench/target), Session::lock()",
        build: |_| Box::pin(ours::sqlite()),
    },
    Route {
        name: "ours-fs",
        peer: None,
        needs: &[],
        kind: Kind::Server,
        prefill: false,
        what: "session-axum FsStore (one file per session under bench/target), Session::lock() (flock)",
        build: |_| Box::pin(async { ours::fs() }),
    },
    Route {
        name: "ours-aead",
        peer: Some("axum-extra-private-cookie"),
        needs: &[],
        kind: Kind::Client,
        prefill: false,
        what: "session-axum client-side AeadFormat (AES-256-GCM) cookie",
        build: |_| Box::pin(async { Ok(ours::aead()) }),
    },
    Route {
        name: "ours-fernet",
        peer: Some("axum-extra-private-cookie"),
        needs: &[],
        kind: Kind::Client,
        prefill: false,
        what: "session-axum client-side FernetFormat (AES-128-CBC + HMAC-SHA256) cookie",
        build: |_| Box::pin(async { Ok(ours::fernet()) }),
    },
    Route {
        name: "ours-jwt",
        peer: Some("axum-extra-private-cookie"),
        needs: &[],
        kind: Kind::Client,
        prefill: false,
        what: "session-axum client-side JwtFormat (HS256) cookie",
        build: |_| Box::pin(async { Ok(ours::jwt()) }),
    },
    Route {
        name: "ours-signed",
        peer: Some("axum-extra-private-cookie"),
        needs: &[],
        kind: Kind::Client,
        prefill: false,
        what: "session-axum client-side SignedFormat (base64url JSON + HMAC-SHA256) cookie",
        build: |_| Box::pin(async { Ok(ours::signed()) }),
    },
];

/// The row called `name`.
pub(crate) fn find(name: &str) -> Result<&'static Route> {
    ROUTES.iter().find(|route| route.name == name).ok_or_else(|| {
        let names: Vec<&str> = ROUTES.iter().map(|route| route.name).collect();
        format!("unknown route `{name}`; known: {}", names.join(", "))
    })
}

/// Builds the router of `options.route`.
pub(crate) async fn build(options: &Options) -> Result<Router> {
    let route = find(&options.route)?;
    (route.build)(options.clone()).await
}

/// `--list`: one tab-separated line per row, read by `cargo xtask bench`:
/// name, peer (`-`: none), needs (comma-separated, `-`: none), kind
/// (`none`/`server`/`client`), prefill (`yes`/`no`), description.
pub(crate) fn print_list() {
    for route in ROUTES {
        let needs = if route.needs.is_empty() { "-".to_owned() } else { route.needs.join(",") };
        let kind = match route.kind {
            Kind::None => "none",
            Kind::Server => "server",
            Kind::Client => "client",
        };
        println!(
            "{}\t{}\t{needs}\t{kind}\t{}\t{}",
            route.name,
            route.peer.unwrap_or("-"),
            if route.prefill { "yes" } else { "no" },
            route.what,
        );
    }
}

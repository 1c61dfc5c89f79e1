//! Runs the login example: `cargo run -p login [-- --store <store>]`.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use login::{Users, app, create_demo_user, session_config};
use session_axum::SessionLayer;
use session_axum::cookie_store::{AeadFormat, FernetFormat, JwtFormat, Key, Keyring};
use session_axum::core::{CleanupHandle, SpawnCleanup};
use session_axum::fs::FsStore;
use session_axum::memory::MemoryStore;
use session_axum::mysql::{MySqlPool, MySqlStore};
use session_axum::postgres::{PgPool, PostgresStore};
use session_axum::redis::RedisStore;
use session_axum::sqlite::SqliteStore;

const USAGE: &str = "\
usage: login [--store <store>]

Serves the login example on http://127.0.0.1:$PORT (default 3000).

stores:
  sqlite    (default) sessions in a SQLite file, $LOGIN_SQLITE_PATH
            (default ./login-sessions.db)
  memory    sessions in this process; gone on restart
  redis     sessions in Redis at $REDIS_URL, with a distributed lock
  postgres  sessions in PostgreSQL at $DATABASE_URL (table axum_sessions)
  mysql     sessions in MySQL or MariaDB at $MYSQL_URL (table axum_sessions)
  fs        one file per session under $LOGIN_FS_DIR (default ./login-sessions)
  aead      client-side: the session encrypted in the cookie (AES-256-GCM)
  fernet    client-side: the session encrypted in the cookie (Fernet, which
            Python's `cryptography` can open)
  jwt       client-side: the session signed (readable) in the cookie
            (client-side sessions cannot list or end other sessions: the
            sessions page and \"log out everywhere\" say so; their key is
            $LOGIN_COOKIE_KEY, from `cargo xtask keygen`, or a fresh one)
";

/// Where sessions are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    Memory,
    Sqlite,
    Redis,
    Postgres,
    MySql,
    Fs,
    Aead,
    Fernet,
    Jwt,
}

impl Store {
    const DEFAULT: Self = Self::Sqlite;

    fn parse(name: &str) -> Result<Self, String> {
        Ok(match name {
            "memory" => Self::Memory,
            "sqlite" => Self::Sqlite,
            "redis" => Self::Redis,
            "postgres" => Self::Postgres,
            "mysql" => Self::MySql,
            "fs" => Self::Fs,
            "aead" => Self::Aead,
            "fernet" => Self::Fernet,
            "jwt" => Self::Jwt,
            other => return Err(format!("unknown store {other:?}")),
        })
    }
}

/// `--store <name>` or `--store=<name>`; `None` for `--help`.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Store>, String> {
    let mut store = Store::DEFAULT;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--store" => args.next().ok_or("--store needs a value")?,
            other => match other.strip_prefix("--store=") {
                Some(value) => value.to_owned(),
                None => return Err(format!("unexpected argument {other:?}")),
            },
        };
        store = Store::parse(&value)?;
    }
    Ok(Some(store))
}

fn env(variable: &str) -> Result<String, String> {
    std::env::var(variable).map_err(|_| format!("{variable} must be set for this store"))
}

/// The client-side sealing key: `$LOGIN_COOKIE_KEY`, or a fresh one (cookies
/// then die with the process).
fn cookie_keyring() -> Result<Keyring, Box<dyn std::error::Error>> {
    Ok(match std::env::var("LOGIN_COOKIE_KEY") {
        Ok(key) => Keyring::new(key.parse::<Key>()?),
        Err(_) => Keyring::new(Key::generate()),
    })
}

/// The session layer for `store`, and its background cleanup of expired
/// sessions (none where the backend expires them itself).
async fn sessions(
    store: Store,
) -> Result<(SessionLayer, Option<CleanupHandle>), Box<dyn std::error::Error>> {
    let every = Duration::from_secs(600);
    Ok(match store {
        Store::Memory => {
            let store = MemoryStore::new();
            let cleanup = store.spawn_cleanup(every);
            (SessionLayer::new(store), Some(cleanup))
        }
        Store::Sqlite => {
            let path = std::env::var("LOGIN_SQLITE_PATH")
                .unwrap_or_else(|_| "login-sessions.db".to_owned());
            let store = SqliteStore::open(&path).await?;
            tracing::info!(path, "sessions in SQLite");
            let cleanup = store.spawn_cleanup(every);
            (SessionLayer::new(store), Some(cleanup))
        }
        Store::Redis => (SessionLayer::new(RedisStore::from_url(&env("REDIS_URL")?)?), None),
        Store::Postgres => {
            let store = PostgresStore::new(PgPool::connect(&env("DATABASE_URL")?).await?);
            store.migrate().await?;
            let cleanup = store.spawn_cleanup(every);
            (SessionLayer::new(store), Some(cleanup))
        }
        Store::MySql => {
            let store = MySqlStore::new(MySqlPool::connect(&env("MYSQL_URL")?).await?);
            store.migrate().await?;
            let cleanup = store.spawn_cleanup(every);
            (SessionLayer::new(store), Some(cleanup))
        }
        Store::Fs => {
            let dir = std::env::var("LOGIN_FS_DIR").unwrap_or_else(|_| "login-sessions".to_owned());
            let store = FsStore::new(&dir)?;
            let cleanup = store.spawn_cleanup(every);
            (SessionLayer::new(store), Some(cleanup))
        }
        Store::Aead => (SessionLayer::client_side(AeadFormat::new(cookie_keyring()?)), None),
        Store::Fernet => (SessionLayer::client_side(FernetFormat::new(cookie_keyring()?)), None),
        Store::Jwt => (SessionLayer::client_side(JwtFormat::hs256(cookie_keyring()?)), None),
    })
}

async fn run(store: Store) -> Result<(), Box<dyn std::error::Error>> {
    let port = match std::env::var("PORT") {
        Ok(port) => port.parse().map_err(|e| format!("PORT={port:?} is not a port: {e}"))?,
        Err(_) => 3000,
    };
    let users = Users::new()?;
    let demo = create_demo_user(&users)?;
    let (layer, cleanup) = sessions(store).await?;

    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = tokio::net::TcpListener::bind(address).await?;
    println!("Login example on http://{address}/ ({store:?} sessions)");
    println!("Log in as {:?} with password {:?}", demo.username, demo.password);
    axum::serve(listener, app(users, layer.with_config(session_config())?))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    if let Some(cleanup) = cleanup {
        cleanup.stop().await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let store = match parse_args(std::env::args().skip(1)) {
        Ok(Some(store)) => store,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("login: {error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(store).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("login: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Store>, String> {
        parse_args(args.iter().map(|arg| (*arg).to_owned()))
    }

    #[test]
    fn parses_the_store_flag() {
        assert_eq!(parse(&[]), Ok(Some(Store::DEFAULT)));
        assert_eq!(parse(&["--store", "memory"]), Ok(Some(Store::Memory)));
        assert_eq!(parse(&["--store=memory"]), Ok(Some(Store::Memory)));
        assert_eq!(parse(&["--help"]), Ok(None));
        assert!(parse(&["--store"]).is_err());
        for (name, store) in [
            ("sqlite", Store::Sqlite),
            ("redis", Store::Redis),
            ("postgres", Store::Postgres),
            ("mysql", Store::MySql),
            ("fs", Store::Fs),
            ("aead", Store::Aead),
            ("fernet", Store::Fernet),
            ("jwt", Store::Jwt),
        ] {
            assert_eq!(parse(&["--store", name]), Ok(Some(store)));
        }
        assert!(parse(&["--store", "nope"]).is_err());
        assert!(parse(&["memory"]).is_err());
    }
}

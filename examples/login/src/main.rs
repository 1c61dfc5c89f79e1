//! Runs the login example: `cargo run -p login [-- --store <store>]`.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use login::{Users, app, create_demo_user, session_config};
use session_axum::SessionLayer;
use session_axum::memory::MemoryStore;

const USAGE: &str = "\
usage: login [--store <store>]

Serves the login example on http://127.0.0.1:$PORT (default 3000).

stores:
  sqlite    sessions in a SQLite file, $LOGIN_SQLITE_PATH (default ./login-sessions.db);
            the default when built with the `sqlite` feature (on by default)
  memory    sessions in this process; gone on restart
  redis, postgres, fs
            not wired into this example yet
";

/// Where sessions are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    Memory,
    #[cfg(feature = "sqlite")]
    Sqlite,
}

impl Store {
    #[cfg(feature = "sqlite")]
    const DEFAULT: Self = Self::Sqlite;
    #[cfg(not(feature = "sqlite"))]
    const DEFAULT: Self = Self::Memory;

    fn parse(name: &str) -> Result<Self, String> {
        match name {
            "memory" => Ok(Self::Memory),
            #[cfg(feature = "sqlite")]
            "sqlite" => Ok(Self::Sqlite),
            #[cfg(not(feature = "sqlite"))]
            "sqlite" => {
                Err("this build has no SQLite store: build with `--features sqlite`".into())
            }
            // The other stores plug in here once session-axum re-exports them
            // (features `redis`, `postgres`, `fs`): add a variant, a `Store::parse`
            // arm and a `sessions()` arm, e.g.
            //   redis:    RedisStore::from_url(&env("REDIS_URL")?)
            //   postgres: PostgresStore::connect(&env("DATABASE_URL")?) + migrate()
            //   fs:       FsStore::open(env("LOGIN_FS_DIR")?)
            "redis" | "postgres" | "fs" => {
                Err(format!("the {name} store is not wired into this example yet"))
            }
            other => Err(format!("unknown store {other:?}")),
        }
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

/// Background cleanup of expired sessions, stopped on shutdown.
enum Cleanup {
    Memory(session_axum::memory::CleanupHandle),
    #[cfg(feature = "sqlite")]
    Sqlite(session_axum::sqlite::CleanupHandle),
}

impl Cleanup {
    async fn stop(self) {
        match self {
            Self::Memory(handle) => handle.stop().await,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(handle) => handle.stop().await,
        }
    }
}

async fn sessions(store: Store) -> Result<(SessionLayer, Cleanup), Box<dyn std::error::Error>> {
    let every = Duration::from_secs(600);
    Ok(match store {
        Store::Memory => {
            let store = MemoryStore::new();
            let cleanup = Cleanup::Memory(store.spawn_sweeper(every));
            (SessionLayer::new(store), cleanup)
        }
        #[cfg(feature = "sqlite")]
        Store::Sqlite => {
            let path = std::env::var("LOGIN_SQLITE_PATH")
                .unwrap_or_else(|_| "login-sessions.db".to_owned());
            let store = session_axum::sqlite::SqliteStore::open(&path).await?;
            tracing::info!(path, "sessions in SQLite");
            let cleanup = Cleanup::Sqlite(store.spawn_cleanup(every));
            (SessionLayer::new(store), cleanup)
        }
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
    axum::serve(listener, app(users, layer.with_config(session_config())))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    cleanup.stop().await;
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
        assert!(parse(&["--store", "redis"]).unwrap_err().contains("not wired"));
        assert!(parse(&["--store", "nope"]).is_err());
        assert!(parse(&["memory"]).is_err());
    }
}

//! `bench-server`: one HTTP server per benchmark row, run by `cargo xtask bench`.
//!
//! ```text
//! bench-server --route <name> [--port N] [--prefill N] [--stdin-lifeline]
//! bench-server --list
//! ```
//!
//! Every route serves the same work, so rows differ only in how the session
//! is kept (see `routes.rs` for the table and `../../BENCHMARKS.md`):
//!
//! - `GET /` reads a counter from the session, adds one, saves it and answers
//!   with the new value as text.
//! - `GET /start` creates the session a connection will use (for the login
//!   rows: logs a user in first) and answers with the counter's value.
//!
//! Once listening it prints `listening on 127.0.0.1:<port>` on stdout
//! (`--port 0`, the default, picks a free port). `--prefill N` first fills
//! the store with N other live sessions (memory rows only);
//! `--stdin-lifeline` makes the server exit when its stdin closes (how
//! `cargo xtask bench` makes sure no server outlives it). Redis and
//! Postgres rows read `REDIS_URL` / `REDIS_CLUSTER_URLS` / `DATABASE_URL`; rows that keep files
//! use `BENCH_DATA_DIR` (default: a directory under the system temp dir).

mod bare;
mod cookie_jar;
mod ours;
mod routes;
mod tower;

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

/// What the command line asked for.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) route: String,
    pub(crate) port: u16,
    pub(crate) prefill: u64,
    /// Exit when stdin reaches its end (the parent is gone).
    pub(crate) stdin_lifeline: bool,
}

/// Errors are reported as text: this is a tool, not a library.
pub(crate) type Result<T, E = String> = std::result::Result<T, E>;

fn parse_args(args: &[String]) -> Result<Option<Options>> {
    let mut route = None;
    let mut port = 0;
    let mut prefill = 0;
    let mut stdin_lifeline = false;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = |name: &str| iter.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--list" => return Ok(None),
            "--stdin-lifeline" => stdin_lifeline = true,
            "--route" => route = Some(value("--route")?.clone()),
            "--port" => port = value("--port")?.parse().map_err(|e| format!("--port: {e}"))?,
            "--prefill" => {
                prefill = value("--prefill")?.parse().map_err(|e| format!("--prefill: {e}"))?;
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let route = route.ok_or("--route <name> is required (see --list)")?;
    Ok(Some(Options { route, port, prefill, stdin_lifeline }))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse_args(&args) {
        Ok(Some(options)) => options,
        Ok(None) => {
            routes::print_list();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("bench-server: {error}");
            return ExitCode::from(2);
        }
    };
    if options.stdin_lifeline {
        // `cargo xtask bench` holds our stdin open; when it ends, however it
        // ends (even killed), the pipe closes and we go too.
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            std::process::exit(0);
        });
    }
    // One worker per CPU the process may use: `taskset -c 0` gives one.
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench-server: no runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-server: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(options: Options) -> Result<()> {
    let route = routes::find(&options.route)?;
    if options.prefill > 0 && !route.prefill {
        return Err(format!("route `{}` does not support --prefill", route.name));
    }
    let app = routes::build(&options).await?;
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, options.port)))
            .await
            .map_err(|e| format!("bind: {e}"))?;
    let local = listener.local_addr().map_err(|e| format!("local_addr: {e}"))?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {local}").map_err(|e| e.to_string())?;
    stdout.flush().map_err(|e| e.to_string())?;
    axum::serve(listener, app).await.map_err(|e| format!("serve: {e}"))
}

/// Connections in the SQL pools (PostgreSQL and MySQL, ours and
/// tower-sessions'): more than
/// wrk's 32 connections, because our store holds a second connection per
/// locked request (see BENCHMARKS.md).
pub(crate) const PG_POOL: u32 = 48;

/// A fresh directory for a row that keeps files (SQLite, filesystem store):
/// `$BENCH_DATA_DIR/<route>-<pid>`, mode 0700.
pub(crate) fn data_dir(route: &str) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    let base = std::env::var_os("BENCH_DATA_DIR")
        .map_or_else(|| std::env::temp_dir().join("session-bench"), std::path::PathBuf::from);
    let dir = base.join(format!("{route}-{}", std::process::id()));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

/// An environment variable a row needs.
pub(crate) fn env(name: &str) -> Result<String> {
    std::env::var(name).map_err(|_| {
        format!("{name} is not set (run through `cargo xtask bench`, which starts the services)")
    })
}

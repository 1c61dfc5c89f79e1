//! `cargo xtask`: project automation for the axum session crates.
//!
//! Std-only on purpose (it must build in seconds on a clean CI machine).
//! Run `cargo xtask help` for the commands.

mod bench;
mod cmd;
mod fuzz;
mod services;
mod session;
mod soak;
mod tasks;

use std::process::ExitCode;

use services::Config;

const HELP: &str = "\
cargo xtask: project automation for the axum session crates

USAGE:
    cargo xtask <COMMAND> [ARGS...]

COMMANDS:
    test [--] [ARGS...]
        Start Redis, a Redis Cluster, PostgreSQL, PgBouncer and MariaDB (see
        SERVICES), run
            cargo test --workspace --all-features --all-targets [ARGS...]
        with REDIS_URL, REDIS_CLUSTER_URLS, DATABASE_URL, PGBOUNCER_URL and
        MYSQL_URL set to them, stop them again (also when the tests fail, panic or are
        interrupted) and exit with cargo test's status. ARGS go to cargo test as given; with -p/--package, --workspace
        is left out:
            cargo xtask test -- -p session-core
            cargo xtask test -- -p session-stores-redis -- --nocapture

    ci
        What CI runs (.ci/run), failing fast on the first failing step and
        printing the time of each:
            cargo fmt --all -- --check
            cargo clippy --workspace --all-features --all-targets -- -D warnings
            RUSTDOCFLAGS=-D warnings cargo doc --workspace --all-features --no-deps
            the `test` command (services up), then in the same services session
            cargo test --workspace --all-features --doc
            the `fuzz` command, 20 s per target with --seed 1
            cargo deny check bans licenses sources   (only if cargo-deny is installed)
        Advisories are not checked: they need the RustSec database from the network.

    bench [--seconds N] [--routes a,b,c] [--connections N] [--no-memory] | bench micro | bench instructions
        HTTP load benchmark against bare axum and tower-sessions, criterion micro-benchmarks,
        and callgrind instruction counts per request (`bench --help`; BENCHMARKS.md).

    fuzz [--seconds N] [--target T]... [--seed N]
        Run the cargo-fuzz targets in fuzz/, N seconds each (default 60; `fuzz --help`).

    soak [--seconds N] [--store-kills N] [--app-kills N] [--clients N] [--sessions N]
        Acknowledged writes under faults, in release mode: locked increments
        against an app server process while durable Redis, PostgreSQL (fsync
        on), the filesystem store and SQLite are SIGKILLed and restarted, and
        the app too; prints acknowledged / stored / lost per store and fails on
        a lost one. Then the long_run_* tests, if crates/session-axum/tests/
        long_run.rs exists, with the services up (`soak --help`).

    keygen
        Print a new random 32-byte key (base64url) for the client-side cookie
        formats (AEAD, Fernet, JWT HS256, signed); see examples/key-rotation.

    services start | stop | status
        start:  install when missing and start every service; prints
                REDIS_URL=..., REDIS_CLUSTER_URLS=..., DATABASE_URL=...,
                PGBOUNCER_URL=... and MYSQL_URL=... on stdout (progress goes to stderr), so
                `export $(cargo xtask services start)` works.
        stop:   stop them all (MariaDB first, PgBouncer before PostgreSQL).
        status: show each; exit status 1 unless all are running (and the
                cluster is healthy).

    help, -h, --help
        This text.

SERVICES:
    redis-server   REDIS_URL=redis://127.0.0.1:6392/
                   port: $XTASK_REDIS_PORT
    Redis Cluster  REDIS_CLUSTER_URLS=redis://127.0.0.1:7392/,...,redis://127.0.0.1:7397/
                   first of six ports: $XTASK_REDIS_CLUSTER_PORT (bus ports: +10000)
    PostgreSQL     DATABASE_URL=postgres://postgres@127.0.0.1:54330/sessions
                   port: $XTASK_PG_PORT
    PgBouncer      PGBOUNCER_URL=postgres://postgres@127.0.0.1:64330/sessions
                   port: $XTASK_PGBOUNCER_PORT
    MariaDB        MYSQL_URL=mysql://root@127.0.0.1:33070/sessions
                   port: $XTASK_MYSQL_PORT
    Data and logs live in <workspace>/target/services/{redis,redis-cluster,
    postgres,pgbouncer,mariadb} ($XTASK_SERVICES_DIR overrides that); stop the
    services before `cargo clean`. Missing Debian packages (redis-server,
    postgresql, pgbouncer, mariadb-server, and chromium + chromium-driver for
    the login example's browser test) are installed with apt-get, which needs
    root. As root, PostgreSQL and PgBouncer run as the `postgres` OS user and
    MariaDB as the `mysql` one (created if missing), which are given search
    permission (o+x) on the directories leading to their data. Redis keeps
    nothing on disk; PostgreSQL runs with fsync off, MariaDB without flushing
    its log at commit and with --skip-grant-tables (no passwords, loopback
    only): test data only. MariaDB's socket sits beside its data (in the
    temporary directory when that path is too long for a socket).
    The cluster has three primaries with one replica each (node timeout 1 s).
    Tests may kill its nodes: `services stop` stops or kills every node and
    wipes its data, and a start that finds it anything but whole and healthy
    recreates it, empty. PgBouncer pools in transaction mode (4 server
    connections per pool, 400 clients), trusts postgres@127.0.0.1 like our
    PostgreSQL, and lets postgres into its `pgbouncer` admin database
    (SHOW POOLS).
    The default ports differ from the usual developer ones
    (6391/54329), so both can run side by side; a Redis or PgBouncer on our
    ports that is not ours (told apart by its pid file) is never used nor
    stopped.

    `test` and `ci` always start and use their own services: REDIS_URL,
    DATABASE_URL, MYSQL_URL and the others from your environment are overridden for the tests (with a
    note), so runs are reproducible and never touch a shared or real database.
    To test against another server, run plain `cargo test` with those set.
    Runs share the services of their checkout: `test`, `ci` and `bench`
    register while they run, and the last one to end (normally, on failure,
    panic, Ctrl-C or kill) stops them, unless they were started with
    `cargo xtask services start`, which keeps them up until `services stop`.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        [] => {
            eprint!("{HELP}");
            return ExitCode::from(2);
        }
        ["help" | "-h" | "--help", ..] | ["test" | "ci" | "services", "-h" | "--help", ..] => {
            print!("{HELP}");
            Ok(ExitCode::SUCCESS)
        }
        [session::REAPER_ARG, parent] => return session::reaper_main(parent),
        ["test", rest @ ..] => {
            let rest = rest.strip_prefix(&["--"]).unwrap_or(rest);
            let rest: Vec<String> = rest.iter().map(|s| (*s).to_owned()).collect();
            tasks::test(&rest)
        }
        ["ci"] => tasks::ci(),
        ["bench", rest @ ..] => bench::bench(rest),
        ["fuzz", rest @ ..] => fuzz::fuzz(rest),
        ["soak", rest @ ..] => soak::soak(rest),
        ["keygen"] => keygen(),
        ["services", "start"] => services_start(),
        ["services", "stop"] => services_stop(),
        ["services", "status"] => services_status(),
        _ => {
            eprintln!("xtask: unknown command `{}`; see `cargo xtask help`", args.join(" "));
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::from(e.code())
        }
    }
}

/// Prints a new cookie key. The one implementation is `session_core::Key::generate`,
/// reached through the key-rotation example so that xtask stays dependency-free.
fn keygen() -> cmd::Result<ExitCode> {
    cmd::run(cmd::cargo().args(["run", "--quiet", "-p", "key-rotation", "--", "keygen"]))?;
    Ok(ExitCode::SUCCESS)
}

fn services_start() -> cmd::Result<ExitCode> {
    let cfg = Config::from_env()?;
    session::services_start(cfg.clone())?;
    for (name, value) in cfg.env() {
        println!("{name}={value}");
    }
    Ok(ExitCode::SUCCESS)
}

fn services_stop() -> cmd::Result<ExitCode> {
    session::services_stop(Config::from_env()?)?;
    Ok(ExitCode::SUCCESS)
}

fn services_status() -> cmd::Result<ExitCode> {
    let up = session::services_status(Config::from_env()?)?;
    Ok(if up { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::{
        DIR_VAR, MYSQL_PORT_VAR, PG_PORT_VAR, PGBOUNCER_PORT_VAR, REDIS_CLUSTER_PORT_VAR,
        REDIS_PORT_VAR,
    };

    #[test]
    fn help_names_every_command_and_variable() {
        for word in [
            "test",
            "ci",
            "soak",
            "services start",
            "stop",
            "status",
            REDIS_PORT_VAR,
            PG_PORT_VAR,
            REDIS_CLUSTER_PORT_VAR,
            PGBOUNCER_PORT_VAR,
            MYSQL_PORT_VAR,
            DIR_VAR,
            "REDIS_URL",
            "REDIS_CLUSTER_URLS",
            "DATABASE_URL",
            "PGBOUNCER_URL",
            "MYSQL_URL",
        ] {
            assert!(HELP.contains(word), "{word}");
        }
    }
}

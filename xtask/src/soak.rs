//! `cargo xtask soak`: the long fault runs, in release mode.
//!
//! 1. `soak_every_store` of `crates/session-axum/tests/soak.rs`: locked
//!    increments against an app server process while its store (durable
//!    Redis, PostgreSQL with fsync on, the filesystem store, SQLite) and the
//!    app are SIGKILLed and restarted; prints the table of acknowledged,
//!    stored and lost writes and fails if one acknowledged write is lost.
//!    Those tests start their own servers; we only make sure the programs
//!    are installed.
//! 2. The `long_run_*` tests of `crates/session-axum/tests/long_run.rs`, if
//!    that file exists, with the xtask services up (they need `REDIS_URL`).

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use crate::cmd::{self, Error, Result};
use crate::services::{Config, Services};

/// `cargo xtask soak --help`.
pub(crate) const HELP: &str = "\
    soak [--seconds N] [--store-kills N] [--app-kills N] [--clients N] [--sessions N]
        The long fault runs, in release mode, one after the other:
        - soak_every_store (crates/session-axum/tests/soak.rs): N client tasks
          (default 16) do locked increments on M sessions (default 8) against
          an app server process for N seconds per store (default 60), while the
          store is SIGKILLed and restarted (default 6 times) and the app server
          too (default 3 times): Redis with appendfsync always, PostgreSQL with
          fsync on (each a private server on a free port), the filesystem store
          and SQLite (in the app's process: they die with it). Prints a table of
          acknowledged, stored, lost, in-doubt and failed increments and the
          seconds unavailable per store, and fails if an acknowledged increment
          is lost. Installs redis-server and postgresql when missing.
        - the long_run_* tests of crates/session-axum/tests/long_run.rs, when
          that file exists, with the services up (see SERVICES).
";

/// Where the long runs live, relative to the workspace root.
const LONG_RUN_TEST: &str = "crates/session-axum/tests/long_run.rs";

#[derive(Debug, PartialEq, Eq)]
struct Options {
    /// `SOAK_*` variable and value for each option given.
    env: Vec<(&'static str, String)>,
}

fn parse_options(args: &[&str]) -> Result<Options> {
    let mut env = Vec::new();
    let mut iter = args.iter();
    while let Some(&arg) = iter.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (arg, None),
        };
        let variable = match name {
            "--seconds" => "SOAK_SECONDS",
            "--store-kills" => "SOAK_STORE_KILLS",
            "--app-kills" => "SOAK_APP_KILLS",
            "--clients" => "SOAK_CLIENTS",
            "--sessions" => "SOAK_SESSIONS",
            _ => {
                return Err(Error::msg(format!(
                    "soak: unknown argument `{arg}`; see `cargo xtask soak --help`"
                )));
            }
        };
        let value = inline
            .or_else(|| iter.next().copied())
            .ok_or_else(|| Error::msg(format!("soak: {name} needs a value")))?;
        let positive = value.parse::<u64>().is_ok_and(|n| n > 0)
            || (name == "--app-kills" || name == "--store-kills") && value == "0";
        if !positive {
            return Err(Error::msg(format!("soak: {name} needs a positive whole number")));
        }
        env.push((variable, value.to_owned()));
    }
    Ok(Options { env })
}

/// `cargo test --release -p session-axum --all-features --test <test> -- ARGS`.
fn cargo_test(test: &str, args: &[&str]) -> Command {
    let mut command = cmd::cargo();
    command
        .args(["test", "--release", "-p", "session-axum", "--all-features", "--test", test])
        .arg("--")
        .args(args)
        .stdin(Stdio::null());
    command
}

/// `cargo xtask soak [OPTIONS]`.
pub(crate) fn soak(args: &[&str]) -> Result<ExitCode> {
    if matches!(args, ["-h" | "--help", ..]) {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    let options = parse_options(args)?;
    Services::new(Config::from_env()?).ensure_servers()?;

    let mut soak = cargo_test(
        "soak",
        &["soak_every_store", "--exact", "--ignored", "--nocapture", "--test-threads=1"],
    );
    soak.envs(options.env.iter().map(|(name, value)| (name, value)));
    eprintln!("xtask: {}", cmd::display(&soak));
    let soaked = cmd::status(&mut soak)?;
    if !soaked.success() {
        eprintln!("xtask: soak failed ({})", cmd::describe(soaked));
    }

    let long_run = if cmd::root().join(Path::new(LONG_RUN_TEST)).is_file() {
        let session = crate::tasks::start_services()?;
        let mut long_run = cargo_test("long_run", &["--ignored", "--nocapture"]);
        long_run.envs(session.env());
        eprintln!("xtask: {}", cmd::display(&long_run));
        let outcome = cmd::status(&mut long_run);
        let stopped = session.stop();
        let status = outcome?;
        stopped?;
        if !status.success() {
            eprintln!("xtask: long runs failed ({})", cmd::describe(status));
        }
        Some(status)
    } else {
        eprintln!("xtask: no {LONG_RUN_TEST}: no long runs to do");
        None
    };

    Ok(match long_run {
        Some(status) if soaked.success() => cmd::exit_code(status),
        _ => cmd::exit_code(soaked),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_soak_variables() {
        let options =
            parse_options(&["--seconds", "30", "--app-kills=0", "--store-kills", "4"]).unwrap();
        assert_eq!(
            options.env,
            [
                ("SOAK_SECONDS", "30".to_owned()),
                ("SOAK_APP_KILLS", "0".to_owned()),
                ("SOAK_STORE_KILLS", "4".to_owned())
            ]
        );
        assert!(parse_options(&["--seconds", "0"]).is_err());
        assert!(parse_options(&["--seconds"]).is_err());
        assert!(parse_options(&["--minutes", "3"]).is_err());
        assert_eq!(parse_options(&[]).unwrap().env, []);
    }

    #[test]
    fn runs_release_tests_of_session_axum() {
        let line = cmd::display(&cargo_test("soak", &["--ignored"]));
        assert!(
            line.ends_with(
                "test --release -p session-axum --all-features --test soak -- --ignored"
            ),
            "{line}"
        );
    }
}

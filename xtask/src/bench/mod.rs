//! `cargo xtask bench`: the HTTP load benchmark, the lost-update check, the
//! memory figures and (with `micro`) the criterion micro-benchmarks.
//!
//! The servers live in the separate `bench/` workspace (so the main
//! workspace never compiles tower-sessions, axum-login or criterion). Each
//! row is one `bench-server --route <name>` process, pinned to core 0; wrk,
//! pinned to core 1, drives it. The rows come from `bench-server --list`, so
//! adding a row needs no change here. See `BENCHMARKS.md` for the method.
//!
//! The machine's speed drifts from second to second (a VM whose host is
//! shared), so a row is never compared with a `bare` measured minutes away:
//! a `bare` server runs for the whole run, every measured window of a row
//! follows a window of the same length on it, and a row's `× bare` is the
//! median of those paired ratios.

mod http;
mod instructions;
mod memory;
mod plan;
mod procstat;
mod redis_info;
mod report;
mod runner;
mod stats;
mod wrk;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::cmd::{self, Result};
use crate::services::Config;
use crate::session::ServicesSession;
use plan::PlannedRow;
use procstat::Machine;
use runner::{Row, Runner, Tools};

/// Rows with more noise than this (% of a core) are measured again at the end.
const NOISY: f64 = 10.0;
/// Re-measuring stops when a row could not end before this much time since
/// the start (build included), so a run stays under a quarter of an hour.
const RETRY_UNTIL: Duration = Duration::from_secs(13 * 60);

/// `cargo xtask bench --help`.
pub(crate) const HELP: &str = "\
    bench [--seconds N] [--routes a,b,c] [--connections N] [--no-memory]
        Build bench/ (its own workspace) in release and run the HTTP load
        benchmark: every row (`--routes` picks some; names from
        `bench/target/release/bench-server --list`) is a server pinned to
        core 0 driven by wrk on core 1 for N seconds (default 10) over 32
        keep-alive connections, one pre-made session each. Prints one
        Markdown table: requests/s, p50, p99, server CPU per request and its
        ratio to bare axum (the median over windows each paired with a bare
        window just before it) and to the tower-sessions row doing the same work,
        the lost-update check (N concurrent increments on one session), the
        scaling rows (1k vs 1M live sessions) and bytes per session (skipped
        with --no-memory). Starts Redis/PostgreSQL/MariaDB when a row needs them;
        installs wrk with apt-get when missing. See BENCHMARKS.md.
    bench micro [CRITERION ARGS...]
        Run the criterion micro-benchmarks (bench/micro).
    bench contended [STORE...]
        The session lock when it is contended: for each store (memory, sqlite,
        fs, redis, redis-cluster, postgres, postgres-lease,
        postgres-lease-pgbouncer; all by default), N = 4 and 16 concurrent
        locked increments of one session through one store instance and split
        over two: total time against N x one uncontended increment, the p99
        and the longest wait for the lock. Starts the services. See
        BENCHMARKS.md.
";

/// `cargo xtask bench [...]`.
pub(crate) fn bench(args: &[&str]) -> Result<ExitCode> {
    match args {
        ["micro", rest @ ..] => return micro(rest),
        ["contended", rest @ ..] => return contended(rest),
        ["instructions", rest @ ..] => return instructions::instructions(rest),
        ["-h" | "--help", ..] => {
            print!("{HELP}{}", instructions::HELP);
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let options = plan::parse_options(args)?;
    let started = Instant::now();
    let tools = Tools::find()?;
    build()?;
    let bin = bench_dir().join("target/release");
    let routes = plan::list_routes(&bin)?;
    let selected = plan::select(&routes, options.routes.as_deref())?;

    let needs_services = selected.iter().any(|route| !route.needs.is_empty());
    let services = if needs_services {
        eprintln!("xtask: bench: starting the services some rows need");
        Some(ServicesSession::start(Config::from_env()?)?)
    } else {
        None
    };
    let env: Vec<(&'static str, String)> =
        services.as_ref().map(|s| s.env().to_vec()).unwrap_or_default();
    let data_dir = bench_dir().join("target/bench-data");
    let machine = Machine::read();
    eprintln!("xtask: bench: {}", machine.describe());
    let idle = procstat::other_load(Duration::from_secs(1));
    if idle > 10.0 {
        eprintln!(
            "xtask: bench: WARNING: other processes use {idle:.0}% of a core right now; \
             figures will be noisy (see the `noise` column)"
        );
    }

    let mut runner = Runner::new(&bin, &tools, &options, &env, data_dir.clone());
    if let Some(bare) = selected.iter().find(|route| route.name == "bare") {
        runner.keep_reference(bare)?;
    }
    let plan = plan::plan(&selected, options.memory);
    let mut rows = Vec::with_capacity(plan.len());
    for planned in &plan {
        rows.push(runner.row(planned.route, planned.name.clone(), planned.prefill, true)?);
    }
    measure_disturbed_again(&runner, &plan, &mut rows, started, options.seconds)?;
    // The SQLite and filesystem rows' sessions.
    let _ = std::fs::remove_dir_all(&data_dir);
    let memory = if options.memory { memory::memory_figures(&bin)? } else { Vec::new() };
    if let Some(services) = services {
        services.stop()?;
    }

    let report = report::render(&machine, &options, &selected, &rows, &memory, started.elapsed());
    print!("{report}");
    let saved = bench_dir().join("target/bench-results.md");
    match std::fs::write(&saved, &report) {
        Ok(()) => eprintln!("xtask: bench: also written to {}", saved.display()),
        Err(e) => eprintln!("xtask: bench: could not write {}: {e}", saved.display()),
    }
    Ok(ExitCode::SUCCESS)
}

/// Rows other processes disturbed are measured again while the run has
/// time left; the less disturbed measurement stays.
fn measure_disturbed_again(
    runner: &Runner<'_>,
    plan: &[PlannedRow<'_>],
    rows: &mut [Row],
    started: Instant,
    seconds: u64,
) -> Result<()> {
    let mut noisy: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].noise > NOISY).collect();
    noisy.sort_by(|&a, &b| rows[b].noise.total_cmp(&rows[a].noise));
    let row_time = Duration::from_secs(seconds + 8);
    for i in noisy {
        if started.elapsed() + row_time > RETRY_UNTIL {
            eprintln!("xtask: bench: no time left to measure the other disturbed rows again");
            break;
        }
        let PlannedRow { route, name, prefill } = &plan[i];
        eprintln!("xtask: bench: again, it was disturbed ({:.0}% noise):", rows[i].noise);
        let again = runner.row(route, name.clone(), *prefill, false)?;
        if again.noise < rows[i].noise {
            let lost = rows[i].lost;
            rows[i] = Row { lost, ..again };
        }
    }
    Ok(())
}

/// `cargo xtask bench contended [STORES]`: the contended-lock table.
fn contended(stores: &[&str]) -> Result<ExitCode> {
    build()?;
    let services = ServicesSession::start(Config::from_env()?)?;
    let mut run = std::process::Command::new(bench_dir().join("target/release/bench-contended"));
    run.args(stores).envs(services.env().iter().map(|(name, value)| (*name, value)));
    eprintln!("xtask: {}", cmd::display(&run));
    let outcome = cmd::run(&mut run);
    services.stop()?;
    outcome?;
    Ok(ExitCode::SUCCESS)
}

/// `cargo xtask bench micro [ARGS]`: criterion, in the bench workspace.
fn micro(args: &[&str]) -> Result<ExitCode> {
    let mut bench = cmd::cargo();
    bench
        .arg("bench")
        .arg("--manifest-path")
        .arg(bench_dir().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(bench_dir().join("target"))
        .args(["-p", "bench-micro", "--bench", "micro", "--"])
        .args(args);
    eprintln!("xtask: {}", cmd::display(&bench));
    cmd::run(&mut bench)?;
    Ok(ExitCode::SUCCESS)
}

fn bench_dir() -> PathBuf {
    cmd::root().join("bench")
}

fn build() -> Result<()> {
    let mut build = cmd::cargo();
    build
        .args(["build", "--release", "--manifest-path"])
        .arg(bench_dir().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(bench_dir().join("target"))
        .args(["-p", "bench-server", "--bins"]);
    eprintln!("xtask: {}", cmd::display(&build));
    cmd::run(&mut build)
}

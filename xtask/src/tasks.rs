//! `cargo xtask test` and `cargo xtask ci`.

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::cmd::{self, Error, Result};
use crate::services::Config;
use crate::session::ServicesSession;

/// `cargo xtask test [--] [ARGS...]`.
pub(crate) fn test(extra: &[String]) -> Result<ExitCode> {
    let session = start_services()?;
    let mut test = cargo_test(extra);
    test.envs(session.env());
    eprintln!("xtask: {}", cmd::display(&test));
    let outcome = cmd::status(&mut test);
    let stopped = session.stop();
    let status = outcome?;
    stopped?;
    if !status.success() {
        eprintln!("xtask: tests failed ({})", cmd::describe(status));
    }
    Ok(cmd::exit_code(status))
}

/// Seconds each fuzz target runs in `cargo xtask ci`.
const CI_FUZZ_SECONDS: u64 = 20;

/// `cargo xtask ci`: every check CI runs, failing fast, with a time per step.
pub(crate) fn ci() -> Result<ExitCode> {
    let started = Instant::now();
    let mut steps = Steps::default();

    let mut fmt = cmd::cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    steps.run("fmt", &mut fmt)?;

    let mut clippy = cmd::cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-features",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    steps.run("clippy", &mut clippy)?;

    // What docs.rs builds, with broken links and bad doc markup as errors.
    let mut doc = cmd::cargo();
    doc.args(["doc", "--workspace", "--all-features", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings");
    steps.run("doc", &mut doc)?;

    // Tests and doc tests share one services session.
    let session = steps.time("services start", start_services)?;
    let tested = (|| {
        let mut test = cargo_test(&[]);
        test.envs(session.env());
        steps.run("test", &mut test)?;
        let mut doc = cmd::cargo();
        doc.args(["test", "--workspace", "--all-features", "--doc"]).envs(session.env());
        steps.run("doc tests", &mut doc)
    })();
    let stopped = steps.time("services stop", || session.stop());
    tested?;
    stopped?;

    // Every fuzz target for a bounded time from the committed seeds, with a
    // fixed libFuzzer seed so a run can be repeated.
    steps.time("fuzz", || {
        crate::fuzz::fuzz(&["--seconds", &CI_FUZZ_SECONDS.to_string(), "--seed", "1"])
    })?;

    let mut probe = cmd::cargo();
    probe.args(["deny", "--version"]);
    if cmd::succeeds(&mut probe) {
        let mut deny = cmd::cargo();
        deny.args(["deny", "check", "bans", "licenses", "sources"]);
        steps.run("cargo deny", &mut deny)?;
    } else {
        eprintln!(
            "xtask: SKIPPED cargo deny (bans, licenses, sources): cargo-deny is not installed \
             (`cargo install cargo-deny --locked` to enable this step)"
        );
    }
    eprintln!(
        "xtask: SKIPPED cargo deny advisories: that check needs the RustSec advisory database \
         from the network"
    );
    eprintln!("xtask: ci passed: {} in {}", steps.done.join(", "), secs(started.elapsed()));
    Ok(ExitCode::SUCCESS)
}

/// Starts the services, after saying which of the user's variables we override.
pub(crate) fn start_services() -> Result<ServicesSession> {
    let cfg = Config::from_env()?;
    for (name, ours) in cfg.env() {
        if let Ok(theirs) = std::env::var(name)
            && theirs != ours
        {
            eprintln!(
                "xtask: note: ignoring {name}={theirs} from your environment; the tests use \
                     this run's own service, {name}={ours} (see `cargo xtask help`)"
            );
        }
    }
    ServicesSession::start(cfg)
}

/// `cargo test --workspace --all-features --all-targets EXTRA...`; `--workspace`
/// is left out when EXTRA picks packages itself.
fn cargo_test(extra: &[String]) -> Command {
    let mut test = cmd::cargo();
    test.arg("test");
    if !selects_packages(extra) {
        test.arg("--workspace");
    }
    test.args(["--all-features", "--all-targets"]).args(extra).stdin(Stdio::null());
    test
}

/// Whether cargo arguments (before any `--`) include `-p`/`--package`.
fn selects_packages(args: &[String]) -> bool {
    args.iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "-p" || a.starts_with("--package") || (a.starts_with("-p") && a.len() > 2))
}

/// Runs steps, printing a line with the duration of each.
#[derive(Debug, Default)]
struct Steps {
    done: Vec<String>,
}

impl Steps {
    fn time<T>(&mut self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        eprintln!("xtask: ==> {name}");
        let t = Instant::now();
        let result = f();
        let took = secs(t.elapsed());
        match &result {
            Ok(_) => {
                eprintln!("xtask: <== {name}: ok in {took}");
                self.done.push(format!("{name} {took}"));
            }
            Err(e) => eprintln!("xtask: <== {name}: FAILED in {took}: {e}"),
        }
        result
    }

    fn run(&mut self, name: &str, cmd: &mut Command) -> Result<()> {
        eprintln!("xtask: {name}: {}", cmd::display(cmd));
        self.time(name, || {
            let status = cmd::status(cmd)?;
            if status.success() { Ok(()) } else { Err(Error::failed(name, status)) }
        })
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 { format!("{s:.1}s") } else { format!("{}m{:04.1}s", (s / 60.0).floor(), s % 60.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn package_selection_drops_workspace() {
        assert!(selects_packages(&args(&["-p", "session-core"])));
        assert!(selects_packages(&args(&["-psession-core"])));
        assert!(selects_packages(&args(&["--package", "x"])));
        assert!(selects_packages(&args(&["--package=x"])));
        assert!(!selects_packages(&args(&[])));
        assert!(!selects_packages(&args(&["--", "-p"])));
        assert!(!selects_packages(&args(&["--release", "--", "--nocapture"])));
    }

    #[test]
    fn cargo_test_command_line() {
        let line = |extra: &[&str]| cmd::display(&cargo_test(&args(extra)));
        assert!(line(&[]).ends_with("test --workspace --all-features --all-targets"));
        assert!(line(&["-p", "a"]).ends_with("test --all-features --all-targets -p a"));
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(secs(Duration::from_millis(1500)), "1.5s");
        assert_eq!(secs(Duration::from_secs(125)), "2m05.0s");
    }
}

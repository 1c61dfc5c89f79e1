//! `cargo xtask fuzz`: run the cargo-fuzz (libFuzzer) targets in `fuzz/`.
//!
//! `fuzz/` is a workspace of its own (excluded from the main one), so the
//! main build never compiles libFuzzer. Each target runs for a fixed time,
//! one after the other, with `fuzz/corpus/<target>` as its growing corpus
//! (not committed) and `fuzz/seeds/<target>` (committed) as extra seeds.
//! Crashes land in `fuzz/artifacts/<target>/`; turn each into a regression
//! test in the crate where the bug is.
//!
//! Toolchain: cargo-fuzz instruments with nightly-only flags
//! (`-Zsanitizer=address`, `-Cpasses=sancov-module`, `-Zunstable-options`
//! for cargo). On a stable toolchain we set `RUSTC_BOOTSTRAP=1`, which makes
//! stable rustc and cargo accept them. It only affects these instrumented
//! fuzz builds (their own `fuzz/target/`); nothing we test or ship is built
//! that way.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

use crate::cmd::{self, Error, Result};

/// Seconds per target unless `--seconds` says otherwise.
const DEFAULT_SECONDS: u64 = 60;

/// `cargo xtask fuzz --help`.
pub(crate) const HELP: &str = "\
    fuzz [--seconds N] [--target T]... [--seed N]
        Build the cargo-fuzz targets in fuzz/ (a workspace of its own) and
        run each for N seconds (default 60), one at a time; --target (repeat
        it, or give a,b) runs only those; --seed fixes libFuzzer's seed (CI
        runs every target for 20 s with --seed 1). Installs cargo-fuzz when missing
        (cargo install cargo-fuzz --locked) and sets RUSTC_BOOTSTRAP=1 on a
        stable toolchain (cargo-fuzz needs nightly flags). The corpus grows in
        fuzz/corpus/<target>; crashes are saved in fuzz/artifacts/<target>/
        and fail the command after every target ran.
";

#[derive(Debug, PartialEq, Eq)]
struct Options {
    seconds: u64,
    targets: Vec<String>,
    /// libFuzzer's `-seed`: the same seed, binary and seeds give the same
    /// run (up to the time limit), as CI wants.
    seed: Option<u64>,
}

fn parse_options(args: &[&str]) -> Result<Options> {
    let mut options = Options { seconds: DEFAULT_SECONDS, targets: Vec::new(), seed: None };
    let mut iter = args.iter();
    while let Some(&arg) = iter.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (arg, None),
        };
        let mut value = || {
            inline
                .or_else(|| iter.next().copied())
                .ok_or_else(|| Error::msg(format!("fuzz: {name} needs a value")))
        };
        match name {
            "--seconds" => {
                options.seconds = value()?
                    .parse::<u64>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| Error::msg("fuzz: --seconds needs a positive number"))?;
            }
            "--seed" => {
                let seed = value()?
                    .parse::<u64>()
                    .map_err(|_| Error::msg("fuzz: --seed needs a number"))?;
                options.seed = Some(seed);
            }
            "--target" => {
                let names = value()?.split(',').filter(|s| !s.is_empty()).map(str::to_owned);
                options.targets.extend(names);
            }
            _ => {
                return Err(Error::msg(format!(
                    "fuzz: unknown argument `{arg}`; see `cargo xtask help`"
                )));
            }
        }
    }
    Ok(options)
}

/// The targets declared in `fuzz/Cargo.toml` (its `[[bin]]` names).
fn declared_targets(manifest: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
            continue;
        }
        if in_bin
            && let Some(value) = line.strip_prefix("name").map(str::trim_start)
            && let Some(value) = value.strip_prefix('=')
        {
            targets.push(value.trim().trim_matches('"').to_owned());
        }
    }
    targets
}

/// `cargo fuzz` with the toolchain environment it needs.
fn cargo_fuzz(bootstrap: bool) -> Command {
    let mut cmd = cmd::cargo();
    cmd.arg("fuzz");
    if bootstrap {
        cmd.env("RUSTC_BOOTSTRAP", "1");
    }
    cmd
}

/// Whether the active rustc is a nightly (which needs no bootstrap override).
fn is_nightly() -> bool {
    let program = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut rustc = Command::new(program);
    rustc.arg("--version").current_dir(cmd::root());
    cmd::capture(&mut rustc).is_ok_and(|(status, out)| status.success() && out.contains("nightly"))
}

fn ensure_cargo_fuzz() -> Result<()> {
    let mut probe = cmd::cargo();
    probe.args(["fuzz", "--version"]);
    if cmd::succeeds(&mut probe) {
        return Ok(());
    }
    eprintln!(
        "xtask: cargo-fuzz is not installed; installing it (cargo install cargo-fuzz --locked)"
    );
    let mut install = cmd::cargo();
    install.args(["install", "cargo-fuzz", "--locked"]);
    cmd::run(&mut install)
}

/// `cargo xtask fuzz [...]`.
pub(crate) fn fuzz(args: &[&str]) -> Result<ExitCode> {
    if matches!(args.first(), Some(&("-h" | "--help"))) {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    let options = parse_options(args)?;
    let root = cmd::root();
    let dir = root.join("fuzz");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))
        .map_err(|e| Error::msg(format!("fuzz: reading fuzz/Cargo.toml: {e}")))?;
    let declared = declared_targets(&manifest);
    let targets = if options.targets.is_empty() { declared.clone() } else { options.targets };
    if let Some(unknown) = targets.iter().find(|t| !declared.contains(t)) {
        return Err(Error::msg(format!(
            "fuzz: no target `{unknown}`; the targets are {}",
            declared.join(", ")
        )));
    }

    ensure_cargo_fuzz()?;
    let bootstrap = !is_nightly();
    if bootstrap {
        eprintln!(
            "xtask: stable toolchain: setting RUSTC_BOOTSTRAP=1 for the fuzz builds \
             (cargo-fuzz needs nightly-only flags)"
        );
    }

    // Build first, so each target's time is spent fuzzing. `cargo fuzz
    // build` takes one target, or none for all of them.
    if targets == declared {
        let mut build = cargo_fuzz(bootstrap);
        build.args(["build", "--fuzz-dir", "fuzz"]);
        cmd::run(&mut build)?;
    } else {
        for target in &targets {
            let mut build = cargo_fuzz(bootstrap);
            build.args(["build", "--fuzz-dir", "fuzz", target]);
            cmd::run(&mut build)?;
        }
    }

    let mut report = Vec::new();
    let mut failed = Vec::new();
    for target in &targets {
        let corpus = dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .map_err(|e| Error::msg(format!("fuzz: creating {}: {e}", corpus.display())))?;
        let mut run = cargo_fuzz(bootstrap);
        run.args(["run", "--fuzz-dir", "fuzz", target]).arg(relative(&root, &corpus));
        let seeds = dir.join("seeds").join(target);
        if seeds.is_dir() {
            run.arg(relative(&root, &seeds));
        }
        run.args(["--", &format!("-max_total_time={}", options.seconds), "-print_final_stats=1"]);
        if let Some(seed) = options.seed {
            run.arg(format!("-seed={seed}"));
        }
        eprintln!("xtask: fuzzing {target} for {} s: {}", options.seconds, cmd::display(&run));
        let started = Instant::now();
        let status = cmd::status(&mut run)?;
        let took = started.elapsed().as_secs();
        let outcome = if status.success() {
            "clean".to_owned()
        } else {
            failed.push(target.clone());
            format!("FAILED ({}); see fuzz/artifacts/{target}/", cmd::describe(status))
        };
        report.push(format!("  {target:<16} {took:>6} s  {outcome}"));
    }

    eprintln!("xtask: fuzz summary ({} s per target):", options.seconds);
    for line in &report {
        eprintln!("{line}");
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Error::msg(format!(
            "fuzz: {} found a crash; reproduce with `RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir \
             fuzz <target> <artifact>` and add it as a regression test",
            failed.join(", ")
        )))
    }
}

/// `path` relative to `root`, for shorter command lines.
fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_default_to_every_target_for_a_minute() {
        assert_eq!(
            parse_options(&[]).unwrap(),
            Options { seconds: 60, targets: Vec::new(), seed: None }
        );
        assert_eq!(parse_options(&["--seed", "7"]).unwrap().seed, Some(7));
        assert!(parse_options(&["--seed", "x"]).is_err());
        let options = parse_options(&["--seconds", "5", "--target", "a,b", "--target=c"]).unwrap();
        assert_eq!(options.seconds, 5);
        assert_eq!(options.targets, ["a", "b", "c"]);
        assert!(parse_options(&["--seconds", "0"]).is_err());
        assert!(parse_options(&["--seconds"]).is_err());
        assert!(parse_options(&["--jobs", "2"]).is_err());
    }

    #[test]
    fn targets_come_from_the_fuzz_manifest() {
        let manifest = "[package]\nname = \"session-fuzz\"\n\n[[bin]]\nname = \"one\"\npath = \
                        \"x.rs\"\n\n[[bin]]\nname=\"two\"\n\n[profile.release]\n";
        assert_eq!(declared_targets(manifest), ["one", "two"]);
    }

    #[test]
    fn the_real_manifest_declares_the_targets() {
        let manifest = std::fs::read_to_string(cmd::root().join("fuzz/Cargo.toml")).unwrap();
        let targets = declared_targets(&manifest);
        for target in [
            "cookie_header",
            "session_id",
            "json_codec",
            "aead_open",
            "fernet_open",
            "jwt_open",
            "signed_open",
        ] {
            assert!(targets.iter().any(|t| t == target), "{target} in {targets:?}");
        }
    }
}

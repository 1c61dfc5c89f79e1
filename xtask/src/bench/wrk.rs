//! Running wrk (with `bench/wrk/sessions.lua`) and reading what it printed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use super::bench_dir;
use super::runner::{LOAD_CPU, Tools};
use crate::cmd::{self, Error, Result};

#[derive(Debug, Default, PartialEq)]
pub(super) struct WrkResult {
    pub(super) requests: u64,
    pub(super) duration_us: u64,
    pub(super) p50_us: u64,
    pub(super) p99_us: u64,
    pub(super) errors: u64,
}

/// Reads the `BENCH key=value ...` line of `bench/wrk/sessions.lua`.
fn parse_wrk(out: &str) -> Result<WrkResult> {
    let line = out.lines().find_map(|l| l.strip_prefix("BENCH ")).ok_or_else(|| {
        Error::msg(format!("bench: wrk printed no BENCH line; its output:\n{out}"))
    })?;
    let fields: BTreeMap<&str, u64> = line
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .filter_map(|(k, v)| Some((k, v.split('.').next()?.parse().ok()?)))
        .collect();
    let get = |key: &str| {
        fields
            .get(key)
            .copied()
            .ok_or_else(|| Error::msg(format!("bench: wrk's BENCH line lacks {key}: {line}")))
    };
    let mut errors = 0;
    for key in ["errors_connect", "errors_read", "errors_write", "errors_status", "errors_timeout"]
    {
        errors += get(key)?;
    }
    Ok(WrkResult {
        requests: get("requests")?,
        duration_us: get("duration_us")?,
        p50_us: get("p50_us")?,
        p99_us: get("p99_us")?,
        errors,
    })
}

/// One wrk run of `seconds` against the server on `port`, pinned to
/// [`LOAD_CPU`], each connection sending a session cookie from `cookie_file`.
pub(super) fn run(
    tools: &Tools,
    connections: usize,
    port: u16,
    cookie_file: &Path,
    seconds: u64,
) -> Result<WrkResult> {
    let script = bench_dir().join("wrk/sessions.lua");
    let mut cmd = tools.pinned(LOAD_CPU, &tools.wrk);
    cmd.args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s")])
        .args(["--timeout", "10s", "-s"])
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}/"))
        .arg("--")
        .arg(cookie_file)
        .arg("1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let child = cmd
        .spawn()
        .map_err(|e| Error::msg(format!("bench: starting `{}`: {e}", cmd::display(&cmd))))?;
    tools.boost(child.id());
    let out = child.wait_with_output().map_err(|e| Error::msg(format!("bench: wrk: {e}")))?;
    if !out.status.success() {
        return Err(Error::failed("wrk", out.status));
    }
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_line_parses() {
        let out = "Running 1s test\nBENCH requests=100 duration_us=1000000 p50_us=250 \
                   p90_us=300 p99_us=900 max_us=1000 mean_us=260.5 errors_connect=0 \
                   errors_read=1 errors_write=0 errors_status=2 errors_timeout=0\n";
        let parsed = parse_wrk(out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            parsed,
            WrkResult {
                requests: 100,
                duration_us: 1_000_000,
                p50_us: 250,
                p99_us: 900,
                errors: 3
            }
        );
        assert!(parse_wrk("no summary").is_err());
    }
}

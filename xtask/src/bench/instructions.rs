//! `cargo xtask bench instructions`: the server's instructions per request
//! for each row, counted by callgrind.
//!
//! Wall-clock windows on this VM drift by 15-25% from one second to the
//! next, so a change of a few per cent cannot be read from them. An
//! instruction count is the same, run after run, for the same binary and
//! requests, whatever else the machine does. Each row's server runs under
//! `valgrind --tool=callgrind`; one keep-alive connection makes its session
//! (`GET /start`) and warms it up, the counters are zeroed
//! (`callgrind_control --zero`), [`DEFAULT_REQUESTS`] requests follow, and
//! `callgrind_control --dump` writes what they cost, over all the server's
//! threads. Only the server's own instructions count: Redis and PostgreSQL
//! run outside it (the wall-clock table's database-CPU line covers them).
//!
//! Valgrind's virtual CPU has no SHA-NI, so SHA-256 runs in software here:
//! the HMAC cookie rows and every id hash count more than they cost
//! natively. (It has AES-NI and PCLMULQDQ: the `aes` and `polyval` crates
//! take their hardware paths, as natively.) Compare rows with each other and
//! one commit with another, not with native time.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use super::http::Conn;
use super::plan::{self, Route};
use super::runner::installed;
use super::{bench_dir, build};
use crate::cmd::{self, Error, Result};
use crate::services::Config;
use crate::session::ServicesSession;

/// Measured requests per row unless `--requests` says otherwise.
const DEFAULT_REQUESTS: u64 = 2000;
/// Requests before the counters are zeroed: connection set-up, lazy
/// statics, the allocator's first growth and pool fills stay out.
const WARMUP_REQUESTS: u64 = 300;
/// How long callgrind may take to write a dump.
const DUMP_TIMEOUT: Duration = Duration::from_secs(60);

/// `cargo xtask bench --help`, this command's part.
pub(super) const HELP: &str = "\
    bench instructions [--routes a,b,c] [--requests N]
        Count the server's instructions per request for each row under
        valgrind's callgrind (installed with apt-get when missing): N
        requests (default 2000) on one session after a warm-up, all server
        threads, and the ratio to the bare row. Deterministic, unlike the
        wall-clock table: use it to judge a change of a few per cent.
";

struct Options {
    routes: Option<Vec<String>>,
    requests: u64,
}

fn parse_options(args: &[&str]) -> Result<Options> {
    let mut options = Options { routes: None, requests: DEFAULT_REQUESTS };
    let mut iter = args.iter();
    while let Some(&arg) = iter.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (arg, None),
        };
        let mut value = || {
            inline
                .or_else(|| iter.next().copied())
                .ok_or_else(|| Error::msg(format!("bench instructions: {name} needs a value")))
        };
        match name {
            "--routes" => {
                let names = value()?.split(',').filter(|s| !s.is_empty()).map(str::to_owned);
                options.routes = Some(names.collect());
            }
            "--requests" => {
                options.requests = value()?.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                    Error::msg("bench instructions: --requests needs a positive number")
                })?;
            }
            other => {
                return Err(Error::msg(format!(
                    "bench instructions: unknown option `{other}` (see `cargo xtask bench --help`)"
                )));
            }
        }
    }
    Ok(options)
}

/// `cargo xtask bench instructions [...]`.
pub(super) fn instructions(args: &[&str]) -> Result<ExitCode> {
    let options = parse_options(args)?;
    let valgrind = installed("valgrind", "valgrind")?;
    let control = installed("callgrind_control", "valgrind")?;
    build()?;
    let bin = bench_dir().join("target/release");
    let routes = plan::list_routes(&bin)?;
    let selected = plan::select(&routes, options.routes.as_deref())?;
    let services = if selected.iter().any(|route| !route.needs.is_empty()) {
        eprintln!("xtask: bench: starting the services some rows need");
        Some(ServicesSession::start(Config::from_env()?)?)
    } else {
        None
    };
    let env: Vec<(&'static str, String)> =
        services.as_ref().map(|s| s.env().to_vec()).unwrap_or_default();
    let out_dir = bench_dir().join("target/callgrind");
    let data_dir = bench_dir().join("target/bench-data");
    for dir in [&out_dir, &data_dir] {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::msg(format!("bench: creating {}: {e}", dir.display())))?;
    }
    let counter = Counter { valgrind, control, bin, env, out_dir, data_dir: data_dir.clone() };
    let mut counted = Vec::with_capacity(selected.len());
    for route in &selected {
        eprintln!(
            "xtask: bench: {}: counting {} requests under callgrind",
            route.name, options.requests
        );
        counted.push((route, counter.per_request(route, options.requests)?));
    }
    let _ = std::fs::remove_dir_all(&data_dir);
    if let Some(services) = services {
        services.stop()?;
    }
    print!("{}", render(&counted, options.requests));
    Ok(ExitCode::SUCCESS)
}

/// Runs servers under callgrind and reads their counts.
struct Counter {
    valgrind: PathBuf,
    control: PathBuf,
    bin: PathBuf,
    env: Vec<(&'static str, String)>,
    out_dir: PathBuf,
    data_dir: PathBuf,
}

impl Counter {
    /// Instructions per request of `route`'s server over `requests` requests.
    fn per_request(&self, route: &Route, requests: u64) -> Result<f64> {
        let out = self.out_dir.join(format!("{}.out", route.name));
        // Dumps are numbered after the file name: clear the last run's.
        clear_dumps(&out);
        let mut server = self.start(route, &out)?;
        let mut conn = Conn::open(server.port)?;
        let mut cookie = conn.get_ok("/start", None)?.session_cookie();
        let mut send = |conn: &mut Conn| -> Result<()> {
            let response = conn.get_ok("/", cookie.as_deref())?;
            // Cookie rows reseal the session into a new value on each write.
            if let Some(fresh) = response.session_cookie() {
                cookie = Some(fresh);
            }
            Ok(())
        };
        for _ in 0..WARMUP_REQUESTS {
            send(&mut conn)?;
        }
        self.control(server.pid, "--zero")?;
        for _ in 0..requests {
            send(&mut conn)?;
        }
        self.control(server.pid, "--dump")?;
        let total = wait_for_dump(&out)?;
        server.stop();
        Ok(total as f64 / requests as f64)
    }

    fn start(&self, route: &Route, out: &Path) -> Result<Server> {
        let mut command = Command::new(&self.valgrind);
        command
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg("--log-file=/dev/null")
            .arg(self.bin.join("bench-server"))
            .args(["--route", &route.name, "--port", "0", "--stdin-lifeline"])
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("BENCH_DATA_DIR", &self.data_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().map_err(|e| {
            Error::msg(format!("bench: starting `{}`: {e}", cmd::display(&command)))
        })?;
        let pid = child.id();
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = BufReader::new(stdout).read_line(&mut line);
        }
        let port = line.trim().rsplit(':').next().and_then(|port| port.parse().ok());
        let mut server = Server { child: Some(child), pid, port: 0 };
        server.port = port.ok_or_else(|| {
            Error::msg(format!(
                "bench: bench-server --route {} did not start under valgrind",
                route.name
            ))
        })?;
        Ok(server)
    }

    fn control(&self, pid: u32, action: &str) -> Result<()> {
        let mut control = Command::new(&self.control);
        control.arg(action).arg(pid.to_string()).stdout(Stdio::null()).stderr(Stdio::null());
        cmd::run(&mut control)
    }
}

/// Removes earlier dumps of `out` (`<out>.1`, `<out>.2`, ...).
fn clear_dumps(out: &Path) {
    for dump in dumps(out) {
        let _ = std::fs::remove_file(dump);
    }
}

fn dumps(out: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (out.parent(), out.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.strip_prefix(name).is_some_and(|rest| rest.starts_with('.')))
        })
        .collect()
}

/// The instruction total of the dump `callgrind_control --dump` wrote.
fn wait_for_dump(out: &Path) -> Result<u64> {
    let deadline = Instant::now() + DUMP_TIMEOUT;
    loop {
        for dump in dumps(out) {
            if let Some(total) = std::fs::read_to_string(&dump).ok().as_deref().and_then(total_of) {
                return Ok(total);
            }
        }
        if Instant::now() > deadline {
            return Err(Error::msg(format!("bench: no callgrind dump next to {}", out.display())));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `summary:` (or `totals:`) line of a callgrind dump: its event total.
fn total_of(dump: &str) -> Option<u64> {
    dump.lines().find_map(|line| {
        let rest = line.strip_prefix("summary:").or_else(|| line.strip_prefix("totals:"))?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// A server under valgrind; killed when dropped.
struct Server {
    child: Option<Child>,
    pid: u32,
    port: u16,
}

impl Server {
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn render(counted: &[(&Route, f64)], requests: u64) -> String {
    let bare = counted.iter().find(|(route, _)| route.name == "bare").map(|(_, n)| *n);
    let mut out = format!(
        "Server instructions per request under callgrind ({requests} requests on one \
         keep-alive connection after {WARMUP_REQUESTS} of warm-up; software SHA-256, see \
         BENCHMARKS.md).\n\n| route | instructions/req | × bare |\n|---|---:|---:|\n"
    );
    for (route, per_request) in counted {
        let ratio =
            bare.map_or_else(|| "-".to_owned(), |bare| format!("{:.2}", per_request / bare));
        out.push_str(&format!("| {} | {per_request:.0} | {ratio} |\n", route.name));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_total_of_a_dump() {
        let dump = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 58300123\n";
        assert_eq!(total_of(dump), Some(58_300_123));
        assert_eq!(total_of("events: Ir\ntotals: 42\n"), Some(42));
        assert_eq!(total_of("events: Ir\n"), None);
    }

    #[test]
    fn parses_routes_and_request_counts() {
        let options = parse_options(&["--routes", "bare,ours-memory", "--requests=500"]).unwrap();
        assert_eq!(options.routes.unwrap(), ["bare", "ours-memory"]);
        assert_eq!(options.requests, 500);
        assert!(parse_options(&["--requests", "0"]).is_err());
        assert!(parse_options(&["--seconds", "3"]).is_err());
    }
}

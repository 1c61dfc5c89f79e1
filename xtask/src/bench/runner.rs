//! Running the rows: the pinned servers, their sessions and warm-up, and the
//! measured windows, each right after one on the reference `bare` server.

use std::cell::Cell;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::bench_dir;
use super::http::{self, LostUpdates};
use super::plan::{Options, Route};
use super::procstat;
use super::redis_info;
use super::stats::{self, Paired};
use super::wrk::{self, WrkResult};
use crate::cmd::{self, Error, Result};

/// Measured windows per row, each paired with a `bare` window (the median
/// ratio counts; an odd count has a true median).
pub(super) const WINDOWS: u64 = 5;
/// Unmeasured load before each measured window.
pub(super) const WARMUP_SECONDS: u64 = 1;
/// Other processes' load (% of one core) below which the machine counts as quiet.
const QUIET_LOAD: f64 = 15.0;
/// How long a whole run may wait for the machine to be quiet.
const QUIET_BUDGET: Duration = Duration::from_secs(120);
/// The core the server runs on, and the one wrk runs on.
pub(super) const SERVER_CPU: &str = "0";
pub(super) const LOAD_CPU: &str = "1";

/// wrk and taskset, and whether we may raise our priority.
#[derive(Debug)]
pub(super) struct Tools {
    pub(super) wrk: PathBuf,
    taskset: PathBuf,
    /// Root: run server and wrk at nice -20, ahead of other work on the box.
    nice: bool,
    /// `setsid`, to give server and wrk autogroups of their own (see [`boost`](Self::boost)).
    setsid: Option<PathBuf>,
}

/// `program` on `PATH`, installed from the Debian package `package` first
/// when it is missing and we are root.
pub(super) fn installed(program: &str, package: &str) -> Result<PathBuf> {
    if let Some(path) = cmd::which(program) {
        return Ok(path);
    }
    if !cmd::is_root() {
        return Err(Error::msg(format!(
            "bench: {program} is not installed; install the Debian package `{package}` (needs root)"
        )));
    }
    eprintln!("xtask: bench: {program} is missing: apt-get install {package}");
    let apt = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        c.env("DEBIAN_FRONTEND", "noninteractive")
            .args(["-q", "-o", "DPkg::Lock::Timeout=600"])
            .args(args)
            .stdout(Stdio::null());
        c
    };
    if cmd::run(&mut apt(&["install", "-y", "--no-install-recommends", package])).is_err() {
        cmd::run(&mut apt(&["update"]))?;
        cmd::run(&mut apt(&["install", "-y", "--no-install-recommends", package]))?;
    }
    cmd::which(program).ok_or_else(|| Error::msg(format!("bench: {program} is still missing")))
}

impl Tools {
    pub(super) fn find() -> Result<Self> {
        let root = cmd::is_root();
        let wrk = installed("wrk", "wrk")?;
        let taskset = cmd::which("taskset")
            .ok_or_else(|| Error::msg("bench: taskset (util-linux) is not installed"))?;
        let setsid = if root { cmd::which("setsid") } else { None };
        Ok(Self { wrk, taskset, nice: root, setsid })
    }

    /// `[setsid nice -n -20] taskset -c <cpu> <program>`; [`boost`](Self::boost) the
    /// process once it runs.
    pub(super) fn pinned(&self, cpu: &str, program: &Path) -> Command {
        let mut cmd = match (&self.setsid, self.nice) {
            (Some(setsid), true) => {
                let mut cmd = Command::new(setsid);
                cmd.args(["nice", "-n", "-20"]).arg(&self.taskset);
                cmd
            }
            (None, true) => {
                let mut cmd = Command::new("nice");
                cmd.args(["-n", "-20"]).arg(&self.taskset);
                cmd
            }
            _ => Command::new(&self.taskset),
        };
        cmd.args(["-c", cpu]).arg(program);
        cmd
    }

    /// Gives the autogroup of `pid` (its session, new thanks to `setsid`)
    /// the highest CPU weight. With autogroups (the kernel default), a
    /// process's nice value only counts inside its session; between sessions
    /// (other people's builds on a shared machine) the autogroup's nice
    /// decides, so without this the server gets a fraction of its core.
    pub(super) fn boost(&self, pid: u32) {
        if self.nice && self.setsid.is_some() {
            let _ = std::fs::write(format!("/proc/{pid}/autogroup"), "-20");
        }
    }
}

/// What one row measured.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) name: String,
    pub(super) route: Route,
    pub(super) requests_per_sec: f64,
    pub(super) p50_us: u64,
    pub(super) p99_us: u64,
    pub(super) cpu_us_per_request: f64,
    /// The server's CPU during the window, in % of its core: below ~90% the
    /// load generator, not the server, set the pace.
    pub(super) server_busy: f64,
    /// Non-2xx responses and socket errors during the measured window.
    pub(super) errors: u64,
    /// Other processes' CPU during the windows, in % of one core.
    pub(super) noise: f64,
    /// CPU per request over the paired `bare` windows' (with a reference).
    pub(super) x_bare: Option<Paired>,
    /// For rows with a database: its processes' CPU per request.
    pub(super) service_us_per_request: Option<f64>,
    pub(super) lost: Option<LostUpdates>,
    /// Redis calls per request by command, for rows that use Redis.
    pub(super) redis_commands: Option<String>,
}

pub(super) struct Runner<'a> {
    bin: &'a Path,
    tools: &'a Tools,
    options: &'a Options,
    env: &'a [(&'static str, String)],
    data_dir: PathBuf,
    /// What is left of the time rows may wait for a quiet machine.
    quiet_budget: Cell<Duration>,
    /// The `bare` server every window is paired with, when `bare` is
    /// selected; kept for the whole run.
    reference: Option<WarmServer>,
}

/// A pinned, warmed-up server and its wrk cookie file.
struct WarmServer {
    server: Server,
    cookie_file: PathBuf,
}

impl<'a> Runner<'a> {
    pub(super) fn new(
        bin: &'a Path,
        tools: &'a Tools,
        options: &'a Options,
        env: &'a [(&'static str, String)],
        data_dir: PathBuf,
    ) -> Self {
        Self {
            bin,
            tools,
            options,
            env,
            data_dir,
            quiet_budget: Cell::new(QUIET_BUDGET),
            reference: None,
        }
    }

    /// Starts the `bare` server the windows of every row are paired with.
    pub(super) fn keep_reference(&mut self, bare: &Route) -> Result<()> {
        self.reference = Some(self.warm_server(bare, 0, "bare-reference")?);
        Ok(())
    }

    /// Measures one row; `check_lost`: also run the lost-update check.
    pub(super) fn row(
        &self,
        route: &Route,
        name: String,
        prefill: u64,
        check_lost: bool,
    ) -> Result<Row> {
        eprintln!("xtask: bench: {name}");
        self.wait_for_quiet();
        let WarmServer { server, cookie_file } = self.warm_server(route, prefill, &name)?;

        // The measured time comes in [`WINDOWS`] windows, each right after a
        // window on the reference `bare` server: the machine's speed drifts
        // within seconds, and a ratio of two adjacent windows cancels most
        // of it. The row's figures come from its median window.
        let redis = self.redis_port(route);
        let seconds = self.options.seconds.div_ceil(WINDOWS).max(1);
        let mut windows = Vec::new();
        let mut ratios = Vec::new();
        for _ in 0..WINDOWS {
            let bare = match &self.reference {
                Some(reference) => {
                    Some(self.window(&reference.server, &reference.cookie_file, seconds, None)?)
                }
                None => None,
            };
            let window = self.window(&server, &cookie_file, seconds, redis)?;
            if let Some(bare) = bare
                && bare.cpu_per_request() > 0.0
            {
                ratios.push(window.cpu_per_request() / bare.cpu_per_request());
            }
            windows.push(window);
        }
        drop(server);
        let noise = stats::mean(windows.iter().map(|w| w.noise));
        let Some(window) = stats::median_by(windows, Window::cpu_per_request) else {
            return Err(Error::msg("bench: no measurement window"));
        };
        // The lost-update check wants interleaving: its own server, on every
        // core, one runtime worker per core. Scaling rows repeat a row that
        // was checked already.
        let lost = if check_lost && route.kind == "server" && prefill == 0 {
            let server = self.start_server(route, 0, false)?;
            Some(http::lost_updates(server.port, self.options.connections)?)
        } else {
            None
        };
        let wrk = &window.wrk;
        let requests = wrk.requests.max(1);
        let row = Row {
            name,
            route: route.clone(),
            requests_per_sec: wrk.requests as f64 / window.seconds,
            p50_us: wrk.p50_us,
            p99_us: wrk.p99_us,
            cpu_us_per_request: window.cpu_per_request(),
            server_busy: window.server_seconds / window.seconds * 100.0,
            errors: wrk.errors,
            noise,
            x_bare: Paired::of(&mut ratios),
            service_us_per_request: (!route.needs.is_empty())
                .then(|| window.service_seconds * 1e6 / requests as f64),
            lost,
            redis_commands: window.redis_commands,
        };
        eprintln!(
            "xtask: bench:   {:.0} req/s, {:.2} µs CPU/req{} (server {:.0}% busy), p50 {} µs, \
             p99 {} µs, noise {:.0}%{}",
            row.requests_per_sec,
            row.cpu_us_per_request,
            row.x_bare.map_or(String::new(), |x| format!(", {x} bare")),
            row.server_busy,
            row.p50_us,
            row.p99_us,
            row.noise,
            row.lost.map_or(String::new(), |l| format!(", kept {} of {}", l.kept, l.sent)),
        );
        Ok(row)
    }

    /// Starts `route`'s server pinned, makes one session per connection
    /// (written to a wrk cookie file named after `label`) and warms it up.
    fn warm_server(&self, route: &Route, prefill: u64, label: &str) -> Result<WarmServer> {
        let server = self.start_server(route, prefill, true)?;
        let cookie_file = self.sessions_for(&server, label)?;
        self.wrk(server.port, &cookie_file, WARMUP_SECONDS)?;
        Ok(WarmServer { server, cookie_file })
    }

    /// One session per connection on `server`, written to a wrk cookie file.
    fn sessions_for(&self, server: &Server, label: &str) -> Result<PathBuf> {
        let cookies = http::make_sessions(server.port, self.options.connections)?;
        let dir = bench_dir().join("target/bench-run");
        create_dir(&dir)?;
        let file_name: String =
            label.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        let cookie_file = dir.join(format!("cookies-{file_name}.txt"));
        std::fs::write(&cookie_file, cookies.join("\n") + "\n")
            .map_err(|e| Error::msg(format!("bench: writing {}: {e}", cookie_file.display())))?;
        Ok(cookie_file)
    }

    /// One measured wrk run against `server`.
    fn window(
        &self,
        server: &Server,
        cookie_file: &Path,
        seconds: u64,
        redis: Option<u16>,
    ) -> Result<Window> {
        let clk = procstat::clock_ticks_per_sec();
        let commands_before = redis.and_then(redis_info::redis_commandstats);
        let services_before = procstat::service_ticks();
        let server_before = procstat::process_ticks(server.pid)?;
        let children_before = procstat::children_ticks();
        let busy_before = procstat::busy_ticks();
        let wrk = self.wrk(server.port, cookie_file, seconds)?;
        let server_after = procstat::process_ticks(server.pid)?;
        let children_after = procstat::children_ticks();
        let busy_after = procstat::busy_ticks();
        let services_after = procstat::service_ticks();
        let commands_after = redis.and_then(redis_info::redis_commandstats);

        let server_ticks = server_after.saturating_sub(server_before);
        let wrk_ticks = children_after.saturating_sub(children_before);
        let service = services_after.saturating_sub(services_before);
        let other = busy_after
            .saturating_sub(busy_before)
            .saturating_sub(server_ticks + wrk_ticks + service);
        let window = (wrk.duration_us as f64 / 1e6).max(1e-9);
        let redis_commands = match (commands_before, commands_after) {
            (Some(before), Some(after)) => {
                Some(redis_info::redis_per_request(&before, &after, wrk.requests.max(1)))
            }
            _ => None,
        };
        Ok(Window {
            seconds: window,
            server_seconds: server_ticks as f64 / clk,
            service_seconds: service as f64 / clk,
            noise: other as f64 / clk / window * 100.0,
            redis_commands,
            wrk,
        })
    }

    /// Waits (within the run's budget) until other processes leave the
    /// machine mostly idle, so rows are not measured during someone's build.
    fn wait_for_quiet(&self) {
        let mut said = false;
        loop {
            let load = procstat::other_load(Duration::from_secs(1));
            if load < QUIET_LOAD {
                return;
            }
            let mut budget = self.quiet_budget.get();
            if budget < Duration::from_secs(1) {
                eprintln!(
                    "xtask: bench:   other processes use {load:.0}% of a core; the wait budget \
                     is spent, measuring anyway (see `noise`)"
                );
                return;
            }
            if !said {
                eprintln!("xtask: bench:   other processes use {load:.0}% of a core; waiting");
                said = true;
            }
            budget -= Duration::from_secs(1);
            self.quiet_budget.set(budget);
        }
    }

    /// Starts the row's server: pinned to [`SERVER_CPU`], or on every core.
    fn start_server(&self, route: &Route, prefill: u64, pinned: bool) -> Result<Server> {
        let bin = self.bin.join("bench-server");
        let mut cmd = if pinned { self.tools.pinned(SERVER_CPU, &bin) } else { Command::new(bin) };
        // The server quits when its stdin closes: when we end, however we end.
        cmd.args(["--route", &route.name, "--port", "0", "--stdin-lifeline"]);
        if prefill > 0 {
            cmd.args(["--prefill", &prefill.to_string()]);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("BENCH_DATA_DIR", &self.data_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::msg(format!("bench: starting `{}`: {e}", cmd::display(&cmd))))?;
        let pid = child.id();
        if pinned {
            self.tools.boost(pid);
        }
        let line = child.stdout.take().map(|out| {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            line
        });
        let mut server = Server { child, pid, port: 0 };
        let port = line
            .as_deref()
            .and_then(|line| line.trim().rsplit(':').next())
            .and_then(|port| port.parse().ok())
            .ok_or_else(|| {
                Error::msg(format!("bench: bench-server --route {} did not start", route.name))
            })?;
        server.port = port;
        Ok(server)
    }

    fn wrk(&self, port: u16, cookie_file: &Path, seconds: u64) -> Result<WrkResult> {
        wrk::run(self.tools, self.options.connections, port, cookie_file, seconds)
    }

    fn redis_port(&self, route: &Route) -> Option<u16> {
        if !route.needs.iter().any(|n| n == "redis") {
            return None;
        }
        let url = self.env.iter().find(|(k, _)| *k == "REDIS_URL")?.1.as_str();
        url.trim_end_matches('/').rsplit(':').next()?.split('/').next()?.parse().ok()
    }
}

/// One measured wrk run.
#[derive(Debug)]
struct Window {
    wrk: WrkResult,
    /// Its length.
    seconds: f64,
    /// The server's CPU time in it.
    server_seconds: f64,
    /// The CPU time of Redis and PostgreSQL in it.
    service_seconds: f64,
    /// Other processes' CPU, in % of one core.
    noise: f64,
    redis_commands: Option<String>,
}

impl Window {
    fn cpu_per_request(&self) -> f64 {
        self.server_seconds * 1e6 / self.wrk.requests.max(1) as f64
    }
}

/// A running bench-server; killed when dropped.
struct Server {
    child: Child,
    pid: u32,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::msg(format!("bench: creating {}: {e}", dir.display())))
}

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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::cmd::{self, Error, Result};
use crate::services::Config;
use crate::session::ServicesSession;

/// Measured seconds per row, unless `--seconds` says otherwise.
const DEFAULT_SECONDS: u64 = 10;
/// Keep-alive connections (= sessions) wrk keeps open.
const DEFAULT_CONNECTIONS: usize = 32;
/// Rows with more noise than this (% of a core) are measured again at the end.
const NOISY: f64 = 10.0;
/// Re-measuring stops when a row could not end before this much time since
/// the start (build included), so a run stays under a quarter of an hour.
const RETRY_UNTIL: Duration = Duration::from_secs(13 * 60);
/// Measured windows per row, each paired with a `bare` window (the median
/// ratio counts; an odd count has a true median).
const WINDOWS: u64 = 5;
/// Unmeasured load before each measured window.
const WARMUP_SECONDS: u64 = 1;
/// Requests each connection sends in the lost-update check.
const LOST_UPDATE_REQUESTS: usize = 100;
/// Other processes' load (% of one core) below which the machine counts as quiet.
const QUIET_LOAD: f64 = 15.0;
/// How long a whole run may wait for the machine to be quiet.
const QUIET_BUDGET: Duration = Duration::from_secs(120);
/// Live sessions for the scaling rows.
const SCALING: [(u64, &str); 2] = [(1_000, "1k"), (1_000_000, "1M")];
/// Rows that get scaling variants (their store must support `--prefill`).
const SCALING_ROUTES: [&str; 1] = ["ours-memory"];
/// Session counts for the memory figures.
const MEMORY_SESSIONS: [(u64, &str); 2] = [(100_000, "100k"), (1_000_000, "1M")];
/// The core the server runs on, and the one wrk runs on.
const SERVER_CPU: &str = "0";
const LOAD_CPU: &str = "1";

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
        with --no-memory). Starts Redis/PostgreSQL when a row needs them;
        installs wrk with apt-get when missing. See BENCHMARKS.md.
    bench micro [CRITERION ARGS...]
        Run the criterion micro-benchmarks (bench/micro).
";

#[derive(Debug)]
struct Options {
    seconds: u64,
    connections: usize,
    routes: Option<Vec<String>>,
    memory: bool,
}

fn parse_options(args: &[&str]) -> Result<Options> {
    let mut options = Options {
        seconds: DEFAULT_SECONDS,
        connections: DEFAULT_CONNECTIONS,
        routes: None,
        memory: true,
    };
    let mut iter = args.iter();
    while let Some(&arg) = iter.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (arg, None),
        };
        let mut value = || {
            inline
                .or_else(|| iter.next().copied())
                .ok_or_else(|| Error::msg(format!("bench: {name} needs a value")))
        };
        let number = |text: &str| {
            text.parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| Error::msg(format!("bench: {name} needs a positive number")))
        };
        match name {
            "--seconds" => options.seconds = number(value()?)?,
            "--connections" => {
                options.connections = usize::try_from(number(value()?)?)
                    .map_err(|_| Error::msg("bench: --connections is too large"))?;
            }
            "--routes" => {
                let names = value()?.split(',').filter(|s| !s.is_empty()).map(str::to_owned);
                options.routes = Some(names.collect());
            }
            "--no-memory" => options.memory = false,
            _ => {
                return Err(Error::msg(format!(
                    "bench: unknown argument `{arg}`; see `cargo xtask help`"
                )));
            }
        }
    }
    Ok(options)
}

/// `cargo xtask bench [...]`.
pub(crate) fn bench(args: &[&str]) -> Result<ExitCode> {
    match args {
        ["micro", rest @ ..] => return micro(rest),
        ["-h" | "--help", ..] => {
            print!("{HELP}");
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let options = parse_options(args)?;
    let started = Instant::now();
    let tools = Tools::find()?;
    build()?;
    let bin = bench_dir().join("target/release");
    let routes = list_routes(&bin)?;
    let selected = select(&routes, options.routes.as_deref())?;

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
    let idle = other_load(Duration::from_secs(1));
    if idle > 10.0 {
        eprintln!(
            "xtask: bench: WARNING: other processes use {idle:.0}% of a core right now; \
             figures will be noisy (see the `noise` column)"
        );
    }

    let mut runner = Runner {
        bin: &bin,
        tools: &tools,
        options: &options,
        env: &env,
        data_dir: data_dir.clone(),
        quiet_budget: std::cell::Cell::new(QUIET_BUDGET),
        reference: None,
    };
    if let Some(bare) = selected.iter().find(|route| route.name == "bare") {
        runner.reference = Some(runner.warm_server(bare, 0, "bare-reference")?);
    }
    // What to measure: (route, row name, prefilled sessions).
    let mut plan: Vec<(&Route, String, u64)> =
        selected.iter().map(|route| (route, route.name.clone(), 0)).collect();
    if options.memory {
        for route in
            selected.iter().filter(|r| r.prefill && SCALING_ROUTES.contains(&r.name.as_str()))
        {
            for (count, label) in SCALING {
                plan.push((route, format!("{} ({label} live)", route.name), count));
            }
        }
    }
    if selected.len() > 1
        && let Some(bare) = selected.iter().find(|route| route.name == "bare")
    {
        // Measured again last: the difference between the two bare rows shows
        // how much the machine drifted during the run.
        plan.push((bare, "bare (repeat)".to_owned(), 0));
    }
    let mut rows = Vec::with_capacity(plan.len());
    for (route, name, prefill) in &plan {
        rows.push(runner.row(route, name.clone(), *prefill, true)?);
    }
    // Rows other processes disturbed are measured again while the run has
    // time left; the less disturbed measurement stays.
    let mut noisy: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].noise > NOISY).collect();
    noisy.sort_by(|&a, &b| rows[b].noise.total_cmp(&rows[a].noise));
    let row_time = Duration::from_secs(options.seconds + 8);
    for i in noisy {
        if started.elapsed() + row_time > RETRY_UNTIL {
            eprintln!("xtask: bench: no time left to measure the other disturbed rows again");
            break;
        }
        let (route, name, prefill) = &plan[i];
        eprintln!("xtask: bench: again, it was disturbed ({:.0}% noise):", rows[i].noise);
        let again = runner.row(route, name.clone(), *prefill, false)?;
        if again.noise < rows[i].noise {
            let lost = rows[i].lost;
            rows[i] = Row { lost, ..again };
        }
    }
    // The SQLite and filesystem rows' sessions.
    let _ = std::fs::remove_dir_all(&data_dir);
    let memory = if options.memory { memory_figures(&bin)? } else { Vec::new() };
    if let Some(services) = services {
        services.stop()?;
    }

    let report = render(&machine, &options, &selected, &rows, &memory, started.elapsed());
    print!("{report}");
    let saved = bench_dir().join("target/bench-results.md");
    match std::fs::write(&saved, &report) {
        Ok(()) => eprintln!("xtask: bench: also written to {}", saved.display()),
        Err(e) => eprintln!("xtask: bench: could not write {}: {e}", saved.display()),
    }
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

// ----- tools -----

/// wrk and taskset, and whether we may raise our priority.
#[derive(Debug)]
struct Tools {
    wrk: PathBuf,
    taskset: PathBuf,
    /// Root: run server and wrk at nice -20, ahead of other work on the box.
    nice: bool,
    /// `setsid`, to give server and wrk autogroups of their own (see [`boost`]).
    setsid: Option<PathBuf>,
}

impl Tools {
    fn find() -> Result<Self> {
        let root = cmd::is_root();
        let wrk = match cmd::which("wrk") {
            Some(wrk) => wrk,
            None if root => {
                eprintln!("xtask: bench: wrk is missing: apt-get install wrk");
                let apt = |args: &[&str]| {
                    let mut c = Command::new("apt-get");
                    c.env("DEBIAN_FRONTEND", "noninteractive")
                        .args(["-q", "-o", "DPkg::Lock::Timeout=600"])
                        .args(args)
                        .stdout(Stdio::null());
                    c
                };
                if cmd::run(&mut apt(&["install", "-y", "--no-install-recommends", "wrk"])).is_err()
                {
                    cmd::run(&mut apt(&["update"]))?;
                    cmd::run(&mut apt(&["install", "-y", "--no-install-recommends", "wrk"]))?;
                }
                cmd::which("wrk").ok_or_else(|| Error::msg("bench: wrk is still missing"))?
            }
            None => {
                return Err(Error::msg(
                    "bench: wrk is not installed; install the Debian package `wrk` (needs root)",
                ));
            }
        };
        let taskset = cmd::which("taskset")
            .ok_or_else(|| Error::msg("bench: taskset (util-linux) is not installed"))?;
        let setsid = if root { cmd::which("setsid") } else { None };
        Ok(Self { wrk, taskset, nice: root, setsid })
    }

    /// `[setsid nice -n -20] taskset -c <cpu> <program>`; [`boost`] the
    /// process once it runs.
    fn pinned(&self, cpu: &str, program: &Path) -> Command {
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
    fn boost(&self, pid: u32) {
        if self.nice && self.setsid.is_some() {
            let _ = std::fs::write(format!("/proc/{pid}/autogroup"), "-20");
        }
    }
}

// ----- routes -----

/// One line of `bench-server --list`.
#[derive(Debug, Clone)]
struct Route {
    name: String,
    peer: Option<String>,
    needs: Vec<String>,
    kind: String,
    prefill: bool,
    what: String,
}

fn list_routes(bin: &Path) -> Result<Vec<Route>> {
    let mut list = Command::new(bin.join("bench-server"));
    list.arg("--list");
    let (status, out) = cmd::capture(&mut list)?;
    if !status.success() {
        return Err(Error::failed("bench-server --list", status));
    }
    parse_routes(&out)
}

fn parse_routes(text: &str) -> Result<Vec<Route>> {
    let dash = |s: &str| (s != "-").then(|| s.to_owned());
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| match line.split('\t').collect::<Vec<_>>().as_slice() {
            [name, peer, needs, kind, prefill, what] => Ok(Route {
                name: (*name).to_owned(),
                peer: dash(peer),
                needs: dash(needs)
                    .map(|n| n.split(',').map(str::to_owned).collect())
                    .unwrap_or_default(),
                kind: (*kind).to_owned(),
                prefill: *prefill == "yes",
                what: (*what).to_owned(),
            }),
            _ => Err(Error::msg(format!("bench: bad line from bench-server --list: {line:?}"))),
        })
        .collect()
}

fn select(routes: &[Route], wanted: Option<&[String]>) -> Result<Vec<Route>> {
    let Some(wanted) = wanted else { return Ok(routes.to_vec()) };
    for name in wanted {
        if !routes.iter().any(|route| &route.name == name) {
            let known: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
            return Err(Error::msg(format!(
                "bench: unknown route `{name}`; known: {}",
                known.join(", ")
            )));
        }
    }
    // Table order, whatever the order on the command line.
    Ok(routes.iter().filter(|route| wanted.contains(&route.name)).cloned().collect())
}

// ----- one row -----

/// What one row measured.
#[derive(Debug, Clone)]
struct Row {
    name: String,
    route: Route,
    requests_per_sec: f64,
    p50_us: u64,
    p99_us: u64,
    cpu_us_per_request: f64,
    /// The server's CPU during the window, in % of its core: below ~90% the
    /// load generator, not the server, set the pace.
    server_busy: f64,
    /// Non-2xx responses and socket errors during the measured window.
    errors: u64,
    /// Other processes' CPU during the windows, in % of one core.
    noise: f64,
    /// CPU per request over the paired `bare` windows' (with a reference).
    x_bare: Option<Paired>,
    /// For rows with a database: its processes' CPU per request.
    service_us_per_request: Option<f64>,
    lost: Option<LostUpdates>,
    /// Redis calls per request by command, for rows that use Redis.
    redis_commands: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct LostUpdates {
    kept: u64,
    sent: u64,
    failed: u64,
}

struct Runner<'a> {
    bin: &'a Path,
    tools: &'a Tools,
    options: &'a Options,
    env: &'a [(&'static str, String)],
    data_dir: PathBuf,
    /// What is left of the time rows may wait for a quiet machine.
    quiet_budget: std::cell::Cell<Duration>,
    /// The `bare` server every window is paired with, when `bare` is
    /// selected; kept for the whole run.
    reference: Option<WarmServer>,
}

/// A pinned, warmed-up server and its wrk cookie file.
struct WarmServer {
    server: Server,
    cookie_file: PathBuf,
}

impl Runner<'_> {
    /// Measures one row; `check_lost`: also run the lost-update check.
    fn row(&self, route: &Route, name: String, prefill: u64, check_lost: bool) -> Result<Row> {
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
        let noise = windows.iter().map(|w| w.noise).sum::<f64>() / windows.len().max(1) as f64;
        windows.sort_by(|a, b| a.cpu_per_request().total_cmp(&b.cpu_per_request()));
        let middle = windows.len() / 2;
        let Some(window) = windows.into_iter().nth(middle) else {
            return Err(Error::msg("bench: no measurement window"));
        };
        // The lost-update check wants interleaving: its own server, on every
        // core, one runtime worker per core. Scaling rows repeat a row that
        // was checked already.
        let lost = if check_lost && route.kind == "server" && prefill == 0 {
            let server = self.start_server(route, 0, false)?;
            Some(lost_updates(server.port, self.options.connections)?)
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
        let cookies = make_sessions(server.port, self.options.connections)?;
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
        let clk = clock_ticks_per_sec();
        let commands_before = redis.and_then(redis_commandstats);
        let services_before = service_ticks();
        let server_before = process_ticks(server.pid)?;
        let children_before = children_ticks();
        let busy_before = busy_ticks();
        let wrk = self.wrk(server.port, cookie_file, seconds)?;
        let server_after = process_ticks(server.pid)?;
        let children_after = children_ticks();
        let busy_after = busy_ticks();
        let services_after = service_ticks();
        let commands_after = redis.and_then(redis_commandstats);

        let server_ticks = server_after.saturating_sub(server_before);
        let wrk_ticks = children_after.saturating_sub(children_before);
        let service = services_after.saturating_sub(services_before);
        let other = busy_after
            .saturating_sub(busy_before)
            .saturating_sub(server_ticks + wrk_ticks + service);
        let window = (wrk.duration_us as f64 / 1e6).max(1e-9);
        let redis_commands = match (commands_before, commands_after) {
            (Some(before), Some(after)) => {
                Some(redis_per_request(&before, &after, wrk.requests.max(1)))
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
            let load = other_load(Duration::from_secs(1));
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
        let script = bench_dir().join("wrk/sessions.lua");
        let mut cmd = self.tools.pinned(LOAD_CPU, &self.tools.wrk);
        cmd.args(["-t1", &format!("-c{}", self.options.connections), &format!("-d{seconds}s")])
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
        self.tools.boost(child.id());
        let out = child.wait_with_output().map_err(|e| Error::msg(format!("bench: wrk: {e}")))?;
        if !out.status.success() {
            return Err(Error::failed("wrk", out.status));
        }
        parse_wrk(&String::from_utf8_lossy(&out.stdout))
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

/// A row's CPU per request over that of the `bare` window just before, for
/// each of its windows: the median and the range.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Paired {
    median: f64,
    min: f64,
    max: f64,
}

impl Paired {
    /// `None` without ratios.
    fn of(ratios: &mut [f64]) -> Option<Self> {
        ratios.sort_by(f64::total_cmp);
        let (&min, &max) = (ratios.first()?, ratios.last()?);
        let middle = ratios.len() / 2;
        let median = if ratios.len() % 2 == 1 {
            ratios[middle]
        } else {
            f64::midpoint(ratios[middle - 1], ratios[middle])
        };
        Some(Self { median, min, max })
    }
}

impl std::fmt::Display for Paired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} ({:.2}-{:.2})", self.median, self.min, self.max)
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

// ----- wrk -----

#[derive(Debug, Default, PartialEq)]
struct WrkResult {
    requests: u64,
    duration_us: u64,
    p50_us: u64,
    p99_us: u64,
    errors: u64,
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

// ----- a tiny HTTP/1.1 client -----

/// One keep-alive connection to the server.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

#[derive(Debug)]
struct Response {
    status: u16,
    /// `name=value` of every `Set-Cookie`, attributes stripped.
    cookies: Vec<String>,
    body: String,
}

impl Conn {
    fn open(port: u16) -> Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| Error::msg(format!("bench: connecting to 127.0.0.1:{port}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        Ok(Self { stream, buf: Vec::with_capacity(1024) })
    }

    fn get(&mut self, path: &str, cookie: Option<&str>) -> Result<Response> {
        let io = |e: std::io::Error| Error::msg(format!("bench: GET {path}: {e}"));
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        if let Some(cookie) = cookie {
            let _ = write!(request, "Cookie: {cookie}\r\n");
        }
        request.push_str("\r\n");
        self.stream.write_all(request.as_bytes()).map_err(io)?;
        loop {
            if let Some(response) = self.parse(path)? {
                return Ok(response);
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).map_err(io)?;
            if n == 0 {
                return Err(Error::msg(format!("bench: GET {path}: connection closed")));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// A complete response from the buffer, if there is one.
    fn parse(&mut self, path: &str) -> Result<Option<Response>> {
        let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Ok(None);
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::msg(format!("bench: GET {path}: bad status line")))?;
        let mut length = 0;
        let mut cookies = Vec::new();
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().map_err(|_| Error::msg("bench: bad content-length"))?;
            } else if name.eq_ignore_ascii_case("set-cookie") {
                let pair = value.split(';').next().unwrap_or_default().trim();
                cookies.push(pair.to_owned());
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(Error::msg(format!(
                    "bench: GET {path}: chunked responses unsupported"
                )));
            }
        }
        let total = end + 4 + length;
        if self.buf.len() < total {
            return Ok(None);
        }
        let body = String::from_utf8_lossy(&self.buf[end + 4..total]).into_owned();
        self.buf.drain(..total);
        Ok(Some(Response { status, cookies, body }))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// The `Cookie:` header value that carries the session set by `response`.
fn cookie_header(response: &Response) -> Option<String> {
    let mut jar: Vec<(&str, &str)> = Vec::new();
    for pair in &response.cookies {
        let Some((name, value)) = pair.split_once('=') else { continue };
        jar.retain(|(n, _)| *n != name);
        if !value.is_empty() {
            jar.push((name, value));
        }
    }
    if jar.is_empty() {
        return None;
    }
    Some(jar.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; "))
}

/// One session per connection, made with `GET /start` before the measured
/// run. Rows without sessions get a cookie of the same size, so every row
/// parses the same request.
fn make_sessions(port: u16, count: usize) -> Result<Vec<String>> {
    let mut conn = Conn::open(port)?;
    let mut cookies = Vec::with_capacity(count);
    for i in 0..count {
        let response = conn.get("/start", None)?;
        if response.status != 200 {
            return Err(Error::msg(format!(
                "bench: GET /start answered {}: {}",
                response.status, response.body
            )));
        }
        cookies.push(cookie_header(&response).unwrap_or_else(|| format!("id=nosession{i:011}")));
    }
    Ok(cookies)
}

/// N concurrent increments on one session: `connections` connections send
/// [`LOST_UPDATE_REQUESTS`] requests each, all with the same cookie, then
/// one more request reads the counter.
fn lost_updates(port: u16, connections: usize) -> Result<LostUpdates> {
    let mut conn = Conn::open(port)?;
    let start = conn.get("/start", None)?;
    let cookie = cookie_header(&start)
        .ok_or_else(|| Error::msg("bench: GET /start set no session cookie"))?;
    let first: u64 = start.body.trim().parse().map_err(|_| Error::msg("bench: counter?"))?;
    let barrier = Arc::new(Barrier::new(connections));
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            let cookie = cookie.clone();
            std::thread::spawn(move || -> Result<u64> {
                let mut conn = Conn::open(port)?;
                barrier.wait();
                let mut ok = 0;
                for _ in 0..LOST_UPDATE_REQUESTS {
                    if conn.get("/", Some(&cookie))?.status == 200 {
                        ok += 1;
                    }
                }
                Ok(ok)
            })
        })
        .collect();
    let mut sent = 0;
    for worker in workers {
        sent += worker.join().map_err(|_| Error::msg("bench: a load thread panicked"))??;
    }
    let last = conn.get("/", Some(&cookie))?;
    let last: u64 = last.body.trim().parse().map_err(|_| Error::msg("bench: counter?"))?;
    let total = (connections * LOST_UPDATE_REQUESTS) as u64;
    // `last` counts the reading request itself.
    Ok(LostUpdates { kept: last.saturating_sub(first + 1), sent, failed: total - sent })
}

// ----- /proc -----

fn clock_ticks_per_sec() -> f64 {
    let mut getconf = Command::new("getconf");
    getconf.arg("CLK_TCK");
    cmd::capture(&mut getconf)
        .ok()
        .and_then(|(_, out)| out.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// The fields of `/proc/<pid>/stat` after the command name, which may hold
/// spaces: index 0 is field 3 (state).
fn stat_fields(path: &str) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(path).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect())
}

/// utime + stime of a process, in clock ticks.
fn process_ticks(pid: u32) -> Result<u64> {
    let fields = stat_fields(&format!("/proc/{pid}/stat"))
        .ok_or_else(|| Error::msg(format!("bench: cannot read /proc/{pid}/stat")))?;
    Ok(fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0))
}

/// utime + stime of every Redis and PostgreSQL process, in clock ticks: the
/// databases' own work, which is not noise (and is reported per request).
fn service_ticks() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
        .filter(|stat| {
            let comm = stat.split_once('(').and_then(|(_, rest)| rest.rsplit_once(')'));
            comm.is_some_and(|(name, _)| name.starts_with("redis-server") || name == "postgres")
        })
        .filter_map(|stat| {
            let rest = &stat[stat.rfind(')')? + 1..];
            let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
            Some(f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0))
        })
        .sum()
}

/// cutime + cstime of this process: the CPU of the children it waited for.
fn children_ticks() -> u64 {
    stat_fields("/proc/self/stat")
        .map_or(0, |f| f.get(13).copied().unwrap_or(0) + f.get(14).copied().unwrap_or(0))
}

/// Busy ticks of all CPUs (user, nice, system, irq, steal; not idle,
/// iowait or softirq, which is mostly our own loopback traffic).
fn busy_ticks() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else { return 0 };
    let f: Vec<u64> = line.split_whitespace().skip(1).map(|x| x.parse().unwrap_or(0)).collect();
    [0, 1, 2, 5, 7].iter().map(|&i| f.get(i).copied().unwrap_or(0)).sum()
}

/// CPU used by everything on the machine over `window`, in % of one core.
fn other_load(window: Duration) -> f64 {
    let before = busy_ticks();
    std::thread::sleep(window);
    let after = busy_ticks();
    after.saturating_sub(before) as f64 / clock_ticks_per_sec() / window.as_secs_f64() * 100.0
}

/// Calls per command (`INFO commandstats`) of the Redis on `port`.
fn redis_commandstats(port: u16) -> Option<BTreeMap<String, u64>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n").ok()?;
    let mut reader = BufReader::new(stream);
    let mut header = String::new();
    reader.read_line(&mut header).ok()?;
    let length: usize = header.trim().strip_prefix('$')?.parse().ok()?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(parse_commandstats(&String::from_utf8_lossy(&body)))
}

/// `cmdstat_get:calls=3,usec=...` lines into command -> calls.
fn parse_commandstats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| line.strip_prefix("cmdstat_"))
        .filter_map(|line| {
            let (name, stats) = line.split_once(':')?;
            let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// "evalsha 2.00, hset 1.00": calls per request of each command used,
/// most frequent first, without our own `info` calls.
fn redis_per_request(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    requests: u64,
) -> String {
    let mut used: Vec<(&str, u64)> = after
        .iter()
        .filter(|(name, _)| name.as_str() != "info")
        .map(|(name, &calls)| {
            (name.as_str(), calls.saturating_sub(*before.get(name).unwrap_or(&0)))
        })
        .filter(|&(_, calls)| calls > 0)
        .collect();
    used.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let total: u64 = used.iter().map(|&(_, calls)| calls).sum();
    let per = |calls: u64| calls as f64 / requests.max(1) as f64;
    let list: Vec<String> =
        used.iter().map(|&(name, calls)| format!("{name} {:.2}", per(calls))).collect();
    format!("{:.2} in all: {}", per(total), list.join(", "))
}

/// What the table says about the machine.
#[derive(Debug)]
struct Machine {
    cpus: usize,
    model: String,
    kernel: String,
}

impl Machine {
    fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown CPU".to_owned(), |(_, m)| m.trim().to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "?".to_owned(), |k| k.trim().to_owned());
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Self { cpus, model, kernel }
    }

    fn describe(&self) -> String {
        format!("{} CPUs ({}), Linux {}", self.cpus, self.model, self.kernel)
    }
}

// ----- memory -----

#[derive(Debug)]
struct MemoryFigure {
    store: String,
    label: &'static str,
    per_session: u64,
    data: u64,
    overhead: u64,
}

fn memory_figures(bin: &Path) -> Result<Vec<MemoryFigure>> {
    let mut figures = Vec::new();
    for store in ["ours", "tower-sessions"] {
        for (count, label) in MEMORY_SESSIONS {
            eprintln!("xtask: bench: memory of {store} at {label} sessions");
            let mut cmd = Command::new(bin.join("bench-memory"));
            cmd.args(["--store", store, "--sessions", &count.to_string()]);
            let (status, out) = cmd::capture(&mut cmd)?;
            if !status.success() {
                return Err(Error::failed("bench-memory", status));
            }
            let fields: BTreeMap<&str, &str> = out
                .lines()
                .find_map(|l| l.strip_prefix("MEMORY "))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.split_once('='))
                .collect();
            let get = |k: &str| fields.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
            figures.push(MemoryFigure {
                store: store.to_owned(),
                label,
                per_session: get("bytes_per_session"),
                data: get("data_bytes"),
                overhead: get("overhead_bytes"),
            });
        }
    }
    Ok(figures)
}

// ----- the report -----

fn render(
    machine: &Machine,
    options: &Options,
    selected: &[Route],
    rows: &[Row],
    memory: &[MemoryFigure],
    took: Duration,
) -> String {
    let mut out = String::new();
    let cpu_of = |name: &str| rows.iter().find(|r| r.name == name).map(|r| r.cpu_us_per_request);
    let paired_of = |name: &str| rows.iter().find(|r| r.name == name).and_then(|r| r.x_bare);

    let paired = if rows.iter().any(|r| r.x_bare.is_some()) {
        ", each right after a window of the same length on a `bare` server running alongside"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "Machine: {}. Server pinned to core {SERVER_CPU}, wrk (1 thread, {} connections, one \
         session each) to core {LOAD_CPU}; per row {WARMUP_SECONDS} s of warm-up, then {} \
         windows of {} s{paired}. Run took {:.0} s.\n",
        machine.describe(),
        options.connections,
        WINDOWS,
        options.seconds.div_ceil(WINDOWS).max(1),
        took.as_secs_f64(),
    );
    let _ = writeln!(
        out,
        "| route | req/s | p50 ms | p99 ms | CPU µs/req | server busy | × bare | × peer | lost updates | noise |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|---|---:|");
    for row in rows {
        // Without `bare` among the rows there is nothing to pair with.
        let x_bare = row.x_bare.map_or_else(|| "-".to_owned(), |paired| paired.to_string());
        // Both rows' paired ratios when there are, so the machine's drift
        // between the two rows cancels.
        let x_peer = match row.route.peer.as_deref() {
            Some(peer) => match (row.x_bare, paired_of(peer), cpu_of(peer)) {
                (Some(mine), Some(theirs), _) => {
                    format!("{:.2} vs {peer}", mine.median / theirs.median)
                }
                (_, _, Some(p)) => format!("{:.2} vs {peer}", row.cpu_us_per_request / p),
                (_, _, None) => format!("- ({peer} not run)"),
            },
            None => "-".to_owned(),
        };
        let lost = match (&row.lost, row.route.kind.as_str()) {
            (Some(l), _) if l.failed > 0 => {
                format!("kept {} of {} ({} failed)", l.kept, l.sent, l.failed)
            }
            (Some(l), _) => format!("kept {} of {}", l.kept, l.sent),
            (None, "client") => "n/a (in the cookie)".to_owned(),
            (None, _) => "n/a".to_owned(),
        };
        let mut name = row.name.clone();
        if row.errors > 0 {
            let _ = write!(name, " ({} errors)", row.errors);
        }
        let _ = writeln!(
            out,
            "| {name} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0}% | {x_bare} | {x_peer} | {lost} | {:.0}% |",
            row.requests_per_sec,
            row.p50_us as f64 / 1000.0,
            row.p99_us as f64 / 1000.0,
            row.cpu_us_per_request,
            row.server_busy,
            row.noise,
        );
    }
    let databases: Vec<&Row> = rows.iter().filter(|r| r.service_us_per_request.is_some()).collect();
    if !databases.is_empty() {
        let _ = writeln!(
            out,
            "\nThe database's own CPU per request (all redis-server / postgres processes; not \
             in `CPU µs/req` nor in `noise`):"
        );
        for row in databases {
            let _ = writeln!(
                out,
                "- `{}`: {:.1} µs",
                row.name,
                row.service_us_per_request.unwrap_or_default()
            );
        }
    }
    let redis: Vec<&Row> = rows.iter().filter(|r| r.redis_commands.is_some()).collect();
    if !redis.is_empty() {
        let _ = writeln!(
            out,
            "\nRedis calls per request (`INFO commandstats`; commands run inside Lua scripts \
             count too, so round trips are the top-level calls: `evalsha`/`eval` and plain \
             commands outside scripts):"
        );
        for row in redis {
            let _ =
                writeln!(out, "- `{}`: {}", row.name, row.redis_commands.as_deref().unwrap_or(""));
        }
    }
    let scaling: Vec<&Row> = rows.iter().filter(|r| r.name.ends_with(" live)")).collect();
    if let [small, large] = scaling.as_slice() {
        let _ = write!(
            out,
            "\nScaling: {} req/s with 1M live sessions vs {} with 1k ({:+.1}%); CPU/req {:+.1}%",
            large.requests_per_sec as u64,
            small.requests_per_sec as u64,
            (large.requests_per_sec / small.requests_per_sec - 1.0) * 100.0,
            (large.cpu_us_per_request / small.cpu_us_per_request - 1.0) * 100.0,
        );
        // The paired ratios leave out the machine's drift between the two
        // rows; with the server saturated, throughput goes as 1 / CPU.
        match (small.x_bare, large.x_bare) {
            (Some(small), Some(large)) => {
                let _ = writeln!(
                    out,
                    "; against their paired bare windows, CPU/req {:+.1}% (× bare {:.2} vs {:.2}).",
                    (large.median / small.median - 1.0) * 100.0,
                    large.median,
                    small.median,
                );
            }
            _ => out.push_str(".\n"),
        }
    }
    if !memory.is_empty() {
        let _ = writeln!(out, "\n| memory store | sessions | bytes/session | data | overhead |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|");
        for m in memory {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                m.store, m.label, m.per_session, m.data, m.overhead
            );
        }
    }
    let _ = writeln!(out, "\nRows:");
    for route in selected {
        let _ = writeln!(out, "- `{}`: {}", route.name, route.what);
    }
    let _ = writeln!(
        out,
        "\n`CPU µs/req`: the server's user + system time (`/proc/<pid>/stat`) over the \
         window, divided by the requests wrk completed in it, in the row's median window. \
         `server busy`: that CPU time over the window; below ~90% wrk, not the server, set \
         the pace. `× bare`: CPU/req over that of a `bare` window of the same length just \
         before, in each of the row's {WINDOWS} windows: the median, and in brackets the \
         lowest and highest (the `bare` row's own shows how far two adjacent `bare` windows \
         differ); `-` when `bare` is not among the rows. `× peer`: the row's `× bare` over \
         that of the row doing the same work with tower-sessions (or axum-extra's private \
         cookie jar for cookie sessions). \
         `lost updates`: {LOST_UPDATE_REQUESTS} requests on each of the connections, all on \
         one session, against a second server that runs on every core (one runtime worker \
         per core, so requests interleave); kept = final counter - start. `noise`: CPU used \
         by other processes (not Redis or PostgreSQL) during the row's windows, in % of one \
         core (a quiet machine shows 0-5%); rows with more than {NOISY}% are measured again \
         at the end while the run has time, and the less disturbed measurement stays."
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_reject() {
        let o = parse_options(&["--seconds", "3", "--routes=bare,ours-memory", "--no-memory"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.seconds, 3);
        assert_eq!(o.routes, Some(vec!["bare".to_owned(), "ours-memory".to_owned()]));
        assert!(!o.memory);
        assert!(parse_options(&["--seconds", "0"]).is_err());
        assert!(parse_options(&["--seconds"]).is_err());
        assert!(parse_options(&["--bogus"]).is_err());
    }

    #[test]
    fn paired_ratios_give_their_median_and_range() {
        assert_eq!(Paired::of(&mut []), None);
        let odd = Paired::of(&mut [1.3, 1.1, 1.2]);
        assert_eq!(odd, Some(Paired { median: 1.2, min: 1.1, max: 1.3 }));
        let even = Paired::of(&mut [2.0, 1.0, 4.0, 3.0]);
        assert_eq!(even, Some(Paired { median: 2.5, min: 1.0, max: 4.0 }));
        assert_eq!(odd.map(|p| p.to_string()).as_deref(), Some("1.20 (1.10-1.30)"));
    }

    #[test]
    fn route_list_parses() {
        let routes = parse_routes(
            "bare\t-\t-\tnone\tno\taxum alone\nours-redis\ttower-sessions-redis\tredis\tserver\tno\tx\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].peer, None);
        assert_eq!(routes[1].peer.as_deref(), Some("tower-sessions-redis"));
        assert_eq!(routes[1].needs, ["redis"]);
        assert!(parse_routes("bare\tonly three\tfields").is_err());
        let wanted = ["ours-redis".to_owned()];
        assert_eq!(select(&routes, Some(&wanted)).map(|r| r.len()).ok(), Some(1));
        assert!(select(&routes, Some(&["nope".to_owned()])).is_err());
    }

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

    #[test]
    fn redis_commandstats_become_calls_per_request() {
        let before = parse_commandstats(
            "# Commandstats\r\ncmdstat_get:calls=10,usec=5,usec_per_call=0.5\r\ncmdstat_info:calls=1,usec=9\r\n",
        );
        let after = parse_commandstats(
            "cmdstat_get:calls=30,usec=5\r\ncmdstat_set:calls=20,usec=1\r\ncmdstat_info:calls=2,usec=9\r\n",
        );
        assert_eq!(before.get("get"), Some(&10));
        assert_eq!(redis_per_request(&before, &after, 10), "4.00 in all: get 2.00, set 2.00");
    }

    #[test]
    fn session_cookies_are_collected_and_removals_dropped() {
        let response = Response {
            status: 200,
            cookies: vec!["id=old".into(), "id=".into(), "id=new".into(), "n=1".into()],
            body: String::new(),
        };
        assert_eq!(cookie_header(&response).as_deref(), Some("id=new; n=1"));
        let none = Response { status: 200, cookies: Vec::new(), body: String::new() };
        assert_eq!(cookie_header(&none), None);
    }

    #[test]
    fn http_responses_parse_across_reads() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).unwrap();
            stream.write_all(b"HTTP/1.1 200 OK\r\nSet-Cookie: id=abc; Path=/\r\n").unwrap();
            stream.flush().unwrap();
            std::thread::sleep(Duration::from_millis(20));
            stream.write_all(b"Content-Length: 2\r\n\r\n42").unwrap();
        });
        let mut conn = Conn::open(port).unwrap();
        let response = conn.get("/start", None).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, "42");
        assert_eq!(response.cookies, ["id=abc"]);
        server.join().unwrap();
    }

    #[test]
    fn service_processes_are_found_or_zero() {
        // Whatever runs here, reading every process's stat must not fail.
        let _ = service_ticks();
    }

    #[test]
    fn proc_stat_fields_skip_the_command_name() {
        let fields = stat_fields("/proc/self/stat").unwrap();
        // Field 4 (ppid) sits at index 1.
        assert!(fields.len() > 14);
        assert!(process_ticks(std::process::id()).is_ok());
    }
}

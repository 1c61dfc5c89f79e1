//! Redis and PostgreSQL for the tests: installed from Debian packages when
//! missing, run on private ports with their data under `target/services/`.
//!
//! The start-up sequences follow shell scripts verified on the development
//! machines, with these differences:
//! - other default ports (6392 / 54330), so we never touch the servers those
//!   scripts run for other developers (6391 / 54329);
//! - Redis is probed with a tiny RESP client instead of `redis-cli`, and is
//!   recognised as ours by its `pidfile` setting, so a foreign Redis on our
//!   port is never used nor shut down;
//! - PostgreSQL listens on TCP only (no Unix socket, whose path would be too
//!   long in deep checkouts) and the postgres OS user is given the right to
//!   traverse to its data directory.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::cmd::{self, Error, Result};

/// Default port of our Redis; the reference script uses 6391.
const DEFAULT_REDIS_PORT: u16 = 6392;
/// Default port of our PostgreSQL; the reference script uses 54329.
const DEFAULT_PG_PORT: u16 = 54330;
/// Environment variable overriding the Redis port.
pub(crate) const REDIS_PORT_VAR: &str = "XTASK_REDIS_PORT";
/// Environment variable overriding the PostgreSQL port.
pub(crate) const PG_PORT_VAR: &str = "XTASK_PG_PORT";
/// Environment variable overriding where the services keep their data.
pub(crate) const DIR_VAR: &str = "XTASK_SERVICES_DIR";
/// OS user that owns and runs the PostgreSQL cluster when we are root.
const PG_OS_USER: &str = "postgres";
/// Database created for the tests.
const PG_DB: &str = "sessions";

/// How long to wait for a server to come up or go down.
const WAIT: Duration = Duration::from_secs(30);

/// One of the services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    /// redis-server.
    Redis,
    /// PostgreSQL.
    Postgres,
}

impl Service {
    /// Both, in start order.
    pub(crate) const ALL: [Service; 2] = [Service::Redis, Service::Postgres];

    /// Its name in messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Service::Redis => "redis",
            Service::Postgres => "postgres",
        }
    }
}

/// Where and on which ports the services run.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// `<workspace>/target/services` or [`DIR_VAR`], absolute.
    dir: PathBuf,
    redis_port: u16,
    pg_port: u16,
}

impl Config {
    /// The defaults, overridden by [`REDIS_PORT_VAR`], [`PG_PORT_VAR`] and [`DIR_VAR`].
    pub(crate) fn from_env() -> Result<Self> {
        let dir = match std::env::var_os(DIR_VAR).filter(|d| !d.is_empty()) {
            // Absolute, since the servers run in other directories.
            Some(dir) => {
                std::path::absolute(dir).map_err(|e| Error::msg(format!("{DIR_VAR}: {e}")))?
            }
            None => cmd::root().join("target").join("services"),
        };
        Ok(Self {
            dir,
            redis_port: port_from_env(REDIS_PORT_VAR, DEFAULT_REDIS_PORT)?,
            pg_port: port_from_env(PG_PORT_VAR, DEFAULT_PG_PORT)?,
        })
    }

    /// Where the services keep their data (and `session` its bookkeeping).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn redis_dir(&self) -> PathBuf {
        self.dir.join("redis")
    }

    fn redis_pidfile(&self) -> PathBuf {
        self.redis_dir().join("redis.pid")
    }

    fn redis_log(&self) -> PathBuf {
        self.redis_dir().join("redis.log")
    }

    fn pg_dir(&self) -> PathBuf {
        self.dir.join("postgres")
    }

    fn pg_data(&self) -> PathBuf {
        self.pg_dir().join("data")
    }

    fn pg_log(&self) -> PathBuf {
        self.pg_dir().join("server.log")
    }

    /// `REDIS_URL` for the tests.
    pub(crate) fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.redis_port)
    }

    /// `DATABASE_URL` for the tests.
    pub(crate) fn database_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{PG_DB}", self.pg_port)
    }

    /// The variables the tests read.
    pub(crate) fn env(&self) -> [(&'static str, String); 2] {
        [("REDIS_URL", self.redis_url()), ("DATABASE_URL", self.database_url())]
    }
}

fn port_from_env(var: &str, default: u16) -> Result<u16> {
    match std::env::var(var) {
        Err(std::env::VarError::NotPresent) => Ok(default),
        Ok(v) if v.trim().is_empty() => Ok(default),
        Ok(v) => v
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| Error::msg(format!("{var}={v:?} is not a port number"))),
        Err(e) => Err(Error::msg(format!("{var}: {e}"))),
    }
}

/// Progress goes to stderr, so that stdout only carries `NAME=value` lines.
macro_rules! say {
    ($($arg:tt)*) => { eprintln!("xtask: {}", format_args!($($arg)*)) };
}

/// A child command whose stdout also goes to our stderr.
fn quiet(mut cmd: Command) -> Command {
    cmd.stdin(Stdio::null()).stdout(io::stderr());
    cmd
}

/// Starts, stops and inspects the services of one [`Config`].
#[derive(Debug)]
pub(crate) struct Services {
    cfg: Config,
    root: bool,
    apt_updated: bool,
}

impl Services {
    /// Services of `cfg`.
    pub(crate) fn new(cfg: Config) -> Self {
        Self { cfg, root: cmd::is_root(), apt_updated: false }
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &Config {
        &self.cfg
    }

    /// Whether `service` is running (ours, on our port).
    pub(crate) fn is_running(&self, service: Service) -> Result<bool> {
        match service {
            Service::Redis => match self.redis_probe() {
                RedisProbe::Ours => Ok(true),
                RedisProbe::Down => Ok(false),
                RedisProbe::Foreign(what) => Err(self.redis_foreign(&what)),
            },
            Service::Postgres => Ok(self.pg_running()),
        }
    }

    /// Starts `service` unless it runs; idempotent.
    pub(crate) fn start(&mut self, service: Service) -> Result<()> {
        match service {
            Service::Redis => self.redis_start(),
            Service::Postgres => self.pg_start(),
        }
    }

    /// Stops `service` if it runs; idempotent.
    pub(crate) fn stop(&self, service: Service) -> Result<()> {
        match service {
            Service::Redis => self.redis_stop(),
            Service::Postgres => self.pg_stop(),
        }
    }

    /// One line per service for `services status`; whether both run.
    pub(crate) fn status(&self) -> bool {
        let mut all = true;
        let redis = match self.redis_probe() {
            RedisProbe::Ours => format!(
                "running (pid {}), REDIS_URL={}",
                read_trimmed(&self.cfg.redis_pidfile()).unwrap_or_else(|| "?".into()),
                self.cfg.redis_url()
            ),
            RedisProbe::Down => {
                all = false;
                "stopped".to_owned()
            }
            RedisProbe::Foreign(what) => {
                all = false;
                format!("NOT OURS: {}", self.redis_foreign(&what))
            }
        };
        println!("redis:    {redis}");
        println!("          data {}", self.cfg.redis_dir().display());
        let pg = if self.pg_running() {
            let pid = pg_pid_file(&self.cfg.pg_data());
            let pid_port = pid.as_ref().and_then(|p| p.port);
            let ready = self.pg_bin().is_some_and(|bin| self.pg_ready(&bin, 1));
            if pid_port == Some(self.cfg.pg_port) && ready {
                format!(
                    "running (pid {}), DATABASE_URL={}",
                    pid.map_or_else(|| "?".into(), |p| p.pid.to_string()),
                    self.cfg.database_url()
                )
            } else {
                all = false;
                format!(
                    "running but not answering on port {} (its port: {}); stop it with `cargo xtask services stop`",
                    self.cfg.pg_port,
                    pid_port.map_or_else(|| "?".into(), |p| p.to_string())
                )
            }
        } else {
            all = false;
            "stopped".to_owned()
        };
        println!("postgres: {pg}");
        println!("          data {}", self.cfg.pg_dir().display());
        all
    }

    // ----- packages -----

    /// Installs headless Chromium and its WebDriver when missing: the login
    /// example's browser test drives them (see examples/login/tests/browser.rs).
    pub(crate) fn ensure_browser(&mut self) -> Result<()> {
        if cmd::which("chromium").is_some() && cmd::which("chromedriver").is_some() {
            return Ok(());
        }
        self.apt_install("Chromium (for the browser test)", &["chromium", "chromium-driver"])
    }

    /// Installs Debian `packages`, running `apt-get update` once per xtask run.
    fn apt_install(&mut self, what: &str, packages: &[&str]) -> Result<()> {
        if !self.root {
            return Err(Error::msg(format!(
                "{what} is not installed, and installing it needs root: run this as root, or \
                 install the Debian package(s) {} yourself",
                packages.join(" ")
            )));
        }
        // Other developers may run apt at the same time: wait for the dpkg lock.
        let apt = |args: &[&str]| {
            let mut c = quiet(Command::new("apt-get"));
            c.env("DEBIAN_FRONTEND", "noninteractive")
                .args(["-q", "-o", "DPkg::Lock::Timeout=600"])
                .args(args);
            c
        };
        if !self.apt_updated {
            say!("{what} is missing: apt-get update");
            cmd::run(&mut apt(&["update"]))?;
            self.apt_updated = true;
        }
        say!("installing {}", packages.join(" "));
        let mut install = apt(&["install", "-y", "--no-install-recommends"]);
        install.args(packages);
        cmd::run(&mut install)
    }

    // ----- Redis -----

    fn redis_probe(&self) -> RedisProbe {
        redis_probe(self.cfg.redis_port, &self.cfg.redis_pidfile())
    }

    fn redis_foreign(&self, what: &str) -> Error {
        Error::msg(format!(
            "port {} is taken by a server that is not ours ({what}); it is left alone. \
             Pick another port with {REDIS_PORT_VAR}=...",
            self.cfg.redis_port
        ))
    }

    fn redis_start(&mut self) -> Result<()> {
        match self.redis_probe() {
            RedisProbe::Ours => {
                say!("redis already running on port {}", self.cfg.redis_port);
                return Ok(());
            }
            RedisProbe::Foreign(what) => return Err(self.redis_foreign(&what)),
            RedisProbe::Down => {}
        }
        let server = match cmd::which("redis-server") {
            Some(path) => path,
            None => {
                self.apt_install("redis-server", &["redis-server"])?;
                cmd::which("redis-server").ok_or_else(|| {
                    Error::msg("redis-server is still not on PATH after apt-get install")
                })?
            }
        };
        let dir = self.cfg.redis_dir();
        create_dir(&dir)?;
        let pidfile = self.cfg.redis_pidfile();
        let log = self.cfg.redis_log();
        say!("starting redis on 127.0.0.1:{} (data {})", self.cfg.redis_port, dir.display());
        let mut redis = quiet(Command::new(server));
        redis
            .current_dir(&dir)
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.cfg.redis_port.to_string())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "yes"])
            .arg("--dir")
            .arg(&dir)
            .arg("--pidfile")
            .arg(&pidfile)
            .arg("--logfile")
            .arg(&log);
        cmd::run(&mut redis)?;
        let deadline = Instant::now() + WAIT;
        loop {
            match self.redis_probe() {
                RedisProbe::Ours => return Ok(()),
                RedisProbe::Foreign(what) => return Err(self.redis_foreign(&what)),
                RedisProbe::Down if Instant::now() < deadline => sleep(Duration::from_millis(100)),
                RedisProbe::Down => {
                    return Err(Error::msg(format!(
                        "redis did not answer on port {} within {}s; its log ({}) ends with:\n{}",
                        self.cfg.redis_port,
                        WAIT.as_secs(),
                        log.display(),
                        tail(&log, 20)
                    )));
                }
            }
        }
    }

    fn redis_stop(&self) -> Result<()> {
        let pidfile = self.cfg.redis_pidfile();
        match self.redis_probe() {
            RedisProbe::Foreign(what) => {
                say!("not stopping the server on port {}: {what}", self.cfg.redis_port);
                return Ok(());
            }
            RedisProbe::Down => {
                // Not answering: a hung or half-dead server of ours may still hold the pid file.
                if let Some(pid) = read_trimmed(&pidfile).and_then(|p| p.parse::<u32>().ok())
                    && process_is(pid, "redis-server")
                {
                    say!("redis (pid {pid}) does not answer: sending SIGTERM");
                    cmd::run(Command::new("kill").arg(pid.to_string()))?;
                }
                let _ = fs::remove_file(&pidfile);
                return Ok(());
            }
            RedisProbe::Ours => {}
        }
        say!("stopping redis on port {}", self.cfg.redis_port);
        redis_shutdown(self.cfg.redis_port)
            .map_err(|e| Error::msg(format!("redis SHUTDOWN failed: {e}")))?;
        let deadline = Instant::now() + WAIT;
        while !matches!(self.redis_probe(), RedisProbe::Down) {
            if Instant::now() >= deadline {
                return Err(Error::msg(format!(
                    "redis on port {} still answers {}s after SHUTDOWN",
                    self.cfg.redis_port,
                    WAIT.as_secs()
                )));
            }
            sleep(Duration::from_millis(50));
        }
        let _ = fs::remove_file(&pidfile);
        Ok(())
    }

    // ----- PostgreSQL -----

    /// The directory holding `pg_ctl`, `initdb`, ... if PostgreSQL is installed.
    fn pg_bin(&self) -> Option<PathBuf> {
        find_pg_bin()
    }

    /// A PostgreSQL server program, run as the postgres OS user when we are root
    /// (PostgreSQL refuses to run as root), in a directory that user can read.
    fn as_pg(&self, bin: &Path, program: &str) -> Command {
        let mut c = if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", PG_OS_USER, "--"]).arg(bin.join(program));
            c
        } else {
            Command::new(bin.join(program))
        };
        let dir = self.cfg.pg_dir();
        c.current_dir(if dir.is_dir() { dir } else { PathBuf::from("/") });
        c
    }

    fn pg_running(&self) -> bool {
        let data = self.cfg.pg_data();
        if !data.join("PG_VERSION").is_file() {
            return false;
        }
        match self.pg_bin() {
            Some(bin) => {
                let mut status = self.as_pg(&bin, "pg_ctl");
                status.arg("-D").arg(&data).arg("status");
                cmd::succeeds(&mut status)
            }
            // Without the binaries, trust a pid file whose process is alive.
            None => pg_pid_file(&data).is_some_and(|p| process_is(p.pid, "postgres")),
        }
    }

    fn pg_ready(&self, bin: &Path, timeout_secs: u32) -> bool {
        cmd::succeeds(
            Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-p"])
                .arg(self.cfg.pg_port.to_string())
                .arg("-t")
                .arg(timeout_secs.to_string()),
        )
    }

    fn pg_start(&mut self) -> Result<()> {
        let bin = match self.pg_bin() {
            Some(bin) => bin,
            None => {
                self.apt_install("PostgreSQL", &["postgresql"])?;
                self.pg_bin().ok_or_else(|| {
                    Error::msg("no pg_ctl under /usr/lib/postgresql/*/bin after apt-get install")
                })?
            }
        };
        let dir = self.cfg.pg_dir();
        let data = self.cfg.pg_data();
        let log = self.cfg.pg_log();
        create_dir(&dir)?;
        if self.root {
            self.pg_prepare_dir_as_root(&dir)?;
        }

        if !data.join("PG_VERSION").is_file() {
            say!("initdb {}", data.display());
            let mut initdb = quiet(self.as_pg(&bin, "initdb"));
            initdb.stdout(Stdio::null());
            initdb.arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ]);
            cmd::run(&mut initdb)?;
        }

        if self.pg_running() {
            say!("postgres already running ({})", data.display());
        } else {
            say!("starting postgres on 127.0.0.1:{} (data {})", self.cfg.pg_port, data.display());
            // TCP only: no Unix socket (its path may be too long under a deep checkout,
            // and the tests use DATABASE_URL over TCP anyway). Durability is off: test data.
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories='' \
                 -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
                 -c max_connections=200",
                self.cfg.pg_port
            );
            let mut start = quiet(self.as_pg(&bin, "pg_ctl"));
            start.stdout(Stdio::null());
            start.arg("-D").arg(&data).arg("-l").arg(&log).args([
                "-w",
                "-t",
                &WAIT.as_secs().to_string(),
                "start",
                "-o",
                &options,
            ]);
            if let Err(e) = cmd::run(&mut start) {
                return Err(Error::msg(format!(
                    "{e}\npostgres log ({}) ends with:\n{}",
                    log.display(),
                    tail(&log, 20)
                )));
            }
        }

        if !self.pg_ready(&bin, 10) {
            let port = pg_pid_file(&data).and_then(|p| p.port);
            return Err(Error::msg(format!(
                "postgres ({}) does not answer on 127.0.0.1:{} (it listens on port {}); if it was \
                 started with another {PG_PORT_VAR}, run `cargo xtask services stop` first. Log ({}):\n{}",
                data.display(),
                self.cfg.pg_port,
                port.map_or_else(|| "?".into(), |p| p.to_string()),
                log.display(),
                tail(&log, 20)
            )));
        }

        let port = self.cfg.pg_port.to_string();
        let mut exists = Command::new(bin.join("psql"));
        exists
            .args([
                "-X",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-tAc",
            ])
            .arg(format!("SELECT 1 FROM pg_database WHERE datname = '{PG_DB}'"));
        let (st, out) = cmd::capture(&mut exists)?;
        if !st.success() {
            return Err(Error::failed(&format!("`{}`", cmd::display(&exists)), st));
        }
        if out.trim() != "1" {
            say!("createdb {PG_DB}");
            cmd::run(quiet(Command::new(bin.join("createdb"))).args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                PG_DB,
            ]))?;
        }
        Ok(())
    }

    /// As root: make sure the postgres OS user exists, can reach `dir` and owns it.
    fn pg_prepare_dir_as_root(&self, dir: &Path) -> Result<()> {
        if !cmd::succeeds(Command::new("id").args(["-u", PG_OS_USER])) {
            say!("creating the {PG_OS_USER} OS user");
            cmd::run(quiet(Command::new("useradd")).args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_OS_USER,
            ]))?;
        }
        // The checkout may live under a directory others cannot enter (e.g. /root, mode
        // 0700). PostgreSQL needs to reach its data dir, so grant search (x, not read) on
        // each ancestor that lacks it, and say so.
        for ancestor in dir.ancestors().skip(1) {
            let meta = fs::metadata(ancestor)
                .map_err(|e| Error::msg(format!("{}: {e}", ancestor.display())))?;
            let mode = meta.permissions().mode();
            if mode & 0o001 == 0 {
                say!(
                    "chmod o+x {} (so the {PG_OS_USER} user can reach {})",
                    ancestor.display(),
                    dir.display()
                );
                fs::set_permissions(ancestor, fs::Permissions::from_mode(mode | 0o001))
                    .map_err(|e| Error::msg(format!("chmod o+x {}: {e}", ancestor.display())))?;
            }
        }
        cmd::run(Command::new("chown").args(["-R", PG_OS_USER]).arg(dir))?;
        // Check it, as that user, rather than trust the reasoning above.
        let mut check = Command::new("runuser");
        check.args(["-u", PG_OS_USER, "--", "test", "-w"]).arg(dir).current_dir("/");
        if !cmd::succeeds(&mut check) {
            return Err(Error::msg(format!(
                "the {PG_OS_USER} OS user cannot write {} even after chown/chmod",
                dir.display()
            )));
        }
        Ok(())
    }

    fn pg_stop(&self) -> Result<()> {
        let data = self.cfg.pg_data();
        let Some(pid) = pg_pid_file(&data) else {
            return Ok(());
        };
        let Some(bin) = self.pg_bin() else {
            return Err(Error::msg(format!(
                "postgres (pid {}) has a pid file in {} but pg_ctl is not installed; stop it by hand",
                pid.pid,
                data.display()
            )));
        };
        say!("stopping postgres ({})", data.display());
        let mut stop = quiet(self.as_pg(&bin, "pg_ctl"));
        stop.stdout(Stdio::null());
        stop.arg("-D").arg(&data).args([
            "-m",
            "fast",
            "-w",
            "-t",
            &WAIT.as_secs().to_string(),
            "stop",
        ]);
        let st = cmd::status(&mut stop)?;
        if st.success() || !self.pg_running() {
            Ok(())
        } else {
            Err(Error::failed(&format!("`{}`", cmd::display(&stop)), st))
        }
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` (what Debian installs), or
/// the directory of a `pg_ctl` on PATH.
fn find_pg_bin() -> Option<PathBuf> {
    let mut best: Option<(u32, PathBuf)> = None;
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        for entry in entries.flatten() {
            let bin = entry.path().join("bin");
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok();
            if let Some(version) = version
                && cmd::is_executable(&bin.join("pg_ctl"))
                && best.as_ref().is_none_or(|(v, _)| version > *v)
            {
                best = Some((version, bin));
            }
        }
    }
    if let Some((_, bin)) = best {
        return Some(bin);
    }
    let pg_ctl = fs::canonicalize(cmd::which("pg_ctl")?).ok()?;
    let bin = pg_ctl.parent()?.to_path_buf();
    cmd::is_executable(&bin.join("initdb")).then_some(bin)
}

/// What `postmaster.pid` says.
#[derive(Debug)]
struct PgPidFile {
    pid: u32,
    port: Option<u16>,
}

/// The pid file of a cluster that is (or was, if it crashed) running.
fn pg_pid_file(data: &Path) -> Option<PgPidFile> {
    let text = fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let mut lines = text.lines();
    let pid = lines.next()?.trim().parse().ok()?;
    // Line 4 is the port.
    let port = lines.nth(2).and_then(|l| l.trim().parse().ok());
    Some(PgPidFile { pid, port })
}

/// Whether process `pid` is alive and its command line mentions `name`.
fn process_is(pid: u32, name: &str) -> bool {
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        cmdline
            .split(|&b| b == 0)
            .any(|part| part.windows(name.len()).any(|w| w == name.as_bytes()))
    })
}

fn read_trimmed(path: &Path) -> Option<String> {
    let s = fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::msg(format!("mkdir -p {}: {e}", dir.display())))
}

/// The last `n` lines of a log file, indented.
fn tail(path: &Path, n: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n);
            lines[start..].iter().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
        }
        Err(e) => format!("    (cannot read it: {e})"),
    }
}

// ----- a minimal RESP client, enough to ping, identify and shut down Redis -----

#[derive(Debug, PartialEq)]
enum RedisProbe {
    /// Nothing listens on the port.
    Down,
    /// Our Redis: its `pidfile` setting is our pid file.
    Ours,
    /// Something else listens there.
    Foreign(String),
}

fn redis_probe(port: u16, our_pidfile: &Path) -> RedisProbe {
    let Ok(mut conn) = redis_connect(port) else {
        return RedisProbe::Down;
    };
    match redis_call(&mut conn, &["CONFIG", "GET", "pidfile"]) {
        Ok(Resp::Array(Some(items))) => match items.as_slice() {
            [_, Resp::Bulk(Some(path))]
                if path.as_slice() == our_pidfile.as_os_str().as_bytes() =>
            {
                RedisProbe::Ours
            }
            [_, Resp::Bulk(Some(path))] => RedisProbe::Foreign(format!(
                "a Redis whose pidfile is {:?}, not {}",
                String::from_utf8_lossy(path),
                our_pidfile.display()
            )),
            _ => RedisProbe::Foreign("a Redis with an unexpected CONFIG reply".to_owned()),
        },
        Ok(Resp::Error(e)) => RedisProbe::Foreign(format!("a Redis that answers {e:?}")),
        Ok(other) => RedisProbe::Foreign(format!("unexpected reply {other:?}")),
        Err(e) => RedisProbe::Foreign(format!("not a Redis server? {e}")),
    }
}

fn redis_shutdown(port: u16) -> io::Result<()> {
    let mut conn = redis_connect(port)?;
    match redis_call(&mut conn, &["SHUTDOWN", "NOSAVE"]) {
        // On success the server closes the connection without a reply.
        Err(_) => Ok(()),
        Ok(Resp::Error(e)) => Err(io::Error::other(e)),
        Ok(_) => Ok(()),
    }
}

fn redis_connect(port: u16) -> io::Result<TcpStream> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let conn = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(conn)
}

#[derive(Debug, PartialEq)]
enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

fn redis_call(conn: &mut TcpStream, args: &[&str]) -> io::Result<Resp> {
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
    }
    conn.write_all(&request)?;
    read_resp(&mut BufReader::new(conn), 0)
}

fn read_resp(r: &mut impl BufRead, depth: usize) -> io::Result<Resp> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    if depth > 4 {
        return Err(bad("RESP nested too deep"));
    }
    let mut line = Vec::new();
    r.by_ref().take(64 * 1024).read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
    }
    if !line.ends_with(b"\r\n") {
        return Err(bad("RESP line without CRLF"));
    }
    let text = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
    let len = || text.parse::<i64>().map_err(|_| bad("RESP length is not a number"));
    match line[0] {
        b'+' => Ok(Resp::Simple(text)),
        b'-' => Ok(Resp::Error(text)),
        b':' => Ok(Resp::Int(len()?)),
        b'$' => match usize::try_from(len()?) {
            Err(_) => Ok(Resp::Bulk(None)),
            Ok(n) if n > 1 << 20 => Err(bad("RESP bulk string too long")),
            Ok(n) => {
                let mut buf = vec![0; n + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(n);
                Ok(Resp::Bulk(Some(buf)))
            }
        },
        b'*' => match usize::try_from(len()?) {
            Err(_) => Ok(Resp::Array(None)),
            Ok(n) if n > 1024 => Err(bad("RESP array too long")),
            Ok(n) => (0..n)
                .map(|_| read_resp(r, depth + 1))
                .collect::<io::Result<Vec<_>>>()
                .map(|items| Resp::Array(Some(items))),
        },
        _ => Err(bad("not a RESP reply")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> io::Result<Resp> {
        read_resp(&mut io::Cursor::new(bytes), 0)
    }

    #[test]
    fn resp_replies_parse() {
        assert_eq!(parse(b"+PONG\r\n").unwrap(), Resp::Simple("PONG".into()));
        assert_eq!(parse(b"-ERR no\r\n").unwrap(), Resp::Error("ERR no".into()));
        assert_eq!(parse(b":42\r\n").unwrap(), Resp::Int(42));
        assert_eq!(parse(b"$-1\r\n").unwrap(), Resp::Bulk(None));
        assert_eq!(
            parse(b"*2\r\n$7\r\npidfile\r\n$8\r\n/x/r.pid\r\n").unwrap(),
            Resp::Array(Some(vec![
                Resp::Bulk(Some(b"pidfile".to_vec())),
                Resp::Bulk(Some(b"/x/r.pid".to_vec())),
            ]))
        );
    }

    #[test]
    fn resp_garbage_is_an_error_not_a_panic() {
        for input in [
            &b""[..],
            b"HTTP/1.1 400 Bad Request\r\n",
            b"$5\r\nab",
            b"$x\r\n",
            b"*99999999\r\n",
            b"+no crlf",
        ] {
            assert!(parse(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn nothing_listening_is_down() {
        // Bind then drop, so the port is (very likely) free.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        assert_eq!(redis_probe(port, Path::new("/nope")), RedisProbe::Down);
    }

    #[test]
    fn pid_file_gives_pid_and_port() {
        let dir = std::env::temp_dir().join(format!("xtask-pgpid-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("postmaster.pid"),
            "1234\n/data\n1700000000\n54330\n\n127.0.0.1\n  1 2\nready   \n",
        )
        .unwrap();
        let p = pg_pid_file(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!((p.pid, p.port), (1234, Some(54330)));
    }
}

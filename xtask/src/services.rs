//! Redis, a Redis Cluster, PostgreSQL and PgBouncer in front of it, and
//! MariaDB (its own module, `mariadb.rs`) for the tests: installed from
//! Debian packages when missing, run on private ports with their data under
//! `target/services/`.
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
//!
//! The Redis Cluster (three primaries, three replicas) holds only test data,
//! and tests may kill its nodes to force failovers. So it is never repaired:
//! `stop` wipes its directories, and `start`, finding it anything but whole
//! and healthy, stops what is left of it and creates it anew.

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
/// Default first port of our Redis Cluster, whose nodes use it and the next five.
const DEFAULT_REDIS_CLUSTER_PORT: u16 = 7392;
/// Default port of our PgBouncer.
const DEFAULT_PGBOUNCER_PORT: u16 = 64330;
/// Environment variable overriding the Redis port.
pub(crate) const REDIS_PORT_VAR: &str = "XTASK_REDIS_PORT";
/// Environment variable overriding the PostgreSQL port.
pub(crate) const PG_PORT_VAR: &str = "XTASK_PG_PORT";
/// Environment variable overriding the first port of the Redis Cluster.
pub(crate) const REDIS_CLUSTER_PORT_VAR: &str = "XTASK_REDIS_CLUSTER_PORT";
/// Environment variable overriding the PgBouncer port.
pub(crate) const PGBOUNCER_PORT_VAR: &str = "XTASK_PGBOUNCER_PORT";
pub(crate) use mariadb::PORT_VAR as MYSQL_PORT_VAR;
/// Environment variable overriding where the services keep their data.
pub(crate) const DIR_VAR: &str = "XTASK_SERVICES_DIR";
/// OS user that owns and runs the PostgreSQL cluster when we are root.
const PG_OS_USER: &str = "postgres";
/// Database created for the tests.
const PG_DB: &str = "sessions";

/// How long to wait for a server to come up or go down.
const WAIT: Duration = Duration::from_secs(30);
/// How long a server may take to exit after being asked to, before SIGKILL
/// (only for servers whose data is thrown away anyway).
const GRACE: Duration = Duration::from_secs(10);

/// Nodes of the Redis Cluster: three primaries with one replica each.
const CLUSTER_NODES: u16 = 6;
/// Redis puts a node's cluster bus on its port + 10000.
const CLUSTER_BUS_OFFSET: u16 = 10000;
/// Hash slots of a Redis Cluster; all must be served for `cluster_state:ok`.
const CLUSTER_SLOTS: u32 = 16384;

/// One of the services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    /// redis-server.
    Redis,
    /// Six redis-server nodes forming a Redis Cluster.
    RedisCluster,
    /// PostgreSQL.
    Postgres,
    /// PgBouncer in front of PostgreSQL.
    PgBouncer,
    /// MariaDB, for the MySQL store.
    MariaDb,
}

impl Service {
    /// All of them, in start order (PgBouncer after PostgreSQL); stop in reverse.
    pub(crate) const ALL: [Service; 5] = [
        Service::Redis,
        Service::RedisCluster,
        Service::Postgres,
        Service::PgBouncer,
        Service::MariaDb,
    ];

    /// Its name in messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Service::Redis => "redis",
            Service::RedisCluster => "redis-cluster",
            Service::Postgres => "postgres",
            Service::PgBouncer => "pgbouncer",
            Service::MariaDb => "mariadb",
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
    /// The first of the cluster's [`CLUSTER_NODES`] consecutive ports.
    redis_cluster_port: u16,
    pgbouncer_port: u16,
    mysql_port: u16,
}

impl Config {
    /// The defaults, overridden by [`REDIS_PORT_VAR`], [`PG_PORT_VAR`],
    /// [`REDIS_CLUSTER_PORT_VAR`], [`PGBOUNCER_PORT_VAR`],
    /// [`MYSQL_PORT_VAR`] and [`DIR_VAR`].
    pub(crate) fn from_env() -> Result<Self> {
        let dir = match std::env::var_os(DIR_VAR).filter(|d| !d.is_empty()) {
            // Absolute, since the servers run in other directories.
            Some(dir) => {
                std::path::absolute(dir).map_err(|e| Error::msg(format!("{DIR_VAR}: {e}")))?
            }
            None => cmd::root().join("target").join("services"),
        };
        let cfg = Self {
            dir,
            redis_port: port_from_env(REDIS_PORT_VAR, DEFAULT_REDIS_PORT)?,
            pg_port: port_from_env(PG_PORT_VAR, DEFAULT_PG_PORT)?,
            redis_cluster_port: port_from_env(REDIS_CLUSTER_PORT_VAR, DEFAULT_REDIS_CLUSTER_PORT)?,
            pgbouncer_port: port_from_env(PGBOUNCER_PORT_VAR, DEFAULT_PGBOUNCER_PORT)?,
            mysql_port: port_from_env(MYSQL_PORT_VAR, mariadb::DEFAULT_PORT)?,
        };
        cfg.check_ports()?;
        Ok(cfg)
    }

    /// Every port fits in a u16 (the cluster's bus ports too) and no two
    /// services would listen on the same one: a clash would otherwise show up
    /// as a confusing "not ours" or a server failing to bind.
    fn check_ports(&self) -> Result<()> {
        let base = self.redis_cluster_port;
        let highest =
            u32::from(base) + u32::from(CLUSTER_NODES - 1) + u32::from(CLUSTER_BUS_OFFSET);
        if highest > u32::from(u16::MAX) {
            return Err(Error::msg(format!(
                "{REDIS_CLUSTER_PORT_VAR}={base} is too high: the cluster uses that port and the next \
                 {}, and each node also port + {CLUSTER_BUS_OFFSET} for its cluster bus, so at most {}",
                CLUSTER_NODES - 1,
                u16::MAX - CLUSTER_BUS_OFFSET - (CLUSTER_NODES - 1)
            )));
        }
        let mut used: Vec<(u16, String)> = vec![
            (self.redis_port, format!("redis ({REDIS_PORT_VAR})")),
            (self.pg_port, format!("postgres ({PG_PORT_VAR})")),
            (self.pgbouncer_port, format!("pgbouncer ({PGBOUNCER_PORT_VAR})")),
            (self.mysql_port, format!("mariadb ({MYSQL_PORT_VAR})")),
        ];
        for port in self.cluster_ports() {
            used.push((port, format!("a redis cluster node ({REDIS_CLUSTER_PORT_VAR})")));
            used.push((
                port + CLUSTER_BUS_OFFSET,
                format!("a redis cluster bus ({REDIS_CLUSTER_PORT_VAR} + {CLUSTER_BUS_OFFSET})"),
            ));
        }
        for (i, (port, what)) in used.iter().enumerate() {
            if let Some((_, other)) = used[..i].iter().find(|(p, _)| p == port) {
                return Err(Error::msg(format!(
                    "port {port} would be used twice, by {other} and by {what}: pick other ports"
                )));
            }
        }
        Ok(())
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

    fn cluster_dir(&self) -> PathBuf {
        self.dir.join("redis-cluster")
    }

    /// The cluster's node ports, in the order `redis-cli --cluster create`
    /// gets them (so the first three start as primaries).
    fn cluster_ports(&self) -> std::ops::Range<u16> {
        self.redis_cluster_port..self.redis_cluster_port + CLUSTER_NODES
    }

    /// "7392-7397", for messages.
    fn cluster_port_range(&self) -> String {
        format!("{}-{}", self.redis_cluster_port, self.redis_cluster_port + CLUSTER_NODES - 1)
    }

    fn cluster_node_dir(&self, port: u16) -> PathBuf {
        self.cluster_dir().join(port.to_string())
    }

    fn cluster_pidfile(&self, port: u16) -> PathBuf {
        self.cluster_node_dir(port).join("redis.pid")
    }

    fn cluster_log(&self, port: u16) -> PathBuf {
        self.cluster_node_dir(port).join("redis.log")
    }

    fn pgbouncer_dir(&self) -> PathBuf {
        self.dir.join("pgbouncer")
    }

    fn pgbouncer_ini(&self) -> PathBuf {
        self.pgbouncer_dir().join("pgbouncer.ini")
    }

    fn pgbouncer_userlist(&self) -> PathBuf {
        self.pgbouncer_dir().join("userlist.txt")
    }

    fn pgbouncer_pidfile(&self) -> PathBuf {
        self.pgbouncer_dir().join("pgbouncer.pid")
    }

    fn pgbouncer_log(&self) -> PathBuf {
        self.pgbouncer_dir().join("pgbouncer.log")
    }

    /// What `pgbouncer.ini` says; written afresh on every start.
    fn pgbouncer_ini_text(&self) -> String {
        format!(
            "; Written by `cargo xtask services start` on every start: edits are lost.\n\
             [databases]\n\
             {PG_DB} = host=127.0.0.1 port={pg_port} dbname={PG_DB}\n\
             \n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             ; TCP only, like our PostgreSQL: no socket in /tmp to clash with others'.\n\
             unix_socket_dir =\n\
             ; Our PostgreSQL trusts postgres@127.0.0.1; trust still wants the user listed.\n\
             auth_type = trust\n\
             auth_file = {userlist}\n\
             ; Lets the tests run SHOW POOLS on the `pgbouncer` admin database.\n\
             admin_users = postgres\n\
             pool_mode = transaction\n\
             ; Small, so that tests can exhaust the pool.\n\
             default_pool_size = 4\n\
             max_client_conn = 400\n\
             ; sqlx sends it at connect, and PgBouncer refuses parameters it does not know.\n\
             ignore_startup_parameters = extra_float_digits\n\
             pidfile = {pidfile}\n\
             logfile = {log}\n",
            pg_port = self.pg_port,
            port = self.pgbouncer_port,
            userlist = self.pgbouncer_userlist().display(),
            pidfile = self.pgbouncer_pidfile().display(),
            log = self.pgbouncer_log().display(),
        )
    }

    /// `REDIS_URL` for the tests.
    pub(crate) fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.redis_port)
    }

    /// `REDIS_CLUSTER_URLS` for the tests: every node, comma-separated.
    pub(crate) fn redis_cluster_urls(&self) -> String {
        self.cluster_ports()
            .map(|port| format!("redis://127.0.0.1:{port}/"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `DATABASE_URL` for the tests.
    pub(crate) fn database_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{PG_DB}", self.pg_port)
    }

    /// `PGBOUNCER_URL` for the tests.
    pub(crate) fn pgbouncer_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{PG_DB}", self.pgbouncer_port)
    }

    /// The variables the tests read.
    pub(crate) fn env(&self) -> [(&'static str, String); 5] {
        [
            ("REDIS_URL", self.redis_url()),
            ("REDIS_CLUSTER_URLS", self.redis_cluster_urls()),
            ("DATABASE_URL", self.database_url()),
            ("PGBOUNCER_URL", self.pgbouncer_url()),
            ("MYSQL_URL", self.mysql_url()),
        ]
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

// After `say!`, which it uses.
mod mariadb;

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
            Service::RedisCluster => {
                let nodes = self.cluster_nodes();
                match self.cluster_foreign(&nodes) {
                    Some(e) => Err(e),
                    None => Ok(nodes.iter().any(ClusterNode::is_ours)),
                }
            }
            Service::Postgres => Ok(self.pg_running()),
            Service::PgBouncer => match self.pgbouncer_probe() {
                BouncerProbe::Ours(_) | BouncerProbe::Hung(_) => Ok(true),
                BouncerProbe::Down => Ok(false),
                BouncerProbe::Foreign(what) => Err(self.pgbouncer_foreign(&what)),
            },
            Service::MariaDb => match self.mariadb_probe() {
                mariadb::Probe::Ours => Ok(true),
                mariadb::Probe::Down => Ok(self.mariadb_pid().is_some()),
                mariadb::Probe::Foreign(what) => Err(self.mariadb_foreign(&what)),
            },
        }
    }

    /// Starts `service` unless it runs; idempotent.
    pub(crate) fn start(&mut self, service: Service) -> Result<()> {
        match service {
            Service::Redis => self.redis_start(),
            Service::RedisCluster => self.cluster_start(),
            Service::Postgres => self.pg_start(),
            Service::PgBouncer => self.pgbouncer_start(),
            Service::MariaDb => self.mariadb_start(),
        }
    }

    /// Stops `service` if it runs; idempotent.
    pub(crate) fn stop(&self, service: Service) -> Result<()> {
        match service {
            Service::Redis => self.redis_stop(),
            Service::RedisCluster => self.cluster_stop(),
            Service::Postgres => self.pg_stop(),
            Service::PgBouncer => self.pgbouncer_stop(),
            Service::MariaDb => self.mariadb_stop(),
        }
    }

    /// A few lines per service for `services status`; whether all run.
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
        status_line("redis:", &redis);
        status_line("", &format!("data {}", self.cfg.redis_dir().display()));

        let nodes = self.cluster_nodes();
        let cluster = if let Some(e) = self.cluster_foreign(&nodes) {
            all = false;
            format!("NOT OURS: {e}")
        } else if !nodes.iter().any(ClusterNode::is_ours) {
            all = false;
            "stopped".to_owned()
        } else {
            match self.cluster_problem() {
                None => format!(
                    "running (pids {}), REDIS_CLUSTER_URLS={}",
                    nodes
                        .iter()
                        .map(|n| n.pid.map_or_else(|| "?".into(), |p| p.to_string()))
                        .collect::<Vec<_>>()
                        .join(", "),
                    self.cfg.redis_cluster_urls()
                ),
                Some((port, why)) => {
                    all = false;
                    format!(
                        "NOT HEALTHY: node {port}: {why}; `cargo xtask services start` \
                         recreates it (empty)"
                    )
                }
            }
        };
        status_line("redis-cluster:", &cluster);
        status_line(
            "",
            &format!(
                "ports {}, data {}",
                self.cfg.cluster_port_range(),
                self.cfg.cluster_dir().display()
            ),
        );

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
        status_line("postgres:", &pg);
        status_line("", &format!("data {}", self.cfg.pg_dir().display()));

        let bouncer = match self.pgbouncer_probe() {
            BouncerProbe::Ours(pid) => format!(
                "running (pid {}), PGBOUNCER_URL={}",
                pid.map_or_else(|| "?".into(), |p| p.to_string()),
                self.cfg.pgbouncer_url()
            ),
            BouncerProbe::Hung(pid) => {
                all = false;
                format!(
                    "running (pid {pid}) but not answering on port {}; stop it with \
                     `cargo xtask services stop`",
                    self.cfg.pgbouncer_port
                )
            }
            BouncerProbe::Down => {
                all = false;
                "stopped".to_owned()
            }
            BouncerProbe::Foreign(what) => {
                all = false;
                format!("NOT OURS: {}", self.pgbouncer_foreign(&what))
            }
        };
        status_line("pgbouncer:", &bouncer);
        status_line("", &format!("config {}", self.cfg.pgbouncer_ini().display()));

        let (running, mariadb, data) = self.mariadb_status();
        all &= running;
        status_line("mariadb:", &mariadb);
        status_line("", &data);
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

    /// Installs redis-server and the PostgreSQL server when missing, for tests
    /// that run servers of their own (the soak tests kill and restart them).
    pub(crate) fn ensure_servers(&mut self) -> Result<()> {
        self.program("redis-server", &["redis-server"])?;
        if self.pg_bin().is_none() {
            self.apt_install("PostgreSQL", &["postgresql"])?;
            self.pg_bin().ok_or_else(|| {
                Error::msg("no pg_ctl under /usr/lib/postgresql/*/bin after apt-get install")
            })?;
        }
        Ok(())
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

    /// The program `name`, installing the Debian `packages` that bring it when missing.
    fn program(&mut self, name: &str, packages: &[&str]) -> Result<PathBuf> {
        if let Some(path) = find_program(name) {
            return Ok(path);
        }
        self.apt_install(name, packages)?;
        find_program(name).ok_or_else(|| {
            Error::msg(format!(
                "{name} is still not on PATH after apt-get install {}",
                packages.join(" ")
            ))
        })
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
        let server = self.program("redis-server", &["redis-server"])?;
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
        self.as_pg_user(&bin.join(program), &self.cfg.pg_dir())
    }

    /// `program` as the postgres OS user when we are root, in `dir` if it exists.
    fn as_pg_user(&self, program: &Path, dir: &Path) -> Command {
        let mut c = if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", PG_OS_USER, "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        c.current_dir(if dir.is_dir() { dir } else { Path::new("/") });
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
            self.prepare_dir_for(PG_OS_USER, &dir)?;
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

    /// As root: make sure the OS user `user` (who runs a server) exists, can
    /// reach `dir` and owns it.
    fn prepare_dir_for(&self, user: &str, dir: &Path) -> Result<()> {
        if !cmd::succeeds(Command::new("id").args(["-u", user])) {
            say!("creating the {user} OS user");
            cmd::run(quiet(Command::new("useradd")).args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                user,
            ]))?;
        }
        // The checkout may live under a directory others cannot enter (e.g. /root, mode
        // 0700). The server needs to reach its data dir, so grant search (x, not read) on
        // each ancestor that lacks it, and say so.
        for ancestor in dir.ancestors().skip(1) {
            let meta = fs::metadata(ancestor)
                .map_err(|e| Error::msg(format!("{}: {e}", ancestor.display())))?;
            let mode = meta.permissions().mode();
            if mode & 0o001 == 0 {
                say!(
                    "chmod o+x {} (so the {user} user can reach {})",
                    ancestor.display(),
                    dir.display()
                );
                fs::set_permissions(ancestor, fs::Permissions::from_mode(mode | 0o001))
                    .map_err(|e| Error::msg(format!("chmod o+x {}: {e}", ancestor.display())))?;
            }
        }
        cmd::run(Command::new("chown").args(["-R", user]).arg(dir))?;
        // Check it, as that user, rather than trust the reasoning above.
        let mut check = Command::new("runuser");
        check.args(["-u", user, "--", "test", "-w"]).arg(dir).current_dir("/");
        if !cmd::succeeds(&mut check) {
            return Err(Error::msg(format!(
                "the {user} OS user cannot write {} even after chown/chmod",
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

    // ----- Redis Cluster -----

    /// Each node's port, what answers there and our process for it.
    fn cluster_nodes(&self) -> Vec<ClusterNode> {
        self.cfg
            .cluster_ports()
            .map(|port| {
                let pidfile = self.cfg.cluster_pidfile(port);
                ClusterNode {
                    port,
                    probe: redis_probe(port, &pidfile),
                    pid: live_pid(&pidfile, &cluster_node_marks(port)),
                }
            })
            .collect()
    }

    fn cluster_node_foreign(&self, port: u16, what: &str) -> Error {
        Error::msg(format!(
            "port {port} (a node of the redis cluster on ports {}) is taken by a server that is \
             not ours ({what}); it is left alone. Pick other ports with {REDIS_CLUSTER_PORT_VAR}=...",
            self.cfg.cluster_port_range()
        ))
    }

    /// An error for the first node port held by a server that is not ours.
    fn cluster_foreign(&self, nodes: &[ClusterNode]) -> Option<Error> {
        nodes.iter().find_map(|node| match (&node.probe, node.pid) {
            (RedisProbe::Foreign(what), None) => Some(self.cluster_node_foreign(node.port, what)),
            _ => None,
        })
    }

    /// The first node that is down or does not see a whole, healthy cluster, and why.
    fn cluster_problem(&self) -> Option<(u16, String)> {
        for port in self.cfg.cluster_ports() {
            let why = match redis_probe(port, &self.cfg.cluster_pidfile(port)) {
                RedisProbe::Down => "down".to_owned(),
                RedisProbe::Foreign(what) => format!("does not answer as ours ({what})"),
                RedisProbe::Ours => match cluster_info(port) {
                    Ok(info) => match info.problem() {
                        None => continue,
                        Some(why) => why,
                    },
                    Err(e) => format!("CLUSTER INFO failed: {e}"),
                },
            };
            return Some((port, why));
        }
        None
    }

    /// Waits up to `timeout` for every node to see a healthy cluster; the
    /// last problem if one remains.
    fn cluster_wait_healthy(&self, timeout: Duration) -> Option<(u16, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.cluster_problem() {
                None => return None,
                Some(problem) if Instant::now() >= deadline => return Some(problem),
                Some(_) => sleep(Duration::from_millis(100)),
            }
        }
    }

    fn cluster_start(&mut self) -> Result<()> {
        let range = self.cfg.cluster_port_range();
        let nodes = self.cluster_nodes();
        if let Some(e) = self.cluster_foreign(&nodes) {
            return Err(e);
        }
        if nodes.iter().all(|n| n.probe == RedisProbe::Ours) {
            // Right after a test's failover the nodes may still be agreeing on
            // the new primary: give them a moment before throwing the cluster away.
            match self.cluster_wait_healthy(Duration::from_secs(3)) {
                None => {
                    say!("redis cluster already running on ports {range}");
                    return Ok(());
                }
                Some((port, why)) => say!(
                    "redis cluster on ports {range} is not healthy (node {port}: {why}): \
                     recreating it, empty"
                ),
            }
        } else if nodes.iter().any(ClusterNode::is_ours) {
            say!(
                "redis cluster node(s) {} not answering (killed or stopped by a test?): \
                 recreating the cluster, empty",
                down_ports(&nodes)
            );
        }
        self.cluster_stop_nodes(&nodes)?;

        let server = self.program("redis-server", &["redis-server"])?;
        // Debian's redis-server depends on redis-tools, but one from elsewhere may come alone.
        let cli = self.program("redis-cli", &["redis-tools"])?;
        say!(
            "starting a redis cluster on 127.0.0.1:{range} (data {})",
            self.cfg.cluster_dir().display()
        );
        for port in self.cfg.cluster_ports() {
            let dir = self.cfg.cluster_node_dir(port);
            create_dir(&dir)?;
            let mut node = quiet(Command::new(&server));
            node.current_dir(&dir)
                .args(["--bind", "127.0.0.1", "--port"])
                .arg(port.to_string())
                .args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(dir.join("nodes.conf"))
                .args(["--cluster-node-timeout", "1000"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "yes"])
                .arg("--dir")
                .arg(&dir)
                .arg("--pidfile")
                .arg(self.cfg.cluster_pidfile(port))
                .arg("--logfile")
                .arg(self.cfg.cluster_log(port));
            cmd::run(&mut node)?;
        }
        let deadline = Instant::now() + WAIT;
        for port in self.cfg.cluster_ports() {
            let pidfile = self.cfg.cluster_pidfile(port);
            loop {
                match redis_probe(port, &pidfile) {
                    RedisProbe::Ours => break,
                    RedisProbe::Foreign(what) => return Err(self.cluster_node_foreign(port, &what)),
                    RedisProbe::Down if Instant::now() < deadline => {
                        sleep(Duration::from_millis(100));
                    }
                    RedisProbe::Down => {
                        let log = self.cfg.cluster_log(port);
                        return Err(Error::msg(format!(
                            "redis cluster node {port} did not answer within {}s; its log ({}) \
                             ends with:\n{}",
                            WAIT.as_secs(),
                            log.display(),
                            tail(&log, 20)
                        )));
                    }
                }
            }
        }

        // Fresh nodes never are; checking keeps `create` from failing on nodes
        // that somehow joined each other already.
        let formed =
            self.cfg.cluster_ports().any(|port| cluster_info(port).is_ok_and(|i| i.formed()));
        if !formed {
            let mut create = Command::new(&cli);
            create
                .args(["--cluster", "create"])
                .args(self.cfg.cluster_ports().map(|port| format!("127.0.0.1:{port}")))
                .args(["--cluster-replicas", "1", "--cluster-yes"]);
            // Its slot tables and questions only matter when it fails.
            let (st, out) = cmd::capture(&mut create)?;
            if !st.success() {
                return Err(Error::msg(format!(
                    "{}; its output ends with:\n{}",
                    Error::failed(&format!("`{}`", cmd::display(&create)), st),
                    tail_text(&out, 20)
                )));
            }
        }
        if let Some((port, why)) = self.cluster_wait_healthy(WAIT) {
            let log = self.cfg.cluster_log(port);
            return Err(Error::msg(format!(
                "the redis cluster on ports {range} is not healthy {}s after creating it: node \
                 {port}: {why}; its log ({}) ends with:\n{}",
                WAIT.as_secs(),
                log.display(),
                tail(&log, 20)
            )));
        }
        Ok(())
    }

    fn cluster_stop(&self) -> Result<()> {
        let nodes = self.cluster_nodes();
        self.cluster_stop_nodes(&nodes)
    }

    /// Stops our nodes among `nodes` (SHUTDOWN, SIGTERM for those that do not
    /// answer, SIGKILL for those that outlive it), then wipes the cluster's
    /// directories, so that the next start creates it anew.
    fn cluster_stop_nodes(&self, nodes: &[ClusterNode]) -> Result<()> {
        if nodes.iter().any(ClusterNode::is_ours) {
            let down = down_ports(nodes);
            if down.is_empty() {
                say!("stopping the redis cluster on ports {}", self.cfg.cluster_port_range());
            } else {
                say!(
                    "stopping the redis cluster on ports {} (node(s) {down} not answering)",
                    self.cfg.cluster_port_range()
                );
            }
        }
        let mut pending: Vec<(u16, Option<u32>)> = Vec::new();
        for node in nodes {
            match (&node.probe, node.pid) {
                (RedisProbe::Ours, pid) => {
                    if let Err(e) = redis_shutdown(node.port) {
                        say!("redis cluster node {}: SHUTDOWN failed: {e}", node.port);
                    }
                    pending.push((node.port, pid));
                }
                (_, Some(pid)) => {
                    say!(
                        "redis cluster node {} (pid {pid}) does not answer: sending SIGTERM",
                        node.port
                    );
                    terminate(pid);
                    pending.push((node.port, Some(pid)));
                }
                (RedisProbe::Foreign(what), None) => {
                    say!("not stopping the server on port {}: {what}", node.port);
                }
                (RedisProbe::Down, None) => {}
            }
        }
        let gone = |&(port, pid): &(u16, Option<u32>)| {
            pid.is_none_or(|pid| !process_has(pid, &cluster_node_marks(port)))
                && redis_probe(port, &self.cfg.cluster_pidfile(port)) != RedisProbe::Ours
        };
        // A node stuck in a command ignores SHUTDOWN and SIGTERM; its data goes anyway.
        if !wait_until(GRACE, || pending.iter().all(gone)) {
            for &(port, pid) in pending.iter().filter(|n| !gone(n)) {
                if let Some(pid) = pid {
                    say!("redis cluster node {port} (pid {pid}) is still alive: sending SIGKILL");
                    signal(pid, "KILL");
                }
            }
            if !wait_until(Duration::from_secs(5), || pending.iter().all(gone)) {
                let left: Vec<String> = pending
                    .iter()
                    .filter(|n| !gone(n))
                    .map(|(port, pid)| match pid {
                        Some(pid) => format!("{port} (pid {pid})"),
                        None => format!("{port} (pid unknown)"),
                    })
                    .collect();
                return Err(Error::msg(format!(
                    "redis cluster node(s) {} still run; {} is left in place",
                    left.join(", "),
                    self.cfg.cluster_dir().display()
                )));
            }
        }
        remove_dir(&self.cfg.cluster_dir())
    }

    // ----- PgBouncer -----

    /// Our PgBouncer while it lives: the pid in its pid file, if that process
    /// runs our config file.
    fn pgbouncer_pid(&self) -> Option<u32> {
        let ini = self.cfg.pgbouncer_ini();
        live_pid(&self.cfg.pgbouncer_pidfile(), &["pgbouncer", &ini.to_string_lossy()])
    }

    fn pgbouncer_probe(&self) -> BouncerProbe {
        let pid = self.pgbouncer_pid();
        let port = self.cfg.pgbouncer_port;
        let Some(psql) = self.pg_bin().map(|bin| bin.join("psql")) else {
            // Without psql to ask it, trust a live process running our config.
            return match pid {
                Some(pid) => BouncerProbe::Ours(Some(pid)),
                None if port_open(port) => BouncerProbe::Foreign(
                    "something, and psql is not installed to ask what".to_owned(),
                ),
                None => BouncerProbe::Down,
            };
        };
        let pidfile = self.cfg.pgbouncer_pidfile();
        match self.pgbouncer_psql(&psql, "pgbouncer", "SHOW CONFIG") {
            Ok(config) => match show_config_value(&config, "pidfile") {
                Some(path) if Path::new(path) == pidfile => BouncerProbe::Ours(pid),
                Some(path) => BouncerProbe::Foreign(format!(
                    "a PgBouncer whose pidfile is {path:?}, not {}",
                    pidfile.display()
                )),
                None => {
                    BouncerProbe::Foreign("a PgBouncer whose SHOW CONFIG has no pidfile".to_owned())
                }
            },
            Err(_) => match pid {
                Some(pid) => BouncerProbe::Hung(pid),
                None if port_open(port) => BouncerProbe::Foreign(
                    "a server without a `pgbouncer` admin database open to postgres".to_owned(),
                ),
                None => BouncerProbe::Down,
            },
        }
    }

    fn pgbouncer_foreign(&self, what: &str) -> Error {
        Error::msg(format!(
            "port {} is taken by a server that is not our pgbouncer ({what}); it is left alone. \
             Pick another port with {PGBOUNCER_PORT_VAR}=...",
            self.cfg.pgbouncer_port
        ))
    }

    /// `psql -c sql` against database `db` of our PgBouncer: its output, or
    /// what it said on stderr.
    fn pgbouncer_psql(&self, psql: &Path, db: &str, sql: &str) -> Result<String, String> {
        let port = self.cfg.pgbouncer_port.to_string();
        let mut c = Command::new(psql);
        c.args([
            "-X",
            "-w",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-d",
            db,
            "-tAc",
            sql,
        ])
        // A stopped PgBouncer accepts connections and never answers.
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null());
        match c.output() {
            Ok(out) if out.status.success() => {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            }
            Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
            Err(e) => Err(format!("could not run `{}`: {e}", cmd::display(&c))),
        }
    }

    fn pgbouncer_start(&mut self) -> Result<()> {
        let port = self.cfg.pgbouncer_port;
        let ini = self.cfg.pgbouncer_ini();
        let text = self.cfg.pgbouncer_ini_text();
        match self.pgbouncer_probe() {
            BouncerProbe::Ours(_) if fs::read_to_string(&ini).is_ok_and(|t| t == text) => {
                say!("pgbouncer already running on port {port}");
                return self.pgbouncer_check_route();
            }
            // E.g. started for another PostgreSQL port.
            BouncerProbe::Ours(_) => {
                say!("pgbouncer runs with other settings than ours: restarting it");
                self.pgbouncer_stop()?;
            }
            BouncerProbe::Hung(pid) => {
                say!("pgbouncer (pid {pid}) does not answer on port {port}: restarting it");
                self.pgbouncer_stop()?;
            }
            BouncerProbe::Foreign(what) => return Err(self.pgbouncer_foreign(&what)),
            BouncerProbe::Down => {}
        }
        let program = self.program("pgbouncer", &["pgbouncer"])?;
        if self.pg_bin().is_none() {
            return Err(Error::msg(
                "pgbouncer is checked with psql, which is not installed: start postgres first",
            ));
        }
        let dir = self.cfg.pgbouncer_dir();
        create_dir(&dir)?;
        write_file(&ini, &text)?;
        write_file(&self.cfg.pgbouncer_userlist(), "\"postgres\" \"\"\n")?;
        // PgBouncer refuses to start over a pid file whose pid is alive, and
        // after a SIGKILL that pid may belong to another process by now.
        let pidfile = self.cfg.pgbouncer_pidfile();
        match fs::remove_file(&pidfile) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(Error::msg(format!("rm {}: {e}", pidfile.display())));
            }
            _ => {}
        }
        if self.root {
            // Like PostgreSQL, PgBouncer refuses to run as root.
            self.prepare_dir_for(PG_OS_USER, &dir)?;
        }
        say!(
            "starting pgbouncer on 127.0.0.1:{port} for postgres on port {} (config {})",
            self.cfg.pg_port,
            ini.display()
        );
        let log = self.cfg.pgbouncer_log();
        let mut bouncer = quiet(self.as_pg_user(&program, &dir));
        bouncer.arg("-d").arg(&ini);
        if let Err(e) = cmd::run(&mut bouncer) {
            return Err(Error::msg(format!(
                "{e}\npgbouncer log ({}) ends with:\n{}",
                log.display(),
                tail(&log, 20)
            )));
        }
        let deadline = Instant::now() + WAIT;
        loop {
            match self.pgbouncer_probe() {
                BouncerProbe::Ours(_) => break,
                // The PgBouncer just started listens before it has written
                // its pid file and opened its admin database: until the
                // deadline, a port that answers is taken to be it, starting.
                BouncerProbe::Down | BouncerProbe::Hung(_) | BouncerProbe::Foreign(_)
                    if Instant::now() < deadline =>
                {
                    sleep(Duration::from_millis(100));
                }
                BouncerProbe::Foreign(what) => return Err(self.pgbouncer_foreign(&what)),
                BouncerProbe::Down | BouncerProbe::Hung(_) => {
                    return Err(Error::msg(format!(
                        "pgbouncer did not answer on port {port} within {}s; its log ({}) ends \
                         with:\n{}",
                        WAIT.as_secs(),
                        log.display(),
                        tail(&log, 20)
                    )));
                }
            }
        }
        self.pgbouncer_check_route()
    }

    /// That a query through our PgBouncer reaches our PostgreSQL, so that a
    /// broken route shows here rather than as failing tests.
    fn pgbouncer_check_route(&self) -> Result<()> {
        let psql = self
            .pg_bin()
            .map(|bin| bin.join("psql"))
            .ok_or_else(|| Error::msg("psql is not installed: cannot check pgbouncer"))?;
        let why = match self.pgbouncer_psql(&psql, PG_DB, "SELECT 1") {
            Ok(out) if out.trim() == "1" => return Ok(()),
            Ok(out) => format!("unexpected output {out:?}"),
            Err(why) => why,
        };
        let log = self.cfg.pgbouncer_log();
        Err(Error::msg(format!(
            "pgbouncer on port {} answers, but `SELECT 1` through it to postgres (port {}) \
             failed: {why}\npgbouncer log ({}) ends with:\n{}",
            self.cfg.pgbouncer_port,
            self.cfg.pg_port,
            log.display(),
            tail(&log, 20)
        )))
    }

    fn pgbouncer_stop(&self) -> Result<()> {
        let pidfile = self.cfg.pgbouncer_pidfile();
        let Some(pid) = self.pgbouncer_pid() else {
            let _ = fs::remove_file(&pidfile);
            return Ok(());
        };
        say!("stopping pgbouncer on port {} (pid {pid})", self.cfg.pgbouncer_port);
        let ini = self.cfg.pgbouncer_ini();
        let ini = ini.to_string_lossy();
        let alive = || process_has(pid, &["pgbouncer", &ini]);
        // SIGTERM is an immediate shutdown for 1.18; newer PgBouncers wait for
        // their clients instead, and a test may have left one connected.
        terminate(pid);
        if !wait_until(GRACE, || !alive()) {
            say!(
                "pgbouncer (pid {pid}) still runs {}s after SIGTERM: sending SIGKILL",
                GRACE.as_secs()
            );
            signal(pid, "KILL");
            if !wait_until(Duration::from_secs(5), || !alive()) {
                return Err(Error::msg(format!("pgbouncer (pid {pid}) survives SIGKILL")));
            }
        }
        let _ = fs::remove_file(&pidfile);
        Ok(())
    }
}

/// One line of `services status`: the label in a column of its own, then the text.
pub(crate) fn status_line(label: &str, text: &str) {
    println!("{label:<15}{text}");
}

/// `name` on PATH, or in /usr/sbin, which a non-root PATH may lack (Debian
/// puts pgbouncer there).
fn find_program(name: &str) -> Option<PathBuf> {
    cmd::which(name).or_else(|| {
        let path = Path::new("/usr/sbin").join(name);
        cmd::is_executable(&path).then_some(path)
    })
}

/// The ports of `nodes` that do not answer as ours, for messages.
fn down_ports(nodes: &[ClusterNode]) -> String {
    nodes
        .iter()
        .filter(|n| n.probe != RedisProbe::Ours)
        .map(|n| n.port.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the command line of our redis-server for cluster node `port` shows
/// (its process title, `redis-server 127.0.0.1:PORT [cluster]`, or the
/// arguments before it sets that).
fn cluster_node_marks(port: u16) -> [String; 2] {
    ["redis-server".to_owned(), port.to_string()]
}

/// The pid in `pidfile` if that process lives and its command line mentions
/// each of `marks`: after a SIGKILL the pid file stays, and its pid may be
/// reused by an unrelated process.
fn live_pid(pidfile: &Path, marks: &[impl AsRef<str>]) -> Option<u32> {
    let pid = read_trimmed(pidfile)?.parse().ok()?;
    process_has(pid, marks).then_some(pid)
}

/// Whether process `pid` is alive and its command line mentions each of `marks`.
fn process_has(pid: u32, marks: &[impl AsRef<str>]) -> bool {
    marks.iter().all(|mark| process_is(pid, mark.as_ref()))
}

/// Sends signal `name` (TERM, KILL) to `pid`. Failing is no error: the
/// process may just have exited, and callers wait for it to be gone anyway.
fn signal(pid: u32, name: &str) {
    let _ = cmd::succeeds(Command::new("kill").args(["-s", name, &pid.to_string()]));
}

/// SIGTERM, then SIGCONT: a process stopped with SIGSTOP (as a test may do to
/// a server) acts on the SIGTERM only once it runs again.
fn terminate(pid: u32) {
    signal(pid, "TERM");
    signal(pid, "CONT");
}

/// Polls `done` until it holds or `timeout` has passed; whether it held.
fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(50));
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(1))
        .is_ok()
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

/// `rm -rf dir`; nothing to do if it does not exist.
fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(Error::msg(format!("rm -rf {}: {e}", dir.display())))
        }
        _ => Ok(()),
    }
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(|e| Error::msg(format!("writing {}: {e}", path.display())))
}

/// The last `n` lines of a log file, indented.
fn tail(path: &Path, n: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => tail_text(&text, n),
        Err(e) => format!("    (cannot read it: {e})"),
    }
}

/// The last `n` lines of `text`, indented.
fn tail_text(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].iter().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

/// One node of our Redis Cluster, as found on its port and in its pid file.
#[derive(Debug)]
struct ClusterNode {
    port: u16,
    probe: RedisProbe,
    /// The live redis-server that our pid file names: ours even when it does
    /// not answer (a test may have stopped it with SIGSTOP).
    pid: Option<u32>,
}

impl ClusterNode {
    /// Whether a server of ours runs for this node, answering or not.
    fn is_ours(&self) -> bool {
        self.probe == RedisProbe::Ours || self.pid.is_some()
    }
}

/// What a node's `CLUSTER INFO` says about the cluster's health.
#[derive(Debug, Default, PartialEq, Eq)]
struct ClusterInfo {
    state: String,
    slots_assigned: u32,
    known_nodes: u32,
}

impl ClusterInfo {
    /// From `field:value` lines; missing or garbled fields stay empty / 0.
    fn parse(text: &str) -> Self {
        let mut info = Self::default();
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once(':') else { continue };
            match key {
                "cluster_state" => value.clone_into(&mut info.state),
                "cluster_slots_assigned" => info.slots_assigned = value.parse().unwrap_or(0),
                "cluster_known_nodes" => info.known_nodes = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        info
    }

    /// Why this node does not see the whole cluster healthy, if it does not.
    fn problem(&self) -> Option<String> {
        let mut why = Vec::new();
        if self.state != "ok" {
            why.push(format!(
                "cluster_state:{}",
                if self.state.is_empty() { "?" } else { &self.state }
            ));
        }
        if self.slots_assigned != CLUSTER_SLOTS {
            why.push(format!("{} of {CLUSTER_SLOTS} slots assigned", self.slots_assigned));
        }
        if self.known_nodes != u32::from(CLUSTER_NODES) {
            why.push(format!("knows {} of {CLUSTER_NODES} nodes", self.known_nodes));
        }
        (!why.is_empty()).then(|| why.join(", "))
    }

    /// Whether the node has joined a cluster: a fresh one knows only itself
    /// and serves no slot.
    fn formed(&self) -> bool {
        self.slots_assigned > 0 || self.known_nodes > 1
    }
}

/// What answers on PgBouncer's port.
#[derive(Debug, PartialEq)]
enum BouncerProbe {
    /// Nothing, and no process of ours.
    Down,
    /// Our PgBouncer: its `pidfile` setting (`SHOW CONFIG`) is our pid file.
    /// With its pid, when the pid file names it.
    Ours(Option<u32>),
    /// Our process lives (pid file and command line) but does not answer.
    Hung(u32),
    /// Something else listens there.
    Foreign(String),
}

/// The value of setting `key` in what `psql -tA -c 'SHOW CONFIG'` prints
/// (`key|value|default|changeable` lines).
fn show_config_value<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines().find_map(|line| {
        let mut columns = line.split('|');
        if columns.next()? == key { columns.next() } else { None }
    })
}

// ----- a minimal RESP client, enough to identify and shut down Redis, and to
// ask a cluster node how it sees the cluster -----

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

fn cluster_info(port: u16) -> io::Result<ClusterInfo> {
    let mut conn = redis_connect(port)?;
    match redis_call(&mut conn, &["CLUSTER", "INFO"])? {
        Resp::Bulk(Some(text)) => Ok(ClusterInfo::parse(&String::from_utf8_lossy(&text))),
        Resp::Error(e) => Err(io::Error::other(e)),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected CLUSTER INFO reply {other:?}"),
        )),
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

    pub(super) fn config() -> Config {
        Config {
            dir: PathBuf::from("/w/target/services"),
            redis_port: DEFAULT_REDIS_PORT,
            pg_port: DEFAULT_PG_PORT,
            redis_cluster_port: DEFAULT_REDIS_CLUSTER_PORT,
            pgbouncer_port: DEFAULT_PGBOUNCER_PORT,
            mysql_port: mariadb::DEFAULT_PORT,
        }
    }

    #[test]
    fn env_names_every_service() {
        let env = config().env();
        let names: Vec<&str> = env.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            ["REDIS_URL", "REDIS_CLUSTER_URLS", "DATABASE_URL", "PGBOUNCER_URL", "MYSQL_URL"]
        );
        assert_eq!(env[3].1, "postgres://postgres@127.0.0.1:64330/sessions");
    }

    #[test]
    fn cluster_urls_list_all_six_nodes() {
        let cfg = Config { redis_cluster_port: 7492, ..config() };
        assert_eq!(
            cfg.redis_cluster_urls(),
            "redis://127.0.0.1:7492/,redis://127.0.0.1:7493/,redis://127.0.0.1:7494/,\
             redis://127.0.0.1:7495/,redis://127.0.0.1:7496/,redis://127.0.0.1:7497/"
        );
        assert_eq!(cfg.cluster_port_range(), "7492-7497");
        assert_eq!(
            cfg.cluster_pidfile(7493),
            Path::new("/w/target/services/redis-cluster/7493/redis.pid")
        );
    }

    #[test]
    fn ports_must_not_clash() {
        assert!(config().check_ports().is_ok());
        // The highest base whose last bus port still fits.
        assert!(Config { redis_cluster_port: 55530, ..config() }.check_ports().is_ok());
        let too_high = Config { redis_cluster_port: 55531, ..config() }.check_ports();
        assert!(too_high.is_err_and(|e| e.to_string().contains("at most 55530")));
        // A node port, and a bus port.
        for clash in [
            Config { redis_port: 7395, ..config() },
            Config { pgbouncer_port: 17397, ..config() },
            Config { pg_port: DEFAULT_PGBOUNCER_PORT, ..config() },
            Config { mysql_port: DEFAULT_PG_PORT, ..config() },
        ] {
            let err = clash.check_ports().expect_err("a clash");
            assert!(err.to_string().contains("used twice"), "{err}");
        }
    }

    const CLUSTER_INFO_OK: &str = "cluster_state:ok\r\ncluster_slots_assigned:16384\r\n\
        cluster_slots_ok:16384\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\n\
        cluster_known_nodes:6\r\ncluster_size:3\r\ncluster_current_epoch:6\r\n\
        cluster_my_epoch:1\r\ncluster_stats_messages_sent:1483\r\n";

    #[test]
    fn cluster_info_parses() {
        let info = ClusterInfo::parse(CLUSTER_INFO_OK);
        assert_eq!(info, ClusterInfo { state: "ok".into(), slots_assigned: 16384, known_nodes: 6 });
        assert_eq!(info.problem(), None);
        assert!(info.formed());
    }

    #[test]
    fn cluster_info_says_what_is_wrong() {
        // A node just started, before `redis-cli --cluster create`.
        let fresh = ClusterInfo::parse(
            "cluster_state:fail\r\ncluster_slots_assigned:0\r\ncluster_known_nodes:1\r\n",
        );
        assert!(!fresh.formed());
        assert_eq!(
            fresh.problem().as_deref(),
            Some("cluster_state:fail, 0 of 16384 slots assigned, knows 1 of 6 nodes")
        );
        // A primary gone with no replica left to take its slots over.
        let failed = ClusterInfo::parse(&CLUSTER_INFO_OK.replace("state:ok", "state:fail"));
        assert_eq!(failed.problem().as_deref(), Some("cluster_state:fail"));
        let garbage = ClusterInfo::parse("garbage\nx:y:z\ncluster_known_nodes:many");
        assert_eq!(garbage, ClusterInfo::default());
        assert!(garbage.problem().is_some_and(|p| p.starts_with("cluster_state:?")));
    }

    #[test]
    fn pgbouncer_ini_points_at_our_postgres() {
        let cfg = Config { pg_port: 54430, pgbouncer_port: 64430, ..config() };
        let ini = cfg.pgbouncer_ini_text();
        for line in [
            "[databases]",
            "sessions = host=127.0.0.1 port=54430 dbname=sessions",
            "listen_addr = 127.0.0.1",
            "listen_port = 64430",
            "unix_socket_dir =",
            "auth_type = trust",
            "auth_file = /w/target/services/pgbouncer/userlist.txt",
            "admin_users = postgres",
            "pool_mode = transaction",
            "default_pool_size = 4",
            "max_client_conn = 400",
            "pidfile = /w/target/services/pgbouncer/pgbouncer.pid",
            "logfile = /w/target/services/pgbouncer/pgbouncer.log",
        ] {
            assert!(ini.lines().any(|l| l == line), "{line:?} missing from\n{ini}");
        }
        // The database under [databases], the settings under [pgbouncer].
        let at = |needle: &str| ini.find(needle).expect(needle);
        assert!(at("[databases]") < at("sessions =") && at("sessions =") < at("[pgbouncer]"));
        assert!(at("[pgbouncer]") < at("pool_mode"));
    }

    #[test]
    fn show_config_gives_a_setting() {
        let out =
            "listen_port|64430|6432|no\npidfile|/w/pgbouncer.pid||no\nlogfile|/w/x.log||yes\n";
        assert_eq!(show_config_value(out, "pidfile"), Some("/w/pgbouncer.pid"));
        assert_eq!(show_config_value(out, "listen_port"), Some("64430"));
        assert_eq!(show_config_value(out, "nope"), None);
        assert_eq!(show_config_value("", "pidfile"), None);
    }

    #[test]
    fn tails_keep_the_last_lines() {
        assert_eq!(tail_text("a\nb\nc\n", 2), "    b\n    c");
        assert_eq!(tail_text("", 2), "");
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

//! MariaDB for the MySQL store's tests: Debian's `mariadb-server`, installed
//! when missing, a data directory of its own under `<services dir>/mariadb`
//! made by `mariadb-install-db`, and `mariadbd` on a private 127.0.0.1 port
//! with its socket, pid file and log beside the data.
//!
//! It runs with `--skip-grant-tables` (every user may do anything, no
//! password), on loopback only, with durability off: test data only. The
//! tests reach it as `MYSQL_URL=mysql://root@127.0.0.1:<port>/sessions`.
//! As root it runs as the `mysql` OS user (Debian's package creates it),
//! like PostgreSQL as `postgres`. It is recognised as ours by its
//! `@@pid_file`, so a server on our port that is not ours is never used nor
//! stopped.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::{
    Config, GRACE, Services, WAIT, create_dir, find_program, port_open, process_has, read_trimmed,
    signal, tail, wait_until,
};
use crate::cmd::{self, Error, Result};

/// Default port of our MariaDB (the usual one is 3306).
pub(crate) const DEFAULT_PORT: u16 = 33070;
/// Environment variable overriding the MariaDB port.
pub(crate) const PORT_VAR: &str = "XTASK_MYSQL_PORT";
/// The database created for the tests.
const DATABASE: &str = "sessions";
/// OS user that runs the server when we are root (mariadbd refuses root
/// unless told to run as it).
const OS_USER: &str = "mysql";
/// The longest Unix socket path the kernel takes (`sun_path` less its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// What answers on our MariaDB port.
#[derive(Debug, PartialEq)]
pub(super) enum Probe {
    /// Nothing.
    Down,
    /// Our server: its `@@pid_file` is our pid file.
    Ours,
    /// Something else listens there.
    Foreign(String),
}

impl Config {
    fn mariadb_dir(&self) -> PathBuf {
        self.dir.join("mariadb")
    }

    fn mariadb_data(&self) -> PathBuf {
        self.mariadb_dir().join("data")
    }

    fn mariadb_pidfile(&self) -> PathBuf {
        self.mariadb_dir().join("mariadb.pid")
    }

    fn mariadb_log(&self) -> PathBuf {
        self.mariadb_dir().join("error.log")
    }

    /// The server's Unix socket: beside its data, or in the temporary
    /// directory when that path is too long for a socket (a deep checkout).
    fn mariadb_socket(&self) -> PathBuf {
        let beside = self.mariadb_dir().join("mariadb.sock");
        if beside.as_os_str().len() <= MAX_SOCKET_PATH {
            beside
        } else {
            std::env::temp_dir().join(format!("xtask-mariadb-{}.sock", self.mysql_port))
        }
    }

    /// `MYSQL_URL` for the tests.
    pub(crate) fn mysql_url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/{DATABASE}", self.mysql_port)
    }
}

impl Services {
    /// What answers on our port: asked with the `mariadb` client for the
    /// server's pid file.
    pub(super) fn mariadb_probe(&self) -> Probe {
        let port = self.cfg.mysql_port;
        let Some(client) = find_program("mariadb") else {
            return if port_open(port) {
                Probe::Foreign(
                    "something, and the mariadb client is not installed to ask what".into(),
                )
            } else {
                Probe::Down
            };
        };
        match self.mariadb_sql(&client, "SELECT @@pid_file") {
            Ok(out) if Path::new(out.trim()) == self.cfg.mariadb_pidfile() => Probe::Ours,
            Ok(out) => Probe::Foreign(format!(
                "a server whose pid file is {:?}, not {}",
                out.trim(),
                self.cfg.mariadb_pidfile().display()
            )),
            Err(_) if !port_open(port) => Probe::Down,
            Err(why) => Probe::Foreign(why),
        }
    }

    pub(super) fn mariadb_foreign(&self, what: &str) -> Error {
        Error::msg(format!(
            "port {} is taken by a server that is not our MariaDB ({what}); it is left alone. \
             Pick another port with {PORT_VAR}=...",
            self.cfg.mysql_port
        ))
    }

    /// `sql` run by the `mariadb` client as root over TCP on our port: its
    /// output (tab-separated, no headers), or what it said on stderr.
    fn mariadb_sql(&self, client: &Path, sql: &str) -> Result<String, String> {
        let mut c = Command::new(client);
        c.args(["--no-defaults", "--protocol=tcp", "-h", "127.0.0.1", "-u", "root"])
            .args(["--connect-timeout=5", "-N", "-B", "-P"])
            .arg(self.cfg.mysql_port.to_string())
            .args(["-e", sql])
            .stdin(Stdio::null());
        match c.output() {
            Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into()),
            Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
            Err(e) => Err(format!("could not run `{}`: {e}", cmd::display(&c))),
        }
    }

    /// Our `mariadbd` while it lives: the pid in its pid file, if that
    /// process runs our data directory.
    pub(super) fn mariadb_pid(&self) -> Option<u32> {
        let pid = read_trimmed(&self.cfg.mariadb_pidfile())?.parse().ok()?;
        let data = self.cfg.mariadb_data();
        process_has(pid, &["mariadbd", &data.to_string_lossy()]).then_some(pid)
    }

    /// `mariadbd`, installing Debian's `mariadb-server` when missing.
    fn mariadb_server(&mut self) -> Result<PathBuf> {
        if let Some(server) = find_program("mariadbd") {
            return Ok(server);
        }
        self.apt_install("MariaDB", &["mariadb-server"])?;
        find_program("mariadbd")
            .ok_or_else(|| Error::msg("mariadbd is still not installed after apt-get install"))
    }

    pub(super) fn mariadb_start(&mut self) -> Result<()> {
        let port = self.cfg.mysql_port;
        match self.mariadb_probe() {
            Probe::Ours => {
                say!("mariadb already running on port {port}");
                return self.mariadb_create_database();
            }
            Probe::Foreign(what) => return Err(self.mariadb_foreign(&what)),
            Probe::Down => {}
        }
        if let Some(pid) = self.mariadb_pid() {
            say!("mariadb (pid {pid}) does not answer on port {port}: restarting it");
            self.mariadb_stop()?;
        }
        let server = self.mariadb_server()?;
        let dir = self.cfg.mariadb_dir();
        let data = self.cfg.mariadb_data();
        let log = self.cfg.mariadb_log();
        create_dir(&dir)?;
        if self.root {
            self.prepare_dir_for(OS_USER, &dir)?;
        }
        // Small redo log and buffer pool: the tests' data is tiny.
        let sizes = ["--innodb-log-file-size=8M", "--innodb-buffer-pool-size=32M"];
        if !data.join("mysql").is_dir() {
            let install = find_program("mariadb-install-db").ok_or_else(|| {
                Error::msg("mariadb-install-db is not installed (Debian: mariadb-server)")
            })?;
            say!("mariadb-install-db {}", data.display());
            // `--no-defaults` first: it must be the first option.
            let mut init = Command::new(install);
            init.arg("--no-defaults");
            if self.root {
                init.arg(format!("--user={OS_USER}"));
            }
            init.arg(format!("--datadir={}", data.display()))
                .arg("--skip-test-db")
                .args(sizes)
                .current_dir(&dir);
            let (st, out) = cmd::capture(&mut init)?;
            if !st.success() {
                return Err(Error::msg(format!(
                    "{}; its output ends with:\n{}",
                    Error::failed(&format!("`{}`", cmd::display(&init)), st),
                    super::tail_text(&out, 20)
                )));
            }
        }
        let socket = self.cfg.mariadb_socket();
        say!("starting mariadb on 127.0.0.1:{port} (data {})", data.display());
        // `--no-defaults` first, then the OS user. Durability off: test data.
        let mut mariadbd = Command::new(&server);
        mariadbd.arg("--no-defaults");
        if self.root {
            mariadbd.arg(format!("--user={OS_USER}"));
        }
        mariadbd
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", self.cfg.mariadb_pidfile().display()))
            .arg(format!("--log-error={}", log.display()))
            .args(["--bind-address=127.0.0.1", "--skip-grant-tables", "--skip-name-resolve"])
            .args(["--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0"])
            .args(["--max-connections=400"])
            .args(sizes)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C in the terminal is for us, and
            // the services session stops the server in its own time.
            .process_group(0);
        mariadbd.spawn().map_err(|e| {
            Error::msg(format!("could not start `{}`: {e}", cmd::display(&mariadbd)))
        })?;
        let deadline = Instant::now() + WAIT;
        loop {
            match self.mariadb_probe() {
                Probe::Ours => break,
                // Until it has opened its port, a server starting there is
                // taken for ours: it may answer before it is ready.
                Probe::Down | Probe::Foreign(_) if Instant::now() < deadline => {
                    sleep(Duration::from_millis(100));
                }
                Probe::Foreign(what) => return Err(self.mariadb_foreign(&what)),
                Probe::Down => {
                    return Err(Error::msg(format!(
                        "mariadb did not answer on port {port} within {}s; its log ({}) ends \
                         with:\n{}",
                        WAIT.as_secs(),
                        log.display(),
                        tail(&log, 20)
                    )));
                }
            }
        }
        self.mariadb_create_database()
    }

    fn mariadb_create_database(&self) -> Result<()> {
        let client = find_program("mariadb")
            .ok_or_else(|| Error::msg("the mariadb client is not installed"))?;
        self.mariadb_sql(&client, &format!("CREATE DATABASE IF NOT EXISTS {DATABASE}"))
            .map(drop)
            .map_err(|why| Error::msg(format!("creating the {DATABASE} database failed: {why}")))
    }

    /// SIGTERM (a clean shutdown for mariadbd), SIGKILL if it outlives
    /// [`GRACE`]: its data is test data.
    pub(super) fn mariadb_stop(&self) -> Result<()> {
        let Some(pid) = self.mariadb_pid() else {
            if let Probe::Foreign(what) = self.mariadb_probe() {
                say!("not stopping the server on port {}: {what}", self.cfg.mysql_port);
            }
            return Ok(());
        };
        say!("stopping mariadb on port {} (pid {pid})", self.cfg.mysql_port);
        let data = self.cfg.mariadb_data();
        let data = data.to_string_lossy();
        let alive = || process_has(pid, &["mariadbd", &data]);
        signal(pid, "TERM");
        if !wait_until(GRACE.max(WAIT), || !alive()) {
            say!("mariadb (pid {pid}) still runs after SIGTERM: sending SIGKILL");
            signal(pid, "KILL");
            if !wait_until(Duration::from_secs(5), || !alive()) {
                return Err(Error::msg(format!("mariadb (pid {pid}) survives SIGKILL")));
            }
        }
        let _ = fs::remove_file(self.cfg.mariadb_pidfile());
        Ok(())
    }

    /// Whether it runs and answers, and the two lines of `services status`.
    pub(super) fn mariadb_status(&self) -> (bool, String, String) {
        let (running, line) = match self.mariadb_probe() {
            Probe::Ours => (
                true,
                format!(
                    "running (pid {}), MYSQL_URL={}",
                    self.mariadb_pid().map_or_else(|| "?".into(), |p| p.to_string()),
                    self.cfg.mysql_url()
                ),
            ),
            Probe::Down => match self.mariadb_pid() {
                Some(pid) => (
                    false,
                    format!(
                        "running (pid {pid}) but not answering on port {}; stop it with \
                         `cargo xtask services stop`",
                        self.cfg.mysql_port
                    ),
                ),
                None => (false, "stopped".to_owned()),
            },
            Probe::Foreign(what) => (false, format!("NOT OURS: {}", self.mariadb_foreign(&what))),
        };
        (running, line, format!("data {}", self.cfg.mariadb_data().display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_fall_back_to_the_temporary_directory_when_too_long() {
        let short =
            Config { dir: PathBuf::from("/w/target/services"), ..super::super::tests::config() };
        assert_eq!(short.mariadb_socket(), Path::new("/w/target/services/mariadb/mariadb.sock"));
        let deep = Config { dir: PathBuf::from(format!("/{}", "d".repeat(120))), ..short.clone() };
        let socket = deep.mariadb_socket();
        assert!(socket.starts_with(std::env::temp_dir()), "{}", socket.display());
        assert!(socket.as_os_str().len() <= MAX_SOCKET_PATH);
        assert_eq!(short.mysql_url(), format!("mysql://root@127.0.0.1:{DEFAULT_PORT}/sessions"));
    }
}

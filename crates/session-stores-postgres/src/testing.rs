//! Test support (feature `testing`): a private PostgreSQL cluster that a
//! fault test may kill and start again, which the shared database of a test
//! run must never be.
//!
//! ```no_run
//! use session_stores_postgres::testing::PrivatePostgres;
//!
//! let mut postgres = PrivatePostgres::start_durable();
//! let url = postgres.url();
//! // ... connect a pool to `url`, requests succeed ...
//! postgres.kill();
//! // ... requests fail with `Error::Backend` ...
//! postgres.start_again();
//! // ... and succeed again through the same pool, with every commit kept ...
//! # let _ = url;
//! ```
//!
//! Needs the PostgreSQL server binaries (`initdb`, `pg_ctl`): next to the
//! `pg_ctl` on `PATH`, else Debian's `/usr/lib/postgresql/<version>/bin`.
//! PostgreSQL refuses to run as root, so when the tests run as root the
//! cluster runs as the `postgres` OS user (created if missing). Linux only
//! (it finds the server's processes in `/proc`). Not semver-stable.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The OS user the cluster runs as when the tests run as root.
const OS_USER: &str = "postgres";

/// How long a restart may keep failing (the killed server's processes are
/// still going away) before it is an error.
const RESTART_TIMEOUT: Duration = Duration::from_secs(30);

/// A PostgreSQL cluster of its own (initdb + `pg_ctl` in a temporary
/// directory) on a free port of 127.0.0.1, user `postgres` trusted, database
/// `postgres`. Dropping it kills the server and removes the directory.
///
/// Its methods panic rather than return errors: they set up a test, and a
/// test that cannot start its server can only fail.
#[derive(Debug)]
pub struct PrivatePostgres {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    as_root: bool,
    /// `fsync` and `synchronous_commit` on: a commit survives a crash.
    durable: bool,
    running: bool,
}

impl PrivatePostgres {
    /// Creates a cluster and starts it with `fsync` off: quicker. A commit is
    /// still written to the OS before it returns, so it survives
    /// [`kill`](Self::kill) (a process crash), but it would not survive a
    /// crash of the machine.
    ///
    /// # Panics
    ///
    /// If no port or temporary directory is available, or `initdb` or
    /// `pg_ctl` cannot be found or fail.
    #[must_use]
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Like [`start`](Self::start), but with `fsync`, `synchronous_commit`
    /// and `full_page_writes` on, as a production server: every commit is on
    /// disk before it returns, so it is there after [`kill`](Self::kill) and
    /// [`start_again`](Self::start_again) (which runs crash recovery), as it
    /// would be after a crash of the machine.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    #[must_use]
    pub fn start_durable() -> Self {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sessions-pg-private-")
            .tempdir()
            .unwrap_or_else(|e| panic!("creating a temporary directory: {e}"));
        let as_root = is_root();
        if as_root {
            ensure_os_user();
            run(Command::new("chown").arg("-R").arg(OS_USER).arg(dir.path()));
        }
        let mut cluster =
            Self { dir, bin: pg_bin_dir(), port: free_port(), as_root, durable, running: false };
        let data = cluster.data();
        // `--no-sync`: the empty cluster is not what durability is about, and
        // the server fsyncs its data directory when it starts anyway.
        run(cluster
            .pg("initdb")
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
                "-D",
            ])
            .arg(data));
        cluster.start_again();
        cluster
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port the server listens on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the server again on the same port, after [`kill`](Self::kill),
    /// waiting until it accepts connections (after crash recovery).
    ///
    /// # Panics
    ///
    /// If the server is running, or it does not start within thirty seconds.
    pub fn start_again(&mut self) {
        assert!(!self.running, "the private PostgreSQL is running");
        let durability = if self.durable {
            "-c fsync=on -c synchronous_commit=on -c full_page_writes=on"
        } else {
            "-c fsync=off -c full_page_writes=off"
        };
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} {durability} \
             -c max_connections=40 -c shared_buffers=16MB",
            self.port,
            self.dir.path().display()
        );
        let deadline = Instant::now() + RESTART_TIMEOUT;
        loop {
            let mut start = self.pg("pg_ctl");
            start
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.path().join("server.log"))
                .args(["-w", "-t", "60", "start", "-o", &options]);
            let output = start.output().unwrap_or_else(|e| panic!("running {start:?}: {e}"));
            if output.status.success() {
                break;
            }
            // A killed server's backends may still hold its shared memory for
            // a moment ("pre-existing shared memory block is still in use").
            assert!(
                Instant::now() < deadline,
                "{start:?} failed: {}\n{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        self.running = true;
    }

    /// Kills the server like a crash: SIGKILL to the postmaster and every
    /// process it started, so nothing is flushed or shut down cleanly; waits
    /// until they are gone. Does nothing if it is not running.
    ///
    /// # Panics
    ///
    /// If the server's processes do not go away within thirty seconds.
    pub fn kill(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let Some(postmaster) = self.postmaster_pid() else {
            return;
        };
        // Stopped, the postmaster forks no backend between the listing of its
        // children and their kill.
        signal("STOP", &[postmaster]);
        let mut victims = children_of(postmaster);
        victims.insert(0, postmaster);
        signal("KILL", &victims);
        let deadline = Instant::now() + RESTART_TIMEOUT;
        while victims.iter().any(|&pid| is_alive(pid)) {
            assert!(Instant::now() < deadline, "the killed PostgreSQL processes did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The postmaster's pid: the first line of `postmaster.pid`.
    fn postmaster_pid(&self) -> Option<u32> {
        let lock = std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        lock.lines().next()?.trim().parse().ok()
    }

    /// A command running a PostgreSQL binary as the right OS user.
    fn pg(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_root {
            let mut command = Command::new("runuser");
            command.args(["-u", OS_USER, "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where `pg_ctl` and `initdb` live: next to the `pg_ctl` on `PATH` (resolving
/// Debian's wrapper symlinks), else Debian's default location.
fn pg_bin_dir() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("pg_ctl"))
            .find(|candidate| candidate.is_file())
    });
    if let Some(pg_ctl) = on_path
        && let Ok(real) = std::fs::canonicalize(pg_ctl)
        && let Some(dir) = real.parent()
    {
        return dir.to_owned();
    }
    let debian = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<_> = std::fs::read_dir(debian)
        .unwrap_or_else(|e| {
            panic!(
                "no pg_ctl on PATH and no {}: {e}. Install the PostgreSQL server \
                 (`cargo xtask test` does).",
                debian.display()
            )
        })
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("pg_ctl").is_file())
        .collect();
    versions.sort();
    versions.pop().unwrap_or_else(|| panic!("no PostgreSQL server binaries found"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| out.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// Creates the unprivileged `postgres` OS user if it does not exist.
fn ensure_os_user() {
    let exists = Command::new("id").arg(OS_USER).output().is_ok_and(|out| out.status.success());
    if !exists {
        run(Command::new("useradd").args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            OS_USER,
        ]));
    }
}

/// A free port: port 0 lets the OS pick one; the listener is closed before
/// the server binds it, a race other processes rarely win.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("finding a free port: {e}"))
}

/// The pids whose parent is `parent`, from `/proc/<pid>/stat`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat_fields(pid).is_some_and(|(_, ppid)| ppid == parent))
        .collect()
}

/// The state and parent pid of `pid`: the fields after the command name,
/// which may itself contain spaces and parentheses.
fn stat_fields(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` still runs; a zombie (dead, waiting to be reaped by
/// whoever inherited it) does not.
fn is_alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// Sends `SIG<name>` to `pids` with kill(1); a pid already gone is fine.
fn signal(name: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .args(pids.iter().map(u32::to_string))
        .output()
        .unwrap_or_else(|e| panic!("running kill: {e}"));
}

fn run(command: &mut Command) {
    let output = command.output().unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

//! Test support (feature `testing`): a private `redis-server` that a fault
//! test may kill and start again, which the shared server of a test run must
//! never be.
//!
//! ```no_run
//! use session_stores_redis::RedisStore;
//! use session_stores_redis::testing::PrivateRedis;
//!
//! # fn main() -> Result<(), session_core::Error> {
//! let mut redis = PrivateRedis::start();
//! let store = RedisStore::from_url(&redis.url())?;
//! // ... requests succeed ...
//! redis.kill();
//! // ... requests fail with `Error::Backend` ...
//! redis.start_again();
//! // ... and succeed again through the same store ...
//! # let _ = store;
//! # Ok(()) }
//! ```
//!
//! Needs the `redis-server` binary on `PATH`. Not semver-stable.

use std::io::{Read, Write};

use session_core::StorageKey;

use crate::RedisStore;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a started server has to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` of its own on a free port of 127.0.0.1, with its files in
/// a temporary directory. Dropping it kills the server and removes the
/// directory.
///
/// Its methods panic rather than return errors: they set up a test, and a
/// test that cannot start its server can only fail.
#[derive(Debug)]
pub struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Every write is fsynced to an append-only file, so data survives a kill.
    durable: bool,
    /// The port of the primary this server replicates, if it is a replica.
    replica_of: Option<u16>,
}

impl PrivateRedis {
    /// Starts a server on a free port and waits until it answers. Its data is
    /// lost when it is killed.
    ///
    /// # Panics
    ///
    /// If no port or temporary directory is available, `redis-server` cannot
    /// be run, or it does not answer within ten seconds.
    #[must_use]
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Like [`start`](Self::start), but every write is fsynced to an
    /// append-only file, so the data survives [`kill`](Self::kill) and
    /// [`start_again`](Self::start_again) (as it would a crash of a server
    /// configured that way).
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    #[must_use]
    pub fn start_durable() -> Self {
        Self::start_with(true)
    }

    /// Starts a replica of `primary` (`--replicaof`), not durable. It answers
    /// `PING` at once; the caller waits for `INFO replication` to show the
    /// link up before relying on it.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    #[must_use]
    pub fn start_replica_of(primary: &Self) -> Self {
        Self::start_with_options(false, Some(primary.port))
    }

    fn start_with(durable: bool) -> Self {
        Self::start_with_options(durable, None)
    }

    fn start_with_options(durable: bool, replica_of: Option<u16>) -> Self {
        // Port 0 lets the OS pick a free port; the listener is closed before
        // the server binds it, a race other processes rarely win.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .unwrap_or_else(|e| panic!("finding a free port: {e}"))
            .port();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let mut server = Self { port, dir, child: None, durable, replica_of };
        server.start_again();
        server
    }

    /// `redis://127.0.0.1:<port>/`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port the server listens on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the server again on the same port, after [`kill`](Self::kill):
    /// empty, unless it was started with [`start_durable`](Self::start_durable).
    ///
    /// # Panics
    ///
    /// If the server is running, `redis-server` cannot be run, or it does not
    /// answer within ten seconds.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the private redis-server is running");
        let mut command = Command::new("redis-server");
        if let Some(primary) = self.replica_of {
            command.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
        }
        let child = command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(if self.durable {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "no"]
            })
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}). Run the tests with `cargo xtask test`, \
                     which installs it (or `apt-get install redis-server`)."
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.answers_ping() {
            if Instant::now() > deadline {
                panic!("private redis-server on port {} did not start", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL, like a crash) and waits for it to exit.
    /// Does nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Either can only fail if the process is already gone.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the server answers `PING`, spoken by hand so that this needs
    /// no connection from the pool under test.
    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The name of the key holding the record of `key` in `store`
/// (`<prefix>{<hex>}`), for tests that look at Redis directly.
#[must_use]
pub fn record_key(store: &RedisStore, key: &StorageKey) -> String {
    String::from_utf8_lossy(&store.record_key(key)).into_owned()
}

/// The name of the key holding the lock of `key` (`<prefix>lock:{<hex>}`).
#[must_use]
pub fn lock_key(store: &RedisStore, key: &StorageKey) -> String {
    String::from_utf8_lossy(&store.lock_key(key)).into_owned()
}

/// The name of the key holding `user`'s index (`<prefix>user:{<hex of the
/// user id>}`).
#[must_use]
pub fn index_key(store: &RedisStore, user: &str) -> String {
    String::from_utf8_lossy(&store.index_key(user.as_bytes())).into_owned()
}

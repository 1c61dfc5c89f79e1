//! Helpers shared by the test binaries: the shared Redis from `REDIS_URL`,
//! unique prefixes, and private `redis-server` processes for fault tests.
#![allow(dead_code)] // Each test binary uses a different part.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use session_core::SessionId;
use session_stores_redis::RedisStore;

/// The shared Redis the tests run against.
pub(crate) fn redis_url() -> String {
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "REDIS_URL is not set. Run the tests with `cargo xtask test`, which starts \
             redis-server and sets REDIS_URL (or start one yourself and export REDIS_URL)."
        ),
    }
}

/// A prefix no other test (or earlier run) uses.
pub(crate) fn unique_prefix(label: &str) -> String {
    let random = SessionId::random().storage_key().to_hex();
    format!("test:{label}:{}:", &random[..16])
}

/// A store on the shared Redis with a pool of its own and a fresh prefix.
pub(crate) fn shared_store(label: &str) -> RedisStore {
    RedisStore::from_url(&redis_url())
        .unwrap_or_else(|e| panic!("store: {e}"))
        .with_prefix(unique_prefix(label))
}

/// A plain connection to a Redis, for looking at what the store wrote.
pub(crate) async fn raw_connection(url: &str) -> deadpool_redis::redis::aio::MultiplexedConnection {
    deadpool_redis::redis::Client::open(url)
        .unwrap_or_else(|e| panic!("client: {e}"))
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// A `redis-server` of our own on a free port, in a temporary directory, for
/// tests that stop and start Redis (the shared server is never stopped).
pub(crate) struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Every write is fsynced to an append-only file, so data survives a kill.
    durable: bool,
}

impl PrivateRedis {
    /// Starts a server on a free port and waits until it answers.
    pub(crate) fn start() -> Self {
        Self::start_with(false)
    }

    /// Like [`start`](Self::start), but the data survives [`kill`](Self::kill)
    /// and [`start_again`](Self::start_again).
    pub(crate) fn start_durable() -> Self {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .unwrap_or_else(|e| panic!("finding a free port: {e}"))
            .port();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let mut server = Self { port, dir, child: None, durable };
        server.start_again();
        server
    }

    /// `redis://127.0.0.1:<port>/`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server again on the same port (empty unless durable).
    pub(crate) fn start_again(&mut self) {
        assert!(self.child.is_none(), "the private redis-server is running");
        let child = Command::new("redis-server")
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
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            if Instant::now() > deadline {
                panic!("private redis-server on port {} did not start", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL, like a crash) and waits for it to exit.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

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

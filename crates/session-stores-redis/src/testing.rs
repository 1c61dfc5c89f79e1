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
    /// A Redis Cluster node (see [`PrivateRedisCluster`]).
    cluster_node: bool,
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
        let mut server = Self { port, dir, child: None, durable, replica_of, cluster_node: false };
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
        if self.cluster_node {
            // A short node timeout: a killed primary's replica takes over
            // within about two seconds.
            command
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
                .arg("--cluster-config-file")
                .arg(self.dir.path().join("nodes.conf"));
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

/// A Redis Cluster of its own: three primaries and three replicas, each a
/// [`PrivateRedis`] on a free port, formed with `redis-cli --cluster create`,
/// with a one-second node timeout so that a killed primary's replica takes
/// over within seconds. For failover tests.
///
/// ```no_run
/// use session_stores_redis::RedisStore;
/// use session_stores_redis::testing::PrivateRedisCluster;
///
/// # fn main() -> Result<(), session_core::Error> {
/// let mut cluster = PrivateRedisCluster::start();
/// let store = RedisStore::cluster(cluster.urls())?;
/// let primary = cluster.primaries()[0];
/// cluster.kill(primary); // its replica is promoted
/// cluster.start_again(primary); // it comes back as a replica
/// # let _ = store;
/// # Ok(()) }
/// ```
///
/// Needs `redis-server` and `redis-cli` on `PATH`.
#[derive(Debug)]
pub struct PrivateRedisCluster {
    nodes: Vec<PrivateRedis>,
}

impl PrivateRedisCluster {
    /// Starts six nodes, forms the cluster and waits until every node
    /// reports it healthy.
    ///
    /// # Panics
    ///
    /// If a node cannot start, `redis-cli` cannot form the cluster, or it is
    /// not healthy within thirty seconds.
    #[must_use]
    pub fn start() -> Self {
        let nodes: Vec<PrivateRedis> = (0..6)
            .map(|_| {
                let port = TcpListener::bind("127.0.0.1:0")
                    .and_then(|listener| listener.local_addr())
                    .unwrap_or_else(|e| panic!("finding a free port: {e}"))
                    .port();
                let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
                let mut node = PrivateRedis {
                    port,
                    dir,
                    child: None,
                    durable: false,
                    replica_of: None,
                    cluster_node: true,
                };
                node.start_again();
                node
            })
            .collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(nodes.iter().map(|node| format!("127.0.0.1:{}", node.port)))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}); it comes with redis-server"));
        assert!(status.success(), "redis-cli --cluster create failed: {status}");
        let cluster = Self { nodes };
        cluster.wait_until_healthy(Duration::from_secs(30));
        cluster
    }

    /// `redis://127.0.0.1:<port>/` of every node.
    #[must_use]
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(PrivateRedis::url).collect()
    }

    /// The ports of the running nodes that are primaries now (`ROLE`).
    #[must_use]
    pub fn primaries(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|node| node.child.is_some())
            .filter(|node| query(node.port, "ROLE").is_some_and(|role| role.contains("master")))
            .map(PrivateRedis::port)
            .collect()
    }

    /// Kills the node on `port` (SIGKILL).
    ///
    /// # Panics
    ///
    /// If no node listens on `port`.
    pub fn kill(&mut self, port: u16) {
        self.node(port).kill();
    }

    /// Starts the node on `port` again after [`kill`](Self::kill): it
    /// rejoins from its saved cluster configuration (as a replica, if its
    /// replica was promoted meanwhile).
    ///
    /// # Panics
    ///
    /// As [`PrivateRedis::start_again`].
    pub fn start_again(&mut self, port: u16) {
        self.node(port).start_again();
    }

    /// Waits until every running node reports `cluster_state:ok` and every
    /// replica's link to its primary is up (synced).
    ///
    /// # Panics
    ///
    /// If that takes longer than `timeout`.
    pub fn wait_until_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let healthy = || {
            self.nodes.iter().filter(|node| node.child.is_some()).all(|node| {
                query(node.port, "CLUSTER INFO")
                    .is_some_and(|info| info.contains("cluster_state:ok"))
                    && query(node.port, "INFO replication").is_some_and(|info| {
                        info.contains("role:master") || info.contains("master_link_status:up")
                    })
            })
        };
        while !healthy() {
            assert!(Instant::now() < deadline, "the private Redis Cluster is not healthy");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`).
    ///
    /// # Panics
    ///
    /// If no node answers.
    #[must_use]
    pub fn slot_of(&self, key: &str) -> u16 {
        let reply = self.cli_on_any(&["CLUSTER", "KEYSLOT", key]);
        reply.trim().parse().unwrap_or_else(|_| panic!("CLUSTER KEYSLOT answered {reply:?}"))
    }

    /// The port of the primary that serves `slot` now (`CLUSTER NODES`).
    ///
    /// # Panics
    ///
    /// If no node answers or none serves the slot.
    #[must_use]
    pub fn owner_of(&self, slot: u16) -> u16 {
        let nodes = self.cli_on_any(&["CLUSTER", "NODES"]);
        slot_owner(&nodes, slot).unwrap_or_else(|| panic!("no primary serves slot {slot}"))
    }

    /// Moves `slot` to the primary on port `to`, as `redis-cli --cluster
    /// reshard` does but slowly: the slot is marked migrating, then its keys
    /// move one `MIGRATE` at a time with `pause` before each, then every
    /// primary is told the new owner. Requests meanwhile meet each state a
    /// migration has: `ASK` for keys already moved, `TRYAGAIN` for a script
    /// whose keys are split between the two nodes.
    ///
    /// # Panics
    ///
    /// If a `redis-cli` command fails.
    pub fn migrate_slot(&self, slot: u16, to: u16, pause: Duration) {
        let Some(migration) = self.start_migration(slot, to) else { return };
        loop {
            std::thread::sleep(pause);
            let Some(key) = migration.keys_left().into_iter().next() else { break };
            migration.move_key(&key);
        }
        migration.finish();
    }

    /// Starts moving `slot` to the primary on port `to` (`CLUSTER SETSLOT
    /// ... IMPORTING` there, `MIGRATING` on its owner), for a test that
    /// moves the keys itself; `None` if `to` serves it already.
    ///
    /// # Panics
    ///
    /// If a `redis-cli` command fails.
    #[must_use]
    pub fn start_migration(&self, slot: u16, to: u16) -> Option<SlotMigration<'_>> {
        let from = self.owner_of(slot);
        if from == to {
            return None;
        }
        let slot_arg = slot.to_string();
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        cli_ok(to, &["CLUSTER", "SETSLOT", &slot_arg, "IMPORTING", &from_id]);
        cli_ok(from, &["CLUSTER", "SETSLOT", &slot_arg, "MIGRATING", &to_id]);
        Some(SlotMigration { cluster: self, slot: slot_arg, from, to, to_id })
    }

    fn node_id(&self, port: u16) -> String {
        cli(port, &["CLUSTER", "MYID"]).trim().to_owned()
    }

    fn cli_on_any(&self, args: &[&str]) -> String {
        self.nodes
            .iter()
            .filter(|node| node.child.is_some())
            .find_map(|node| Some(cli(node.port, args)).filter(|reply| !reply.trim().is_empty()))
            .unwrap_or_else(|| panic!("no node of the cluster answered {args:?}"))
    }

    fn node(&mut self, port: u16) -> &mut PrivateRedis {
        self.nodes
            .iter_mut()
            .find(|node| node.port == port)
            .unwrap_or_else(|| panic!("no node of this cluster on port {port}"))
    }
}

/// A slot being moved between two primaries of a [`PrivateRedisCluster`]
/// ([`PrivateRedisCluster::start_migration`]).
#[derive(Debug)]
pub struct SlotMigration<'a> {
    cluster: &'a PrivateRedisCluster,
    slot: String,
    from: u16,
    to: u16,
    to_id: String,
}

impl SlotMigration<'_> {
    /// The keys of the slot still on the old owner.
    #[must_use]
    pub fn keys_left(&self) -> Vec<String> {
        cli(self.from, &["CLUSTER", "GETKEYSINSLOT", &self.slot, "100"])
            .lines()
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Moves one key to the new owner (`MIGRATE`); a key that is gone
    /// meanwhile is fine.
    ///
    /// # Panics
    ///
    /// If `MIGRATE` fails.
    pub fn move_key(&self, key: &str) {
        let to = self.to.to_string();
        let moved = cli(self.from, &["MIGRATE", "127.0.0.1", &to, "", "0", "5000", "KEYS", key]);
        // NOKEY: the key expired or was deleted since it was listed.
        assert!(matches!(moved.trim(), "OK" | "NOKEY"), "MIGRATE {key} answered {moved:?}");
    }

    /// Moves the keys left, then hands the slot to the new owner on every
    /// primary (`CLUSTER SETSLOT ... NODE`).
    ///
    /// # Panics
    ///
    /// If a `redis-cli` command fails.
    pub fn finish(self) {
        for key in self.keys_left() {
            self.move_key(&key);
        }
        let slot = self.slot.as_str();
        cli_ok(self.to, &["CLUSTER", "SETSLOT", slot, "NODE", &self.to_id]);
        cli_ok(self.from, &["CLUSTER", "SETSLOT", slot, "NODE", &self.to_id]);
        for primary in self.cluster.primaries() {
            if primary != self.from && primary != self.to {
                cli_ok(primary, &["CLUSTER", "SETSLOT", slot, "NODE", &self.to_id]);
            }
        }
    }
}

/// `redis-cli -p <port> <args>`: its output, without the type annotations
/// of a terminal (stdout is a pipe).
fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}); it comes with redis-server"));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// [`cli`] for a command that answers `OK`.
fn cli_ok(port: u16, args: &[&str]) {
    let reply = cli(port, args);
    assert_eq!(reply.trim(), "OK", "redis-cli -p {port} {args:?}");
}

/// The port of the primary that serves `slot` in a `CLUSTER NODES` reply
/// (`<id> <host:port@bus> <flags> <primary> <ping> <pong> <epoch> <link>
/// <slot or range>...`; ranges `a-b`, migration marks `[a->-id]` skipped).
fn slot_owner(nodes: &str, slot: u16) -> Option<u16> {
    nodes.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 9 || !fields[2].contains("master") {
            return None;
        }
        let serves = fields[8..].iter().filter(|range| !range.starts_with('[')).any(|range| {
            let (first, last) = range.split_once('-').unwrap_or((range, range));
            matches!((first.parse::<u16>(), last.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
        });
        let port = fields[1].split('@').next()?.rsplit_once(':')?.1;
        if serves { port.parse().ok() } else { None }
    })
}

/// One inline command to a node, its whole reply as text; `None` if the node
/// does not answer. Spoken by hand, like `answers_ping`, so that it needs no
/// connection from the pool under test.
fn query(port: u16, command: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    // Replies here are small: one read, then whatever follows at once.
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                reply.extend_from_slice(&chunk[..n]);
                stream.set_read_timeout(Some(Duration::from_millis(20))).ok()?;
            }
            Err(_) if !reply.is_empty() => break,
            Err(_) => return None,
        }
    }
    Some(String::from_utf8_lossy(&reply).into_owned())
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

/// How many lock requests `store` (and its clones) sent to Redis so far:
/// for tests that check waiters do not poll.
#[must_use]
pub fn lock_attempts(store: &RedisStore) -> u64 {
    store.locks.attempts.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether `store` has opened its release-notice connection (see
/// [`RedisStore::with_release_notices`]): once a waiter needed it, it stays
/// open while the store lives, driven by two tasks (the subscriber and the
/// connection's own); for tests that count a process's connections and
/// tasks.
#[must_use]
pub fn release_notices_open(store: &RedisStore) -> bool {
    store.wakeups.as_ref().is_some_and(|wakeups| wakeups.is_open())
}

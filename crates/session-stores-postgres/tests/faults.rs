//! hostile-input row 22: PostgreSQL goes away mid-run and comes back.
//!
//! Runs its own private cluster (initdb + pg_ctl in a temporary directory on a
//! free port, as the unprivileged `postgres` OS user when running as root),
//! so stopping it disturbs no one else. Needs the PostgreSQL server binaries
//! (`cargo xtask test` installs them).

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use session_core::{
    Error, ExpiryPolicy, LockOptions, LockingStore, SessionId, SessionStore, Timestamp,
};
use session_stores_postgres::{PgPoolOptions, PostgresStore};
use tempfile::TempDir;

const OS_USER: &str = "postgres";

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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("finding a free port: {e}"))
}

/// A throwaway PostgreSQL cluster, stopped and deleted on drop.
struct PrivatePostgres {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    as_root: bool,
}

impl PrivatePostgres {
    fn init() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sessions-pg-fault-")
            .tempdir()
            .unwrap_or_else(|e| panic!("creating a temporary directory: {e}"));
        let as_root = is_root();
        if as_root {
            // PostgreSQL refuses to run as root: hand it to the `postgres` user.
            let exists =
                Command::new("id").arg(OS_USER).output().is_ok_and(|out| out.status.success());
            if !exists {
                run(Command::new("useradd").args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    OS_USER,
                ]));
            }
            run(Command::new("chown").arg("-R").arg(OS_USER).arg(dir.path()));
        }
        let cluster = Self { dir, bin: pg_bin_dir(), port: free_port(), as_root };
        let data = cluster.data();
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
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
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

    fn start(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c full_page_writes=off \
             -c max_connections=20 -c shared_buffers=16MB",
            self.port,
            self.dir.path().display()
        );
        run(self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "60", "start", "-o", &options]));
    }

    /// Stops the server the hard way (like a crash): clients are cut off.
    fn kill(&self) {
        run(self.pg("pg_ctl").arg("-D").arg(self.data()).args(["-m", "immediate", "-w", "stop"]));
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
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

fn assert_unavailable<T: std::fmt::Debug>(what: &str, result: Result<T, Error>) {
    match result {
        Err(Error::Backend { store, .. }) => assert_eq!(store, "postgres", "{what}"),
        other => panic!("{what} with the database down: expected Error::Backend, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_fails_cleanly_while_postgres_is_down_and_recovers_after() {
    let cluster = tokio::task::spawn_blocking(|| {
        let cluster = PrivatePostgres::init();
        cluster.start();
        cluster
    })
    .await
    .unwrap();

    let pool = PgPoolOptions::new()
        .max_connections(3)
        .acquire_timeout(Duration::from_millis(500))
        .connect(&cluster.url())
        .await
        .unwrap();
    let store = PostgresStore::new(pool).with_table_name(&common::random_plain_table()).unwrap();
    store.migrate().await.unwrap();

    let now = Timestamp::now();
    let policy = ExpiryPolicy::default();
    let mut record = policy.new_record(SessionId::random().storage_key(), now);
    record.data.insert("kept", "yes").unwrap();
    store.create(&record).await.unwrap();
    let options =
        LockOptions { lease: Duration::from_secs(30), wait_timeout: Duration::from_secs(10) };
    // A lock held across the outage: its connection dies with the server.
    let held = store.lock(&record.key, options).await.unwrap();

    cluster.kill();

    assert_unavailable("load", store.load(&record.key, now).await);
    assert_unavailable("save", store.save(&record).await);
    assert_unavailable("touch", store.touch(&record).await);
    assert_unavailable("delete", store.delete(&record.key).await);
    let fresh = policy.new_record(SessionId::random().storage_key(), now);
    assert_unavailable("create", store.create(&fresh).await);
    assert_unavailable("delete_expired", store.delete_expired(now).await);
    assert_unavailable("list_for_user", store.list_for_user("u", now).await);
    assert_unavailable("lock", store.lock(&fresh.key, options).await);
    assert_unavailable("migrate", store.migrate().await);
    assert_unavailable("release of a lock whose server died", held.release().await);

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start();
        cluster
    })
    .await
    .unwrap();

    // The same store and pool work again, and nothing was lost.
    let loaded = store.load(&record.key, now).await.unwrap().unwrap();
    assert_eq!(loaded.data.get::<String>("kept").unwrap().as_deref(), Some("yes"));
    let guard = store.lock(&record.key, options).await.unwrap();
    guard.release().await.unwrap();
    store.save(&loaded).await.unwrap();
    store.create(&fresh).await.unwrap();
    drop(cluster);
}

//! Several stores on one directory: instances in one process stand for
//! processes, and one test uses a real second process.
#![allow(clippy::expect_used)] // Test helpers outside #[test] functions.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{record, short_wait};
use session_core::testing::{DynStore, concurrent_increments};
use session_core::{
    Error, LockOptions, LockingStore, SessionId, SessionStore, StorageKey, Timestamp,
};
use session_stores_fs::FsStore;

fn long_wait() -> LockOptions {
    LockOptions { lease: Duration::from_secs(30), wait_timeout: Duration::from_secs(20) }
}

/// Row 25 across "processes": 100 increments under the lock, spread over two
/// stores on one directory, end at 100.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_do_not_lose_updates() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let a: DynStore = Arc::new(FsStore::new(&dir).expect("store a"));
    let b: DynStore = Arc::new(FsStore::new(&dir).expect("store b"));
    concurrent_increments(&[a, b], 100).await;
}

/// A lock taken through one instance excludes the other; released, it can
/// be taken by the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_excludes_other_instances() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let a = FsStore::new(&dir).expect("store a");
    let b = FsStore::new(&dir).expect("store b");
    let key = SessionId::random().storage_key();

    let held = a.lock(&key, long_wait()).await.expect("lock through a");
    match b.lock(&key, short_wait()).await {
        Err(Error::LockTimeout { waited }) => assert!(waited >= Duration::from_millis(200)),
        other => panic!("b must time out while a holds the lock, got {other:?}"),
    }
    held.release().await.expect("release");
    let again = b.lock(&key, short_wait()).await.expect("lock through b");
    again.release().await.expect("release");
}

/// Save racing delete, from two instances: once the delete has returned, the
/// session stays gone; every save either ran before it or got `NotFound`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn save_racing_delete_never_resurrects() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let a = Arc::new(FsStore::new(&dir).expect("store a"));
    let b = FsStore::new(&dir).expect("store b");
    let now = Timestamp::now();

    for _ in 0..20 {
        let mut record = record(now);
        record.user = Some("racer".to_owned());
        b.create(&record).await.expect("create");
        let mut writers = Vec::new();
        for writer in 0..4_u64 {
            let store = Arc::clone(&a);
            let mut record = record.clone();
            writers.push(tokio::spawn(async move {
                for round in 0..10_u64 {
                    record.version = writer * 100 + round;
                    match store.save(&record).await {
                        Ok(()) => {}
                        Err(Error::NotFound) => return,
                        Err(other) => panic!("save failed: {other}"),
                    }
                }
            }));
        }
        tokio::task::yield_now().await;
        b.delete(&record.key).await.expect("delete");
        for writer in writers {
            writer.await.expect("writer task");
        }
        assert!(
            a.load(&record.key, now).await.expect("load").is_none(),
            "a save after the delete resurrected the session"
        );
    }
    assert!(
        a.list_for_user("racer", now).await.expect("list").is_empty(),
        "no session of the racer survived"
    );
}

/// Set in the child process of [`lock_excludes_other_process_and_dies_with_it`]:
/// `<store dir>|<storage key hex>`.
const CHILD_ENV: &str = "SESSION_STORES_FS_LOCK_CHILD";

/// A real second process holding the lock excludes this one; when that
/// process is killed, the OS releases its lock (no lease needed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_excludes_other_process_and_dies_with_it() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        lock_child(&spec).await;
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let store = FsStore::new(&dir).expect("store");
    let key = SessionId::random().storage_key();

    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "lock_excludes_other_process_and_dies_with_it",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{}|{}", dir.display(), key.to_hex()))
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().expect("child stdout");
    let locked = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("child: locked"))
    })
    .await
    .expect("read child output");
    assert!(locked, "the child took the lock");

    let outcome = store.lock(&key, short_wait()).await;
    let child_was_running = child.try_wait().expect("child status").is_none();
    assert!(child_was_running, "the child held the lock until killed");
    assert!(
        matches!(outcome, Err(Error::LockTimeout { .. })),
        "the lock held by another process must exclude us, got {outcome:?}"
    );

    child.kill().expect("kill the child");
    child.wait().expect("reap the child");
    let guard = store.lock(&key, long_wait()).await.expect("the dead process's lock is gone");
    guard.release().await.expect("release");
}

async fn lock_child(spec: &str) {
    let (dir, hex) = spec.split_once('|').expect("child spec");
    let key: StorageKey = hex.parse().expect("storage key");
    let store = FsStore::new(dir).expect("open store in child");
    let _guard = store.lock(&key, long_wait()).await.expect("child lock");
    println!("child: locked");
    // Held until the parent kills us; bounded in case the parent died.
    std::thread::sleep(Duration::from_secs(60));
}

/// A waiter for a lock another process holds waits in the operating
/// system's lock queue, not by polling: `/proc/locks` shows its `flock`
/// blocked on the lock file (a poller never shows there), and the holder's
/// release wakes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_blocks_in_the_system_lock_queue_until_the_release() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let holder = FsStore::new(&dir).expect("store a");
    let waiter = FsStore::new(&dir).expect("store b");
    let key = SessionId::random().storage_key();
    let held = holder.lock(&key, long_wait()).await.expect("lock");
    let waiting = tokio::spawn(async move { waiter.lock(&key, long_wait()).await });
    let lock_file = dir.join("locks").join(format!("{}.lock", key.to_hex()));
    let inode = std::fs::metadata(&lock_file).expect("the lock file").ino();
    let mut queued = false;
    for _ in 0..200 {
        let locks = std::fs::read_to_string("/proc/locks").expect("/proc/locks");
        if locks.lines().any(|line| line.contains("->") && line.contains(&format!(":{inode} "))) {
            queued = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(queued, "the waiter never blocked in the system's lock queue");
    assert!(!waiting.is_finished());
    held.release().await.expect("release");
    let taken = waiting.await.expect("joined").unwrap_or_else(|e| panic!("not woken: {e}"));
    taken.release().await.expect("release");
}

//! The directory layout: modes, refusing shared directories, lock file
//! lifecycle, and the cleanup of expired sessions and leftovers.

mod common;

use std::fs::{self, File};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{record, session_file};
use session_core::{
    Clock, Error, LockOptions, LockingStore, ManualClock, SessionId, SessionStore, StorageKey,
    Timestamp,
};
use session_stores_fs::{FsStore, SpawnCleanup};
use sha2::{Digest, Sha256};

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn lock_file(store: &FsStore, key: &StorageKey) -> PathBuf {
    store.dir().join("locks").join(format!("{}.lock", key.to_hex()))
}

fn user_dir(store: &FsStore, user: &str) -> PathBuf {
    let hash: String = Sha256::digest(user.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    store.dir().join("users").join(hash)
}

fn options(wait: Duration) -> LockOptions {
    LockOptions { lease: Duration::from_secs(30), wait_timeout: wait }
}

fn set_mtime(path: &Path, ago: Duration) {
    let when = SystemTime::now() - ago;
    File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(when))
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", path.display()));
}

fn backend_message(result: Result<FsStore, Error>) -> String {
    match result {
        Err(error @ Error::Backend { store: "fs", .. }) => error.to_string(),
        other => panic!("expected an fs backend error, got {other:?}"),
    }
}

/// Directories are 0700 and files 0600, whatever the layout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_are_0700_and_files_0600() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("nested").join("store");
    let store = FsStore::new(&root).expect("open store");
    assert_eq!(store.dir(), root);
    for dir in [&root, &root.join("sessions"), &root.join("locks"), &root.join("users")] {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
    }

    let now = Timestamp::now();
    let mut record = record(now);
    record.user = Some("alice".to_owned());
    store.create(&record).await.expect("create");
    record.version += 1;
    store.save(&record).await.expect("save");
    let guard = store.lock(&record.key, options(Duration::from_secs(5))).await.expect("lock");

    assert_eq!(mode(&session_file(&store, &record.key)), 0o600);
    assert_eq!(mode(&lock_file(&store, &record.key)), 0o600);
    let alice = user_dir(&store, "alice");
    assert_eq!(mode(&alice), 0o700);
    assert_eq!(mode(&alice.join(record.key.to_hex())), 0o600);
    guard.release().await.expect("release");

    // Reopening an existing, private directory works.
    FsStore::new(&root).expect("reopen");
}

/// An existing directory that group or others can access is refused.
#[test]
fn shared_directories_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");

    for bad_mode in [0o755, 0o750, 0o701, 0o707] {
        let dir = tmp.path().join(format!("root-{bad_mode:o}"));
        fs::create_dir(&dir).expect("mkdir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(bad_mode)).expect("chmod");
        let message = backend_message(FsStore::new(&dir));
        assert!(message.contains("chmod 700"), "{message}");
        assert!(!dir.join("sessions").exists(), "nothing is created in a refused directory");
    }

    // A shared subdirectory is refused too.
    let dir = tmp.path().join("sub");
    FsStore::new(&dir).expect("open");
    fs::set_permissions(dir.join("locks"), fs::Permissions::from_mode(0o770)).expect("chmod");
    let message = backend_message(FsStore::new(&dir));
    assert!(message.contains("locks"), "{message}");

    // A file, or a symlinked subdirectory, is not a store directory.
    let file = tmp.path().join("file");
    fs::write(&file, b"").expect("write");
    assert!(backend_message(FsStore::new(&file)).contains("not a directory"));

    let dir = tmp.path().join("linked");
    fs::create_dir(&dir).expect("mkdir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod");
    let elsewhere = tmp.path().join("elsewhere");
    fs::create_dir(&elsewhere).expect("mkdir");
    fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o700)).expect("chmod");
    symlink(&elsewhere, dir.join("sessions")).expect("symlink");
    assert!(backend_message(FsStore::new(&dir)).contains("not a directory"));
}

/// Lock files go away when their session does, without ever letting two
/// holders in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lock_files_are_removed_safely() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = FsStore::new(tmp.path().join("store")).expect("open store");
    let now = Timestamp::now();
    let short = options(Duration::from_millis(100));
    let long = options(Duration::from_secs(20));

    // No session: the lock file goes with the release.
    let key = SessionId::random().storage_key();
    let guard = store.lock(&key, short).await.expect("lock");
    assert!(lock_file(&store, &key).exists());
    guard.release().await.expect("release");
    assert!(!lock_file(&store, &key).exists(), "released lock of no session");

    // A live session keeps its lock file; delete removes it.
    let record = record(now);
    store.create(&record).await.expect("create");
    store.lock(&record.key, short).await.expect("lock").release().await.expect("release");
    assert!(lock_file(&store, &record.key).exists(), "live session");
    store.delete(&record.key).await.expect("delete");
    assert!(!lock_file(&store, &record.key).exists(), "deleted session");

    // Delete under the lock (logout inside `lock()`): the held file stays
    // until the release.
    let record = self::record(now);
    store.create(&record).await.expect("create");
    let guard = store.lock(&record.key, short).await.expect("lock");
    store.delete(&record.key).await.expect("delete under the lock");
    assert!(lock_file(&store, &record.key).exists(), "held lock file kept");
    assert!(
        matches!(store.lock(&record.key, short).await, Err(Error::LockTimeout { .. })),
        "still locked after delete"
    );
    guard.release().await.expect("release");
    assert!(!lock_file(&store, &record.key).exists());

    // A waiter whose file is removed under it reopens, and the lock stays
    // exclusive: while it holds the new file, nobody else gets in.
    let key = SessionId::random().storage_key();
    let first = store.lock(&key, short).await.expect("first");
    let waiter_store = store.clone();
    let waiter = tokio::spawn(async move { waiter_store.lock(&key, long).await });
    // Let the waiter open the old file (not a timing assertion: either order
    // must end with the waiter holding the lock).
    tokio::time::sleep(Duration::from_millis(50)).await;
    first.release().await.expect("release first");
    let second = waiter.await.expect("waiter task").expect("waiter locks");
    assert!(lock_file(&store, &key).exists(), "the waiter's file is in place");
    assert!(
        matches!(store.lock(&key, short).await, Err(Error::LockTimeout { .. })),
        "the waiter holds the lock alone"
    );
    second.release().await.expect("release second");
}

/// `delete_expired` in small batches removes exactly the expired sessions,
/// their index markers, and the leftovers; nothing live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_removes_expired_and_leftovers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = FsStore::new(tmp.path().join("store")).expect("open store").with_scan_batch(3);
    let now = Timestamp::now();
    let sessions = store.dir().join("sessions");

    let mut expired = Vec::new();
    for i in 0..10 {
        let mut record = record(now - Duration::from_secs(1000));
        record.user = (i % 2 == 0).then(|| "carol".to_owned());
        store.create(&record).await.expect("create expired");
        expired.push(record);
    }
    let mut live = Vec::new();
    for i in 0..5 {
        let mut record = record(now);
        record.user = (i % 2 == 0).then(|| "carol".to_owned());
        store.create(&record).await.expect("create live");
        store
            .lock(&record.key, options(Duration::from_secs(5)))
            .await
            .expect("lock")
            .release()
            .await
            .expect("release");
        live.push(record);
    }

    // Leftovers of crashes.
    let old_temp = sessions.join(".aaaa.1.0.tmp");
    let new_temp = sessions.join(".bbbb.1.1.tmp");
    let unknown = sessions.join("README");
    for path in [&old_temp, &new_temp, &unknown] {
        fs::write(path, b"{").expect("write");
    }
    set_mtime(&old_temp, Duration::from_secs(3600));
    let orphan_lock = lock_file(&store, &SessionId::random().storage_key());
    fs::write(&orphan_lock, b"").expect("write");
    let held_key = SessionId::random().storage_key();
    let held = store.lock(&held_key, options(Duration::from_secs(5))).await.expect("held lock");

    let carol = user_dir(&store, "carol");
    let old_marker = carol.join(SessionId::random().storage_key().to_hex());
    let new_marker = carol.join(SessionId::random().storage_key().to_hex());
    fs::write(&old_marker, b"").expect("write");
    fs::write(&new_marker, b"").expect("write");
    set_mtime(&old_marker, Duration::from_secs(3600));
    // A marker naming a live session of someone else: stale at any age.
    let wrong_user = carol.join(live[1].key.to_hex());
    fs::write(&wrong_user, b"").expect("write");
    let dave = user_dir(&store, "dave");
    let mut daves = record(now - Duration::from_secs(1000));
    daves.user = Some("dave".to_owned());
    store.create(&daves).await.expect("create dave");

    let removed = store.delete_expired(now).await.expect("delete_expired");
    assert_eq!(removed, 11, "the ten expired sessions and dave's");

    for record in expired.iter().chain([&daves]) {
        assert!(!session_file(&store, &record.key).exists());
        assert!(!lock_file(&store, &record.key).exists());
        if record.user.is_some() {
            assert!(!carol.join(record.key.to_hex()).exists(), "marker removed");
        }
    }
    for record in &live {
        assert!(store.load(&record.key, now).await.expect("load").is_some());
        assert!(lock_file(&store, &record.key).exists(), "live lock file kept");
    }
    let listed = store.list_for_user("carol", now).await.expect("list");
    assert_eq!(listed.len(), 3);

    assert!(!old_temp.exists(), "old temporary file removed");
    assert!(new_temp.exists(), "a recent temporary file may be in use");
    assert!(unknown.exists(), "foreign files are left alone");
    assert!(!orphan_lock.exists(), "orphaned lock file removed");
    assert!(lock_file(&store, &held_key).exists(), "held lock file kept");
    assert!(!old_marker.exists(), "old marker of no session removed");
    assert!(new_marker.exists(), "a recent marker may be a create in progress");
    assert!(!wrong_user.exists(), "marker of another user's session removed");
    assert!(!dave.exists(), "empty user directory removed");
    held.release().await.expect("release");

    // Nothing left to do.
    assert_eq!(store.delete_expired(now).await.expect("again"), 0);

    // The index works again after its directory was removed.
    let mut back = record(now);
    back.user = Some("dave".to_owned());
    store.create(&back).await.expect("create");
    assert_eq!(store.list_for_user("dave", now).await.expect("list").len(), 1);
}

/// The cleanup task runs `delete_expired` until stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_task_runs_until_stopped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = FsStore::new(tmp.path().join("store")).expect("open store");
    let clock = ManualClock::starting_now();
    let record = record(clock.now());
    store.create(&record).await.expect("create");
    let path = session_file(&store, &record.key);

    let cleanup = store.spawn_cleanup_with_clock(Duration::from_millis(5), Arc::new(clock.clone()));
    clock.advance(Duration::from_secs(600));
    // Bounded wait for a pass: no timing assertion, just a cap.
    for _ in 0..2000 {
        if !path.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!path.exists(), "the cleanup task removed the expired session");
    cleanup.stop().await;

    let late = self::record(Timestamp::from_unix_seconds(0));
    store.create(&late).await.expect("create");
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(session_file(&store, &late.key).exists(), "a stopped task removes nothing");
}

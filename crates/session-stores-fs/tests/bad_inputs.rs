//! The hostile-input catalogue (`docs/hostile-inputs.md`), store level, for the filesystem
//! store: where each row that a store answers for is tested, and the checks
//! only this store can make. Two stores on one directory stand for two
//! processes (`processes.rs` runs a real second process).
//!
//! | row | here |
//! |-----|------|
//! | 1-4, 6, 20-22, 27 | the layer: `session-axum/tests/bad_inputs.rs` (file names come from hashed keys only) |
//! | 5 | `conformance::row05_unknown_key_is_not_created` (`session_core::testing`); below: no file is left behind |
//! | 7, 8 | `conformance::row07_*`, `conformance::row08_*`: hostile user ids in the per-user index; below: nothing is created outside the store |
//! | 9-18 | cookie formats only |
//! | 19 | corrupt or truncated files; symlinks and FIFOs in place of session files |
//! | 22 | not applicable: no server (a failing disk is row 24) |
//! | 23 | `conformance::row23_held_lock_times_out_elsewhere`: a lock held by another store on the directory |
//! | 24 | `row24_failed_write_keeps_old_file` |
//! | 25, 26, 28 | `conformance::row25_*`, `row26_*`, `row28_*`, and through the layer |
#![allow(clippy::expect_used)] // Test helpers outside #[test] functions.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{open, record, session_file, two_stores};
use session_core::testing;
use session_core::{
    Error, LockOptions, LockingStore, SessionId, SessionStore, StorageKey, Timestamp,
};
use session_stores_fs::FsStore;

fn session_dir_names(store: &FsStore) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(store.dir().join("sessions"))
        .expect("read sessions dir")
        .map(|entry| entry.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    names
}

/// The names directly in `dir`.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Row 19: a corrupt or truncated file is an absent session, logged; its
/// neighbours, the index and the cleanup carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row19_corrupt_files_are_absent_and_local() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let now = Timestamp::now();
    let user = format!("user-{}", &SessionId::random().storage_key().to_hex()[..12]);

    let mut neighbour = record(now);
    neighbour.user = Some(user.clone());
    neighbour.data.insert("keep", "me").expect("insert");
    store.create(&neighbour).await.expect("create neighbour");
    let neighbour_bytes = fs::read(session_file(&store, &neighbour.key)).expect("read");

    let truncated = |bytes: &[u8]| bytes[..bytes.len() / 2].to_vec();
    let corruptions: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", truncated(&neighbour_bytes)),
        ("empty", Vec::new()),
        ("not utf-8", vec![0xff, 0xfe, 0x00, 0x80]),
        ("json null", b"null".to_vec()),
        ("wrong shape", br#"{"key": 1, "data": []}"#.to_vec()),
        // A valid record, but of another session: copied files do not load.
        ("another key", neighbour_bytes.clone()),
    ];
    for (what, bytes) in corruptions {
        let mut victim = record(now);
        victim.user = Some(user.clone());
        store.create(&victim).await.expect("create victim");
        let path = session_file(&store, &victim.key);
        fs::write(&path, &bytes).expect("corrupt the file");

        assert!(
            store.load(&victim.key, now).await.expect("load").is_none(),
            "{what}: corrupt file loads as absent"
        );
        let listed = store.list_for_user(&user, now).await.expect("list");
        assert_eq!(listed.len(), 1, "{what}: only the neighbour is listed");
        assert_eq!(listed[0].key, neighbour.key);

        // Absent means absent for writes too; nothing is overwritten.
        victim.version += 1;
        assert!(
            matches!(store.save(&victim).await, Err(Error::NotFound)),
            "{what}: save of a corrupt session is NotFound"
        );
        assert!(
            matches!(store.touch(&victim).await, Err(Error::NotFound)),
            "{what}: touch of a corrupt session is NotFound"
        );
        assert_eq!(fs::read(&path).expect("read"), bytes, "{what}: untouched");

        // The cleanup skips it without failing, and leaves it for inspection.
        store
            .delete_expired(now + Duration::from_secs(1))
            .await
            .expect("delete_expired with a corrupt file");
        assert!(path.exists(), "{what}: cleanup leaves corrupt files alone");

        // delete removes it.
        store.delete(&victim.key).await.expect("delete corrupt");
        assert!(!path.exists(), "{what}: delete removes the corrupt file");
    }

    let loaded = store
        .load(&neighbour.key, now)
        .await
        .expect("load neighbour")
        .expect("neighbour still there");
    assert_eq!(loaded.data.get::<String>("keep").expect("get"), Some("me".to_owned()));
    assert_eq!(
        fs::read(session_file(&store, &neighbour.key)).expect("read"),
        neighbour_bytes,
        "the neighbour's file is byte-for-byte unchanged"
    );
}

/// Set in the child process of [`row24_failed_write_keeps_old_file`]:
/// `<store dir>|<storage key hex>`.
const CHILD_ENV: &str = "SESSION_STORES_FS_FAILED_WRITE_CHILD";

/// Row 24: a write that fails half way (the disk is "full") leaves the old
/// session file intact, byte for byte, and no temporary file behind.
///
/// Tests run as root, which ignores permission bits, so the failure comes
/// from `RLIMIT_FSIZE` instead: this test re-runs itself in a child process
/// under `ulimit -f 16` (8 KiB with dash, 16 KiB with bash) with `SIGXFSZ`
/// ignored, where writing a 200 KB session makes `write(2)` fail with `EFBIG`
/// after a partial write, exactly like `ENOSPC` on a full disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row24_failed_write_keeps_old_file() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        failed_write_child(&spec).await;
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let now = Timestamp::now();
    let mut record = record(now);
    record.data.insert("old", "data").expect("insert");
    store.create(&record).await.expect("create");
    record.version += 1;
    store.save(&record).await.expect("save");
    let path = session_file(&store, &record.key);
    let before = fs::read(&path).expect("read old file");
    assert!(before.len() < 4096, "the old file fits under the limit");

    let exe = std::env::current_exe().expect("test binary");
    let output = Command::new("sh")
        .arg("-c")
        .arg(r#"trap '' XFSZ; ulimit -f 16 && exec "$0" "$@""#)
        .arg(exe)
        .args(["row24_failed_write_keeps_old_file", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{}|{}", store.dir().display(), record.key.to_hex()))
        .output()
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("child output:\n{stdout}");
    assert!(output.status.success(), "child failed: {}\n{stdout}\n{stderr}", output.status);
    assert!(
        stdout.contains("child: save failed: fs store: write"),
        "the child's save failed while writing: {stdout}"
    );

    assert_eq!(
        fs::read(&path).expect("read after"),
        before,
        "the old file is intact, byte for byte"
    );
    assert_eq!(
        session_dir_names(&store),
        vec![format!("{}.json", record.key.to_hex())],
        "the partial temporary file was removed"
    );
    let loaded = store.load(&record.key, now).await.expect("load").expect("still there");
    assert_eq!(loaded.data.get::<String>("old").expect("get"), Some("data".to_owned()));
    assert_eq!(loaded.version, 1);

    // Without the limit the same save works: the limit was the only problem.
    record.data.insert("big", "x".repeat(200_000)).expect("insert");
    record.version += 1;
    store.save(&record).await.expect("save without the limit");
}

async fn failed_write_child(spec: &str) {
    let (dir, hex) = spec.split_once('|').expect("child spec");
    let key: StorageKey = hex.parse().expect("storage key");
    let store = FsStore::new(dir).expect("open store in child");
    let now = Timestamp::now();
    let mut record = store.load(&key, now).await.expect("load in child").expect("session exists");
    record.data.insert("big", "x".repeat(200_000)).expect("insert");
    record.version += 1;
    match store.save(&record).await {
        Err(error @ Error::Backend { store: "fs", .. }) => {
            println!("child: save failed: {error}");
        }
        other => panic!("the save under the file size limit must fail, got {other:?}"),
    }
}

/// A session file replaced by a symlink is never followed: it loads as
/// absent, and no operation reads or writes the link's target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row19_symlinked_session_file_is_not_followed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let now = Timestamp::now();

    // The target: a valid record of this very session, so following the
    // link would "work".
    let mut record = record(now);
    record.data.insert("secret", "outside").expect("insert");
    store.create(&record).await.expect("create");
    let path = session_file(&store, &record.key);
    let target = tmp.path().join("target.json");
    fs::rename(&path, &target).expect("move the file out");
    symlink(&target, &path).expect("symlink in its place");
    let target_bytes = fs::read(&target).expect("read target");

    assert!(
        store.load(&record.key, now).await.expect("load").is_none(),
        "a symlinked session loads as absent"
    );
    record.data.insert("secret", "overwritten").expect("insert");
    record.version += 1;
    assert!(matches!(store.save(&record).await, Err(Error::NotFound)));
    assert!(matches!(store.touch(&record).await, Err(Error::NotFound)));
    assert!(
        matches!(store.create(&record).await, Err(Error::IdCollision)),
        "create sees the name as taken"
    );
    assert_eq!(fs::read(&target).expect("read"), target_bytes, "target untouched");
    assert!(fs::symlink_metadata(&path).expect("lstat").is_symlink(), "the link is still a link");

    store.delete(&record.key).await.expect("delete");
    assert!(fs::symlink_metadata(&path).is_err(), "delete removed the link");
    assert_eq!(fs::read(&target).expect("read"), target_bytes, "not its target");

    // A dangling link: create must not create the file it points to.
    let other = self::record(now);
    let nowhere = tmp.path().join("nowhere.json");
    symlink(&nowhere, session_file(&store, &other.key)).expect("dangling symlink");
    assert!(matches!(store.create(&other).await, Err(Error::IdCollision)));
    assert!(!nowhere.exists(), "the dangling link's target was not created");

    // A symlinked lock file is refused rather than followed.
    let locked = self::record(now);
    let lock_target = tmp.path().join("lock-target");
    fs::write(&lock_target, b"do not touch").expect("write");
    symlink(&lock_target, store.dir().join("locks").join(format!("{}.lock", locked.key.to_hex())))
        .expect("symlink lock");
    let options =
        LockOptions { lease: Duration::from_secs(30), wait_timeout: Duration::from_millis(100) };
    match store.lock(&locked.key, options).await {
        Err(Error::Backend { store: "fs", .. }) => {}
        other => panic!("a symlinked lock file must be refused, got {other:?}"),
    }
    assert_eq!(fs::read(&lock_target).expect("read"), b"do not touch");
}

/// A FIFO in place of a session file does not hang the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row19_fifo_session_file_does_not_block() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let now = Timestamp::now();
    let mut record = record(now);
    let path = session_file(&store, &record.key);
    let status = Command::new("mkfifo").arg(&path).status().expect("run mkfifo");
    assert!(status.success(), "mkfifo");

    assert!(store.load(&record.key, now).await.expect("load").is_none());
    record.version += 1;
    assert!(matches!(store.save(&record).await, Err(Error::NotFound)));
    assert!(matches!(store.create(&record).await, Err(Error::IdCollision)));
    store.delete(&record.key).await.expect("delete");
    assert!(fs::symlink_metadata(&path).is_err(), "delete removed the FIFO");
}

/// Row 5 on disk: the unknown keys the generic check used left no session
/// file.
#[tokio::test]
async fn row05_unknown_key_leaves_no_file() {
    let (store, other, _tmp) = two_stores();
    testing::row05_unknown_key_is_not_created(Arc::new(store.clone()), Arc::new(other)).await;
    assert!(session_dir_names(&store).is_empty(), "no file was left behind");
}

/// Row 7 on disk: path-like user ids (`..` and `/` included) create nothing
/// next to the store or in its root; the index is hashed names under
/// `users/` only.
#[tokio::test]
async fn row07_path_like_user_ids_stay_inside_the_store() {
    let (store, other, tmp) = two_stores();
    let before = names(tmp.path());
    testing::row07_path_like_user_ids(Arc::new(store.clone()), Arc::new(other)).await;
    assert_eq!(names(tmp.path()), before, "nothing appeared next to the store");
    assert_eq!(names(store.dir()), ["locks", "sessions", "users"]);
}

//! Low-level file operations. Everything here blocks: call it from
//! `spawn_blocking`.

use std::fs::{self, DirBuilder, File, Metadata, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::error::FsError;

/// Mode of every file the store creates.
pub(crate) const FILE_MODE: u32 = 0o600;
/// Mode of every directory the store creates.
pub(crate) const DIR_MODE: u32 = 0o700;

/// Never follow a symlink in the last path component; never block opening a
/// FIFO someone left in our directory (no effect on regular files).
const OPEN_FLAGS: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK;

/// How many times to retry an operation that lost a race with a concurrent
/// rename, unlink or directory removal before giving up.
const RETRIES: usize = 64;

/// What sits at a path we want to read.
pub(crate) enum Opened {
    /// Nothing.
    Missing,
    /// A symlink, directory, FIFO or other non-regular file. Never followed.
    NotRegular,
    /// A regular file, opened read-only.
    File(File),
}

/// Opens an existing regular file read-only without following a symlink.
pub(crate) fn open_existing(path: &Path) -> Result<Opened, FsError> {
    match OpenOptions::new().read(true).custom_flags(OPEN_FLAGS).open(path) {
        Ok(file) => {
            let meta = file.metadata().map_err(|e| FsError::io("stat", path, e))?;
            Ok(if meta.is_file() { Opened::File(file) } else { Opened::NotRegular })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Opened::Missing),
        Err(e) if is_symlink_refusal(&e, path) => Ok(Opened::NotRegular),
        Err(e) => Err(FsError::io("open", path, e)),
    }
}

/// Whether `error` is `open(O_NOFOLLOW)` refusing a symlink.
fn is_symlink_refusal(error: &io::Error, path: &Path) -> bool {
    error.raw_os_error() == Some(libc::ELOOP)
        || fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink())
}

/// Reads the whole file from its current position.
pub(crate) fn read_all(mut file: &File, path: &Path) -> Result<Vec<u8>, FsError> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| FsError::io("read", path, e))?;
    Ok(bytes)
}

/// Whether the open `file` is the one `path` names right now.
pub(crate) fn is_current(file: &File, path: &Path) -> Result<bool, FsError> {
    let open = file.metadata().map_err(|e| FsError::io("stat", path, e))?;
    match fs::symlink_metadata(path) {
        Ok(named) => Ok(open.dev() == named.dev() && open.ino() == named.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(FsError::io("stat", path, e)),
    }
}

/// What [`lock_current`] found.
pub(crate) enum Current {
    /// No file at the path.
    Missing,
    /// Something that is not a regular file (never followed).
    NotRegular,
    /// The file the path names, opened read-only and exclusively locked: until
    /// it is dropped, nobody else who follows this protocol replaces or
    /// unlinks the path.
    Locked(File),
}

/// Opens the file at `path` and takes an exclusive OS lock on it, making sure
/// the locked file is still the one the path names (a writer may have renamed
/// a new file over it, or a deleter unlinked it, while we waited).
///
/// Every rename over and unlink of a session file happens while holding this
/// lock, so holding it freezes what the path names.
pub(crate) fn lock_current(path: &Path) -> Result<Current, FsError> {
    for _ in 0..RETRIES {
        let file = match open_existing(path)? {
            Opened::Missing => return Ok(Current::Missing),
            Opened::NotRegular => return Ok(Current::NotRegular),
            Opened::File(file) => file,
        };
        file.lock().map_err(|e| FsError::io("lock", path, e))?;
        if is_current(&file, path)? {
            return Ok(Current::Locked(file));
        }
    }
    Err(FsError::Unstable { path: path.to_owned() })
}

/// A fully written, fsynced temporary file next to its destination. Removed
/// on drop unless it was renamed into place.
pub(crate) struct TempFile {
    path: PathBuf,
    renamed: bool,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl TempFile {
    /// Writes `bytes` to a new file `.<stem>.<pid>.<n>.tmp` in `dir`, created
    /// exclusively with mode 0600, and fsyncs it. On any failure the partial
    /// file is removed.
    pub(crate) fn write(dir: &Path, stem: &str, bytes: &[u8]) -> Result<Self, FsError> {
        let mut attempt = 0;
        let (file, temp) = loop {
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!(".{stem}.{}.{n}.tmp", std::process::id()));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
            {
                Ok(file) => {
                    break (file, Self { path, renamed: false });
                }
                // A leftover of a crashed process that had our pid.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < RETRIES => {
                    attempt += 1;
                }
                Err(e) => return Err(FsError::io("create", &path, e)),
            }
        };
        // From here on, dropping `temp` removes the partial file.
        let mut writer = &file;
        // The umask can only have removed bits; make the mode exact anyway.
        file.set_permissions(Permissions::from_mode(FILE_MODE))
            .map_err(|e| FsError::io("chmod", &temp.path, e))?;
        writer.write_all(bytes).map_err(|e| FsError::io("write", &temp.path, e))?;
        file.sync_all().map_err(|e| FsError::io("fsync", &temp.path, e))?;
        Ok(temp)
    }

    /// Atomically replaces `target` (never following a symlink there: the
    /// link itself is replaced).
    pub(crate) fn rename_to(mut self, target: &Path) -> Result<(), FsError> {
        fs::rename(&self.path, target).map_err(|e| FsError::io("rename", target, e))?;
        self.renamed = true;
        Ok(())
    }

    /// Gives the file the name `target` only if nothing (not even a dangling
    /// symlink) has that name; `Ok(false)` if the name is taken. The
    /// temporary name is removed either way.
    pub(crate) fn link_to(self, target: &Path) -> Result<bool, FsError> {
        match fs::hard_link(&self.path, target) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(FsError::io("link", target, e)),
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.renamed {
            return;
        }
        if let Err(error) = fs::remove_file(&self.path)
            && error.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(
                path = %self.path.display(),
                %error,
                "could not remove a temporary session file; the cleanup task will"
            );
        }
    }
}

/// Whether `name` is one of our temporary files.
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// Makes a directory entry change (create, rename, unlink) in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| FsError::io("fsync", dir, e))
}

/// Removes `path`; a missing file is fine.
pub(crate) fn remove_if_exists(path: &Path) -> Result<(), FsError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FsError::io("remove", path, e)),
    }
}

/// Creates the empty marker file `dir/name` (and `dir` in `parent`) unless it
/// exists, durably.
pub(crate) fn add_marker(parent: &Path, dir: &Path, marker: &Path) -> Result<(), FsError> {
    for _ in 0..RETRIES {
        match DirBuilder::new().mode(DIR_MODE).create(dir) {
            Ok(()) => sync_dir(parent)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(FsError::io("mkdir", dir, e)),
        }
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW)
            .open(marker)
        {
            Ok(_) => return sync_dir(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            // The cleanup task removed the (empty) directory in between.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(FsError::io("create", marker, e)),
        }
    }
    Err(FsError::Unstable { path: dir.to_owned() })
}

/// Creates `path` with mode 0700 if it is missing; otherwise checks that it
/// is a directory that group and others cannot access.
pub(crate) fn ensure_private_dir(path: &Path, follow: bool) -> Result<(), FsError> {
    let meta = if follow { fs::metadata(path) } else { fs::symlink_metadata(path) };
    match meta {
        Ok(meta) => check_private(path, &meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match DirBuilder::new().recursive(follow).mode(DIR_MODE).create(path) {
                Ok(()) => fs::set_permissions(path, Permissions::from_mode(DIR_MODE))
                    .map_err(|e| FsError::io("chmod", path, e)),
                // Another process created it in between: check theirs.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let meta =
                        fs::symlink_metadata(path).map_err(|e| FsError::io("stat", path, e))?;
                    check_private(path, &meta)
                }
                Err(e) => Err(FsError::io("mkdir", path, e)),
            }
        }
        Err(e) => Err(FsError::io("stat", path, e)),
    }
}

fn check_private(path: &Path, meta: &Metadata) -> Result<(), FsError> {
    if !meta.is_dir() {
        return Err(FsError::NotADirectory { path: path.to_owned() });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(FsError::NotPrivate { path: path.to_owned(), mode });
    }
    Ok(())
}

/// Whether the file at `path` was last modified at least `age` ago (by the
/// system clock). `false` if that cannot be told.
pub(crate) fn older_than(path: &Path, age: Duration) -> bool {
    fs::symlink_metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
        .and_then(|modified| SystemTime::now().duration_since(modified).ok())
        .is_some_and(|elapsed| elapsed >= age)
}

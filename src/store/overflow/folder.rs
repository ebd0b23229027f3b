//! This process's spill folder, `blobq-XXXXXX` in `--spill-dir`, and the
//! removal of folders that killed processes left behind.
//!
//! A live server holds an exclusive `flock` on its folder for as long as it
//! runs; the kernel drops it when the process dies, however it dies. At
//! start-up every `blobq-*` folder whose lock can be taken belongs to no
//! live process and is removed; one whose lock is held is left alone, so
//! servers sharing a spill directory never touch each other's folders. A
//! folder is created under a staging name and locked before it is renamed
//! to `blobq-*`, so no folder of that name is ever unlocked while its
//! process lives. Only folders that look exactly like a spill folder (the
//! prefix and six random characters, holding nothing but segments and
//! spill files) are ever removed: `--spill-dir` is often a shared temporary
//! directory, where other programs' `blobq-something` folders are none of
//! a server's business.

use std::fs::{File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Names of spill folders in use.
const PREFIX: &str = "blobq-";
/// Names of folders not yet locked.
const STAGING_PREFIX: &str = ".blobq-new-";
/// How many random characters follow the prefix (tempfile's default).
const RANDOM_CHARS: usize = 6;
/// A staging folder this old was left by a process that died while making
/// it (a live one renames it at once).
const STAGING_GRACE: Duration = Duration::from_secs(60);

/// The spill folder, removed with everything in it on drop.
#[derive(Debug)]
pub(crate) struct SpillFolder {
    path: PathBuf,
    /// Open and locked for the process's lifetime: the mark of a live owner.
    _lock: File,
}

impl SpillFolder {
    /// Removes stale folders in `root` (made if missing), then makes and
    /// locks this process's own.
    pub fn create(root: &Path) -> io::Result<SpillFolder> {
        std::fs::create_dir_all(root)?;
        remove_stale(root);
        let staging = tempfile::Builder::new()
            .prefix(STAGING_PREFIX)
            .rand_bytes(RANDOM_CHARS)
            .tempdir_in(root)?;
        let lock = File::open(staging.path())?;
        lock.try_lock().map_err(io::Error::from)?;
        let name = staging
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(STAGING_PREFIX))
            .ok_or(io::ErrorKind::InvalidFilename)?;
        let path = root.join(format!("{PREFIX}{name}"));
        std::fs::rename(staging.path(), &path)?;
        // Renamed: the TempDir must not remove anything any more.
        let _ = staging.keep();
        Ok(SpillFolder { path, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the folder and its files now (also done on drop).
    pub fn remove(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.path.display(), error = %e, "could not remove spill folder");
            }
        }
    }
}

impl Drop for SpillFolder {
    /// Removed before the lock is let go, so no other process ever finds it
    /// unlocked while this one still uses it.
    fn drop(&mut self) {
        self.remove();
    }
}

/// Removes the spill folders in `root` that no live process holds.
fn remove_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let staging = is_named(name, STAGING_PREFIX);
        if !(is_named(name, PREFIX) || staging) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        if staging && !older_than(&path, STAGING_GRACE) {
            continue;
        }
        if !holds_only_spill_files(&path) {
            continue;
        }
        if let Err(e) = remove_if_unlocked(&path) {
            tracing::warn!(dir = %path.display(), error = %e, "could not remove a stale spill folder");
        }
    }
}

/// Removes `dir` if no process holds its lock. The lock is held while it
/// is removed, so a process cannot be starting to use it meanwhile.
fn remove_if_unlocked(dir: &Path) -> io::Result<()> {
    let lock = File::open(dir)?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(()), // a live process's
        Err(TryLockError::Error(e)) => return Err(e),
    }
    std::fs::remove_dir_all(dir)?;
    tracing::info!(dir = %dir.display(), "removed the spill folder of a process that is gone");
    Ok(())
}

/// `prefix` and then exactly the random characters a spill folder gets.
fn is_named(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == RANDOM_CHARS && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// Whether `dir` holds only what a server puts in its spill folder:
/// overflow segments and spill files.
fn holds_only_spill_files(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.into_iter().all(|entry| {
        entry.is_ok_and(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            e.file_type().is_ok_and(|t| t.is_file())
                && (name.starts_with("segment-") || name.starts_with("blob-"))
        })
    })
}

fn older_than(path: &Path, age: Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|at| SystemTime::now().duration_since(at).is_ok_and(|d| d > age))
}

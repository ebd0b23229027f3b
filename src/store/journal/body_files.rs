//! The files outside the log that a round must sync or remove: blob files
//! of the bodies its records name, and those no record needs any more.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::SyncedWithLog;

/// Adds `file` to `files` unless it is there already (a few segments at
/// most: appends go to one at a time).
pub(super) fn add_unique(files: &mut Vec<Arc<dyn SyncedWithLog>>, file: &Arc<dyn SyncedWithLog>) {
    if !files
        .iter()
        .any(|f| std::ptr::addr_eq(Arc::as_ptr(f), Arc::as_ptr(file)))
    {
        files.push(file.clone());
    }
}

/// Syncs every file of `files`, emptying it; on failure those not yet
/// synced stay for the next try.
pub(super) fn sync_body_files(files: &mut Vec<Arc<dyn SyncedWithLog>>) -> io::Result<()> {
    while let Some(file) = files.last() {
        file.sync_data()?;
        files.pop();
    }
    Ok(())
}

pub(super) fn remove_files(paths: impl Iterator<Item = PathBuf>) {
    for path in paths {
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "could not remove blob file");
            }
        }
    }
}

//! The background flush: every `--fsync-interval-ms` it writes what no
//! request waited for and, in `batch` mode, syncs the open segment without
//! holding it, so that no request ever waits for an `fsync` in that mode.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::files::sync_dir;
use super::group_commit::{remove_files, sync_body_files, Shared};
use super::{lock, FsyncMode};

/// In `never` mode the syncer syncs the open segment in the background
/// each time this fraction of a segment has been written since the last
/// sync, so that sealing it (which syncs it, with requests waiting) has at
/// most that much left to write.
pub(super) const NEVER_MODE_SYNC_PARTS: u64 = 8;

impl Shared {
    /// Every interval, writes what nobody waited for (pops, expiries, file
    /// removals) and, in batch mode, syncs what was written without holding
    /// the segment, so requests never wait for an `fsync` (in never mode too,
    /// once [`NEVER_MODE_SYNC_PARTS`] of a segment is unsynced).
    pub(super) fn flush_periodically(&self) {
        let mut synced = 0;
        loop {
            {
                // `closing` is checked under the lock `close` takes to
                // notify: a close between the check and the wait would
                // otherwise go unheard for a whole interval.
                let guard = lock(&self.syncer_wake.0);
                if !self.closing.load(Ordering::Acquire) {
                    let _ = self.syncer_wake.1.wait_timeout(guard, self.interval);
                }
            }
            if self.closing.load(Ordering::Acquire) {
                return;
            }
            // A failed round stays with the segment: trying again every
            // interval is how the log recovers when nobody writes.
            if self.lead(self.hold(), false).is_err() {
                continue;
            }
            let taken = {
                let mut out = self.hold();
                let due = match self.mode {
                    FsyncMode::Batch => true,
                    // Nothing is promised, but sealing a segment syncs it while
                    // requests wait: keep what that sync has left to write small.
                    FsyncMode::Never => {
                        out.file_len - out.synced_len >= self.segment_bytes / NEVER_MODE_SYNC_PARTS
                    }
                    FsyncMode::Always => false,
                };
                if !due {
                    continue;
                }
                let dirty = std::mem::take(&mut out.dir_dirty);
                let bodies = std::mem::take(&mut out.body_files);
                // A file whose removal was queued with no record after it
                // (a segment the last of whose holders was this thread's
                // `bodies`) still goes, at this round.
                let removals = !out.unlink.is_empty();
                (
                    out.file.clone(),
                    out.written,
                    dirty,
                    out.file_len,
                    bodies,
                    removals,
                )
            };
            let (file, written, dir_dirty, len, mut bodies, removals) = taken;
            if written == synced && !dir_dirty && bodies.is_empty() && !removals {
                continue;
            }
            // The bytes the records point into first (see `sync_with_log`).
            let result = sync_body_files(&mut bodies)
                .and_then(|()| file.sync_data())
                .and_then(|()| {
                    if dir_dirty {
                        sync_dir(&self.dir.blob_dir())
                    } else {
                        Ok(())
                    }
                });
            if let Err(e) = result {
                // Tried again next interval; the files waiting for this
                // sync stay until one succeeds.
                let mut out = self.hold();
                out.dir_dirty |= dir_dirty;
                out.body_files.append(&mut bodies);
                self.note_fault(&e, "cannot sync the log; retrying every interval");
                continue;
            }
            synced = written;
            self.progress
                .send_modify(|p| p.synced = p.synced.max(synced));
            self.sync_succeeded();
            let due: Vec<PathBuf> = {
                let mut out = self.hold();
                if Arc::ptr_eq(&out.file, &file) {
                    out.synced_len = out.synced_len.max(len);
                }
                let (due, later) = std::mem::take(&mut out.unlink)
                    .into_iter()
                    .partition(|(at, _)| *at <= synced);
                out.unlink = later;
                due.into_iter().map(|(_, p)| p).collect()
            };
            remove_files(due.into_iter());
        }
    }
}

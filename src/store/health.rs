//! Whether the store can write its body files. A write that failed (a full
//! disk, most often) is remembered for `/healthz` until a body file is
//! written again, or until a small probe file can be, so health recovers by
//! itself when nobody pushes. The log's own state is the journal's.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::backend::{StorageFault, StoragePlace};

/// Bytes a probe writes: enough that a disk with that little room left is
/// still reported full.
const PROBE_BYTES: usize = 64 * 1024;

/// The health of the folder body files are written to.
pub(crate) struct FileHealth {
    place: StoragePlace,
    dir: PathBuf,
    /// Set while `fault` is: the path of every successful write checks only this.
    failing: AtomicBool,
    fault: Mutex<Option<StorageFault>>,
}

impl FileHealth {
    pub fn new(place: StoragePlace, dir: PathBuf) -> FileHealth {
        FileHealth {
            place,
            dir,
            failing: AtomicBool::new(false),
            fault: Mutex::new(None),
        }
    }

    /// A body file could not be written. The error, which may name the
    /// file, goes to the server log (once, until writes succeed again); the
    /// client's fault names no path.
    pub fn failed(&self, e: &io::Error) -> StorageFault {
        let fault = StorageFault::new(self.place, e);
        let mut held = self.fault.lock().unwrap_or_else(PoisonError::into_inner);
        if held.is_none() {
            tracing::error!(dir = %self.dir.display(), error = %e, "cannot write body files; pushes that need one answer 507 until they can");
        }
        *held = Some(fault.clone());
        self.failing.store(true, Ordering::Release);
        fault
    }

    /// A body file was written: writes work again.
    pub fn succeeded(&self) {
        if !self.failing.load(Ordering::Acquire) {
            return;
        }
        let mut held = self.fault.lock().unwrap_or_else(PoisonError::into_inner);
        if held.take().is_some() {
            tracing::info!(dir = %self.dir.display(), "body files can be written again");
        }
        self.failing.store(false, Ordering::Release);
    }

    /// The fault, if writes still fail: while one is remembered, a probe
    /// file is written (and removed) to see whether room has returned.
    pub fn probe(&self) -> Option<StorageFault> {
        if !self.failing.load(Ordering::Acquire) {
            return None;
        }
        match write_probe(&self.dir) {
            Ok(()) => {
                self.succeeded();
                None
            }
            Err(e) => Some(StorageFault::new(self.place, &e)),
        }
    }
}

/// Writes `PROBE_BYTES` to an unnamed file in `dir`, removed when closed.
fn write_probe(dir: &std::path::Path) -> io::Result<()> {
    let mut file = tempfile::tempfile_in(dir)?;
    file.write_all(&[0; PROBE_BYTES])?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_reported_until_a_probe_or_a_write_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let health = FileHealth::new(StoragePlace::Spill, dir.path().to_owned());
        assert!(health.probe().is_none());
        let fault = health.failed(&io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(fault.full && fault.to_string().contains("spill directory is full"));
        // The probe finds room: healthy again, and nothing left behind.
        assert!(health.probe().is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        health.failed(&io::Error::from_raw_os_error(libc::EIO));
        health.succeeded();
        assert!(health.probe().is_none());
        // A folder that cannot be written keeps the fault.
        let gone = FileHealth::new(StoragePlace::Data, dir.path().join("missing"));
        gone.failed(&io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(gone.probe().is_some());
    }
}

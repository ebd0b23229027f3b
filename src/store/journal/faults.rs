//! The test hook that makes the journal's writes and syncs fail on demand.

use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes and syncs that fail on demand, so the failure paths are tested
/// without a full disk.
#[derive(Default)]
pub(super) struct Faults {
    /// Writes to fail from now on (each failed one counts down).
    pub writes: AtomicU64,
    /// Syncs to fail from now on.
    pub syncs: AtomicU64,
    /// Bytes a failing write still gets into the file first, as a write
    /// cut short by a full disk does.
    pub partial: AtomicU64,
}

impl Faults {
    fn take(n: &AtomicU64) -> bool {
        n.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    pub(super) fn before_write(&self, file: &File, batch: &[u8]) -> io::Result<()> {
        if !Faults::take(&self.writes) {
            return Ok(());
        }
        let partial = (self.partial.load(Ordering::Acquire) as usize).min(batch.len());
        let mut file = file;
        file.write_all(&batch[..partial])?;
        Err(io::Error::from_raw_os_error(libc::ENOSPC))
    }

    pub(super) fn before_sync(&self) -> io::Result<()> {
        if Faults::take(&self.syncs) {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }
}

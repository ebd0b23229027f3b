//! A small tmpfs mounted for one test, filled on demand and unmounted when
//! dropped. Mounting needs root (CI runs as root); elsewhere the tests say
//! they were skipped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Size of the filesystem: room for a few elements and the log's first
/// segment, little enough to fill in a moment.
const SIZE: &str = "size=8m";

pub struct TinyDisk {
    dir: tempfile::TempDir,
}

impl TinyDisk {
    /// Mounts it, or `None` (with the reason printed) when this machine
    /// cannot.
    pub fn mount(test: &str) -> Option<TinyDisk> {
        let dir = tempfile::tempdir().ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", SIZE, "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("SKIPPED {test}: cannot mount a tmpfs here (not root?)");
            return None;
        }
        Some(TinyDisk { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn filler(&self) -> PathBuf {
        self.dir.path().join("filler")
    }

    /// Fills every byte left with a file of its own.
    pub fn fill(&self) {
        let mut file = std::fs::File::create(self.filler()).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        // The last bytes, a page at a time.
        while file.write_all(&chunk[..4096]).is_ok() {}
        while file.write_all(&chunk[..1]).is_ok() {}
    }

    /// Gives the space back.
    pub fn free(&self) {
        std::fs::remove_file(self.filler()).expect("remove the filler");
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

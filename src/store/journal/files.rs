//! The data directory's layout and its files:
//!
//! ```text
//! DIR/LOCK                   held (flock) by the one server using DIR
//! DIR/log/NNN.log            log segments, appended in order
//! DIR/log/NNN.compact        the live state as of the end of segment NNN
//! DIR/blobs/blob-XXXX        bodies at or above the spill threshold
//! DIR/segments/segment-NNNN  small bodies past the memory budget, many a
//!                            file (the overflow segments of `store::overflow`)
//! ```
//!
//! Segment numbers only grow. Replay reads the newest `.compact` and every
//! `.log` numbered above it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// First bytes of every segment and compacted file, so a stray file is never
/// read as records.
pub const MAGIC: &[u8; 8] = b"BLOBQ01\n";

/// The paths of a data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    pub root: PathBuf,
}

/// What a file of `log/` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SegmentKind {
    Log,
    Compact,
}

impl DataDir {
    pub fn new(root: &Path) -> DataDir {
        DataDir {
            root: root.to_owned(),
        }
    }

    pub fn log_dir(&self) -> PathBuf {
        self.root.join("log")
    }

    pub fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// Where the overflow segments are: small bodies past the memory budget.
    pub fn segments_dir(&self) -> PathBuf {
        self.root.join("segments")
    }

    pub fn segment(&self, seq: u64, kind: SegmentKind) -> PathBuf {
        let ext = match kind {
            SegmentKind::Log => "log",
            SegmentKind::Compact => "compact",
        };
        self.log_dir().join(format!("{seq:020}.{ext}"))
    }

    /// Creates the folders if needed.
    pub fn create(&self) -> io::Result<()> {
        fs::create_dir_all(self.log_dir())?;
        fs::create_dir_all(self.segments_dir())?;
        fs::create_dir_all(self.blob_dir())
    }

    /// Removes the `.tmp` files an interrupted compaction left. At start-up
    /// only: while the server runs, one may be the compactor's output.
    pub fn remove_temporaries(&self) -> io::Result<()> {
        for entry in fs::read_dir(self.log_dir())? {
            let entry = entry?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(".tmp"))
            {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// Every segment and compacted file, by number.
    pub fn list(&self) -> io::Result<Vec<(u64, SegmentKind)>> {
        let mut found = Vec::new();
        for entry in fs::read_dir(self.log_dir())? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let parsed = match name.split_once('.') {
                Some((n, "log")) => n.parse().ok().map(|n| (n, SegmentKind::Log)),
                Some((n, "compact")) => n.parse().ok().map(|n| (n, SegmentKind::Compact)),
                _ => None,
            };
            if let Some(p) = parsed {
                found.push(p);
            }
        }
        found.sort();
        Ok(found)
    }
}

/// Opens a new segment for appending and writes its magic.
pub fn create_segment(path: &Path) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(path)?;
    file.write_all(MAGIC)?;
    Ok(file)
}

/// Makes the entries of `dir` (new, renamed or removed files) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The exclusive lock on a data directory, held while the server runs.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock, or says which process holds it.
    pub fn acquire(dir: &DataDir) -> io::Result<DirLock> {
        let path = dir.root.join("LOCK");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        // SAFETY: flock only takes a descriptor we own for the call's duration.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !locked {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "data directory {} is in use by another blobq (pid {}); stop it or use another --data-dir",
                    dir.root.display(),
                    holder.trim()
                ),
            ));
        }
        file.set_len(0)?;
        write!(file, "{}", std::process::id())?;
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        dir.create().unwrap();
        let held = DirLock::acquire(&dir).unwrap();
        let err = DirLock::acquire(&dir).unwrap_err();
        assert!(err.to_string().contains("in use by another blobq"), "{err}");
        drop(held);
        DirLock::acquire(&dir).unwrap();
    }

    #[test]
    fn segments_are_listed_in_order_and_temporaries_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        dir.create().unwrap();
        for (seq, kind) in [
            (10, SegmentKind::Log),
            (2, SegmentKind::Log),
            (9, SegmentKind::Compact),
        ] {
            create_segment(&dir.segment(seq, kind)).unwrap();
        }
        fs::write(dir.log_dir().join("00000000000000000011.compact.tmp"), b"x").unwrap();
        dir.remove_temporaries().unwrap();
        assert_eq!(
            dir.list().unwrap(),
            vec![
                (2, SegmentKind::Log),
                (9, SegmentKind::Compact),
                (10, SegmentKind::Log)
            ]
        );
        assert_eq!(fs::read_dir(dir.log_dir()).unwrap().count(), 3);
    }
}

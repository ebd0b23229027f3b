//! The jobs log's writing end and its files:
//!
//! ```text
//! DIR/jobs/NNN.log        segments of framed records, appended in order
//! DIR/jobs/NNN.snapshot   every live job, taken once segment NNN began
//! ```
//!
//! Changes append records to a buffer under their queue's lock (an encode,
//! nothing more); an answer then waits, outside every lock, until the
//! buffer holding its records is written (and synced with `--fsync
//! always`). Waiters share writes: the first to take the file writes
//! everything appended so far for all of them.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::record::{encode, JobRecord};
use crate::store::journal::files::{create_segment, sync_dir};
use crate::store::journal::FsyncMode;

/// What a file of `DIR/jobs/` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileKind {
    Log,
    Snapshot,
}

/// The path of file `seq` of `kind` in `dir`.
pub fn file_path(dir: &Path, seq: u64, kind: FileKind) -> PathBuf {
    let ext = match kind {
        FileKind::Log => "log",
        FileKind::Snapshot => "snapshot",
    };
    dir.join(format!("{seq:020}.{ext}"))
}

/// Every segment and snapshot of `dir`, by number; removes the temporary
/// files an interrupted snapshot left (at start-up only).
pub fn list_files(dir: &Path) -> io::Result<Vec<(u64, FileKind)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            fs::remove_file(entry.path())?;
            continue;
        }
        let kind = match name.split_once('.') {
            Some((n, "log")) => n.parse().ok().map(|n| (n, FileKind::Log)),
            Some((n, "snapshot")) => n.parse().ok().map(|n| (n, FileKind::Snapshot)),
            _ => None,
        };
        found.extend(kind);
    }
    found.sort();
    Ok(found)
}

/// The open segment.
struct Out {
    file: File,
    seq: u64,
    len: u64,
}

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    /// Records appended since the start.
    appended: u64,
}

/// The log's writing end.
pub struct JobLog {
    dir: PathBuf,
    mode: FsyncMode,
    segment_bytes: u64,
    pending: Mutex<Pending>,
    out: Mutex<Out>,
    written: AtomicU64,
    synced: AtomicU64,
    /// The open segment passed `segment_bytes`: time for a new one and a
    /// snapshot.
    full: AtomicBool,
    /// Test hook: writes that fail as on a full disk.
    #[cfg(test)]
    pub(crate) fail_writes: AtomicU64,
}

/// The records an answer waited for could not be written.
#[derive(Debug)]
pub struct LogFailed(pub io::Error);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl JobLog {
    /// Starts writing segment `seq` of `dir`.
    pub fn start(dir: &Path, mode: FsyncMode, segment_bytes: u64, seq: u64) -> io::Result<JobLog> {
        let file = create_segment(&file_path(dir, seq, FileKind::Log))?;
        sync_dir(dir)?;
        Ok(JobLog {
            dir: dir.to_owned(),
            mode,
            segment_bytes,
            pending: Mutex::new(Pending::default()),
            out: Mutex::new(Out {
                file,
                seq,
                len: crate::store::journal::files::MAGIC.len() as u64,
            }),
            written: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            full: AtomicBool::new(false),
            #[cfg(test)]
            fail_writes: AtomicU64::new(0),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a record; called under a queue's lock, so only an encode.
    pub fn append(&self, record: &JobRecord) {
        let mut p = lock(&self.pending);
        encode(record, &mut p.buf);
        p.appended += 1;
    }

    /// How many records have been appended so far: what a change waits for.
    pub fn appended(&self) -> u64 {
        lock(&self.pending).appended
    }

    /// Whether the first `target` records are written (and synced if
    /// `sync`), so that a wait for them has nothing to do.
    pub fn reached(&self, target: u64, sync: bool) -> bool {
        let counter = if sync { &self.synced } else { &self.written };
        counter.load(Ordering::Acquire) >= target
    }

    /// Whether an answer must wait for the disk's sync in this mode.
    pub fn syncs_each_answer(&self) -> bool {
        self.mode == FsyncMode::Always
    }

    /// Blocks until the first `target` records are written, and synced if
    /// `sync`. A failed write keeps its records for the next attempt, and
    /// cuts the file back to where it was, so no torn frame stays in the
    /// middle of the segment.
    pub fn flush(&self, target: u64, sync: bool) -> Result<(), LogFailed> {
        if self.reached(target, sync) {
            return Ok(());
        }
        let mut out = lock(&self.out);
        if self.reached(target, sync) {
            return Ok(());
        }
        let (buf, upto) = {
            let mut p = lock(&self.pending);
            (std::mem::take(&mut p.buf), p.appended)
        };
        if let Err(e) = self.write(&mut out, &buf) {
            let _ = out.file.set_len(out.len);
            let mut p = lock(&self.pending);
            let later = std::mem::replace(&mut p.buf, buf);
            p.buf.extend_from_slice(&later);
            return Err(LogFailed(e));
        }
        out.len += buf.len() as u64;
        self.written.fetch_max(upto, Ordering::AcqRel);
        if sync {
            out.file.sync_data().map_err(LogFailed)?;
            self.synced.fetch_max(upto, Ordering::AcqRel);
        }
        if out.len > self.segment_bytes {
            self.full.store(true, Ordering::Release);
        }
        Ok(())
    }

    fn write(&self, out: &mut Out, buf: &[u8]) -> io::Result<()> {
        #[cfg(test)]
        if self
            .fail_writes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        out.file.write_all(buf)
    }

    /// Writes what is pending, synced unless the mode is `never`: the
    /// periodic flush and the one at shutdown.
    pub fn flush_all(&self) -> Result<(), LogFailed> {
        let target = self.appended();
        self.flush(target, self.mode != FsyncMode::Never)
    }

    /// Asks for a new segment and a snapshot at the next periodic flush:
    /// at start-up, so that the files earlier runs left do not pile up
    /// however often the server restarts.
    pub fn request_snapshot(&self) {
        self.full.store(true, Ordering::Release);
    }

    /// Whether the open segment has grown past its size.
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Acquire)
    }

    /// Ends the open segment (everything pending written and synced into
    /// it) and starts the next; its number, which the snapshot then takes.
    pub fn rotate(&self) -> io::Result<u64> {
        self.flush_all().map_err(|e| e.0)?;
        let mut out = lock(&self.out);
        out.file.sync_data()?;
        let seq = out.seq + 1;
        let file = create_segment(&file_path(&self.dir, seq, FileKind::Log))?;
        sync_dir(&self.dir)?;
        *out = Out {
            file,
            seq,
            len: crate::store::journal::files::MAGIC.len() as u64,
        };
        self.full.store(false, Ordering::Release);
        Ok(seq)
    }

    /// Puts `snapshot` in place as the snapshot of segment `seq` (written
    /// to a temporary file, synced, renamed), then removes the older
    /// segments and snapshots it replaces.
    pub fn install_snapshot(&self, seq: u64, snapshot: &[u8]) -> io::Result<()> {
        let path = file_path(&self.dir, seq, FileKind::Snapshot);
        let tmp = path.with_extension("snapshot.tmp");
        let mut file = File::create(&tmp)?;
        file.write_all(crate::store::journal::files::MAGIC)?;
        file.write_all(snapshot)?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)?;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let older = name
                .to_str()
                .and_then(|n| n.split_once('.'))
                .and_then(|(n, _)| n.parse::<u64>().ok())
                .is_some_and(|n| n < seq);
            if older {
                fs::remove_file(entry.path())?;
            }
        }
        sync_dir(&self.dir)
    }
}

//! One overflow segment: a file of the spill folder that bodies are
//! appended to, how many of its bytes are still live, and which bodies
//! those are (for the compactor).
//!
//! Every body placed in a segment holds it by `Arc`, and so does a read in
//! progress and the writer while the segment is current: the file is
//! removed when the last of them lets go, so a segment whose live bytes
//! reach zero disappears by itself, and a reader of a moved body still
//! reads the old file it started on.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::body::OverflowBody;
use super::{Overflow, Removal};

/// The most buffers one `pwritev` takes (Linux's `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

pub(crate) struct Segment {
    path: PathBuf,
    file: File,
    /// Bytes of the bodies placed here that are still held.
    live: AtomicU64,
    /// Bytes handed out by the writer; final once sealed.
    end: AtomicU64,
    /// Every byte below this has been written, or is room whose write
    /// failed and that no body refers to: what a read-ahead may read.
    written: AtomicU64,
    /// Set when the writer moved on to the next segment: only a sealed
    /// segment is compacted.
    sealed: AtomicBool,
    /// Compacted once the live bytes fall below this percentage of `end`.
    compact_percent: u8,
    /// The bodies placed here (some since dropped or moved on).
    bodies: Mutex<Vec<Weak<OverflowBody>>>,
    /// The store's overflow: told when this segment becomes worth
    /// compacting, or empty while it is the one being written.
    owner: Weak<Overflow>,
    /// What happens to the file once the segment is dropped.
    removal: Removal,
    /// Set when a body the log still names was dropped (the process is
    /// stopping): the file stays whatever `removal` says.
    kept: AtomicBool,
}

impl Segment {
    /// Creates the segment's file (which must not exist yet).
    pub fn create(
        path: PathBuf,
        compact_percent: u8,
        owner: Weak<Overflow>,
        removal: Removal,
    ) -> io::Result<Segment> {
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        if let (Removal::Deferred(_), Some(dir)) = (&removal, path.parent()) {
            // Durable: the file's name must survive a crash as its bytes do.
            File::open(dir)?.sync_all()?;
        }
        Ok(Segment {
            path,
            file,
            live: AtomicU64::new(0),
            end: AtomicU64::new(0),
            written: AtomicU64::new(0),
            sealed: AtomicBool::new(false),
            compact_percent,
            bodies: Mutex::new(Vec::new()),
            owner,
            removal,
            kept: AtomicBool::new(false),
        })
    }

    /// Opens a segment an earlier process of a data directory wrote
    /// (durable mode's restart): sealed, its end the file's length, all
    /// of it written (read-ahead may read any of it).
    pub fn reopen(
        path: PathBuf,
        compact_percent: u8,
        owner: Weak<Overflow>,
        removal: Removal,
    ) -> io::Result<Segment> {
        let file = File::options().read(true).write(true).open(&path)?;
        let end = file.metadata()?.len();
        Ok(Segment {
            path,
            file,
            live: AtomicU64::new(0),
            end: AtomicU64::new(end),
            written: AtomicU64::new(end),
            sealed: AtomicBool::new(true),
            compact_percent,
            bodies: Mutex::new(Vec::new()),
            owner,
            removal,
            kept: AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes the bytes written so far to stable storage (durable mode).
    pub fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// The file must outlive the segment: a body the log still names was
    /// dropped with the process's state, not because it is gone.
    pub fn keep_file(&self) {
        self.kept.store(true, Ordering::Release);
    }

    /// Writes `bufs` one after the other from `offset`, with as few
    /// `pwritev` calls as the kernel allows.
    pub fn write_vectored_at(&self, bufs: &[&[u8]], mut offset: u64) -> io::Result<()> {
        let mut iov: Vec<libc::iovec> = bufs
            .iter()
            .map(|b| libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        let mut first = 0;
        loop {
            while iov.get(first).is_some_and(|v| v.iov_len == 0) {
                first += 1;
            }
            if first == iov.len() {
                return Ok(());
            }
            let count = (iov.len() - first).min(IOV_MAX);
            let at = libc::off_t::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
            // SAFETY: the iovecs point into `bufs`, borrowed for this call,
            // each with its own length; the file descriptor is ours.
            let wrote = unsafe {
                libc::pwritev(
                    self.file.as_raw_fd(),
                    iov[first..].as_ptr(),
                    count as libc::c_int,
                    at,
                )
            };
            let mut wrote = match usize::try_from(wrote) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(_) => {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
            };
            offset += wrote as u64;
            // Skip what was written; a short write resumes mid-buffer.
            while wrote > 0 {
                let v = &mut iov[first];
                let n = wrote.min(v.iov_len);
                // SAFETY: `n` is at most the buffer's remaining length.
                v.iov_base = unsafe { v.iov_base.cast::<u8>().add(n).cast() };
                v.iov_len -= n;
                wrote -= n;
                if v.iov_len == 0 {
                    first += 1;
                }
            }
        }
    }

    /// Every byte below `end` is written (or lost to a failed write that
    /// no body refers to).
    pub fn written_to(&self, end: u64) {
        self.written.fetch_max(end, Ordering::AcqRel);
    }

    pub fn written_end(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// The store's overflow, while it exists.
    pub fn owner(&self) -> Option<Arc<Overflow>> {
        self.owner.upgrade()
    }

    pub fn read_at(&self, len: usize, offset: u64) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; len];
        self.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// Fills `buf` with the bytes at `offset`.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    /// Records that the writer handed out bytes up to `end`.
    pub fn extend_to(&self, end: u64) {
        self.end.store(end, Ordering::Release);
    }

    /// The writer moved on: from now on the segment only loses live bytes.
    pub fn seal(&self) {
        self.sealed.store(true, Ordering::Release);
        self.wake_compactor_if_due(self.live.load(Ordering::Acquire));
    }

    pub fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    pub fn live_bytes(&self) -> u64 {
        self.live.load(Ordering::Acquire)
    }

    /// Whether the segment is sealed, still holds something, and its live
    /// bytes are below `percent` of its size, so that copying them forward
    /// frees most of its file (the background compactor asks at
    /// `compact_percent`).
    pub fn worth_compacting_below(&self, percent: u8) -> bool {
        self.is_sealed() && self.due_below(self.live_bytes(), percent)
    }

    fn due(&self, live: u64) -> bool {
        self.due_below(live, self.compact_percent)
    }

    fn due_below(&self, live: u64, percent: u8) -> bool {
        let end = self.end.load(Ordering::Acquire);
        live > 0 && (live as u128) * 100 < (end as u128) * u128::from(percent)
    }

    /// A body of `len` bytes was placed here.
    pub fn adopt(&self, body: &Arc<OverflowBody>, len: u64) {
        self.live.fetch_add(len, Ordering::AcqRel);
        let mut bodies = self.bodies.lock().unwrap_or_else(PoisonError::into_inner);
        // A weak reference keeps a dropped body's small allocation: drop
        // those before the list would grow, so it holds about what is live.
        // Room for as many again as are live, so pruning stays amortised.
        if bodies.len() == bodies.capacity() {
            bodies.retain(|b| b.strong_count() > 0);
            let live = bodies.len();
            bodies.reserve(live.max(16));
        }
        bodies.push(Arc::downgrade(body));
    }

    /// A body of `len` bytes left (dropped, or moved to another segment).
    /// The caller holds the segment, so it outlives this call.
    pub fn release(&self, len: u64) {
        let live = self.live.fetch_sub(len, Ordering::AcqRel) - len;
        if self.is_sealed() {
            self.wake_compactor_if_due(live);
        } else if live == 0 {
            // A drained queue should leave no file behind: the writer
            // lets an empty current segment go and starts afresh.
            if let Some(owner) = self.owner.upgrade() {
                owner.retire_if_empty(self);
            }
        }
    }

    fn wake_compactor_if_due(&self, live: u64) {
        if self.due(live) {
            if let Some(owner) = self.owner.upgrade() {
                owner.compactor.notify_one();
            }
        }
    }

    /// The bodies placed here, as they were when asked: the compactor
    /// checks each is still here before moving it.
    pub fn placed_bodies(&self) -> Vec<Weak<OverflowBody>> {
        self.bodies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // Nothing live is left and nobody reads it: the file goes (in
        // durable mode once the log durably says its bodies are gone).
        // Shutdown may have removed the whole folder first.
        if self.kept.load(Ordering::Acquire) {
            return;
        }
        if let Removal::Deferred(remove) = &self.removal {
            remove(std::mem::take(&mut self.path));
            return;
        }
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove an overflow segment");
            }
        }
    }
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("path", &self.path)
            .field("live", &self.live_bytes())
            .field("end", &self.end.load(Ordering::Relaxed))
            .field("sealed", &self.is_sealed())
            .finish_non_exhaustive()
    }
}

//! One job as the embedded engine keeps it, shaped to be small: a queue may
//! hold a hundred thousand of them. Times are `Millis` (8 bytes, zero for
//! "not yet"), strings are boxed (no spare capacity), the outcome is boxed
//! (absent until the job ends), and the bytes are blobs of the backend,
//! named here by id only.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smol_str::SmolStr;

use crate::backend::ids::BlobId;
use crate::backend::jobs::{BodyInfo, JobFailure, JobId, JobState, JobView, LogEntry, ResultInfo};
use crate::backend::meta::CustomPair;
use crate::backend::name::Name;
use crate::store::clock::Millis;

/// "Not yet" for a time field.
pub(super) const NEVER: Millis = Millis(0);

/// A time of the engine as the seam gives it.
pub(super) fn system_time(at: Millis) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(at.0)
}

fn optional_time(at: Millis) -> Option<SystemTime> {
    (at != NEVER).then(|| system_time(at))
}

/// The lease a job is (or was last) out under.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lease {
    /// The receipt of the latest claim; zero before the first.
    pub receipt: u128,
    pub until: Millis,
    /// The claim's lease length, what a heartbeat extends by default.
    pub length_ms: u64,
}

/// How a job ended; boxed in the job, since most of a job's life has none.
#[derive(Debug)]
pub(super) enum Outcome {
    Result {
        blob: Option<BlobId>,
        info: ResultInfo,
    },
    Error(JobFailure),
}

/// A stored log entry: progress 255 stands for none.
#[derive(Debug)]
pub(super) struct StoredEntry {
    time: Millis,
    progress: u8,
    message: Option<Box<str>>,
}

/// The progress log, capped: past the cap the oldest entries go, and
/// `dropped` keeps entry numbers stable for `?after=N`.
#[derive(Debug, Default)]
pub(super) struct JobLog {
    entries: Vec<StoredEntry>,
    dropped: u64,
}

impl Lease {
    pub const NONE: Lease = Lease {
        receipt: 0,
        until: NEVER,
        length_ms: 0,
    };
}

impl JobLog {
    pub fn push(
        &mut self,
        time: Millis,
        progress: Option<u8>,
        message: Option<Box<str>>,
        cap: usize,
    ) {
        if cap == 0 {
            self.dropped += 1;
            return;
        }
        if self.entries.len() >= cap {
            let excess = self.entries.len() + 1 - cap;
            self.entries.drain(..excess);
            self.dropped += excess as u64;
        }
        self.entries.push(StoredEntry {
            time,
            progress: progress.unwrap_or(u8::MAX),
            message,
        });
    }

    /// The entries dropped past the cap, and the ones kept, as
    /// `(time, progress or 255, message)`.
    pub fn parts(&self) -> (u64, impl Iterator<Item = (Millis, u8, Option<&str>)>) {
        let entries = self
            .entries
            .iter()
            .map(|e| (e.time, e.progress, e.message.as_deref()));
        (self.dropped, entries)
    }

    /// The newest entry, as `parts` gives it.
    pub fn last(&self) -> Option<(Millis, u8, Option<&str>)> {
        self.entries
            .last()
            .map(|e| (e.time, e.progress, e.message.as_deref()))
    }

    /// A log read back: `dropped` and the entries kept.
    pub fn restored(
        dropped: u64,
        entries: impl Iterator<Item = (Millis, u8, Option<Box<str>>)>,
    ) -> JobLog {
        JobLog {
            entries: entries
                .map(|(time, progress, message)| StoredEntry {
                    time,
                    progress,
                    message,
                })
                .collect(),
            dropped,
        }
    }

    /// Entries numbered `after` and later.
    pub fn since(&self, after: u64) -> Vec<LogEntry> {
        let skip = usize::try_from(after.saturating_sub(self.dropped)).unwrap_or(usize::MAX);
        self.entries
            .iter()
            .skip(skip)
            .map(|e| LogEntry {
                time: system_time(e.time),
                progress: (e.progress != u8::MAX).then_some(e.progress),
                message: e.message.clone(),
            })
            .collect()
    }
}

/// The submit options most jobs do not use.
#[derive(Debug, Default)]
pub(super) struct Extras {
    pub idempotency_key: Option<Box<str>>,
    /// Where the document is POSTed when the job finishes.
    pub callback: Option<Box<str>>,
    /// The callback was delivered (kept by durable mode, so that a restart
    /// sends only the undelivered ones again).
    pub callback_delivered: bool,
}

impl Extras {
    /// `None` when neither is given.
    pub fn of(
        idempotency_key: Option<Box<str>>,
        callback: Option<Box<str>>,
    ) -> Option<Box<Extras>> {
        (idempotency_key.is_some() || callback.is_some()).then(|| {
            Box::new(Extras {
                idempotency_key,
                callback,
                callback_delivered: false,
            })
        })
    }
}

/// A job's document and bookkeeping.
#[derive(Debug)]
pub(super) struct Job {
    pub id: JobId,
    pub state: JobState,
    pub progress: Option<u8>,
    pub attempt: u32,
    pub max_attempts: u32,
    pub version: u64,
    /// Its place among the queue's pending jobs, as durable mode records
    /// it: its number for a submit, below all others when put back at the
    /// head.
    pub rank: i64,
    pub created: Millis,
    pub started: Millis,
    pub finished: Millis,
    /// When it fails `EXPIRED` if still pending.
    pub pending_until: Millis,
    /// Its entry in the queue's deadline index, `NEVER` if none.
    pub deadline: Millis,
    /// Seconds it is kept once done.
    pub retention: u64,
    pub lease: Lease,
    pub input: Option<BlobId>,
    pub input_size: u64,
    pub input_type: SmolStr,
    pub message: Option<Box<str>>,
    pub metadata: Box<[CustomPair]>,
    /// What few jobs carry, boxed so that the others pay one pointer.
    pub extras: Option<Box<Extras>>,
    pub outcome: Option<Box<Outcome>>,
    pub log: JobLog,
}

impl Job {
    pub fn idempotency_key(&self) -> Option<&str> {
        self.extras.as_ref()?.idempotency_key.as_deref()
    }

    pub fn callback(&self) -> Option<&str> {
        self.extras.as_ref()?.callback.as_deref()
    }

    /// When a finished job is removed.
    pub fn removal(&self) -> Millis {
        self.finished.plus_secs(self.retention)
    }

    /// The blobs the job holds, to delete with it.
    pub fn blobs(&self) -> impl Iterator<Item = BlobId> {
        let result = match self.outcome.as_deref() {
            Some(Outcome::Result { blob, .. }) => *blob,
            _ => None,
        };
        self.input.into_iter().chain(result)
    }

    pub fn error(&self) -> Option<&JobFailure> {
        match self.outcome.as_deref() {
            Some(Outcome::Error(e)) => Some(e),
            _ => None,
        }
    }

    pub fn result(&self) -> Option<(Option<BlobId>, &ResultInfo)> {
        match self.outcome.as_deref() {
            Some(Outcome::Result { blob, info }) => Some((*blob, info)),
            _ => None,
        }
    }

    /// The document as it is now.
    pub fn view(&self, namespace: &Name, queue: &Name) -> JobView {
        let done = self.state.is_done();
        JobView {
            id: self.id,
            namespace: namespace.clone(),
            queue: queue.clone(),
            state: self.state,
            progress: self.progress,
            message: self.message.clone(),
            attempt: self.attempt,
            max_attempts: self.max_attempts,
            created: system_time(self.created),
            started: optional_time(self.started),
            finished: optional_time(self.finished),
            expires: done.then(|| system_time(self.removal())),
            input: BodyInfo {
                size: self.input_size,
                content_type: self.input_type.clone(),
            },
            result: self.result().map(|(_, info)| info.clone()),
            error: self.error().cloned(),
            metadata: self.metadata.clone(),
            version: self.version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_its_numbering_when_old_entries_go() {
        let mut log = JobLog::default();
        for i in 0..5u8 {
            log.push(Millis(u64::from(i) + 1), Some(i), None, 3);
        }
        let progress =
            |after| -> Vec<Option<u8>> { log.since(after).iter().map(|e| e.progress).collect() };
        assert_eq!(progress(0), [Some(2), Some(3), Some(4)]);
        assert_eq!(progress(3), [Some(3), Some(4)]);
        assert_eq!(progress(5), []);
        assert_eq!(progress(u64::MAX), []);
    }

    #[test]
    fn a_job_stays_small() {
        // The budget is 1 KiB a job besides its bytes; the document
        // itself is a fraction of it, leaving room for the maps around it.
        assert!(
            std::mem::size_of::<Job>() <= 256,
            "{}",
            std::mem::size_of::<Job>()
        );
    }
}

//! Reading the jobs log back at start-up: the newest snapshot, then every
//! segment from its number on, into the last state of each job. A record
//! applies only if its version is newer than the job's, so a job found in
//! both a snapshot and the segment written while it was taken comes out
//! right whichever holds the later state.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use super::log::{file_path, list_files, FileKind};
use super::record::{decode, FrameError, JobRecord, LogPart, Place, StoredJob};
use crate::store::journal::files::MAGIC;

/// The jobs the log holds, each with its whole progress log
/// (`LogPart::Whole`), by queue and id.
#[derive(Debug, Default)]
pub struct Replayed {
    pub queues: BTreeMap<Place, BTreeMap<u128, StoredJob>>,
    /// The number the next segment takes.
    pub next_segment: u64,
    /// Files read: earlier runs' segments and snapshot.
    pub files_read: usize,
}

/// Reads `dir`. A record cut short at the very end of the newest segment
/// (a crash during its write) is dropped; damage anywhere else stops the
/// start, unless `repair`, which drops the rest of the damaged file.
pub fn replay(dir: &Path, max_log: usize, repair: bool) -> io::Result<Replayed> {
    let files = list_files(dir)?;
    let snapshot = files
        .iter()
        .filter(|(_, kind)| *kind == FileKind::Snapshot)
        .map(|(seq, _)| *seq)
        .max();
    let mut replayed = Replayed {
        next_segment: files.last().map_or(1, |(seq, _)| seq + 1),
        ..Replayed::default()
    };
    let mut to_read: Vec<(u64, FileKind)> = Vec::new();
    if let Some(seq) = snapshot {
        to_read.push((seq, FileKind::Snapshot));
    }
    to_read.extend(
        files
            .iter()
            .filter(|(seq, kind)| *kind == FileKind::Log && snapshot.is_none_or(|s| *seq >= s)),
    );
    let last = to_read.len().saturating_sub(1);
    replayed.files_read = to_read.len();
    for (i, (seq, kind)) in to_read.into_iter().enumerate() {
        let path = file_path(dir, seq, kind);
        let data = std::fs::read(&path)?;
        let damaged = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the jobs log {} is damaged ({why}); start with --repair to drop what follows the damage",
                    path.display()
                ),
            )
        };
        let Some(mut rest) = data.strip_prefix(MAGIC.as_slice()) else {
            if data.len() < MAGIC.len() && i == last {
                continue;
            }
            if repair {
                tracing::warn!(file = %path.display(), "dropped a jobs log file without its header");
                continue;
            }
            return Err(damaged("no header"));
        };
        while !rest.is_empty() {
            match decode(rest) {
                Ok((record, n)) => {
                    replayed.apply(record, max_log);
                    rest = &rest[n..];
                }
                Err(FrameError::Truncated) if i == last => break,
                Err(e) => {
                    let why = match e {
                        FrameError::Truncated => "a record cut short",
                        FrameError::Corrupt(why) => why,
                    };
                    if !repair {
                        return Err(damaged(why));
                    }
                    tracing::warn!(file = %path.display(), why, "dropped the damaged end of a jobs log file");
                    break;
                }
            }
        }
    }
    Ok(replayed)
}

impl Replayed {
    fn apply(&mut self, record: JobRecord, max_log: usize) {
        match record {
            JobRecord::Upsert(job) => {
                let mut job = *job;
                let jobs = self.queues.entry(job.place.clone()).or_default();
                let old = jobs.get(&job.id);
                if old.is_some_and(|old| old.version >= job.version) {
                    return;
                }
                job.log = match (std::mem::replace(&mut job.log, LogPart::Same), old) {
                    (LogPart::Whole { dropped, entries }, _) => LogPart::Whole { dropped, entries },
                    (part, Some(old)) => {
                        let mut log = old.log.clone();
                        if let (LogPart::Append(entry), LogPart::Whole { dropped, entries }) =
                            (part, &mut log)
                        {
                            push_capped(entries, dropped, entry, max_log);
                        }
                        log
                    }
                    (LogPart::Append(entry), None) => {
                        let mut entries = Vec::new();
                        let mut dropped = 0;
                        push_capped(&mut entries, &mut dropped, entry, max_log);
                        LogPart::Whole { dropped, entries }
                    }
                    (LogPart::Same, None) => LogPart::Whole {
                        dropped: 0,
                        entries: Vec::new(),
                    },
                };
                jobs.insert(job.id, job);
            }
            JobRecord::Removed { place, id } => {
                if let Some(jobs) = self.queues.get_mut(&place) {
                    jobs.remove(&id);
                    if jobs.is_empty() {
                        self.queues.remove(&place);
                    }
                }
            }
            JobRecord::Delivered { place, id } => {
                if let Some(job) = self.queues.get_mut(&place).and_then(|j| j.get_mut(&id)) {
                    job.callback_delivered = true;
                }
            }
        }
    }
}

/// Appends to a log capped at `cap` entries, as the engine's log does.
fn push_capped<T>(entries: &mut Vec<T>, dropped: &mut u64, entry: T, cap: usize) {
    if cap == 0 {
        *dropped += 1;
        return;
    }
    if entries.len() >= cap {
        let excess = entries.len() + 1 - cap;
        entries.drain(..excess);
        *dropped += excess as u64;
    }
    entries.push(entry);
}

//! A job as the engine keeps it, to and from its record in the jobs log.

use serde_json::value::RawValue;

use super::record::{LogPart, Place, StoredEntry, StoredJob, StoredOutcome};
use crate::backend::ids::BlobId;
use crate::backend::jobs::{BodyInfo, JobFailure, JobId, JobState, ResultInfo};
use crate::backend::meta::CustomPair;
use crate::backend::name::Name;
use crate::jobs::job::{Extras, Job, JobLog, Lease, Outcome, NEVER};
use crate::store::clock::Millis;

/// The place of a queue, as records name it.
pub(super) fn place(ns: &Name, queue: &Name) -> Place {
    Place {
        ns: ns.as_str().to_owned(),
        queue: queue.as_str().to_owned(),
    }
}

fn entry(time: Millis, progress: u8, message: Option<&str>) -> StoredEntry {
    StoredEntry {
        time: time.0,
        progress,
        message: message.map(str::to_owned),
    }
}

/// The record of job `job`, number `seq` of `place`, with `log` telling
/// what of its progress log goes with it.
pub(super) fn stored(place: &Place, seq: u64, job: &Job, log: LogWith) -> StoredJob {
    let log = match log {
        LogWith::Nothing => LogPart::Same,
        LogWith::Last => job
            .log
            .last()
            .map_or(LogPart::Same, |(t, p, m)| LogPart::Append(entry(t, p, m))),
        LogWith::Whole => {
            let (dropped, entries) = job.log.parts();
            LogPart::Whole {
                dropped,
                entries: entries.map(|(t, p, m)| entry(t, p, m)).collect(),
            }
        }
    };
    let outcome = job.outcome.as_deref().map(|outcome| match outcome {
        Outcome::Result { blob, info } => StoredOutcome::Result {
            blob: blob.map(|b| b.uuid().as_u128()),
            size: info.body.size,
            content_type: info.body.content_type.to_string(),
            status: info.status,
        },
        Outcome::Error(e) => StoredOutcome::Error {
            code: e.code.to_string(),
            message: e.message.to_string(),
            details: e.details.as_ref().map(|d| d.get().to_owned()),
        },
    });
    let extras = job.extras.as_deref();
    StoredJob {
        place: place.clone(),
        id: job.id.0,
        seq,
        rank: job.rank,
        version: job.version,
        state: job.state.index() as u8,
        progress: job.progress,
        message: job.message.as_deref().map(str::to_owned),
        attempt: job.attempt,
        max_attempts: job.max_attempts,
        created: job.created.0,
        started: job.started.0,
        finished: job.finished.0,
        pending_until: job.pending_until.0,
        retention: job.retention,
        input: job.input.map(|b| b.uuid().as_u128()),
        input_size: job.input_size,
        input_type: job.input_type.to_string(),
        metadata: job
            .metadata
            .iter()
            .map(|p| (p.key.to_string(), p.value.to_string()))
            .collect(),
        idempotency_key: extras.and_then(|e| e.idempotency_key.as_deref().map(str::to_owned)),
        callback: extras.and_then(|e| e.callback.as_deref().map(str::to_owned)),
        callback_delivered: extras.is_some_and(|e| e.callback_delivered),
        outcome,
        log,
    }
}

/// What of a job's progress log a record carries.
#[derive(Clone, Copy, Debug)]
pub(super) enum LogWith {
    Nothing,
    /// Its newest entry, just appended.
    Last,
    /// All of it (a snapshot).
    Whole,
}

/// A job read back, with the deadline its state has as of the restart
/// (`deadline`): a running job's is `now`, so that its lease is handled at
/// once as one that ran out.
pub(super) fn restored(stored: StoredJob, now: Millis) -> Job {
    let state = JobState::ALL
        .get(usize::from(stored.state))
        .copied()
        .unwrap_or(JobState::Failed);
    let log = match stored.log {
        LogPart::Whole { dropped, entries } => JobLog::restored(
            dropped,
            entries.into_iter().map(|e| {
                (
                    Millis(e.time),
                    e.progress,
                    e.message.map(String::into_boxed_str),
                )
            }),
        ),
        _ => JobLog::default(),
    };
    let outcome = stored.outcome.map(|o| {
        Box::new(match o {
            StoredOutcome::Result {
                blob,
                size,
                content_type,
                status,
            } => Outcome::Result {
                blob: blob.map(BlobId::from_u128),
                info: ResultInfo {
                    body: BodyInfo {
                        size,
                        content_type: content_type.into(),
                    },
                    status,
                },
            },
            StoredOutcome::Error {
                code,
                message,
                details,
            } => Outcome::Error(JobFailure {
                code: code.into(),
                message: message.into(),
                details: details.and_then(|d| RawValue::from_string(d).ok()),
            }),
        })
    });
    let mut extras = Extras::of(
        stored.idempotency_key.map(String::into_boxed_str),
        stored.callback.map(String::into_boxed_str),
    );
    if let Some(extras) = &mut extras {
        extras.callback_delivered = stored.callback_delivered;
    }
    let mut job = Job {
        id: JobId(stored.id),
        state,
        progress: stored.progress,
        attempt: stored.attempt,
        max_attempts: stored.max_attempts,
        version: stored.version,
        rank: stored.rank,
        created: Millis(stored.created),
        started: Millis(stored.started),
        finished: Millis(stored.finished),
        pending_until: Millis(stored.pending_until),
        deadline: NEVER,
        retention: stored.retention,
        lease: Lease::NONE,
        input: stored.input.map(BlobId::from_u128),
        input_size: stored.input_size,
        input_type: stored.input_type.into(),
        message: stored.message.map(String::into_boxed_str),
        metadata: stored
            .metadata
            .into_iter()
            .map(|(key, value)| CustomPair {
                key: key.into(),
                value: value.into(),
            })
            .collect(),
        extras,
        outcome,
        log,
    };
    job.deadline = match state {
        JobState::Pending => job.pending_until,
        // Never `NEVER`, which means "no deadline".
        JobState::Running => Millis(now.0.max(1)),
        _ => job.removal(),
    };
    job
}

//! A job as its key-value entry keeps it: JSON that every node reads and
//! writes, holding what the job document shows and what nodes share to
//! move the job on (its lease, the ticket of its place in its queue, its
//! deadlines, its progress log).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::backend::jobs::{BodyInfo, JobFailure, JobId, JobState, JobView, LogEntry, ResultInfo};
use crate::backend::meta::CustomPair;
use crate::backend::name::Name;

/// Most bytes of log entries one entry keeps, besides the entry count cap:
/// the whole entry must fit in one NATS message.
const MAX_LOG_BYTES: usize = 256 * 1024;

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Nanoseconds since the epoch, now: the listing order of a new job.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

pub fn system_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The state as text (`JobState::as_str`).
mod state_text {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    use crate::backend::jobs::JobState;

    pub fn serialize<S: Serializer>(state: &JobState, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(state.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<JobState, D::Error> {
        let raw = <&str>::deserialize(d)?;
        JobState::parse(raw).ok_or_else(|| D::Error::custom(format!("no state {raw:?}")))
    }
}

/// An input or a result: where its bytes are and what they are.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Body {
    /// The blob of the namespace holding the bytes; none for no bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
    pub size: u64,
    pub content_type: String,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Outcome {
    pub body: Body,
    pub status: u16,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Failure {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Box<RawValue>>,
}

impl Failure {
    pub fn of(f: &JobFailure) -> Failure {
        Failure {
            code: f.code.to_string(),
            message: f.message.to_string(),
            details: f.details.clone(),
        }
    }

    pub fn server(code: &str, message: impl Into<String>) -> Failure {
        Failure {
            code: code.to_owned(),
            message: message.into(),
            details: None,
        }
    }

    fn view(&self) -> JobFailure {
        JobFailure {
            code: self.code.as_str().into(),
            message: self.message.as_str().into(),
            details: self.details.clone(),
        }
    }
}

/// One progress report of the log.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct LogLine {
    pub time: u64,
    #[serde(default)]
    pub progress: Option<u8>,
    #[serde(default)]
    pub message: Option<String>,
}

/// The entry's value.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct StoredJob {
    pub id: Uuid,
    #[serde(with = "state_text")]
    pub state: JobState,
    pub progress: Option<u8>,
    pub message: Option<String>,
    pub attempt: u32,
    pub max_attempts: u32,
    /// Bumped on every change the document shows: the `ETag`. (The entry's
    /// revision also moves on a heartbeat that only extends the lease.)
    pub version: u64,
    /// Submission time in nanoseconds: the listing order.
    pub order: u64,
    pub created: u64,
    pub started: Option<u64>,
    pub finished: Option<u64>,
    /// When a pending job expires, in ms.
    pub pending_until: u64,
    /// Seconds a finished job is kept.
    pub retention: u64,
    /// The latest claim's receipt, kept after it ends so that a cancelled
    /// job's worker learns why its calls are refused.
    pub receipt: Option<Uuid>,
    pub lease_until: u64,
    pub lease_ms: u64,
    /// Which message of the pending queue stands for this job: a message
    /// with another ticket is stale and is dropped when claimed.
    pub ticket: u64,
    pub input: Body,
    pub result: Option<Outcome>,
    pub error: Option<Failure>,
    pub metadata: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<String>,
    #[serde(default)]
    pub log: Vec<LogLine>,
    /// Entries dropped from the log's front, so that entry numbers stay.
    #[serde(default)]
    pub log_dropped: u64,
}

/// What the sweeper must do for a job, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// A pending job's lifetime ends.
    Expire(u64),
    /// A running job's lease ends.
    LeaseEnd(u64),
    /// A finished job is removed.
    Remove(u64),
}

impl Due {
    pub fn at(self) -> u64 {
        match self {
            Due::Expire(at) | Due::LeaseEnd(at) | Due::Remove(at) => at,
        }
    }
}

impl StoredJob {
    pub fn encode(&self) -> Bytes {
        serde_json::to_vec(self).unwrap_or_default().into()
    }

    pub fn decode(raw: &[u8]) -> Option<StoredJob> {
        serde_json::from_slice(raw).ok()
    }

    pub fn job_id(&self) -> JobId {
        JobId(self.id.as_u128())
    }

    /// When a finished job goes.
    pub fn removal(&self) -> Option<u64> {
        self.finished
            .map(|at| at.saturating_add(self.retention.saturating_mul(1000)))
    }

    /// Whether the job is still kept: not past its retention (the sweep
    /// removes it soon after).
    pub fn is_kept(&self) -> bool {
        self.removal().is_none_or(|at| at > now_ms())
    }

    pub fn due(&self) -> Due {
        match self.state {
            JobState::Pending => Due::Expire(self.pending_until),
            JobState::Running => Due::LeaseEnd(self.lease_until),
            _ => Due::Remove(self.removal().unwrap_or(0)),
        }
    }

    /// Whether `receipt` names the latest claim.
    pub fn is_receipt(&self, receipt: &str) -> bool {
        let given = Uuid::try_parse(receipt).ok();
        given.is_some() && given == self.receipt
    }

    /// A change the document shows.
    pub fn changed(&mut self) {
        self.version += 1;
    }

    /// Ends the job in terminal `state`; its retention starts.
    pub fn finish(&mut self, state: JobState, now: u64) {
        self.state = state;
        self.finished = Some(now);
        self.lease_until = 0;
        if state == JobState::Succeeded {
            self.progress = Some(100);
        }
        self.changed();
    }

    pub fn fail_with(&mut self, failure: Failure, now: u64) {
        self.error = Some(failure);
        self.finish(JobState::Failed, now);
    }

    /// Back to `pending` under a new ticket (the caller queues it).
    pub fn requeue(&mut self, ticket: u64) {
        self.state = JobState::Pending;
        self.lease_until = 0;
        self.error = None;
        self.ticket = ticket;
        self.changed();
    }

    /// Appends a progress report, dropping the oldest past `cap` entries
    /// or [`MAX_LOG_BYTES`].
    pub fn push_log(&mut self, line: LogLine, cap: usize) {
        if cap == 0 {
            self.log_dropped += 1;
            return;
        }
        self.log.push(line);
        let bytes = |l: &LogLine| l.message.as_ref().map_or(0, String::len) + 32;
        let mut excess = self.log.len().saturating_sub(cap);
        let mut kept: usize = self.log[excess..].iter().map(bytes).sum();
        while kept > MAX_LOG_BYTES && excess + 1 < self.log.len() {
            kept -= bytes(&self.log[excess]);
            excess += 1;
        }
        if excess > 0 {
            self.log.drain(..excess);
            self.log_dropped += excess as u64;
        }
    }

    /// Log entries numbered `after` and later.
    pub fn log_since(&self, after: u64) -> Vec<LogEntry> {
        let skip = usize::try_from(after.saturating_sub(self.log_dropped)).unwrap_or(usize::MAX);
        self.log
            .iter()
            .skip(skip)
            .map(|l| LogEntry {
                time: system_time(l.time),
                progress: l.progress,
                message: l.message.as_deref().map(Into::into),
            })
            .collect()
    }

    pub fn view(&self, ns: &Name, queue: &Name) -> JobView {
        JobView {
            id: self.job_id(),
            namespace: ns.clone(),
            queue: queue.clone(),
            state: self.state,
            progress: self.progress,
            message: self.message.as_deref().map(Into::into),
            attempt: self.attempt,
            max_attempts: self.max_attempts,
            created: system_time(self.created),
            started: self.started.map(system_time),
            finished: self.finished.map(system_time),
            expires: self.removal().map(system_time),
            input: body_info(&self.input),
            result: self.result.as_ref().map(|r| ResultInfo {
                body: body_info(&r.body),
                status: r.status,
            }),
            error: self.error.as_ref().map(Failure::view),
            metadata: self
                .metadata
                .iter()
                .map(|(k, v)| CustomPair {
                    key: k.as_str().into(),
                    value: v.as_str().into(),
                })
                .collect(),
            version: self.version,
        }
    }
}

fn body_info(b: &Body) -> BodyInfo {
    BodyInfo {
        size: b.size,
        content_type: b.content_type.as_str().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> StoredJob {
        StoredJob {
            id: Uuid::new_v4(),
            state: JobState::Pending,
            progress: None,
            message: None,
            attempt: 0,
            max_attempts: 3,
            version: 1,
            order: now_ns(),
            created: now_ms(),
            started: None,
            finished: None,
            pending_until: now_ms() + 1000,
            retention: 60,
            receipt: None,
            lease_until: 0,
            lease_ms: 0,
            ticket: 1,
            input: Body {
                blob: None,
                size: 0,
                content_type: "text/plain".into(),
            },
            result: None,
            error: Some(Failure {
                code: "X".into(),
                message: "m".into(),
                details: RawValue::from_string(r#"{"a":[1]}"#.into()).ok(),
            }),
            metadata: vec![("k".into(), "v ".into())],
            idempotency_key: None,
            callback: None,
            log: Vec::new(),
            log_dropped: 0,
        }
    }

    #[test]
    fn an_entry_reads_back_as_written() {
        let j = job();
        let back = StoredJob::decode(&j.encode()).expect("decodes");
        assert_eq!(back.id, j.id);
        assert_eq!(back.state, JobState::Pending);
        assert_eq!(back.metadata, j.metadata);
        let details = back
            .error
            .and_then(|e| e.details)
            .map(|d| d.get().to_owned());
        assert_eq!(details.as_deref(), Some(r#"{"a":[1]}"#));
        assert!(StoredJob::decode(b"{}").is_none());
    }

    #[test]
    fn the_log_keeps_its_cap_and_its_numbering() {
        let mut j = job();
        for i in 0..5u8 {
            let line = LogLine {
                time: 1,
                progress: Some(i),
                message: None,
            };
            j.push_log(line, 3);
        }
        assert_eq!((j.log.len(), j.log_dropped), (3, 2));
        let since = j.log_since(3);
        assert_eq!(since.len(), 2);
        assert_eq!(since[0].progress, Some(3));
        let big = "x".repeat(100 * 1024);
        for _ in 0..4 {
            let line = LogLine {
                time: 1,
                progress: None,
                message: Some(big.clone()),
            };
            j.push_log(line, 1000);
        }
        assert!(j.log.len() <= 3 && j.log_dropped >= 3, "bounded in bytes");
    }
}

//! The jobs seam: every operation the jobs API asks of whatever keeps job
//! state, as one async trait ([`JobStore`]), and the types that cross it.
//!
//! A job is not an element: it has a document (state, progress, attempts,
//! outcome) that clients read while it runs, a worker's claim is a lease
//! that can be extended, cancelled or run out, and its input and result are
//! byte bodies of any size. The HTTP layer parses requests into these types
//! and shapes answers from them; an engine (the embedded one is
//! `crate::jobs::Jobs`) decides where documents, queues, leases and bytes
//! live. Times cross the seam as `SystemTime`s. The job document's JSON
//! (`document`) is defined here too, since both the HTTP layer's answers
//! and an engine's callbacks send it.

pub mod document;

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde_json::value::RawValue;
use smallvec::SmallVec;
use smol_str::SmolStr;
use uuid::Uuid;

use super::meta::CustomPair;
use super::name::Name;
use super::{BackendError, IncomingBody, MetaInput, Payload};

/// Identifies a job within its namespace. A random UUID v4 (122 random
/// bits): knowing a job's id is what lets a client read or cancel it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct JobId(pub u128);

impl JobId {
    pub fn random() -> JobId {
        JobId(Uuid::new_v4().as_u128())
    }

    /// Parses an id as a client spelled it; `None` for anything that is not
    /// a UUID (the contract answers `404` for it, like an unknown id).
    pub fn parse(raw: &str) -> Option<JobId> {
        Uuid::try_parse(raw).ok().map(|u| JobId(u.as_u128()))
    }

    pub fn uuid(self) -> Uuid {
        Uuid::from_u128(self.0)
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.uuid().hyphenated(), f)
    }
}

/// Where a job is in its life. The last three are terminal.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum JobState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Pending,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    pub fn is_done(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    /// The state's place in a [`JobCounts`] array.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error codes the server itself sets on a job.
pub mod codes {
    /// Cancelled by a client.
    pub const CANCELLED: &str = "CANCELLED";
    /// Every attempt's lease ran out.
    pub const ABANDONED: &str = "ABANDONED";
    /// Its lifetime passed while it was still pending.
    pub const EXPIRED: &str = "EXPIRED";
    /// A worker's failure that named no code.
    pub const FAILED: &str = "FAILED";
}

/// Why a job failed or was cancelled: the job document's `error`.
#[derive(Debug, Clone)]
pub struct JobFailure {
    pub code: Box<str>,
    pub message: Box<str>,
    /// Any JSON the worker gave, kept as its text.
    pub details: Option<Box<RawValue>>,
}

/// Size and type of a job's input or result.
#[derive(Debug, Clone)]
pub struct BodyInfo {
    pub size: u64,
    pub content_type: SmolStr,
}

/// A succeeded job's result, as the document describes it.
#[derive(Debug, Clone)]
pub struct ResultInfo {
    pub body: BodyInfo,
    /// The HTTP status the worker reported for the work.
    pub status: u16,
}

/// A job as it was at one moment: everything its document shows.
#[derive(Debug, Clone)]
pub struct JobView {
    pub id: JobId,
    pub namespace: Name,
    pub queue: Name,
    pub state: JobState,
    pub progress: Option<u8>,
    pub message: Option<Box<str>>,
    pub attempt: u32,
    pub max_attempts: u32,
    pub created: SystemTime,
    pub started: Option<SystemTime>,
    pub finished: Option<SystemTime>,
    /// When a finished job is removed.
    pub expires: Option<SystemTime>,
    pub input: BodyInfo,
    pub result: Option<ResultInfo>,
    pub error: Option<JobFailure>,
    pub metadata: Box<[CustomPair]>,
    /// Changes on every change of the document: the HTTP layer's `ETag`.
    pub version: u64,
}

/// One entry of a job's progress log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub time: SystemTime,
    pub progress: Option<u8>,
    pub message: Option<Box<str>>,
}

/// What a submit carries besides its input bytes, every value already
/// checked against the server's limits.
#[derive(Debug, Clone)]
pub struct SubmitOptions {
    pub meta: MetaInput,
    /// Seconds the job may wait `pending`, counted from its submission.
    pub lifetime: u64,
    pub max_attempts: u32,
    /// Seconds a finished job is kept.
    pub retention: u64,
    pub idempotency_key: Option<Box<str>>,
    /// Where the job document is POSTed when the job finishes; already
    /// checked against the server's allowed prefixes.
    pub callback: Option<Box<str>>,
}

/// Answer to a submit.
#[derive(Debug)]
pub struct Submitted {
    pub job: JobView,
    /// `false` when an earlier job with the same idempotency key answered.
    pub created: bool,
}

/// How to claim.
#[derive(Debug, Clone, Copy)]
pub struct ClaimOptions {
    pub lease: Duration,
    /// Wait up to this long for a pending job.
    pub wait: Duration,
}

/// A job handed to a worker.
#[derive(Debug)]
pub struct Claimed {
    pub job: JobView,
    /// The lease's receipt: the worker's proof on every later call.
    pub receipt: Uuid,
    pub lease_expires: SystemTime,
    pub input: Payload,
}

/// A worker's progress report; every part optional.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub progress: Option<u8>,
    pub message: Option<Box<str>>,
    /// The new lease length from now; the claim's if `None`.
    pub lease: Option<Duration>,
}

/// What a result upload says besides its bytes.
#[derive(Debug, Clone)]
pub struct ResultMeta {
    pub content_type: SmolStr,
    pub status: u16,
}

/// A worker's failure report.
#[derive(Debug, Clone)]
pub struct FailureReport {
    pub failure: JobFailure,
    /// Put the job back at the head of its queue if attempts are left.
    pub retry: bool,
}

/// Versions of a job a client already has (`If-None-Match`).
#[derive(Debug, Clone, Default)]
pub enum Seen {
    /// None: only the job's end is awaited.
    #[default]
    Nothing,
    /// `*`: any version.
    Any,
    Versions(SmallVec<[u64; 2]>),
}

impl Seen {
    pub fn contains(&self, version: u64) -> bool {
        match self {
            Seen::Nothing => false,
            Seen::Any => true,
            Seen::Versions(v) => v.contains(&version),
        }
    }

    /// Whether a long poll ends at `job`: it is done, or it is a version
    /// the client has not seen.
    pub fn answers(&self, done: bool, version: u64) -> bool {
        done || (!matches!(self, Seen::Nothing) && !self.contains(version))
    }
}

/// How to list a queue's jobs.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub state: Option<JobState>,
    pub limit: usize,
    /// Where the previous page ended: the engine's own opaque token.
    pub page_token: Option<String>,
}

/// One page of a listing, oldest first.
#[derive(Debug)]
pub struct JobPage {
    pub jobs: Vec<JobView>,
    pub next_page_token: Option<String>,
}

/// Jobs by state, indexed by [`JobState::index`].
pub type JobCounts = [u64; 5];

/// One queue's jobs by state.
#[derive(Debug, Clone)]
pub struct QueueJobCounts {
    pub namespace: Name,
    pub queue: Name,
    pub counts: JobCounts,
    /// Workers blocked in a claim.
    pub waiting_workers: u64,
}

/// Events counted since start, for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct JobTotals {
    pub submitted: u64,
    pub claims: u64,
    pub completions: u64,
    pub failures: u64,
    pub cancellations: u64,
    /// Callbacks a receiver accepted (answered 2xx).
    pub callbacks_delivered: u64,
    /// Callback attempts that failed (no connection, a timeout, not 2xx).
    pub callback_failures: u64,
    /// Callbacks given up: retried for the whole retry period, dropped past
    /// the pending limit, or left at shutdown.
    pub callbacks_abandoned: u64,
}

/// What can go wrong in a job operation, as the client should learn it.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("no job {id} in queue {queue} of namespace {namespace}")]
    JobNotFound {
        namespace: Name,
        queue: Name,
        id: String,
    },
    #[error("no jobs in queue {queue} of namespace {namespace}")]
    QueueNotFound { namespace: Name, queue: Name },
    /// The operation needs a finished job.
    #[error("job {id} is {state}, not done; cancel it first")]
    NotDone { id: JobId, state: JobState },
    /// A result was asked of a job that has none.
    #[error("job {id} is {state}: it has no result")]
    NoResult {
        id: JobId,
        state: JobState,
        error: Option<JobFailure>,
    },
    /// The receipt is not the job's current lease.
    #[error("receipt {receipt} is not the current lease of job {id} (it may have run out, or the job was claimed again or finished)")]
    LeaseNotHeld { id: JobId, receipt: String },
    /// The job was cancelled: its worker's lease is revoked.
    #[error("job {id} was cancelled; its lease is revoked")]
    Cancelled { id: JobId },
    #[error("page token {0:?} is not one this server handed out")]
    BadPageToken(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Storing or reading the job's bytes failed.
    #[error(transparent)]
    Bytes(#[from] BackendError),
}

/// Whatever keeps job state behind the HTTP layer. Names arrive valid; ids
/// and receipts as the client spelled them (unknown or malformed: not
/// found, or not held). Operations return once their change is made; a
/// waiting call (`claim`, `watch`) dropped by its caller is forgotten and
/// is handed nothing.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Stores `input` and queues a new `pending` job at the tail of
    /// `queue`; with an idempotency key another submit already used while
    /// its job is kept, answers that job and stores nothing.
    async fn submit(
        &self,
        ns: &Name,
        queue: &Name,
        input: IncomingBody,
        opts: SubmitOptions,
    ) -> Result<Submitted, JobError>;

    /// The job as it is now.
    async fn get(&self, ns: &Name, queue: &Name, id: &str) -> Result<JobView, JobError>;

    /// Waits up to `wait` for the job to be done or to differ from every
    /// version in `seen`; then the job as it is.
    async fn watch(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
        seen: &Seen,
        wait: Duration,
    ) -> Result<JobView, JobError>;

    /// A succeeded job's result bytes, with the job.
    async fn read_result(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
    ) -> Result<(JobView, Payload), JobError>;

    /// The progress log from entry `after` on (entries count from 0 since
    /// the job's submission).
    async fn log(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
        after: u64,
    ) -> Result<Vec<LogEntry>, JobError>;

    /// Cancels a pending or running job; a finished one is left as it is.
    async fn cancel(&self, ns: &Name, queue: &Name, id: &str) -> Result<JobView, JobError>;

    /// Removes a finished job with its input and result.
    async fn delete(&self, ns: &Name, queue: &Name, id: &str) -> Result<(), JobError>;

    /// A page of the queue's jobs, oldest first.
    async fn list(&self, ns: &Name, queue: &Name, opts: ListOptions) -> Result<JobPage, JobError>;

    /// Per queue, the namespace's jobs by state; `None` if it has none.
    async fn counts(&self, ns: &Name) -> Result<Option<Vec<QueueJobCounts>>, JobError>;

    /// Claims the oldest pending job under a lease, waiting up to
    /// `opts.wait`; `None` if none came.
    async fn claim(
        &self,
        ns: &Name,
        queue: &Name,
        opts: ClaimOptions,
    ) -> Result<Option<Claimed>, JobError>;

    /// Records a worker's progress and extends its lease; when the lease
    /// now ends.
    async fn heartbeat(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
        receipt: &str,
        report: Heartbeat,
    ) -> Result<SystemTime, JobError>;

    /// Stores the result read from `body` and marks the job succeeded. A
    /// body that fails midway stores nothing and leaves the job running.
    async fn complete(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
        receipt: &str,
        body: IncomingBody,
        meta: ResultMeta,
    ) -> Result<JobView, JobError>;

    /// Records a worker's failure: back to pending, or failed.
    async fn fail(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
        receipt: &str,
        report: FailureReport,
    ) -> Result<JobView, JobError>;

    /// Every queue's jobs by state, read by a metrics scrape.
    fn job_counts(&self) -> Vec<QueueJobCounts>;

    /// Counters since start, read by a metrics scrape.
    fn job_totals(&self) -> JobTotals;

    /// Starts shutdown: every waiting claim and watch answers
    /// `ShuttingDown`, and so does any that would wait from now on.
    fn begin_shutdown(&self);

    /// The last step of shutdown: stops background work and lets go of
    /// what the process holds.
    async fn close(&self);
}

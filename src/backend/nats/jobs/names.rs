//! How jobs are named in JetStream: a key-value bucket of job documents
//! per namespace, and a work-queue stream per namespace holding each job
//! queue's pending order, with two subjects (and consumers) per queue:
//! `new` for submitted jobs and `again` for jobs put back, which claims
//! take first (a job put back goes to the head of its queue).
//!
//! Names are escaped as the element backend's are (`nats::names`); the
//! stream's name does not start with `BLOBQ_`, so no listing of element
//! namespaces takes it for one, and its subjects start with their own
//! token, so no element stream's subjects overlap them.

use sha2::{Digest, Sha256};

use super::super::names::escape;
use crate::backend::jobs::JobId;
use crate::backend::name::Name;

/// Prefix of every jobs bucket; JetStream names its stream `KV_` + it.
pub const BUCKET_PREFIX: &str = "BLOBQ_JOBS_";
/// Prefix of the streams of key-value buckets.
pub const KV_STREAM_PREFIX: &str = "KV_";

/// The bucket of namespace `ns`'s job documents.
pub fn bucket(ns: &Name) -> String {
    format!("{BUCKET_PREFIX}{}", escape(ns))
}

/// The namespace of bucket stream `stream`, if blobq made it.
pub fn namespace_of_bucket_stream(stream: &str) -> Option<Name> {
    let escaped = stream
        .strip_prefix(KV_STREAM_PREFIX)?
        .strip_prefix(BUCKET_PREFIX)?;
    super::super::names::unescape(escaped)
}

/// Key of job `id` of `queue`: `{queue}.{id}`.
pub fn job_key(queue: &Name, id: JobId) -> String {
    format!("{}.{id}", escape(queue))
}

/// Keys of every job of `queue`.
pub fn queue_jobs(queue: &Name) -> String {
    format!("{}.*", escape(queue))
}

/// The queue and id of key `key`, if it is a job's (not an idempotency
/// key's: those have three tokens).
pub fn parse_job_key(key: &str) -> Option<(Name, JobId)> {
    let (queue, id) = key.split_once('.')?;
    let queue = super::super::names::unescape(queue)?;
    Some((queue, JobId::parse(id)?))
}

/// Key of idempotency key `key` of `queue`: `{queue}._k.{sha256 of key}`
/// (a key may hold characters no NATS key may).
pub fn idempotency_key(queue: &Name, key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}._k.{hex}", escape(queue))
}

/// The stream of namespace `ns`'s pending orders.
pub fn pending_stream(ns: &Name) -> String {
    format!("BLOBQJOBS_{}", escape(ns))
}

pub fn pending_subjects(ns: &Name) -> String {
    format!("blobqjobs.{}.>", escape(ns))
}

/// Which of a queue's two pending subjects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Submitted jobs, in submission order.
    New,
    /// Jobs put back (a lease that ran out, a retried failure), taken
    /// before new ones.
    Again,
}

impl Lane {
    fn token(self) -> &'static str {
        match self {
            Lane::New => "n",
            Lane::Again => "a",
        }
    }
}

pub fn pending_subject(ns: &Name, queue: &Name, lane: Lane) -> String {
    format!(
        "blobqjobs.{}.{}.{}",
        escape(ns),
        escape(queue),
        lane.token()
    )
}

/// The durable consumer of a lane: `_` followed by a letter other than
/// `u` or `d` is no escaped name's, so no two queues' consumers meet.
pub fn pending_consumer(queue: &Name, lane: Lane) -> String {
    format!("{}_{}", escape(queue), lane.token())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_subjects_read_back() {
        let ns = Name::parse("a.b").unwrap();
        let q = Name::parse("q_1").unwrap();
        let id = JobId::random();
        assert_eq!(parse_job_key(&job_key(&q, id)), Some((q.clone(), id)));
        let key = idempotency_key(&q, "any key / with spaces");
        assert!(parse_job_key(&key).is_none(), "not a job's key");
        assert_eq!(key.split('.').count(), 3);
        let stream = format!("{KV_STREAM_PREFIX}{}", bucket(&ns));
        assert_eq!(namespace_of_bucket_stream(&stream), Some(ns.clone()));
        assert_eq!(
            pending_subject(&ns, &q, Lane::Again),
            "blobqjobs.a_db.q_u1.a"
        );
        assert_ne!(
            pending_consumer(&q, Lane::New),
            pending_consumer(&q, Lane::Again)
        );
    }
}

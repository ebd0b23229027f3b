//! The job document of the contract as JSON: what `GET /jobs/{ns}/{queue}/{id}`
//! answers and what a callback delivers. It is written in one place for
//! both, here at the seam, so every engine's callbacks send exactly what
//! the HTTP layer answers. Times are RFC 3339 UTC with milliseconds.

use std::time::SystemTime;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use super::{JobFailure, JobView};
use crate::backend::meta::CustomPair;

/// `2026-12-05T16:00:00.000Z`.
pub fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The path of a job, its `Location` and document `name` but for the
/// leading `/`.
pub fn path(view: &JobView) -> String {
    format!("/jobs/{}/{}/{}", view.namespace, view.queue, view.id)
}

#[derive(Serialize)]
pub struct ErrorDoc<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a RawValue>,
}

impl<'a> ErrorDoc<'a> {
    pub fn of(e: &'a JobFailure) -> ErrorDoc<'a> {
        ErrorDoc {
            code: &e.code,
            message: &e.message,
            details: e.details.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct BodyDoc<'a> {
    size: u64,
    content_type: &'a str,
}

#[derive(Serialize)]
struct ResultDoc<'a> {
    size: u64,
    content_type: &'a str,
    status: u16,
    href: String,
}

/// `X-Custom-Data` pairs as a JSON object (keys are unique: a submit
/// refuses a key given twice).
struct MetadataDoc<'a>(&'a [CustomPair]);

impl Serialize for MetadataDoc<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for pair in self.0 {
            map.serialize_entry(&*pair.key, &*pair.value)?;
        }
        map.end()
    }
}

/// The job document of the contract.
#[derive(Serialize)]
pub struct JobDoc<'a> {
    name: String,
    id: String,
    namespace: &'a str,
    queue: &'a str,
    state: &'static str,
    done: bool,
    progress: Option<u8>,
    message: Option<&'a str>,
    attempt: u32,
    max_attempts: u32,
    created: String,
    started: Option<String>,
    finished: Option<String>,
    expires: Option<String>,
    input: BodyDoc<'a>,
    result: Option<ResultDoc<'a>>,
    error: Option<ErrorDoc<'a>>,
    metadata: MetadataDoc<'a>,
}

impl<'a> JobDoc<'a> {
    pub fn of(v: &'a JobView) -> JobDoc<'a> {
        let path = path(v);
        JobDoc {
            name: path[1..].to_owned(),
            id: v.id.to_string(),
            namespace: v.namespace.as_str(),
            queue: v.queue.as_str(),
            state: v.state.as_str(),
            done: v.state.is_done(),
            progress: v.progress,
            message: v.message.as_deref(),
            attempt: v.attempt,
            max_attempts: v.max_attempts,
            created: time(v.created),
            started: v.started.map(time),
            finished: v.finished.map(time),
            expires: v.expires.map(time),
            input: BodyDoc {
                size: v.input.size,
                content_type: &v.input.content_type,
            },
            result: v.result.as_ref().map(|r| ResultDoc {
                size: r.body.size,
                content_type: &r.body.content_type,
                status: r.status,
                href: format!("{path}/result"),
            }),
            error: v.error.as_ref().map(ErrorDoc::of),
            metadata: MetadataDoc(&v.metadata),
        }
    }
}

/// The job document as JSON bytes.
pub fn to_json(view: &JobView) -> Vec<u8> {
    serde_json::to_vec(&JobDoc::of(view)).unwrap_or_default()
}

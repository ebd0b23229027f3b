//! `/qs`: push, reference push, pop, and the statistics of queues,
//! namespaces and the server.

use std::ops::Range;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt as _;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};

use super::request::{
    self, name, PopQuery, PushHeaders, BLOB_ID, CUSTOM_DATA, DELIVERIES, ELEMENT_ID, LEASE,
    LIFETIME, SIZE,
};
use super::{bytes_value, header_value, id_value, json, json_bytes, ApiError, App, Body, Handled};
use crate::store::blob::BlobContent;
use crate::store::clock::saturating_millis;
use crate::store::ids::{BlobId, ElementId};
use crate::store::meta::{Metadata, DEFAULT_CONTENT_TYPE};
use crate::store::{Commit, PopMode, Pushed, Store};

/// The JSON body of a push answer.
#[cfg_attr(test, derive(serde::Serialize))]
struct PushAnswer<'a> {
    id: ElementId,
    blob_id: Option<BlobId>,
    namespace: &'a str,
    queue: &'a str,
    size: u64,
    lifetime: u64,
}

/// The push answer's JSON, and where in it the ids are spelled out: the
/// id headers are slices of the same bytes, not formatted again.
struct PushJson {
    body: Bytes,
    id: Range<usize>,
    blob_id: Option<Range<usize>>,
}

impl PushAnswer<'_> {
    /// The answer's JSON, written out directly: it goes with every push, and
    /// serde_json's general path took 3–4 % of a push's CPU. Nothing in it
    /// needs escaping: ids are hex and names passed `Name::parse`
    /// (`[0-9a-zA-Z_.-]`). A test holds it byte for byte to serde_json's.
    fn to_json(&self) -> PushJson {
        let mut out = Vec::with_capacity(160 + self.namespace.len() + self.queue.len());
        let mut text = uuid::Uuid::encode_buffer();
        let mut number = itoa::Buffer::new();
        out.extend_from_slice(b"{\"id\":\"");
        let id = spell(
            &mut out,
            self.id.uuid().hyphenated().encode_lower(&mut text),
        );
        out.extend_from_slice(b"\",\"blob_id\":");
        let blob_id = match self.blob_id {
            Some(blob) => {
                out.push(b'"');
                let at = spell(&mut out, blob.uuid().hyphenated().encode_lower(&mut text));
                out.push(b'"');
                Some(at)
            }
            None => {
                out.extend_from_slice(b"null");
                None
            }
        };
        out.extend_from_slice(b",\"namespace\":\"");
        out.extend_from_slice(self.namespace.as_bytes());
        out.extend_from_slice(b"\",\"queue\":\"");
        out.extend_from_slice(self.queue.as_bytes());
        out.extend_from_slice(b"\",\"size\":");
        out.extend_from_slice(number.format(self.size).as_bytes());
        out.extend_from_slice(b",\"lifetime\":");
        out.extend_from_slice(number.format(self.lifetime).as_bytes());
        out.push(b'}');
        PushJson {
            body: Bytes::from(out),
            id,
            blob_id,
        }
    }
}

/// Appends `text` to `out`; returns where it landed.
fn spell(out: &mut Vec<u8>, text: &str) -> Range<usize> {
    let start = out.len();
    out.extend_from_slice(text.as_bytes());
    start..out.len()
}

/// Receives a request body chunk by chunk into memory or a spill file,
/// giving up when the client sends nothing for `idle` (a slow-body client
/// must not hold a connection and a half-written file forever).
pub(super) async fn receive_body(
    store: &Store,
    body: Incoming,
    idle: Duration,
) -> Result<(BlobContent, u64), ApiError> {
    let mut writer = store.blob_writer(body.size_hint().exact())?;
    let mut body = body;
    loop {
        // A small body has usually arrived with the head: only a frame still
        // to come needs a timer.
        let next = match body.frame().now_or_never() {
            Some(next) => next,
            None => tokio::time::timeout(idle, body.frame())
                .await
                .map_err(|_| ApiError::BodyTimeout(idle.as_secs()))?,
        };
        let Some(frame) = next else { break };
        let frame = frame.map_err(|e| ApiError::BodyRead(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            writer.write(data).await?;
        }
    }
    Ok(writer.finish().await?)
}

fn pushed(ns: &str, q: &str, p: &Pushed) -> Handled {
    let answer = PushAnswer {
        id: p.id,
        blob_id: p.blob_id,
        namespace: ns,
        queue: q,
        size: p.size,
        lifetime: p.lifetime,
    };
    let json = answer.to_json();
    let mut response = json_bytes(StatusCode::ACCEPTED, json.body.clone());
    let headers = response.headers_mut();
    headers.insert(ELEMENT_ID, bytes_value(json.body.slice(json.id)));
    if let Some(at) = json.blob_id {
        headers.insert(BLOB_ID, bytes_value(json.body.slice(at)));
    }
    Ok(response)
}

/// `POST /qs/{ns}/{queue}`: the body becomes a new element at the tail.
pub(super) async fn push(app: &App, ns: &str, q: &str, req: Request<Incoming>) -> Handled {
    let (nsn, qn) = (name("namespace", ns)?, name("queue", q)?);
    let push = PushHeaders::parse(req.headers(), &app.limits)?;
    let body = req.into_body();
    app.store
        .precheck_quota(&nsn, 1, body.size_hint().exact())?;
    let data = receive_body(&app.store, body, app.limits.body_read_timeout).await?;
    let result = app
        .store
        .push(&nsn, &qn, Some(data), push.meta, push.lifetime)?;
    app.store.durable(Commit::Accepted).await?;
    pushed(ns, q, &result)
}

/// `PUT /qs/{ns}/{queue}`: a header-only element, referencing a blob if
/// `X-BlobStorage_Id` names one. The body is ignored.
pub(super) async fn push_reference(
    app: &App,
    ns: &str,
    q: &str,
    req: &Request<Incoming>,
) -> Handled {
    let (nsn, qn) = (name("namespace", ns)?, name("queue", q)?);
    let push = PushHeaders::parse(req.headers(), &app.limits)?;
    let blob = match request::blob_reference(req.headers())? {
        None => None,
        Some(raw) => Some(
            raw.parse::<BlobId>()
                .map_err(|_| ApiError::NotFound(format!("no blob {raw} in namespace {ns}")))?,
        ),
    };
    let result = app
        .store
        .push_reference(&nsn, &qn, blob, push.meta, push.lifetime)?;
    app.store.durable(Commit::Accepted).await?;
    pushed(ns, q, &result)
}

/// The headers every element or blob answer carries.
pub(super) fn describe(
    headers: &mut HeaderMap,
    meta: &Metadata,
    blob: Option<BlobId>,
    size: u64,
    seconds_left: u64,
) {
    let content_type = match &*meta.content_type {
        DEFAULT_CONTENT_TYPE => HeaderValue::from_static(DEFAULT_CONTENT_TYPE),
        other => header_value(other),
    };
    headers.insert(CONTENT_TYPE, content_type);
    if let Some(blob) = blob {
        headers.insert(BLOB_ID, id_value(blob.uuid()));
    }
    headers.insert(SIZE, size.into());
    headers.insert(LIFETIME, seconds_left.into());
    for pair in meta.custom.iter() {
        let mut text = BytesMut::with_capacity(pair.key.len() + 1 + pair.value.len());
        text.extend_from_slice(pair.key.as_bytes());
        text.extend_from_slice(b"=");
        text.extend_from_slice(pair.value.as_bytes());
        headers.append(CUSTOM_DATA, bytes_value(text.freeze()));
    }
}

/// `GET /qs/{ns}/{queue}`: pops the head, waiting up to `?timeout=`.
pub(super) async fn pop(app: &App, ns: &str, q: &str, req: &Request<Incoming>) -> Handled {
    let (nsn, qn) = (name("namespace", ns)?, name("queue", q)?);
    let query = PopQuery::parse(req.uri().query(), &app.limits)?;
    let mode = PopMode {
        with_data: !query.header_only,
        lease_ms: query.lease.map(saturating_millis),
    };
    let popped = app.store.pop(&nsn, &qn, mode, query.timeout).await?;
    let Some(p) = popped else {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        return Ok(response);
    };
    let body_len = if p.body.is_some() { p.size } else { 0 };
    let body = p.body.map_or_else(Body::empty, |b| Body::blob(b, p.size));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    describe(headers, &p.meta, p.blob_id, p.size, p.seconds_left);
    headers.insert(ELEMENT_ID, id_value(p.id.uuid()));
    headers.insert(CONTENT_LENGTH, body_len.into());
    if let Some(lease) = p.lease {
        headers.insert(LEASE, id_value(lease.receipt.uuid()));
        headers.insert(DELIVERIES, lease.deliveries.into());
    }
    Ok(response)
}

pub(super) fn queue_stats(app: &App, ns: &str, q: &str) -> Handled {
    let (nsn, qn) = (name("namespace", ns)?, name("queue", q)?);
    let stats = app
        .store
        .queue_stats(&nsn, &qn)
        .ok_or_else(|| ApiError::NotFound(format!("no queue {q} in namespace {ns}")))?;
    json(StatusCode::OK, &stats)
}

pub(super) fn namespace_stats(app: &App, ns: &str) -> Handled {
    let nsn = name("namespace", ns)?;
    let stats = app
        .store
        .namespace_stats(&nsn)
        .ok_or_else(|| ApiError::NotFound(format!("no namespace {ns}")))?;
    json(StatusCode::OK, &stats)
}

pub(super) fn server_stats(app: &App) -> Handled {
    json(StatusCode::OK, &app.store.server_stats())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_push_answer_is_the_json_serde_would_write() {
        let with_blob = PushAnswer {
            id: ElementId::random(),
            blob_id: Some(BlobId::random()),
            namespace: "ns-1.a_b",
            queue: "Q",
            size: 0,
            lifetime: 3600,
        };
        let header_only = PushAnswer {
            id: ElementId::random(),
            blob_id: None,
            namespace: "n",
            queue: "queue.with-every_kind.of.9",
            size: u64::MAX,
            lifetime: 1,
        };
        for answer in [with_blob, header_only] {
            let expected = serde_json::to_vec(&answer).unwrap();
            let json = answer.to_json();
            assert_eq!(
                String::from_utf8(json.body.to_vec()).unwrap(),
                String::from_utf8(expected).unwrap()
            );
            assert_eq!(json.body[json.id], *answer.id.to_string().as_bytes());
            let blob_id = json.blob_id.map(|at| json.body.slice(at));
            let expected = answer.blob_id.map(|b| b.to_string());
            assert_eq!(blob_id.as_deref(), expected.as_ref().map(|b| b.as_bytes()));
        }
    }
}

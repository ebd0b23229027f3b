//! `/qs`: push, reference push, pop, and the statistics of queues,
//! namespaces and the server.

use std::future::Future;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use hyper::body::Incoming;

use super::request::{
    self, name, PopQuery, PushHeaders, BLOB_ID, CUSTOM_DATA, DELIVERIES, ELEMENT_ID, LEASE,
    LIFETIME, SIZE,
};
use super::spelled::Spelled;
use super::{bytes_value, header_value, json, json_bytes, ApiError, App, Body, Handled};
use crate::backend::ids::{BlobId, ElementId};
use crate::backend::meta::{Metadata, DEFAULT_CONTENT_TYPE};
use crate::backend::{PopOptions, Pushed};

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

impl PushAnswer<'_> {
    /// Writes the answer's JSON, and its id headers into `headers` as slices
    /// of the same bytes. Written out directly: it goes with every push, and
    /// serde_json's general path took 3–4 % of a push's CPU. Nothing in it
    /// needs escaping: ids are hex and names passed `Name::parse`
    /// (`[0-9a-zA-Z_.-]`). A test holds it byte for byte to serde_json's.
    fn write(&self, headers: &mut HeaderMap) -> Bytes {
        let mut out = Spelled::with_capacity(160 + self.namespace.len() + self.queue.len());
        let mut number = itoa::Buffer::new();
        out.text(b"{\"id\":\"");
        out.id(ELEMENT_ID, self.id.uuid());
        out.text(b"\",\"blob_id\":");
        match self.blob_id {
            Some(blob) => {
                out.text(b"\"");
                out.id(BLOB_ID, blob.uuid());
                out.text(b"\"");
            }
            None => out.text(b"null"),
        }
        out.text(b",\"namespace\":\"");
        out.text(self.namespace.as_bytes());
        out.text(b"\",\"queue\":\"");
        out.text(self.queue.as_bytes());
        out.text(b"\",\"size\":");
        out.text(number.format(self.size).as_bytes());
        out.text(b",\"lifetime\":");
        out.text(number.format(self.lifetime).as_bytes());
        out.text(b"}");
        out.insert_into(headers)
    }
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
    // The body is written together with the id headers sliced from it.
    let mut response = json_bytes(StatusCode::ACCEPTED, Bytes::new());
    let json = answer.write(response.headers_mut());
    *response.body_mut() = Body::bytes(json);
    Ok(response)
}

/// `POST /qs/{ns}/{queue}`: the body becomes a new element at the tail.
/// (An `async move` block, not an `async fn`: see `App::serve`.)
#[allow(clippy::manual_async_fn)]
pub(super) fn push<'a>(
    app: &'a App,
    ns: &'a str,
    q: &'a str,
    head: &'a Parts,
    body: Incoming,
) -> impl Future<Output = Handled> + 'a {
    async move {
        let (nsn, qn) = (name("namespace", ns)?, name("queue", q)?);
        let push = PushHeaders::parse(&head.headers, &app.limits)?;
        let body = super::body::incoming(body, app.limits.body_read_timeout);
        let result = app.backend.push(&nsn, &qn, body, push.options()).await?;
        pushed(ns, q, &result)
    }
}

/// `PUT /qs/{ns}/{queue}`: a header-only element, referencing a blob if
/// `X-BlobStorage_Id` names one. The body is ignored.
pub(super) async fn push_reference(app: &App, ns: &str, q: &str, head: &Parts) -> Handled {
    let (nsn, qn) = (name("namespace", ns)?, name("queue", q)?);
    let push = PushHeaders::parse(&head.headers, &app.limits)?;
    let blob = request::blob_reference(&head.headers)?;
    let result = app
        .backend
        .push_reference(&nsn, &qn, blob, push.options())
        .await?;
    pushed(ns, q, &result)
}

/// The headers every element or blob answer carries: the content type and
/// custom data here, the spelled-out values into `spelled`.
pub(super) fn describe(
    headers: &mut HeaderMap,
    spelled: &mut Spelled,
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
        spelled.id(BLOB_ID, blob.uuid());
    }
    spelled.number(SIZE, size);
    spelled.number(LIFETIME, seconds_left);
    for pair in meta.custom.iter() {
        let mut text = BytesMut::with_capacity(pair.key.len() + 1 + pair.value.len());
        text.extend_from_slice(pair.key.as_bytes());
        text.extend_from_slice(b"=");
        text.extend_from_slice(pair.value.as_bytes());
        headers.append(CUSTOM_DATA, bytes_value(text.freeze()));
    }
}

/// `GET /qs/{ns}/{queue}`: pops the head, waiting up to `?timeout=`.
pub(super) async fn pop(app: &App, ns: &str, q: &str, head: &Parts) -> Handled {
    let (nsn, qn) = (name("namespace", ns)?, name("queue", q)?);
    let query = PopQuery::parse(head.uri.query(), &app.limits)?;
    let opts = PopOptions {
        with_data: !query.header_only,
        lease: query.lease,
        wait: query.timeout,
    };
    let popped = app.backend.pop(&nsn, &qn, opts).await?;
    let Some(p) = popped else {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        return Ok(response);
    };
    let body = p.body.map_or_else(Body::empty, Body::payload);
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    // Ids and numbers: at most 36 + 20 + 20 + 36 + 36 + 10 bytes. hyper
    // writes Content-Length itself, from the body's exact size.
    let mut spelled = Spelled::with_capacity(160);
    describe(
        headers,
        &mut spelled,
        &p.meta,
        p.blob_id,
        p.size,
        p.seconds_left,
    );
    spelled.id(ELEMENT_ID, p.id.uuid());
    if let Some(lease) = p.lease {
        spelled.id(LEASE, lease.receipt.uuid());
        spelled.number(DELIVERIES, lease.deliveries.into());
    }
    spelled.insert_into(headers);
    Ok(response)
}

pub(super) async fn queue_stats(app: &App, ns: &str, q: &str) -> Handled {
    let (nsn, qn) = (name("namespace", ns)?, name("queue", q)?);
    let stats = app
        .backend
        .queue_stats(&nsn, &qn)
        .await
        .ok_or_else(|| ApiError::NotFound(format!("no queue {q} in namespace {ns}")))?;
    json(StatusCode::OK, &stats)
}

pub(super) async fn namespace_stats(app: &App, ns: &str) -> Handled {
    let nsn = name("namespace", ns)?;
    let stats = app
        .backend
        .namespace_stats(&nsn)
        .await
        .ok_or_else(|| ApiError::NotFound(format!("no namespace {ns}")))?;
    json(StatusCode::OK, &stats)
}

pub(super) async fn server_stats(app: &App) -> Handled {
    json(StatusCode::OK, &app.backend.server_stats().await)
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
            let mut headers = HeaderMap::new();
            let json = answer.write(&mut headers);
            assert_eq!(
                String::from_utf8(json.to_vec()).unwrap(),
                String::from_utf8(expected).unwrap()
            );
            assert_eq!(headers[ELEMENT_ID], answer.id.to_string());
            let blob_id = headers.get(BLOB_ID).map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(blob_id, answer.blob_id.map(|b| b.to_string()));
        }
    }
}

//! `/qs`: push, reference push, pop, purge, and the statistics of queues,
//! namespaces and the server.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use bytes::BytesMut;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;
use uuid::Uuid;

use super::extract::{BlobReference, ListQuery, Namespace, NoQuery, PopQuery, PushHeaders, Queue};
use super::headers::{BLOB_ID, CUSTOM_DATA, DELIVERIES, ELEMENT_ID, LEASE, LIFETIME, SIZE};
use super::{
    body, bytes_value, header_value, id_value, json, no_content, with_status, ApiError, App,
    Handled,
};
use crate::auth::{Caller, Role};
use crate::backend::ids::BlobId;
use crate::backend::meta::{Metadata, DEFAULT_CONTENT_TYPE};
use crate::backend::name::Name;
use crate::backend::stats::{NamespaceSummary, PageToken};
use crate::backend::{PopOptions, Pushed};

/// The JSON body of a push answer.
#[cfg_attr(test, derive(Serialize))]
struct PushAnswer<'a> {
    id: &'a str,
    blob_id: Option<&'a str>,
    namespace: &'a str,
    queue: &'a str,
    size: u64,
    lifetime: u64,
}

impl PushAnswer<'_> {
    /// The answer's JSON, written directly: it goes with every push, where
    /// serde's general path (escaping checked byte by byte) cost more than
    /// the rest of the answer. Nothing in it needs escaping: ids are hex and
    /// hyphens, names passed `Name::parse` (`[0-9a-zA-Z._-]`). A test holds
    /// it to serde_json's output.
    fn to_json(&self) -> String {
        let (mut size, mut lifetime) = (itoa::Buffer::new(), itoa::Buffer::new());
        let mut out = String::with_capacity(160 + self.namespace.len() + self.queue.len());
        out.push_str("{\"id\":\"");
        out.push_str(self.id);
        out.push_str("\",\"blob_id\":");
        match self.blob_id {
            Some(blob_id) => {
                out.push('"');
                out.push_str(blob_id);
                out.push('"');
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"namespace\":\"");
        out.push_str(self.namespace);
        out.push_str("\",\"queue\":\"");
        out.push_str(self.queue);
        out.push_str("\",\"size\":");
        out.push_str(size.format(self.size));
        out.push_str(",\"lifetime\":");
        out.push_str(lifetime.format(self.lifetime));
        out.push('}');
        out
    }
}

/// `202` with the push answer, its ids also in headers. Each id is spelled
/// once, for the body and its header alike.
fn pushed(ns: &Name, q: &Name, p: &Pushed) -> Handled {
    let (mut id_text, mut blob_text) = (Uuid::encode_buffer(), Uuid::encode_buffer());
    let id = p.id.uuid().hyphenated().encode_lower(&mut id_text);
    let blob_id = p
        .blob_id
        .map(|b| &*b.uuid().hyphenated().encode_lower(&mut blob_text));
    let answer = PushAnswer {
        id,
        blob_id,
        namespace: ns.as_str(),
        queue: q.as_str(),
        size: p.size,
        lifetime: p.lifetime,
    };
    let mut response = with_status(
        StatusCode::ACCEPTED,
        Body::from(answer.to_json()),
        Some("application/json"),
    );
    let headers = response.headers_mut();
    headers.insert(ELEMENT_ID, header_value(id));
    if let Some(blob_id) = blob_id {
        headers.insert(BLOB_ID, header_value(blob_id));
    }
    Ok(response)
}

/// `POST /qs/{ns}/{queue}`: the body becomes a new element at the tail.
pub(super) async fn push(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    Queue(q): Queue,
    push: PushHeaders,
    incoming: Body,
) -> Handled {
    let incoming = body::incoming(incoming, app.limits.body_read_timeout);
    let result = app.backend.push(&ns, &q, incoming, push.options()).await?;
    pushed(&ns, &q, &result)
}

/// `PUT /qs/{ns}/{queue}`: a header-only element, referencing a blob if
/// `X-BlobStorage_Id` names one. The body is ignored.
pub(super) async fn push_reference(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    Queue(q): Queue,
    push: PushHeaders,
    BlobReference(blob): BlobReference,
) -> Handled {
    let result = app
        .backend
        .push_reference(&ns, &q, blob.as_deref(), push.options())
        .await?;
    pushed(&ns, &q, &result)
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
    headers.insert(SIZE, HeaderValue::from(size));
    headers.insert(LIFETIME, HeaderValue::from(seconds_left));
    for pair in meta.custom.iter() {
        let mut text = BytesMut::with_capacity(pair.key.len() + 1 + pair.value.len());
        text.extend_from_slice(pair.key.as_bytes());
        text.extend_from_slice(b"=");
        text.extend_from_slice(pair.value.as_bytes());
        headers.append(CUSTOM_DATA, bytes_value(text.freeze()));
    }
}

/// `GET /qs/{ns}/{queue}`: pops the head, waiting up to `?timeout=`.
pub(super) async fn pop(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    Queue(q): Queue,
    query: PopQuery,
) -> Handled {
    let opts = PopOptions {
        with_data: !query.header_only,
        lease: query.lease,
        wait: query.timeout,
    };
    let Some(p) = app.backend.pop(&ns, &q, opts).await? else {
        return Ok(no_content());
    };
    // hyper writes Content-Length from the body's exact size.
    let body = p.body.map_or_else(Body::empty, body::payload);
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    describe(headers, &p.meta, p.blob_id, p.size, p.seconds_left);
    headers.insert(ELEMENT_ID, id_value(p.id.uuid()));
    if let Some(lease) = p.lease {
        headers.insert(LEASE, id_value(lease.receipt.uuid()));
        headers.insert(DELIVERIES, HeaderValue::from(lease.deliveries));
    }
    Ok(response)
}

/// The JSON body of a purge's answer.
#[derive(serde::Serialize)]
struct PurgeAnswer<'a> {
    namespace: &'a Name,
    queue: &'a Name,
    purged: u64,
}

/// `DELETE /qs/{ns}/{queue}`: every ready element removed; leased ones
/// stay with their consumers.
pub(super) async fn purge(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    Queue(q): Queue,
    _: NoQuery,
) -> Handled {
    let purged = app.backend.purge(&ns, &q).await?;
    let answer = PurgeAnswer {
        namespace: &ns,
        queue: &q,
        purged,
    };
    json(StatusCode::OK, &answer)
}

/// `GET /qs/{ns}/{queue}/stats`
pub(super) async fn queue_stats(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    Queue(q): Queue,
) -> Handled {
    let stats = app
        .backend
        .queue_stats(&ns, &q)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no queue {q} in namespace {ns}")))?;
    json(StatusCode::OK, &stats)
}

/// `GET /qs/{ns}`, with a page of its queues.
pub(super) async fn namespace_stats(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    ListQuery(page): ListQuery,
) -> Handled {
    let stats = app
        .backend
        .namespace_stats(&ns, &page)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no namespace {ns}")))?;
    json(StatusCode::OK, &stats)
}

/// `GET /qs` as a caller without `admin` on `*` sees it: the namespaces
/// it may observe, without the server-wide figures (which would tell of
/// the others).
#[derive(Serialize)]
struct ObservedServerStats {
    version: &'static str,
    uptime_seconds: u64,
    namespace_count: u64,
    namespaces: Vec<NamespaceSummary>,
    next_page_token: Option<PageToken>,
}

/// `GET /qs`, with a page of the namespaces. With authentication on,
/// `Authorise` leaves the caller, and the answer shows only what its grant
/// lets it observe: the backend pages through those alone, so a page is
/// full unless it is the last.
pub(super) async fn server_stats(
    State(app): State<Arc<App>>,
    caller: Option<Extension<Caller>>,
    ListQuery(page): ListQuery,
) -> Handled {
    let grant = match caller {
        Some(Extension(caller)) if !caller.grant.allows_everywhere(Role::Admin) => caller.grant,
        _ => {
            let stats = app.backend.server_stats(&page, &|_| true).await?;
            return json(StatusCode::OK, &stats);
        }
    };
    let observes = |ns: &Name| grant.allows(Role::Observer, ns.as_str());
    let stats = app.backend.server_stats(&page, &observes).await?;
    let observed = ObservedServerStats {
        version: stats.version,
        uptime_seconds: stats.uptime_seconds,
        namespace_count: stats.namespace_count,
        namespaces: stats.namespaces,
        next_page_token: stats.next_page_token,
    };
    json(StatusCode::OK, &observed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_push_answer_is_the_json_serde_would_write() {
        let (id, blob) = (Uuid::new_v4().to_string(), Uuid::new_v4().to_string());
        let answers = [
            PushAnswer {
                id: &id,
                blob_id: Some(&blob),
                namespace: "ns-1.a_b",
                queue: "Q",
                size: 0,
                lifetime: 3600,
            },
            PushAnswer {
                id: &id,
                blob_id: None,
                namespace: "n",
                queue: "queue.with-every_kind.of.9",
                size: u64::MAX,
                lifetime: 1,
            },
        ];
        for answer in answers {
            let serde = serde_json::to_string(&answer).unwrap();
            assert_eq!(answer.to_json(), serde);
        }
    }
}

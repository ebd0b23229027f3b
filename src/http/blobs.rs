//! `/tbs/{ns}/blobs`: temporary blob storage, read without consuming.

use http::header::LOCATION;
use http::request::Parts;
use http::{Response, StatusCode};
use hyper::body::{Body as _, Incoming};
use serde::Serialize;

use super::queues::{describe, receive_body};
use super::request::{delete_after_read, name, PushHeaders, BLOB_ID};
use super::spelled::Spelled;
use super::{header_value, json, App, Body, Handled};
use crate::store::Commit;

#[derive(Serialize)]
struct Stored<'a> {
    id: String,
    size: u64,
    lifetime: u64,
    content_type: &'a str,
}

/// `POST /tbs/{ns}/blobs`
pub(super) async fn store(app: &App, ns: &str, head: &Parts, body: Incoming) -> Handled {
    let nsn = name("namespace", ns)?;
    let push = PushHeaders::parse(&head.headers, &app.limits)?;
    app.store
        .precheck_quota(&nsn, 0, body.size_hint().exact())?;
    let (content, size) = receive_body(&app.store, body, app.limits.body_read_timeout).await?;
    let blob = app
        .store
        .store_blob(&nsn, content, size, push.meta, push.lifetime)?;
    app.store.durable(Commit::Accepted).await?;
    let id = blob.id().to_string();
    let answer = Stored {
        id: id.clone(),
        size,
        lifetime: push.lifetime,
        content_type: &blob.meta().content_type,
    };
    let mut response = json(StatusCode::CREATED, &answer)?;
    let headers = response.headers_mut();
    headers.insert(LOCATION, header_value(&format!("/tbs/{ns}/blobs/{id}")));
    headers.insert(BLOB_ID, header_value(&id));
    Ok(response)
}

/// `GET /tbs/{ns}/blobs/{id}[?delete=1]`
pub(super) async fn read(app: &App, ns: &str, id: &str, head: &Parts) -> Handled {
    let nsn = name("namespace", ns)?;
    let delete = delete_after_read(head.uri.query())?;
    let blob = app.store.read_blob(&nsn, id, delete).await?;
    if delete {
        app.store.durable(Commit::Consumed).await?;
    }
    let mut response = Response::new(Body::blob(blob.body, blob.size));
    let headers = response.headers_mut();
    let mut spelled = Spelled::with_capacity(96);
    describe(
        headers,
        &mut spelled,
        &blob.meta,
        Some(blob.id),
        blob.size,
        blob.seconds_left,
    );
    spelled.insert_into(headers);
    Ok(response)
}

/// `DELETE /tbs/{ns}/blobs/{id}`
pub(super) async fn delete(app: &App, ns: &str, id: &str) -> Handled {
    let nsn = name("namespace", ns)?;
    app.store.delete_blob(&nsn, id)?;
    app.store.durable(Commit::Consumed).await?;
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

//! `/tbs/{ns}/blobs`: temporary blob storage, read without consuming.

use http::header::LOCATION;
use http::request::Parts;
use http::{Response, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;

use super::queues::describe;
use super::request::{delete_after_read, name, PushHeaders, BLOB_ID};
use super::spelled::Spelled;
use super::{header_value, json, App, Body, Handled};

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
    let body = super::body::incoming(body, app.limits.body_read_timeout);
    let blob = app.backend.store_blob(&nsn, body, push.options()).await?;
    let id = blob.id.to_string();
    let answer = Stored {
        id: id.clone(),
        size: blob.size,
        lifetime: blob.lifetime,
        content_type: &blob.meta.content_type,
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
    let blob = app.backend.read_blob(&nsn, id, delete).await?;
    let mut response = Response::new(Body::payload(blob.body));
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
    app.backend.delete_blob(&nsn, id).await?;
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

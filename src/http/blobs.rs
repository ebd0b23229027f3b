//! `/tbs/{ns}/blobs`: temporary blob storage, read without consuming.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::header::LOCATION;
use http::StatusCode;
use serde::Serialize;

use super::extract::{BlobKey, DeleteAfterRead, Namespace, PushHeaders};
use super::headers::BLOB_ID;
use super::queues::describe;
use super::{body, header_value, json, no_content, App, Handled};

#[derive(Serialize)]
struct Stored<'a> {
    id: String,
    size: u64,
    lifetime: u64,
    content_type: &'a str,
}

/// `POST /tbs/{ns}/blobs`
pub(super) async fn store(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    push: PushHeaders,
    incoming: Body,
) -> Handled {
    let incoming = body::incoming(incoming, app.limits.body_read_timeout);
    let blob = app
        .backend
        .store_blob(&ns, incoming, push.options())
        .await?;
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
pub(super) async fn read(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    DeleteAfterRead(delete): DeleteAfterRead,
    BlobKey(id): BlobKey,
) -> Handled {
    let blob = app.backend.read_blob(&ns, &id, delete).await?;
    let mut response = Response::new(body::payload(blob.body));
    let headers = response.headers_mut();
    describe(
        headers,
        &blob.meta,
        Some(blob.id),
        blob.size,
        blob.seconds_left,
    );
    Ok(response)
}

/// `DELETE /tbs/{ns}/blobs/{id}`
pub(super) async fn delete(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    BlobKey(id): BlobKey,
) -> Handled {
    app.backend.delete_blob(&ns, &id).await?;
    Ok(no_content())
}

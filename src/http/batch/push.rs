//! `POST /qs/{ns}/{queue}/batch`: a batch push. Each part of the
//! `multipart/mixed` body is checked as a push's headers are and streamed
//! into the backend's [`BatchPush`] before the next is read; the batch is
//! committed once the body has ended well, and is dropped (storing nothing)
//! at the first error, which names the part.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::State;
use futures_util::Stream;
use http::{HeaderMap, StatusCode};
use uuid::Uuid;

use super::multipart::{boundary, MultipartError, MultipartReader, PartHead};
use crate::backend::{BackendError, BatchPush, BodyError, IncomingBody, Pushed};
use crate::http::extract::{blob_reference, Namespace, PushHeaders, Queue};
use crate::http::{body, with_status, ApiError, App, Handled};

/// The reader, shared between the handler (which asks for each part's
/// head) and the stream of the part's body handed to the backend. Only one
/// of them polls at a time, and never across an `.await`.
type Shared = Arc<Mutex<MultipartReader>>;

fn lock(reader: &Shared) -> std::sync::MutexGuard<'_, MultipartReader> {
    reader.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `POST /qs/{ns}/{queue}/batch`.
pub(in crate::http) async fn push(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    Queue(q): Queue,
    headers: HeaderMap,
    incoming: Body,
) -> Handled {
    let boundary = boundary(headers.get(http::header::CONTENT_TYPE)).map_err(refusal)?;
    let incoming = body::incoming(incoming, app.limits.body_read_timeout);
    let reader = MultipartReader::new(incoming.chunks, &boundary, app.batch.parts());
    let reader: Shared = Arc::new(Mutex::new(reader));
    let mut batch = app.backend.push_batch(&ns, &q).await?;
    let mut parts = 0;
    while let Some(head) = next_part(&reader).await.map_err(refusal)? {
        parts += 1;
        add_part(&app, &reader, &mut *batch, head).await?;
    }
    if parts == 0 {
        return Err(ApiError::bad_request(
            "invalid-batch",
            "the batch has no parts; nothing was stored",
        ));
    }
    let pushed = batch
        .commit()
        .await
        .map_err(|e| in_part(e.part, e.error.into()))?;
    Ok(with_status(
        StatusCode::ACCEPTED,
        Body::from(answer(&pushed)),
        Some("application/json"),
    ))
}

/// Checks one part's headers and hands it to the batch: its body streamed,
/// or a reference when it names a blob.
async fn add_part(
    app: &App,
    reader: &Shared,
    batch: &mut dyn BatchPush,
    head: PartHead,
) -> Result<(), ApiError> {
    let part = head.index;
    let opts = PushHeaders::parse(&head.headers, &app.limits)
        .map_err(|e| in_part(Some(part), e))?
        .options();
    let reference = blob_reference(&head.headers).map_err(|e| in_part(Some(part), e))?;
    let added = match reference {
        Some(blob) => {
            if has_body(reader).await.map_err(refusal)? {
                return Err(in_part(
                    Some(part),
                    ApiError::bad_request(
                        "invalid-batch",
                        "a part with X-BlobStorage_Id references a blob and must have an empty body",
                    ),
                ));
            }
            batch.add_reference(Some(blob), opts).await
        }
        None => {
            let body = IncomingBody {
                announced: None,
                chunks: Box::pin(PartBody(reader.clone())),
            };
            batch.add(body, opts).await
        }
    };
    added.map_err(|e| match (e, lock(reader).failure()) {
        // The part's stream failed for the body's format: say so.
        (BackendError::Body(_), Some(failure)) => refusal(failure.clone()),
        (e, _) => in_part(Some(part), e.into()),
    })
}

async fn next_part(reader: &Shared) -> Result<Option<PartHead>, MultipartError> {
    std::future::poll_fn(|cx| lock(reader).poll_next_part(cx)).await
}

/// Whether the current part has a byte of body.
async fn has_body(reader: &Shared) -> Result<bool, MultipartError> {
    let first = std::future::poll_fn(|cx| lock(reader).poll_chunk(cx)).await;
    first.transpose().map(|c| c.is_some())
}

/// The current part's body, as the backend reads a body.
struct PartBody(Shared);

impl Stream for PartBody {
    type Item = Result<bytes::Bytes, BodyError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        lock(&self.0).poll_chunk(cx).map(|chunk| {
            chunk.map(|r| {
                r.map_err(|e| match e {
                    MultipartError::Body(e) => e,
                    other => BodyError::Read(other.to_string()),
                })
            })
        })
    }
}

/// The answer of a body that cannot be read as a batch.
fn refusal(e: MultipartError) -> ApiError {
    match e {
        MultipartError::Body(e) => ApiError::from(BackendError::Body(e)),
        MultipartError::TooManyParts { .. } => ApiError::BatchTooLarge {
            problem: "too-many-parts",
            detail: e.to_string(),
        },
        MultipartError::HeadersTooLarge { part, .. } => in_part(
            Some(part),
            ApiError::BatchTooLarge {
                problem: "part-headers-too-large",
                detail: e.to_string(),
            },
        ),
        MultipartError::ContentType(_) | MultipartError::Malformed(_) => {
            ApiError::bad_request("invalid-batch", e.to_string())
        }
    }
}

/// `error`, said of part `part` when one is to blame.
fn in_part(part: Option<usize>, error: ApiError) -> ApiError {
    match part {
        Some(part) => ApiError::InPart {
            part,
            error: Box::new(error),
        },
        None => error,
    }
}

/// The answer's JSON, `{"elements": [{"id", "blob_id", "size", "lifetime"},
/// ...]}`, written directly as a single push's is: nothing in it needs
/// escaping (ids are hex and hyphens). A test holds it to serde_json's.
fn answer(pushed: &[Pushed]) -> String {
    let mut out = String::with_capacity(16 + pushed.len() * 128);
    out.push_str("{\"elements\":[");
    let (mut id, mut number) = (Uuid::encode_buffer(), itoa::Buffer::new());
    for (i, p) in pushed.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"id\":\"");
        out.push_str(p.id.uuid().hyphenated().encode_lower(&mut id));
        out.push_str("\",\"blob_id\":");
        match p.blob_id {
            Some(blob) => {
                out.push('"');
                out.push_str(blob.uuid().hyphenated().encode_lower(&mut id));
                out.push('"');
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"size\":");
        out.push_str(number.format(p.size));
        out.push_str(",\"lifetime\":");
        out.push_str(number.format(p.lifetime));
        out.push('}');
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ids::{BlobId, ElementId};

    #[test]
    fn the_answer_is_the_json_serde_would_write() {
        let pushed = [
            Pushed {
                id: ElementId::random(),
                blob_id: Some(BlobId::random()),
                size: 5,
                lifetime: u64::MAX,
            },
            Pushed {
                id: ElementId::random(),
                blob_id: None,
                size: 0,
                lifetime: 1,
            },
        ];
        let elements: Vec<serde_json::Value> = pushed
            .iter()
            .map(|p| {
                serde_json::json!({
                    "id": p.id.to_string(),
                    "blob_id": p.blob_id.map(|b| b.to_string()),
                    "size": p.size,
                    "lifetime": p.lifetime,
                })
            })
            .collect();
        let want = serde_json::json!({ "elements": elements });
        let got: serde_json::Value = serde_json::from_str(&answer(&pushed)).unwrap();
        assert_eq!(got, want);
        assert_eq!(answer(&[]), r#"{"elements":[]}"#);
    }
}

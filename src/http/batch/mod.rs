//! Batches over HTTP (docs/API.md, "Batches"): many elements per request,
//! as `multipart/mixed` both ways.
//!
//! - [`push`]: `POST /qs/{ns}/{queue}/batch`, the body read part by part
//!   ([`multipart`]) into the backend's `BatchPush`;
//! - [`pop`]: `GET /qs/{ns}/{queue}?count=N`, the answer written as it is
//!   sent;
//! - [`ack`]: `POST /qs/{ns}/{queue}/leases/ack`, receipts in JSON;
//! - [`settings`]: `--max-batch` and the limit on a part's headers.

pub mod multipart;
mod pop;
mod push;
pub mod settings;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use http::StatusCode;
use http_body_util::{BodyExt as _, Limited};
use serde::{Deserialize, Serialize};

use super::extract::{Namespace, NoQuery, Queue};
use super::{json, ApiError, App, Handled};
pub(super) use pop::pop;
pub use pop::{COUNT, GONE};
pub(super) use push::push;
pub use settings::{BatchLimits, BatchSettings};

/// Bytes of a receipt in a batch acknowledgement, quotes and comma
/// included, with room to spare: a receipt is a 36-character UUID.
const RECEIPT_BYTES: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    receipts: Vec<String>,
}

#[derive(Serialize)]
struct AckAnswer {
    acked: Vec<String>,
    unknown: Vec<String>,
}

/// `POST /qs/{ns}/{queue}/leases/ack`: `{"receipts": [...]}` acknowledged
/// together; which were and which are unknown.
pub(super) async fn ack(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    Queue(q): Queue,
    _: NoQuery,
    body: Body,
) -> Handled {
    let max = app.batch.max_batch;
    // A body larger than `max` receipts could be is refused unread.
    let limit = 64 + max * RECEIPT_BYTES;
    let bytes = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| match e.downcast::<http_body_util::LengthLimitError>() {
            Ok(_) => ApiError::BatchTooLarge {
                problem: "too-many-receipts",
                detail: format!("the body is longer than {max} receipts could be"),
            },
            Err(e) => ApiError::BodyRead(e.to_string()),
        })?
        .to_bytes();
    let request: AckRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "invalid-receipts",
            format!("the body must be {{\"receipts\": [\"...\", ...]}}: {e}"),
        )
    })?;
    if request.receipts.len() > max {
        return Err(ApiError::BatchTooLarge {
            problem: "too-many-receipts",
            detail: format!(
                "{} receipts are more than the maximum of {max} (--max-batch)",
                request.receipts.len()
            ),
        });
    }
    let acked = app.backend.ack_batch(&ns, &q, &request.receipts).await?;
    json(
        StatusCode::OK,
        &AckAnswer {
            acked: acked.acked,
            unknown: acked.unknown,
        },
    )
}

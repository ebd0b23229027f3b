//! `/healthz`, `/metrics` and `/openapi.json`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use http::StatusCode;
use serde_json::json;

use super::{json, with_status, App, Handled};

/// `200` while the server accepts work; `503` once it is draining, and
/// while the engine cannot write (a full disk), with the reason (no path).
pub(super) async fn health(State(app): State<Arc<App>>) -> Handled {
    if app.is_draining() {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "draining"}),
        );
    }
    match app.backend.write_fault().await {
        Some(fault) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "unwritable", "reason": fault.situation()}),
        ),
        None => json(StatusCode::OK, &json!({"status": "ok"})),
    }
}

/// The content type of `/metrics`: the body is OpenMetrics text (counter
/// families typed without their `_total` suffix, `# EOF` at the end), and
/// a parser of the older Prometheus text format reading it as such would
/// lose the counters' types. Prometheus, and the agents that scrape as it
/// does, ask for this type first.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The OpenMetrics text exposition, whatever the `Accept` header says: it
/// is the one format the encoder writes (docs/OPERATIONS.md).
pub(super) async fn metrics(State(app): State<Arc<App>>) -> Handled {
    Ok(with_status(
        StatusCode::OK,
        Body::from(app.metrics.render()),
        Some(METRICS_CONTENT_TYPE),
    ))
}

/// The OpenAPI 3.1 document of every route, docs/openapi.json as built
/// into the binary; tests/openapi.rs checks it against the route table.
const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// `GET /openapi.json`.
pub(super) async fn openapi() -> Handled {
    Ok(with_status(
        StatusCode::OK,
        Body::from(OPENAPI),
        Some("application/json"),
    ))
}

//! `/healthz` and `/metrics`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use http::StatusCode;
use serde_json::json;

use super::{json, with_status, App, Handled};

/// `200` while the server accepts work, `503` once it is draining.
pub(super) async fn health(State(app): State<Arc<App>>) -> Handled {
    if app.is_draining() {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "draining"}),
        )
    } else {
        json(StatusCode::OK, &json!({"status": "ok"}))
    }
}

/// The Prometheus text exposition.
pub(super) async fn metrics(State(app): State<Arc<App>>) -> Handled {
    Ok(with_status(
        StatusCode::OK,
        Body::from(app.metrics.render()),
        Some("text/plain; version=0.0.4; charset=utf-8"),
    ))
}

//! `/healthz` and `/metrics`.

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use serde_json::json;

use super::{json, App, Body, Handled};

/// `200` while the server accepts work, `503` once it is draining.
pub(super) fn health(app: &App) -> Handled {
    if app.is_draining() {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "draining"}),
        )
    } else {
        json(StatusCode::OK, &json!({"status": "ok"}))
    }
}

pub(super) fn metrics(app: &App) -> Handled {
    let mut response = Response::new(Body::bytes(app.metrics.render()));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

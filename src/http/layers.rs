//! The concerns every request shares, each one layer (axum middleware)
//! written once: refusing work while the server drains, the request
//! metrics and the log of server faults, closing a connection whose request
//! body was left unread, and request tracing. `router.rs` stacks them.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, Method};
use hyper::body::Body as _;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{
    DefaultMakeSpan, DefaultOnBodyChunk, DefaultOnEos, DefaultOnFailure, DefaultOnRequest,
    DefaultOnResponse, TraceLayer,
};
use tracing::Level;

use super::error::{ApiError, ServerFault};
use super::App;

/// `503` for every request while the server drains.
pub(super) async fn refuse_while_draining(
    State(app): State<Arc<App>>,
    request: Request,
    next: Next,
) -> Response {
    if app.is_draining() {
        return ApiError::ShuttingDown.into_response();
    }
    next.run(request).await
}

/// What `observe` needs: the metrics, and the route templates as the
/// `'static` labels they are recorded under.
#[derive(Clone)]
pub(super) struct Observer {
    app: Arc<App>,
    templates: Arc<[&'static str]>,
}

impl Observer {
    pub fn new(app: Arc<App>, templates: Vec<&'static str>) -> Observer {
        Observer {
            app,
            templates: templates.into(),
        }
    }

    /// The template of the route matched: the metrics' `route` label, so
    /// that names chosen by clients never become label values.
    fn route(&self, matched: Option<&MatchedPath>) -> &'static str {
        matched
            .and_then(|m| self.templates.iter().find(|t| **t == m.as_str()))
            .copied()
            .unwrap_or("unknown")
    }
}

/// Records each request in the metrics under its route template, method
/// and status, and logs every `500` with the fault behind it.
pub(super) async fn observe(
    State(observer): State<Observer>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = observer.route(request.extensions().get::<MatchedPath>());
    let response = next.run(request).await;
    if let Some(ServerFault(error)) = response.extensions().get() {
        tracing::error!(%method, route, %error, "request failed");
    }
    let status = response.status().as_u16();
    observer
        .app
        .metrics
        .observe(route, &method, status, started.elapsed());
    response
}

/// Only a successful POST reads its body to the end. Any other answer to a
/// request with a body leaves it unread, and hyper then closes the
/// connection: the answer says so, or the client would reuse the
/// connection and fail its next request.
pub(super) async fn close_unread_bodies(request: Request, next: Next) -> Response {
    let has_body = !request.body().is_end_stream();
    let post = request.method() == Method::POST;
    let mut response = next.run(request).await;
    if has_body && !(post && response.status().is_success()) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// tower-http's request tracing, with its defaults (span, request and
/// response events at DEBUG) except failures, at DEBUG too: at the default
/// `info` level nothing is logged per request, and `observe` logs faults.
pub(super) type Trace = TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    DefaultMakeSpan,
    DefaultOnRequest,
    DefaultOnResponse,
    DefaultOnBodyChunk,
    DefaultOnEos,
    DefaultOnFailure,
>;

pub(super) fn trace() -> Trace {
    TraceLayer::new_for_http()
        .make_span_with(DefaultMakeSpan::new().level(Level::DEBUG))
        .on_failure(DefaultOnFailure::new().level(Level::DEBUG))
}

//! The HTTP layer: the route table and its layers ([`router`]), typed
//! extraction of what a request says ([`extract`]), one error type mapped to
//! problem documents ([`ApiError`]), and one handler module per route
//! family. It calls the backend and never sees how an engine stores bytes.

pub mod batch;
mod blobs;
mod body;
mod error;
pub mod extract;
pub mod head_limit;
pub mod headers;
mod jobs;
mod layers;
mod leases;
mod ops;
mod path;
mod queues;
pub mod router;
pub(crate) mod routing;
pub mod ui;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use serde::Serialize;
use uuid::Uuid;

pub use error::ApiError;
pub use extract::RequestLimits;
pub use jobs::extract::JobLimits;
pub use jobs::JobsService;
pub use router::router;

use crate::auth::Auth;
use crate::backend::jobs::JobStore;
use crate::backend::Backend;
use crate::metrics::Metrics;

/// Everything a request handler needs, shared by all connections: the
/// router's `State`.
pub struct App {
    pub backend: Arc<dyn Backend>,
    pub limits: RequestLimits,
    pub metrics: Metrics,
    /// Who may call which route; open unless credentials are configured.
    pub auth: Auth,
    /// The jobs engine, where this server serves jobs.
    pub jobs: Option<JobsService>,
    /// How many elements a batch may carry (`batch/`).
    pub batch: batch::BatchLimits,
    /// The dashboard's settings and history (`ui/`).
    pub dashboard: ui::Dashboard,
    /// Set when shutdown begins: new requests and `/healthz` answer `503`.
    draining: AtomicBool,
}

impl App {
    pub fn new(backend: Arc<dyn Backend>, limits: RequestLimits) -> App {
        App {
            metrics: Metrics::new(backend.clone()),
            backend,
            limits,
            auth: Auth::open(),
            jobs: None,
            batch: batch::BatchLimits::default(),
            dashboard: ui::Dashboard::new(ui::UiConfig::default()),
            draining: AtomicBool::new(false),
        }
    }

    /// The app with `auth` deciding who may call what.
    pub fn with_auth(mut self, auth: Auth) -> App {
        self.auth = auth;
        self
    }

    /// Serves the jobs API from `store`, its state also in `/metrics`.
    pub fn with_jobs(mut self, store: Arc<dyn JobStore>, limits: JobLimits) -> App {
        self.metrics.add_jobs(store.clone());
        self.jobs = Some(JobsService { store, limits });
        self
    }

    /// The app with batches limited by `limits`.
    pub fn with_batch(mut self, limits: batch::BatchLimits) -> App {
        self.batch = limits;
        self
    }

    /// The app with the dashboard set up by `config`.
    pub fn with_dashboard(mut self, config: ui::UiConfig) -> App {
        self.dashboard = ui::Dashboard::new(config);
        self
    }

    pub fn begin_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// What a handler returns: an answer, or the error that becomes one.
type Handled = Result<Response, ApiError>;

/// A JSON response with `status`.
fn json(status: StatusCode, value: &impl Serialize) -> Handled {
    // Room for a small document (an answer, one namespace's statistics)
    // without growing.
    let mut bytes = Vec::with_capacity(256);
    serde_json::to_writer(&mut bytes, value).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(with_status(
        status,
        Body::from(bytes),
        Some("application/json"),
    ))
}

/// A response of `body` with `status`, and a `Content-Type` if given.
fn with_status(status: StatusCode, body: Body, content_type: Option<&'static str>) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Some(content_type) = content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    response
}

/// `204 No Content`.
fn no_content() -> Response {
    with_status(StatusCode::NO_CONTENT, Body::empty(), None)
}

/// A header value from text the server made or validated (ids, checked
/// metadata), which is always visible ASCII.
fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// An id as a header value, hyphenated as in every answer.
fn id_value(id: Uuid) -> HeaderValue {
    header_value(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()))
}

/// `header_value` of text already in a buffer, taken over without a copy.
fn bytes_value(b: Bytes) -> HeaderValue {
    HeaderValue::from_maybe_shared(b).unwrap_or_else(|_| HeaderValue::from_static(""))
}

//! The HTTP layer: matches the route, validates the request, calls the store
//! and maps every outcome to a response. One handler module per route family.

mod blobs;
mod body;
mod error;
mod leases;
mod ops;
mod queues;
pub mod request;
pub mod route;
pub mod spelled;

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::{Body as _, Incoming};
use serde::Serialize;

pub use body::Body;
pub use error::ApiError;
use request::RequestLimits;
use route::Route;

use crate::backend::Backend;
use crate::metrics::Metrics;

/// Everything a request handler needs, shared by all connections.
pub struct App {
    pub backend: Arc<dyn Backend>,
    pub limits: RequestLimits,
    pub metrics: Metrics,
    /// Set when shutdown begins: new requests and `/healthz` answer `503`.
    draining: AtomicBool,
}

type Handled = Result<Response<Body>, ApiError>;

impl App {
    pub fn new(backend: Arc<dyn Backend>, limits: RequestLimits) -> App {
        App {
            metrics: Metrics::new(backend.clone()),
            backend,
            limits,
            draining: AtomicBool::new(false),
        }
    }

    pub fn begin_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// hyper's entry point: never fails, every error becomes a response.
    ///
    /// This, `dispatch` and `queues::push` return an `async move` block
    /// rather than being `async fn`s: an `async fn` keeps each argument
    /// twice in its future (as captured, and as the local it is moved to),
    /// and the request is 248 bytes, copied at every level.
    #[allow(clippy::manual_async_fn)] // on purpose: the future's size
    pub fn serve(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Result<Response<Body>, Infallible>> {
        async move {
            let started = Instant::now();
            // The head stays here and the handlers borrow it: a clone of its
            // `Uri` for the route to borrow cost two reference counts, and the
            // whole request moved down every level (together about 290
            // instructions per push and pop).
            let (parts, body) = req.into_parts();
            let path = parts.uri.path();
            let route = Route::parse(path);
            let template = route.map_or("unknown", |r| r.template());
            let has_body = !body.is_end_stream();
            let mut response = match route {
                None => Err(ApiError::NotFound(format!("no route for {path}"))),
                Some(route) => self.dispatch(route, &parts, body).await,
            }
            .unwrap_or_else(|e| failed(e, &parts.method, template));
            // Only a successful POST reads its body to the end. Any other answer to
            // a request with a body leaves it unread, and hyper then closes the
            // connection: say so, or the client reuses it and fails its next request.
            if has_body && !(parts.method == Method::POST && response.status().is_success()) {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            self.metrics.observe(
                template,
                &parts.method,
                response.status().as_u16(),
                started.elapsed(),
            );
            Ok(response)
        }
    }

    #[allow(clippy::manual_async_fn)] // on purpose: see `serve`
    fn dispatch<'a>(
        &'a self,
        route: Route<'a>,
        head: &'a Parts,
        body: Incoming,
    ) -> impl Future<Output = Handled> + 'a {
        async move {
            if !route.allows(&head.method) {
                return Err(ApiError::MethodNotAllowed {
                    method: head.method.to_string(),
                    allow: route.allow(),
                });
            }
            if route == Route::Health {
                return ops::health(self);
            }
            if self.is_draining() {
                return Err(ApiError::ShuttingDown);
            }
            // Every request's future is as large as the largest route's, and is
            // moved several times on its way through hyper: the routes other than
            // push and pop wait boxed, so as not to make every request pay for them.
            match (route, &head.method) {
                (Route::Queue(ns, q), &Method::POST) => queues::push(self, ns, q, head, body).await,
                (Route::Queue(ns, q), &Method::PUT) => {
                    Box::pin(queues::push_reference(self, ns, q, head)).await
                }
                (Route::Queue(ns, q), _) => queues::pop(self, ns, q, head).await,
                (Route::QueueStats(ns, q), _) => Box::pin(queues::queue_stats(self, ns, q)).await,
                (Route::Lease(ns, q, r), _) => Box::pin(leases::ack(self, ns, q, r, head)).await,
                (Route::LeaseRelease(ns, q, r), _) => {
                    Box::pin(leases::release(self, ns, q, r, head)).await
                }
                (Route::LeaseExtend(ns, q, r), _) => {
                    Box::pin(leases::extend(self, ns, q, r, head)).await
                }
                (Route::NamespaceStats(ns), _) => Box::pin(queues::namespace_stats(self, ns)).await,
                (Route::ServerStats, _) => Box::pin(queues::server_stats(self)).await,
                (Route::Blobs(ns), _) => Box::pin(blobs::store(self, ns, head, body)).await,
                (Route::Blob(ns, id), &Method::DELETE) => {
                    Box::pin(blobs::delete(self, ns, id)).await
                }
                (Route::Blob(ns, id), _) => Box::pin(blobs::read(self, ns, id, head)).await,
                (Route::Metrics, _) => ops::metrics(self),
                (Route::Health, _) => ops::health(self),
            }
        }
    }
}

/// The answer to a request that failed, logged when the fault is the
/// server's. Cold, like the errors' constructors (see `error.rs`).
#[cold]
#[inline(never)]
fn failed(e: ApiError, method: &Method, route: &str) -> Response<Body> {
    if e.status() == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(%method, route, error = %e, "request failed");
    }
    e.into_response()
}

/// A JSON response with `status`.
fn json(status: StatusCode, value: &impl Serialize) -> Handled {
    let bytes = serde_json::to_vec(value).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(json_bytes(status, bytes))
}

/// A response with `status` and a JSON text already written.
fn json_bytes(status: StatusCode, bytes: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Body::bytes(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A header value from text the server made or validated (ids, numbers,
/// checked metadata), which is always visible ASCII.
fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `header_value` of text already in a buffer, taken over without a copy.
fn bytes_value(b: Bytes) -> HeaderValue {
    HeaderValue::from_maybe_shared(b).unwrap_or_else(|_| HeaderValue::from_static(""))
}

//! The concerns every request shares, each one tower layer written once:
//! refusing work while the server drains ([`DrainLayer`]), the request
//! metrics and the log of server faults ([`ObserveLayer`]), closing a
//! connection whose request body was left unread ([`CloseUnreadLayer`]),
//! and request tracing ([`trace`]). `router.rs` stacks them.
//!
//! They are plain services whose futures wrap the inner one in place, as
//! tower-http's layers are: a request passes through them without an
//! allocation or a clone of the service behind.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, Method};
use hyper::body::Body as _;
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{
    DefaultMakeSpan, DefaultOnBodyChunk, DefaultOnEos, DefaultOnFailure, DefaultOnRequest,
    DefaultOnResponse, TraceLayer,
};
use tracing::Level;

use super::error::{ApiError, ServerFault};
use super::App;

/// `503` for every request while the server drains.
#[derive(Clone)]
pub(super) struct DrainLayer {
    app: Arc<App>,
}

impl DrainLayer {
    pub fn new(app: Arc<App>) -> DrainLayer {
        DrainLayer { app }
    }
}

impl<S> Layer<S> for DrainLayer {
    type Service = Drain<S>;

    fn layer(&self, inner: S) -> Drain<S> {
        Drain {
            inner,
            app: self.app.clone(),
        }
    }
}

#[derive(Clone)]
pub(super) struct Drain<S> {
    inner: S,
    app: Arc<App>,
}

impl<S> Service<Request> for Drain<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = DrainFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if self.app.is_draining() {
            DrainFuture::Refused {
                response: Some(ApiError::ShuttingDown.into_response()),
            }
        } else {
            DrainFuture::Serving {
                inner: self.inner.call(request),
            }
        }
    }
}

pin_project! {
    /// The inner service's answer, or the drain's refusal.
    #[project = DrainProjection]
    pub(super) enum DrainFuture<F> {
        Refused { response: Option<Response> },
        Serving { #[pin] inner: F },
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for DrainFuture<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            DrainProjection::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
            DrainProjection::Serving { inner } => inner.poll(cx),
        }
    }
}

/// Records each request in the metrics under its route's template, method
/// and status, and logs every `500` with the fault behind it. The template,
/// not the path, is the label, so names chosen by clients never become
/// label values.
#[derive(Clone)]
pub(super) struct ObserveLayer {
    app: Arc<App>,
    route: &'static str,
}

impl ObserveLayer {
    pub fn new(app: Arc<App>, route: &'static str) -> ObserveLayer {
        ObserveLayer { app, route }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            app: self.app.clone(),
            route: self.route,
        }
    }
}

#[derive(Clone)]
pub(super) struct Observe<S> {
    inner: S,
    app: Arc<App>,
    route: &'static str,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        ObserveFuture {
            started: Instant::now(),
            method: request.method().clone(),
            app: self.app.clone(),
            route: self.route,
            inner: self.inner.call(request),
        }
    }
}

pin_project! {
    pub(super) struct ObserveFuture<F> {
        #[pin]
        inner: F,
        started: Instant,
        method: Method,
        app: Arc<App>,
        route: &'static str,
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for ObserveFuture<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = ready!(this.inner.poll(cx));
        let (method, route) = (&*this.method, *this.route);
        if let Some(ServerFault(error)) = response.extensions().get() {
            tracing::error!(%method, route, %error, "request failed");
        }
        let status = response.status().as_u16();
        this.app
            .metrics
            .observe(route, method, status, this.started.elapsed());
        Poll::Ready(Ok(response))
    }
}

/// Only a successful POST reads its body to the end. Any other answer to a
/// request with a body leaves it unread, and hyper then closes the
/// connection: the answer says so, or the client would reuse the
/// connection and fail its next request.
#[derive(Clone, Copy)]
pub(super) struct CloseUnreadLayer;

impl<S> Layer<S> for CloseUnreadLayer {
    type Service = CloseUnread<S>;

    fn layer(&self, inner: S) -> CloseUnread<S> {
        CloseUnread { inner }
    }
}

#[derive(Clone)]
pub(super) struct CloseUnread<S> {
    inner: S,
}

impl<S> Service<Request> for CloseUnread<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = CloseUnreadFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        CloseUnreadFuture {
            has_body: !request.body().is_end_stream(),
            post: request.method() == Method::POST,
            inner: self.inner.call(request),
        }
    }
}

pin_project! {
    pub(super) struct CloseUnreadFuture<F> {
        #[pin]
        inner: F,
        has_body: bool,
        post: bool,
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for CloseUnreadFuture<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut response) = ready!(this.inner.poll(cx));
        if *this.has_body && !(*this.post && response.status().is_success()) {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(response))
    }
}

/// tower-http's request tracing, with its defaults (span, request and
/// response events at DEBUG) except failures, at DEBUG too: at the default
/// `info` level nothing is logged per request, and `ObserveLayer` logs
/// faults.
pub(super) type Trace = TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    DefaultMakeSpan,
    DefaultOnRequest,
    DefaultOnResponse,
    DefaultOnBodyChunk,
    DefaultOnEos,
    DefaultOnFailure,
>;

/// A service behind [`trace`].
pub(super) type Traced<S> = tower_http::trace::Trace<
    S,
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

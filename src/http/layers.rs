//! The concerns every request shares, each one tower layer written once:
//! refusing work while the server drains ([`DrainLayer`]), the request
//! metrics and the log of server faults ([`Observe`]), closing a
//! connection whose request body was left unread ([`CloseUnread`]), and
//! request tracing ([`trace`]). `router.rs` stacks them.
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

/// What a layer does around one request: note something as it arrives,
/// then act on its answer. [`HookLayer`] turns a hook into a tower layer.
pub(super) trait Hook: Clone {
    /// What the hook keeps from the request until the answer.
    type Noted;
    fn on_request(&self, request: &Request) -> Self::Noted;
    fn on_response(noted: Self::Noted, response: &mut Response);
}

/// A [`Hook`] as a tower layer.
#[derive(Clone)]
pub(super) struct HookLayer<H>(pub H);

impl<S, H: Hook> Layer<S> for HookLayer<H> {
    type Service = Hooked<S, H>;

    fn layer(&self, inner: S) -> Hooked<S, H> {
        Hooked {
            inner,
            hook: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub(super) struct Hooked<S, H> {
    inner: S,
    hook: H,
}

impl<S, H> Service<Request> for Hooked<S, H>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    H: Hook,
{
    type Response = Response;
    type Error = Infallible;
    type Future = HookedFuture<S::Future, H>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        HookedFuture {
            noted: Some(self.hook.on_request(&request)),
            inner: self.inner.call(request),
        }
    }
}

pin_project! {
    pub(super) struct HookedFuture<F, H: Hook> {
        #[pin]
        inner: F,
        noted: Option<H::Noted>,
    }
}

impl<F, H> Future for HookedFuture<F, H>
where
    F: Future<Output = Result<Response, Infallible>>,
    H: Hook,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut response) = ready!(this.inner.poll(cx));
        if let Some(noted) = this.noted.take() {
            H::on_response(noted, &mut response);
        }
        Poll::Ready(Ok(response))
    }
}

/// Records each request in the metrics under its route's template, method
/// and status, and logs every `500` with the fault behind it. The template,
/// not the path, is the label, so names chosen by clients never become
/// label values.
#[derive(Clone)]
pub(super) struct Observe {
    app: Arc<App>,
    route: &'static str,
}

impl Observe {
    pub fn layer(app: Arc<App>, route: &'static str) -> HookLayer<Observe> {
        HookLayer(Observe { app, route })
    }
}

impl Hook for Observe {
    type Noted = (Observe, Method, Instant);

    fn on_request(&self, request: &Request) -> Self::Noted {
        (self.clone(), request.method().clone(), Instant::now())
    }

    fn on_response((observe, method, started): Self::Noted, response: &mut Response) {
        let route = observe.route;
        if let Some(ServerFault(error)) = response.extensions().get() {
            tracing::error!(%method, route, %error, "request failed");
        }
        let status = response.status().as_u16();
        observe
            .app
            .metrics
            .observe(route, &method, status, started.elapsed());
    }
}

/// Only a successful POST reads its body to the end. Any other answer to a
/// request with a body leaves it unread, and hyper then closes the
/// connection: the answer says so, or the client would reuse the
/// connection and fail its next request.
#[derive(Clone, Copy)]
pub(super) struct CloseUnread;

impl CloseUnread {
    pub fn layer() -> HookLayer<CloseUnread> {
        HookLayer(CloseUnread)
    }
}

impl Hook for CloseUnread {
    /// (the request has a body, it is a POST)
    type Noted = (bool, bool);

    fn on_request(&self, request: &Request) -> (bool, bool) {
        (
            !request.body().is_end_stream(),
            request.method() == Method::POST,
        )
    }

    fn on_response((has_body, post): (bool, bool), response: &mut Response) {
        if has_body && !(post && response.status().is_success()) {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
}

/// tower-http's request tracing, with its defaults (span, request and
/// response events at DEBUG) except failures, at DEBUG too: at the default
/// `info` level nothing is logged per request, and [`Observe`] logs
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

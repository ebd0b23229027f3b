//! The concerns every request shares, each one tower layer written once
//! around the routes: the request metrics and the log of server faults
//! ([`Observe`]), closing a connection whose request body was left unread
//! ([`CloseUnread`]), and refusing callers without the credential a route
//! asks ([`Authorise`]). `router.rs` stacks them.
//!
//! They are plain services whose futures wrap the inner one in place. The
//! one line a request logs is the access log's, written by [`Observe`]
//! when its target is enabled: no span or tracing layer is built for a
//! request that nothing would log.

use std::convert::Infallible;
use std::future::{ready as ready_answer, Future, Ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use http::{header, HeaderValue, Method, Version};
use hyper::body::Body as _;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::error::{ApiError, ServerFault};
use super::App;
use crate::auth::{Failure, Gate, Refusal, Verdict};

/// The template of the route a request matched, stamped on its answer by
/// the routes so that [`Observe`], outside them, can label the metrics
/// with it (names chosen by clients never become label values).
#[derive(Clone, Copy, Debug)]
pub struct RouteLabel(pub &'static str);

/// What a layer does around one request: note something as it arrives,
/// then act on its answer. [`HookLayer`] turns a hook into a tower layer.
pub trait Hook: Clone {
    /// What the hook keeps from the request until the answer.
    type Noted;
    fn on_request(&self, request: &Request) -> Self::Noted;
    fn on_response(noted: Self::Noted, response: &mut Response);
}

/// A [`Hook`] as a tower layer.
#[derive(Clone)]
pub struct HookLayer<H>(pub H);

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
pub struct Hooked<S, H> {
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
    pub struct HookedFuture<F, H: Hook> {
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

/// Records each request in the metrics under its route's label (see
/// [`RouteLabel`]; `unknown` for a path no route matched), method and
/// status, and logs every `500` with the fault behind it.
#[derive(Clone)]
pub struct Observe {
    app: Arc<App>,
}

impl Observe {
    pub fn layer(app: Arc<App>) -> HookLayer<Observe> {
        HookLayer(Observe { app })
    }
}

impl Hook for Observe {
    type Noted = (Arc<App>, Method, Instant);

    fn on_request(&self, request: &Request) -> Self::Noted {
        (self.app.clone(), request.method().clone(), Instant::now())
    }

    fn on_response((app, method, started): Self::Noted, response: &mut Response) {
        let route = response
            .extensions()
            .get::<RouteLabel>()
            .map_or("unknown", |label| label.0);
        if let Some(ServerFault(error)) = response.extensions().get() {
            tracing::error!(%method, route, %error, "request failed");
        }
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        // The access log (`--access-log`): off unless asked for, by the
        // log filter, so this costs a cached check when off. The route is
        // its template: names chosen by clients stay out of the log.
        tracing::info!(
            target: crate::config::ACCESS_TARGET,
            %method,
            route,
            status,
            // Milliseconds to the microsecond: enough, and short to read.
            duration_ms = elapsed.as_micros() as f64 / 1e3,
            "request"
        );
        app.metrics.observe(route, &method, status, elapsed);
    }
}

/// Only a successful POST reads its body to the end (unless its handler
/// marks the answer [`BodyUnread`]), or an answer marked [`BodyRead`] by
/// its handler. Any other answer to an HTTP/1 request with
/// a body leaves it unread, and hyper then closes the connection: the
/// answer says so, or the client would reuse the connection and fail its
/// next request. HTTP/2 ends only that request's stream, and forbids the
/// `Connection` header.
#[derive(Clone, Copy)]
pub struct CloseUnread;

/// Set on a response by a handler (not a POST) that has read its request's
/// body to the end, such as a job's result upload (`PUT`): the connection
/// stays open.
#[derive(Clone, Copy, Debug)]
pub struct BodyRead;

/// Set on a successful answer to a POST whose body the handler did not
/// need, such as a repeated submit of a job with the same idempotency key
/// (answered from the first job): the connection closes.
#[derive(Clone, Copy, Debug)]
pub struct BodyUnread;

impl CloseUnread {
    pub fn layer() -> HookLayer<CloseUnread> {
        HookLayer(CloseUnread)
    }
}

impl Hook for CloseUnread {
    /// (the request is HTTP/1 and has a body, it is a POST)
    type Noted = (bool, bool);

    fn on_request(&self, request: &Request) -> (bool, bool) {
        (
            request.version() <= Version::HTTP_11 && !request.body().is_end_stream(),
            request.method() == Method::POST,
        )
    }

    fn on_response((has_body, post): (bool, bool), response: &mut Response) {
        let extensions = response.extensions();
        let read = extensions.get::<BodyRead>().is_some()
            || (post && response.status().is_success() && extensions.get::<BodyUnread>().is_none());
        if has_body && !read {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
}

/// The address of the client a request came from, which `Api` adds to
/// each request when authentication is on: refusals are logged at most
/// once a second for each address.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// Authorisation, one layer in front of every route: asks the [`Gate`]
/// about each request before the router sees it (so before any of its body
/// is read), and answers a refusal itself: `401` or `403`, counted in
/// `blobq_auth_failures`, labelled with its route for [`Observe`]. Without
/// a gate (no credential configured) every request passes untouched.
#[derive(Clone)]
pub struct Authorise {
    gate: Option<Arc<Gate>>,
    app: Arc<App>,
}

impl Authorise {
    pub fn layer(gate: Option<Arc<Gate>>, app: Arc<App>) -> Authorise {
        Authorise { gate, app }
    }

    fn refuse(&self, gate: &Gate, refusal: Refusal, request: &Request) -> Response {
        let Refusal {
            failure,
            route,
            caller,
        } = refusal;
        self.app.metrics.auth_failure(failure);
        let peer = request.extensions().get::<Peer>().map(|p| p.0.ip());
        if gate.should_log(peer) {
            tracing::warn!(
                reason = failure.reason(),
                peer = %peer.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
                caller = caller.as_deref().unwrap_or("-"),
                method = %request.method(),
                route = route.unwrap_or("unknown"),
                "request refused (at most one line a second per address)"
            );
        }
        let error = match failure {
            Failure::Forbidden => ApiError::Forbidden,
            other => ApiError::Unauthenticated(other),
        };
        let mut response = error.into_response();
        if let Some(route) = route {
            response.extensions_mut().insert(RouteLabel(route));
        }
        response
    }
}

impl<S> Layer<S> for Authorise {
    type Service = Authorised<S>;

    fn layer(&self, inner: S) -> Authorised<S> {
        Authorised {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authorised<S> {
    inner: S,
    layer: Authorise,
}

impl<S> Service<Request> for Authorised<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let Some(gate) = &self.layer.gate else {
            return Either::Right(self.inner.call(request));
        };
        match gate.check(request.method(), request.uri().path(), request.headers()) {
            Verdict::Pass => {}
            Verdict::PassFiltered(caller) => {
                request.extensions_mut().insert(caller);
            }
            Verdict::Refused(refusal) => {
                let response = self.layer.refuse(gate, refusal, &request);
                return Either::Left(ready_answer(Ok(response)));
            }
        }
        Either::Right(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::{header, Method, StatusCode, Version};

    use super::*;

    #[test]
    fn only_http1_answers_say_the_connection_closes() {
        for version in [Version::HTTP_10, Version::HTTP_11, Version::HTTP_2] {
            let request = Request::builder()
                .method(Method::GET)
                .version(version)
                .body(Body::from("left unread"))
                .unwrap();
            let noted = CloseUnread.on_request(&request);
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::BAD_REQUEST;
            CloseUnread::on_response(noted, &mut response);
            assert_eq!(
                response.headers().contains_key(header::CONNECTION),
                version != Version::HTTP_2,
                "{version:?}"
            );
        }
    }
}

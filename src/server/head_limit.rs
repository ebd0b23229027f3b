//! blobq's own limits on a request head (`--max-header-size`,
//! `--max-headers`), checked as each request reaches the connection's
//! service, before any layer or route sees it, so that a head over them is
//! answered `431` with a problem document.
//!
//! hyper answers the heads it refuses itself with a bare status and offers
//! no hook for a body. So its parser is given higher ceilings (`[limits]
//! parser_max_header_size`, `parser_max_headers`): it stops only a head
//! past them, or one that is not HTTP at all, and such refusals are only
//! counted (`Protocols::count_refusal`).

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::IntoResponse;
use futures_util::future::{Either, MapOk, TryFutureExt};
use http::{header, HeaderValue, Request, Response, Version};
use http_body_util::Either as EitherBody;
use tower::Service;

use super::limits::ParserCeiling;
use crate::config::Config;
use crate::http::{ApiError, App};

/// How much of a request head hyper reads at most: the `[limits]`
/// ceilings, never below blobq's own limits.
pub(super) fn parser_ceiling(config: &Config) -> ParserCeiling {
    config
        .limits
        .parser
        .above(config.max_header_size, config.max_headers)
}

/// Counts in the request metrics a request refused for its head, by hyper
/// or by [`HeadChecked`]: under route `unknown` and method `OTHER`, as one
/// series whichever refused it (the head was not taken as a request, so
/// neither its route nor its method is).
pub(super) fn count_refused_head(app: &App, status: u16) {
    let method = http::Method::from_bytes(b"UNPARSED").unwrap_or_default();
    app.metrics
        .observe("unknown", &method, status, Duration::ZERO);
}

/// blobq's own limits on a request head.
#[derive(Clone, Copy, Debug)]
pub(super) struct HeadLimits {
    max_header_size: usize,
    max_headers: usize,
}

impl HeadLimits {
    pub fn new(config: &Config) -> HeadLimits {
        HeadLimits {
            max_header_size: config.max_header_size,
            max_headers: config.max_headers,
        }
    }

    /// Why `request`'s head is refused, if it is.
    fn refusal<B>(self, request: &Request<B>) -> Option<ApiError> {
        let lines = request.headers().len();
        if lines > self.max_headers {
            return Some(ApiError::HeadTooLarge {
                problem: "too-many-headers",
                detail: format!(
                    "the request has {lines} header lines, more than the server's limit of {}",
                    self.max_headers
                ),
            });
        }
        let size = head_size(request);
        if size > self.max_header_size {
            return Some(ApiError::HeadTooLarge {
                problem: "request-head-too-large",
                detail: format!(
                    "the request head is {size} bytes, more than the server's limit of {}",
                    self.max_header_size
                ),
            });
        }
        None
    }
}

/// The size of `request`'s head as HTTP/1.1 sends it: the request line,
/// one `name: value` line for each header, and the empty line. (The exact
/// spacing a client used is gone once hyper parsed it.)
fn head_size<B>(request: &Request<B>) -> usize {
    const CRLF: usize = 2;
    let target = request
        .uri()
        .path_and_query()
        .map_or(1, |p| p.as_str().len());
    let line = request.method().as_str().len() + 1 + target + 1 + "HTTP/1.1".len() + CRLF;
    let fields: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + ": ".len() + value.len() + CRLF)
        .sum();
    line + fields + CRLF
}

/// `inner`, its requests' heads checked against [`HeadLimits`] first.
#[derive(Clone)]
pub(super) struct HeadChecked<S> {
    inner: S,
    limits: HeadLimits,
    app: Arc<App>,
}

impl<S> HeadChecked<S> {
    pub fn new(inner: S, limits: HeadLimits, app: Arc<App>) -> HeadChecked<S> {
        HeadChecked { inner, limits, app }
    }
}

/// An answer of the inner service, or blobq's refusal of a head.
type Checked<B> = Response<EitherBody<B, Body>>;

impl<S, R, B> Service<Request<R>> for HeadChecked<S>
where
    S: Service<Request<R>, Response = Response<B>, Error = Infallible>,
{
    type Response = Checked<B>;
    type Error = Infallible;
    type Future = Either<
        Ready<Result<Checked<B>, Infallible>>,
        MapOk<S::Future, fn(Response<B>) -> Checked<B>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<R>) -> Self::Future {
        let Some(refusal) = self.limits.refusal(&request) else {
            let served: fn(Response<B>) -> Checked<B> = |r| r.map(EitherBody::Left);
            return Either::Right(self.inner.call(request).map_ok(served));
        };
        tracing::debug!(error = %refusal, "request head refused");
        let mut response = refusal.into_response();
        count_refused_head(&self.app, response.status().as_u16());
        if request.version() <= Version::HTTP_11 {
            // A client refused for its head tends to send the same again,
            // and any body it sent is left unread: the connection ends.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Either::Left(ready(Ok(response.map(EitherBody::Right))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_header_size: usize, max_headers: usize) -> HeadLimits {
        HeadLimits {
            max_header_size,
            max_headers,
        }
    }

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().method("GET").uri("/qs/ns/q?wait=1");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn the_head_is_measured_as_http1_sends_it() {
        let r = request(&[("host", "x"), ("x-custom-data", "k=v")]);
        let sent = "GET /qs/ns/q?wait=1 HTTP/1.1\r\nhost: x\r\nx-custom-data: k=v\r\n\r\n";
        assert_eq!(head_size(&r), sent.len());
    }

    #[test]
    fn heads_within_the_limits_pass_and_others_are_refused_for_what_they_exceed() {
        let r = request(&[("host", "x"), ("a", "1"), ("b", "2")]);
        let size = head_size(&r);
        assert!(limits(size, 3).refusal(&r).is_none());
        let refused = |l: HeadLimits| match l.refusal(&r) {
            Some(ApiError::HeadTooLarge { problem, .. }) => problem,
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(limits(size, 2)), "too-many-headers");
        assert_eq!(refused(limits(size - 1, 3)), "request-head-too-large");
    }
}

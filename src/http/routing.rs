//! Routing: a request's raw path matched against the route templates,
//! segment by segment, then its method against the route's handlers.
//!
//! The path is matched as sent, never percent-decoded or normalised (an
//! empty segment is an empty parameter, which the name check refuses), and
//! the match travels with the request as a [`Matched`] extension: the
//! route's template and where each parameter lies in the path, which the
//! extractors read (`extract.rs`). Handlers are axum handlers, called with
//! the app as their state; the route's own concerns (its `405`, the drain
//! check, the label [`Observe`](super::layers::Observe) counts it under)
//! are settled here, once, before a handler runs. Everything every request
//! shares is a tower layer around this service (`router.rs`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::handler::Handler;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, Method, Version};
use tower::Service;

use super::error::ApiError;
use super::extract::transfer_coding;
use super::layers::RouteLabel;
use super::App;

/// The most parameters a template may have.
const MAX_PARAMS: usize = 4;

/// One segment of a route template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment {
    Literal(&'static str),
    /// `{name}`: any one segment, empty included.
    Param(&'static str),
}

/// A route's path template, such as `/qs/{ns}/{queue}`.
#[derive(Debug)]
pub struct Template {
    text: &'static str,
    segments: Box<[Segment]>,
}

impl Template {
    /// Parses a template of the route table. A malformed one is a mistake
    /// in the table, found by the first test that builds it.
    pub fn parse(text: &'static str) -> Template {
        let rest = text
            .strip_prefix('/')
            .unwrap_or_else(|| panic!("route template {text:?} must start with /"));
        let segments: Box<[Segment]> = rest
            .split('/')
            .map(
                |s| match s.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(name) => Segment::Param(name),
                    None => Segment::Literal(s),
                },
            )
            .collect();
        let params = segments
            .iter()
            .filter(|s| matches!(s, Segment::Param(_)))
            .count();
        assert!(
            params <= MAX_PARAMS,
            "route template {text:?} has more than {MAX_PARAMS} parameters"
        );
        Template { text, segments }
    }

    pub fn text(&self) -> &'static str {
        self.text
    }

    /// Where `path`'s parameters are, if it matches.
    pub(crate) fn matches(&self, path: &str) -> Option<Matched> {
        let mut rest = path.strip_prefix('/')?;
        let mut matched = Matched {
            params: [("", 0, 0); MAX_PARAMS],
            len: 0,
        };
        let last = self.segments.len() - 1;
        for (i, segment) in self.segments.iter().enumerate() {
            let end = rest.bytes().position(|b| b == b'/');
            // Every segment but the last is followed by a `/`, and the
            // last by nothing.
            let text = match (end, i == last) {
                (Some(at), false) => &rest[..at],
                (None, true) => rest,
                _ => return None,
            };
            match *segment {
                Segment::Literal(literal) if literal != text => return None,
                Segment::Literal(_) => {}
                Segment::Param(name) => {
                    let start = path.len() - rest.len();
                    matched.params[usize::from(matched.len)] = (name, start, start + text.len());
                    matched.len += 1;
                }
            }
            if let Some(at) = end {
                rest = &rest[at + 1..];
            }
        }
        Some(matched)
    }
}

/// Where the parameters of the route a request matched are: each one's
/// name with the byte range of its segment in the request's path.
#[derive(Debug, Clone, Copy)]
pub struct Matched {
    params: [(&'static str, usize, usize); MAX_PARAMS],
    len: u8,
}

impl Matched {
    /// The raw text of parameter `{key}` in `path` (the path this match was
    /// made on); `None` if the route has no such parameter.
    pub fn param<'a>(&self, path: &'a str, key: &str) -> Option<&'a str> {
        self.params[..usize::from(self.len)]
            .iter()
            .find(|(name, _, _)| *name == key)
            .and_then(|&(_, start, end)| path.get(start..end))
    }
}

type HandlerFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

/// An axum handler with its types erased, so that one table holds them all.
pub type ErasedHandler = Box<dyn Fn(Request, Arc<App>) -> HandlerFuture + Send + Sync>;

pub fn erase<H, T>(handler: H) -> ErasedHandler
where
    H: Handler<T, Arc<App>>,
    T: 'static,
{
    Box::new(move |request, app| Box::pin(handler.clone().call(request, app)))
}

/// One line of the route table: a template and the methods it answers.
pub struct Route {
    pub template: Template,
    pub methods: Vec<(Method, ErasedHandler)>,
    /// The `Allow` of its `405`s: the methods, as `GET, POST, PUT`.
    pub allow: String,
    /// Whether it answers while the server drains (`/healthz`).
    pub while_draining: bool,
}

/// The route table as a tower service: every request ends here, answered
/// by a route's handler or by the router's own `404`, `405` or `503`.
#[derive(Clone)]
pub struct Routes {
    table: Arc<[Route]>,
    app: Arc<App>,
}

impl Routes {
    pub fn new(routes: Vec<Route>, app: Arc<App>) -> Routes {
        Routes {
            table: routes.into(),
            app,
        }
    }

    fn route(&self, mut request: Request) -> Routed {
        if let Some(refusal) = self.app.limits.head.refusal(&request) {
            return Routed::Answered(Some(refused_head(refusal, request.version())));
        }
        let path = request.uri().path();
        let Some((route, matched)) = self
            .table
            .iter()
            .find_map(|route| Some((route, route.template.matches(path)?)))
        else {
            let error = ApiError::NotFound(format!("no route for {path}"));
            return Routed::Answered(Some(error.into_response()));
        };
        let label = RouteLabel(route.template.text());
        let refuse = |error: ApiError| {
            let mut response = error.into_response();
            response.extensions_mut().insert(label);
            Routed::Answered(Some(response))
        };
        let method = request.method();
        // A method the route does not answer is `405` whether or not the
        // server is draining.
        let Some((_, handler)) = route.methods.iter().find(|(m, _)| m == method) else {
            return refuse(ApiError::MethodNotAllowed {
                method: method.to_string(),
                allow: route.allow.clone(),
            });
        };
        if !route.while_draining && self.app.is_draining() {
            return refuse(ApiError::ShuttingDown);
        }
        if let Err(error) = transfer_coding(request.headers()) {
            return refuse(error);
        }
        request.extensions_mut().insert(matched);
        Routed::Serving {
            future: handler(request, self.app.clone()),
            label,
        }
    }
}

/// The answer to a head over blobq's limits: on HTTP/1 the connection
/// ends too, as a client refused for its head tends to send the same
/// again, and any body it sent is left unread.
fn refused_head(refusal: ApiError, version: Version) -> Response {
    tracing::debug!(error = %refusal, "request head refused");
    let mut response = refusal.into_response();
    if version <= Version::HTTP_11 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

impl Service<Request> for Routes {
    type Response = Response;
    type Error = Infallible;
    type Future = Routed;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Routed {
        self.route(request)
    }
}

/// A request being answered: by its handler, labelled with its route once
/// done, or by the router itself.
pub enum Routed {
    Answered(Option<Response>),
    Serving {
        future: HandlerFuture,
        label: RouteLabel,
    },
}

impl Future for Routed {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Routed::Answered(response) => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
            Routed::Serving { future, label } => {
                let mut response = std::task::ready!(future.as_mut().poll(cx));
                response.extensions_mut().insert(*label);
                Poll::Ready(Ok(response))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(template: &'static str, path: &str) -> Option<Vec<(&'static str, String)>> {
        let matched = Template::parse(template).matches(path)?;
        Some(
            ["ns", "queue", "receipt", "id"]
                .into_iter()
                .filter_map(|key| Some((key, matched.param(path, key)?.to_owned())))
                .collect(),
        )
    }

    #[test]
    fn parameters_are_the_raw_segments_at_their_place() {
        let t = "/qs/{ns}/{queue}/leases/{receipt}";
        assert_eq!(
            params(t, "/qs/a%2Fb/q/leases/"),
            Some(vec![
                ("ns", "a%2Fb".to_owned()),
                ("queue", "q".to_owned()),
                ("receipt", String::new())
            ])
        );
        assert_eq!(
            params("/qs/{ns}/{queue}", "/qs//"),
            Some(vec![("ns", String::new()), ("queue", String::new())])
        );
        assert_eq!(params("/qs", "/qs"), Some(vec![]));
    }

    #[test]
    fn a_path_matches_only_a_template_of_its_shape() {
        for (template, path) in [
            ("/qs/{ns}/{queue}", "/qs/a"),
            ("/qs/{ns}/{queue}", "/qs/a/b/c"),
            ("/qs/{ns}/{queue}/stats", "/qs/a/b/statz"),
            ("/qs", "/qs/"),
            ("/qs", "qs"),
            ("/qs", "/"),
            ("/tbs/{ns}/blobs", "/qs/a/blobs"),
        ] {
            assert!(
                params(template, path).is_none(),
                "{path} matched {template}"
            );
        }
        assert!(params("/qs/{ns}", "/qs/").is_some(), "an empty parameter");
    }
}

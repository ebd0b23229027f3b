//! The route table, one line a route, and the layers every request passes
//! through on its way to a handler.
//!
//! Each method of a route says what it asks of the caller (`OPEN`,
//! `PRODUCER`, ...; see `auth::Access`).
//!
//! The path of a request: `Observe` (metrics, access log, fault log) ->
//! `CloseUnread` -> `Authorise` (`401`/`403` unless the credential grants
//! what the route's method asks; nothing when authentication is off) ->
//! the routes (`routing.rs`): the route matched (else `404`), its method
//! (else `405`), `503` while draining but on `/healthz` -> the handler,
//! which extracts what it needs and calls the backend.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::handler::Handler;
use bytes::Bytes;
use http::Method;
use tower::{Service, ServiceBuilder};

use super::layers::{Authorise, Authorised, CloseUnread, Hooked, Observe, Peer};
use super::routing::{erase, ErasedHandler, Route, Routes, Template};
use super::{batch, blobs, jobs, leases, ops, queues, ui, App};
use crate::auth::{Access, Role, RoutePolicy};

/// What a method asks of its caller, one word each in the table (see
/// `auth::Access`; docs/SECURITY.md has the role table).
const OPEN: Access = Access::Open;
const PRODUCER: Access = Access::Namespace(Role::Producer);
const CONSUMER: Access = Access::Namespace(Role::Consumer);
const OBSERVER: Access = Access::Namespace(Role::Observer);
/// Reading a job: its submitter (a producer) or an observer.
const READER: Access = Access::EitherNamespace(Role::Producer, Role::Observer);
const LISTING: Access = Access::Listing;
const METRICS: Access = Access::Metrics;

/// Every route of the server behind its layers, as one tower service.
pub fn router(app: Arc<App>) -> Api {
    let table = table();
    let gate = app.auth.gate(table.policy);
    let authenticating = gate.is_some();
    // Outermost first. Authorisation comes after `Observe`, so that refused
    // requests are counted too, and after `CloseUnread`, so that a refused
    // request's unread body closes the connection.
    let service = ServiceBuilder::new()
        .layer(Observe::layer(app.clone()))
        .layer(CloseUnread::layer())
        .layer(Authorise::layer(gate, app.clone()))
        .service(Routes::new(table.routes, app));
    Api {
        service,
        authenticating,
        peer: None,
    }
}

/// Every route's template (`/qs/{ns}/{queue}`) and the methods it answers
/// (`GET, POST`), in the table's order: what the OpenAPI document
/// (docs/openapi.json) is checked against.
pub fn routes() -> Vec<(&'static str, String)> {
    table()
        .routes
        .iter()
        .map(|r| (r.template.text(), r.allow.clone()))
        .collect()
}

/// The route table, one line a route.
fn table() -> Table {
    Table::default()
        .route("/qs", get(LISTING, queues::server_stats))
        .route("/qs/{ns}", get(OBSERVER, queues::namespace_stats))
        .route(
            "/qs/{ns}/{queue}",
            // With `?count=`, a batch pop (`batch.rs`); else a single pop.
            get(CONSUMER, batch::pop)
                .post(PRODUCER, queues::push)
                .put(PRODUCER, queues::push_reference)
                .delete(CONSUMER, queues::purge),
        )
        .route("/qs/{ns}/{queue}/stats", get(OBSERVER, queues::queue_stats))
        // Batches (`batch/`); `ack` is matched before `{receipt}`.
        .route("/qs/{ns}/{queue}/batch", post(PRODUCER, batch::push))
        .route("/qs/{ns}/{queue}/leases/ack", post(CONSUMER, batch::ack))
        .route(
            "/qs/{ns}/{queue}/leases/{receipt}",
            delete(CONSUMER, leases::ack),
        )
        .route(
            "/qs/{ns}/{queue}/leases/{receipt}/release",
            post(CONSUMER, leases::release),
        )
        .route(
            "/qs/{ns}/{queue}/leases/{receipt}/extend",
            post(CONSUMER, leases::extend),
        )
        .route("/tbs/{ns}/blobs", post(PRODUCER, blobs::store))
        .route(
            "/tbs/{ns}/blobs/{id}",
            get(CONSUMER, blobs::read).delete(CONSUMER, blobs::delete),
        )
        .route("/metrics", get(METRICS, ops::metrics))
        // Answers while draining: it is how a load balancer learns of it.
        .route("/healthz", get(OPEN, ops::health).while_draining())
        // Jobs (docs/JOBS.md): `claim` is matched before `{id}`.
        .route("/jobs/{ns}", get(OBSERVER, jobs::counts))
        .route(
            "/jobs/{ns}/{queue}",
            get(OBSERVER, jobs::list).post(PRODUCER, jobs::submit),
        )
        .route("/jobs/{ns}/{queue}/claim", post(CONSUMER, jobs::claim))
        .route(
            "/jobs/{ns}/{queue}/{id}",
            get(READER, jobs::get).delete(PRODUCER, jobs::delete),
        )
        .route(
            "/jobs/{ns}/{queue}/{id}/result",
            get(PRODUCER, jobs::result).put(CONSUMER, jobs::upload_result),
        )
        .route("/jobs/{ns}/{queue}/{id}/log", get(READER, jobs::log))
        .route(
            "/jobs/{ns}/{queue}/{id}/cancel",
            post(PRODUCER, jobs::cancel),
        )
        .route(
            "/jobs/{ns}/{queue}/{id}/heartbeat",
            post(CONSUMER, jobs::heartbeat),
        )
        .route("/jobs/{ns}/{queue}/{id}/fail", post(CONSUMER, jobs::fail))
        .route("/openapi.json", get(OPEN, ops::openapi))
        // The dashboard (docs/DASHBOARD.md): the page and its files load
        // without a credential; its data comes from the routes above.
        .route("/", get(OPEN, ui::home))
        .route("/ui", get(OPEN, ui::page))
        .route("/ui/app.js", get(OPEN, ui::script))
        .route("/ui/app.css", get(OPEN, ui::style))
        .route("/ui/icon.svg", get(OPEN, ui::icon))
        .route("/ui/history", get(METRICS, ui::history))
}

/// The routes behind their shared layers.
type Layered = Hooked<Hooked<Authorised<Routes>, CloseUnread>, Observe>;

/// The routes behind their shared layers, for any request body hyper gives.
#[derive(Clone)]
pub struct Api {
    service: Layered,
    /// Whether the `Authorise` layer has credentials to check.
    authenticating: bool,
    /// The client of this connection, given to each request when
    /// authenticating (refusals are logged by address).
    peer: Option<SocketAddr>,
}

impl Api {
    /// The service for one connection from `peer`.
    pub fn for_peer(&self, peer: SocketAddr) -> Api {
        Api {
            service: self.service.clone(),
            authenticating: self.authenticating,
            peer: self.authenticating.then_some(peer),
        }
    }
}

impl<B> Service<http::Request<B>> for Api
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = <Layered as Service<Request>>::Response;
    type Error = Infallible;
    type Future = <Layered as Service<Request>>::Future;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The routes are always ready, and so are the layers around them.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let mut request = request.map(axum::body::Body::new);
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(Peer(peer));
        }
        self.service.call(request)
    }
}

/// The route table being built, and what each method asks of its caller,
/// for `Authorise`.
#[derive(Default)]
struct Table {
    routes: Vec<Route>,
    policy: RoutePolicy,
}

impl Table {
    fn route(mut self, template: &'static str, methods: Methods) -> Table {
        self.policy.add(template, methods.access.clone());
        let template = Template::parse(template);
        assert!(
            self.routes
                .iter()
                .all(|r| r.template.text() != template.text()),
            "route {} listed twice",
            template.text()
        );
        self.routes.push(Route {
            allow: methods
                .handlers
                .iter()
                .map(|(m, _)| m.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            template,
            methods: methods.handlers,
            while_draining: methods.while_draining,
        });
        self
    }
}

/// The methods one path answers, with the handler of each. Every method
/// not listed, HEAD included, is `405` with `Allow` listing these.
struct Methods {
    handlers: Vec<(Method, ErasedHandler)>,
    access: Vec<(Method, Access)>,
    /// Whether the route answers while the server drains.
    while_draining: bool,
}

fn get<H: Handler<T, Arc<App>>, T: 'static>(access: Access, handler: H) -> Methods {
    Methods::new().get(access, handler)
}

fn post<H: Handler<T, Arc<App>>, T: 'static>(access: Access, handler: H) -> Methods {
    Methods::new().post(access, handler)
}

fn delete<H: Handler<T, Arc<App>>, T: 'static>(access: Access, handler: H) -> Methods {
    Methods::new().delete(access, handler)
}

impl Methods {
    fn new() -> Methods {
        Methods {
            handlers: Vec::new(),
            access: Vec::new(),
            while_draining: false,
        }
    }

    fn on<H: Handler<T, Arc<App>>, T: 'static>(
        mut self,
        method: Method,
        access: Access,
        handler: H,
    ) -> Methods {
        self.access.push((method.clone(), access));
        self.handlers.push((method, erase(handler)));
        self
    }

    fn get<H: Handler<T, Arc<App>>, T: 'static>(self, access: Access, handler: H) -> Methods {
        self.on(Method::GET, access, handler)
    }

    fn post<H: Handler<T, Arc<App>>, T: 'static>(self, access: Access, handler: H) -> Methods {
        self.on(Method::POST, access, handler)
    }

    fn put<H: Handler<T, Arc<App>>, T: 'static>(self, access: Access, handler: H) -> Methods {
        self.on(Method::PUT, access, handler)
    }

    fn delete<H: Handler<T, Arc<App>>, T: 'static>(self, access: Access, handler: H) -> Methods {
        self.on(Method::DELETE, access, handler)
    }

    /// The route keeps answering while the server drains.
    fn while_draining(mut self) -> Methods {
        self.while_draining = true;
        self
    }
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;

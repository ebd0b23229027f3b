//! The route table, one line a route, each method with what it asks of the
//! caller, and the layers every request passes through on its way to a
//! handler.
//!
//! The path of a request: empty segments made routable (`path.rs`) ->
//! `trace` -> `Observe` (metrics, fault log) -> `CloseUnread` ->
//! `Authorise` (`401`/`403` unless the credential grants what the route's
//! method asks; nothing when authentication is off) -> the route matched
//! -> its method (or `405`) -> `RouteLayer` (the route's label; `503`
//! while draining, but on `/healthz`) -> the handler, which extracts what
//! it needs and calls the backend. An unknown path goes to `no_route`
//! (`404`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::handler::Handler;
use axum::response::IntoResponse;
use axum::routing::MethodRouter;
use axum::Router;
use bytes::Bytes;
use http::Method;
use tower::{Service, ServiceBuilder};

use super::layers::{
    self, Authorise, Authorised, CloseUnread, Hooked, Observe, Peer, RouteLabel, RouteLayer, Traced,
};
use super::{blobs, leases, ops, path, queues, ApiError, App};
use crate::auth::{Access, Role, RoutePolicy};

/// What a method asks of its caller, one word each in the table (see
/// `auth::Access`; docs/SECURITY.md has the role table).
const OPEN: Access = Access::Open;
const PRODUCER: Access = Access::Namespace(Role::Producer);
const CONSUMER: Access = Access::Namespace(Role::Consumer);
const OBSERVER: Access = Access::Namespace(Role::Observer);
const LISTING: Access = Access::Listing;
const METRICS: Access = Access::Metrics;

/// Every route of the server behind its layers, as one tower service.
pub fn router(app: Arc<App>) -> Api {
    let table = Table::new(app.clone())
        .route("/qs", get(LISTING, queues::server_stats))
        .route("/qs/{ns}", get(OBSERVER, queues::namespace_stats))
        .route(
            "/qs/{ns}/{queue}",
            get(CONSUMER, queues::pop)
                .post(PRODUCER, queues::push)
                .put(PRODUCER, queues::push_reference),
        )
        .route("/qs/{ns}/{queue}/stats", get(OBSERVER, queues::queue_stats))
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
        .route("/healthz", get(OPEN, ops::health).while_draining());
    let router = table.router.fallback(no_route).with_state(app.clone());
    let gate = app.auth.gate(table.policy);
    let authenticating = gate.is_some();
    // Outermost first. Authorisation comes after `Observe`, so that refused
    // requests are counted too, and after `CloseUnread`, so that a refused
    // request's unread body closes the connection.
    let service = ServiceBuilder::new()
        .layer(layers::trace())
        .layer(Observe::layer(app.clone()))
        .layer(CloseUnread::layer())
        .layer(Authorise::layer(gate, app))
        .service(router);
    Api {
        service,
        authenticating,
        peer: None,
    }
}

/// `404` for a path no route matches.
async fn no_route(request: Request) -> ApiError {
    let path = path::as_sent(request.uri(), request.extensions());
    ApiError::NotFound(format!("no route for {path}"))
}

/// The router behind its shared layers.
type Layered = Traced<Hooked<Hooked<Authorised<Router>, CloseUnread>, Observe>>;

/// The router behind its shared layers, with the one step that must come
/// before routing.
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
        // A Router is always ready, and so are the layers around it.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let mut request = path::make_routable(request).map(axum::body::Body::new);
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(Peer(peer));
        }
        self.service.call(request)
    }
}

/// The route table being built: each route with its methods, its `405`s
/// and its `RouteLayer`, which knows the route's template; and what each
/// method asks of its caller, for `Authorise`.
struct Table {
    app: Arc<App>,
    router: Router<Arc<App>>,
    policy: RoutePolicy,
}

impl Table {
    fn new(app: Arc<App>) -> Table {
        Table {
            app,
            router: Router::new(),
            policy: RoutePolicy::default(),
        }
    }

    fn route(mut self, template: &'static str, methods: Methods) -> Table {
        self.policy.add(template, methods.access.clone());
        let router = methods.into_method_router(&self.app, template);
        self.router = self.router.route(template, router);
        self
    }
}

/// The methods one path answers, with the handler of each and what it
/// asks of the caller. axum's own `MethodRouter` would also answer HEAD
/// with the GET handler (a HEAD would pop an element) and spell `Allow` its
/// own way: the contract answers every method not listed, HEAD included,
/// `405` with `Allow` listing the methods as `GET, POST, PUT`.
struct Methods {
    router: MethodRouter<Arc<App>>,
    allow: Vec<&'static str>,
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
            router: MethodRouter::new(),
            allow: Vec::new(),
            access: Vec::new(),
            while_draining: false,
        }
    }

    fn get<H: Handler<T, Arc<App>>, T: 'static>(mut self, access: Access, handler: H) -> Methods {
        self.router = self.router.get(handler);
        self.allow.push("GET");
        self.access.push((Method::GET, access));
        self
    }

    fn post<H: Handler<T, Arc<App>>, T: 'static>(mut self, access: Access, handler: H) -> Methods {
        self.router = self.router.post(handler);
        self.allow.push("POST");
        self.access.push((Method::POST, access));
        self
    }

    fn put<H: Handler<T, Arc<App>>, T: 'static>(mut self, access: Access, handler: H) -> Methods {
        self.router = self.router.put(handler);
        self.allow.push("PUT");
        self.access.push((Method::PUT, access));
        self
    }

    fn delete<H: Handler<T, Arc<App>>, T: 'static>(
        mut self,
        access: Access,
        handler: H,
    ) -> Methods {
        self.router = self.router.delete(handler);
        self.allow.push("DELETE");
        self.access.push((Method::DELETE, access));
        self
    }

    /// The route keeps answering while the server drains.
    fn while_draining(mut self) -> Methods {
        self.while_draining = true;
        self
    }

    /// The `MethodRouter`, with HEAD and every method not listed refused.
    /// The drain check wraps the listed methods only (`route_layer`), so a
    /// method the route does not answer is `405` whether or not the server
    /// is draining.
    fn into_method_router(self, app: &Arc<App>, template: &'static str) -> MethodRouter<Arc<App>> {
        let allow: Arc<str> = self.allow.join(", ").into();
        let refuse = move |method: Method| {
            let allow = allow.to_string();
            async move {
                let mut response = ApiError::MethodNotAllowed {
                    method: method.to_string(),
                    allow,
                }
                .into_response();
                response.extensions_mut().insert(RouteLabel(template));
                response
            }
        };
        let guard = RouteLayer::new(app.clone(), template, self.while_draining);
        self.router
            .route_layer(guard)
            .head(refuse.clone())
            .fallback(refuse)
    }
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;

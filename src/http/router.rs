//! The route table, one line a route, and the layers every request passes
//! through on its way to a handler.
//!
//! The path of a request: `trace` -> `Observe` (metrics, fault log) ->
//! `CloseUnread` -> the routes (`routing.rs`): the route matched (else
//! `404`), its method (else `405`), `503` while draining but on
//! `/healthz` -> the handler, which extracts what it needs and calls the
//! backend.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::handler::Handler;
use bytes::Bytes;
use http::Method;
use tower::{Service, ServiceBuilder};

use super::layers::{self, CloseUnread, Hooked, Observe, Traced};
use super::routing::{erase, ErasedHandler, Route, Routes, Template};
use super::{blobs, leases, ops, queues, App};

/// Every route of the server behind its layers, as one tower service.
pub fn router(app: Arc<App>) -> Api {
    let routes = Table::default()
        .route("/qs", get(queues::server_stats))
        .route("/qs/{ns}", get(queues::namespace_stats))
        .route(
            "/qs/{ns}/{queue}",
            get(queues::pop)
                .post(queues::push)
                .put(queues::push_reference)
                .delete(queues::purge),
        )
        .route("/qs/{ns}/{queue}/stats", get(queues::queue_stats))
        .route("/qs/{ns}/{queue}/leases/{receipt}", delete(leases::ack))
        .route(
            "/qs/{ns}/{queue}/leases/{receipt}/release",
            post(leases::release),
        )
        .route(
            "/qs/{ns}/{queue}/leases/{receipt}/extend",
            post(leases::extend),
        )
        .route("/tbs/{ns}/blobs", post(blobs::store))
        .route(
            "/tbs/{ns}/blobs/{id}",
            get(blobs::read).delete(blobs::delete),
        )
        .route("/metrics", get(ops::metrics))
        // Answers while draining: it is how a load balancer learns of it.
        .route("/healthz", get(ops::health).while_draining())
        .routes;
    // Outermost first. An authentication layer goes after `Observe`, so
    // that refused requests are counted too.
    let service = ServiceBuilder::new()
        .layer(layers::trace())
        .layer(Observe::layer(app.clone()))
        .layer(CloseUnread::layer())
        .service(Routes::new(routes, app));
    Api { service }
}

/// The routes behind their shared layers.
type Layered = Traced<Hooked<Hooked<Routes, CloseUnread>, Observe>>;

/// The routes behind their shared layers, for any request body hyper gives.
#[derive(Clone)]
pub struct Api {
    service: Layered,
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
        self.service.call(request.map(axum::body::Body::new))
    }
}

/// The route table being built.
#[derive(Default)]
struct Table {
    routes: Vec<Route>,
}

impl Table {
    fn route(mut self, template: &'static str, methods: Methods) -> Table {
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
    /// Whether the route answers while the server drains.
    while_draining: bool,
}

fn get<H: Handler<T, Arc<App>>, T: 'static>(handler: H) -> Methods {
    Methods::new().get(handler)
}

fn post<H: Handler<T, Arc<App>>, T: 'static>(handler: H) -> Methods {
    Methods::new().post(handler)
}

fn delete<H: Handler<T, Arc<App>>, T: 'static>(handler: H) -> Methods {
    Methods::new().delete(handler)
}

impl Methods {
    fn new() -> Methods {
        Methods {
            handlers: Vec::new(),
            while_draining: false,
        }
    }

    fn on<H: Handler<T, Arc<App>>, T: 'static>(mut self, method: Method, handler: H) -> Methods {
        self.handlers.push((method, erase(handler)));
        self
    }

    fn get<H: Handler<T, Arc<App>>, T: 'static>(self, handler: H) -> Methods {
        self.on(Method::GET, handler)
    }

    fn post<H: Handler<T, Arc<App>>, T: 'static>(self, handler: H) -> Methods {
        self.on(Method::POST, handler)
    }

    fn put<H: Handler<T, Arc<App>>, T: 'static>(self, handler: H) -> Methods {
        self.on(Method::PUT, handler)
    }

    fn delete<H: Handler<T, Arc<App>>, T: 'static>(self, handler: H) -> Methods {
        self.on(Method::DELETE, handler)
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

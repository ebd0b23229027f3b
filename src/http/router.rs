//! The route table, one line a route, and the layers every request passes
//! through on its way to a handler.
//!
//! The path of a request: empty segments made routable (`path.rs`) ->
//! `trace` -> `Observe` (metrics, fault log) -> `CloseUnread` -> the route
//! matched -> its method (or `405`) -> `RouteLayer` (the route's label;
//! `503` while draining, but on `/healthz`) -> the handler, which extracts
//! what it needs and calls the backend. An unknown path goes to `no_route`
//! (`404`).

use std::convert::Infallible;
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

use super::layers::{self, CloseUnread, Hooked, Observe, RouteLabel, RouteLayer, Traced};
use super::{blobs, jobs, leases, ops, path, queues, ApiError, App};

/// Every route of the server behind its layers, as one tower service.
pub fn router(app: Arc<App>) -> Api {
    let table = Table::new(app.clone())
        .route("/qs", get(queues::server_stats))
        .route("/qs/{ns}", get(queues::namespace_stats))
        .route(
            "/qs/{ns}/{queue}",
            get(queues::pop)
                .post(queues::push)
                .put(queues::push_reference),
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
        // Jobs (docs/JOBS.md): `claim` is matched before `{id}`.
        .route("/jobs/{ns}", get(jobs::counts))
        .route("/jobs/{ns}/{queue}", get(jobs::list).post(jobs::submit))
        .route("/jobs/{ns}/{queue}/claim", post(jobs::claim))
        .route(
            "/jobs/{ns}/{queue}/{id}",
            get(jobs::get).delete(jobs::delete),
        )
        .route(
            "/jobs/{ns}/{queue}/{id}/result",
            get(jobs::result).put(jobs::upload_result),
        )
        .route("/jobs/{ns}/{queue}/{id}/log", get(jobs::log))
        .route("/jobs/{ns}/{queue}/{id}/cancel", post(jobs::cancel))
        .route("/jobs/{ns}/{queue}/{id}/heartbeat", post(jobs::heartbeat))
        .route("/jobs/{ns}/{queue}/{id}/fail", post(jobs::fail));
    let router = table.router.fallback(no_route).with_state(app.clone());
    // Outermost first. An authentication layer goes after `Observe`, so
    // that refused requests are counted too.
    let service = ServiceBuilder::new()
        .layer(layers::trace())
        .layer(Observe::layer(app))
        .layer(CloseUnread::layer())
        .service(router);
    Api { service }
}

/// `404` for a path no route matches.
async fn no_route(request: Request) -> ApiError {
    let path = path::as_sent(request.uri(), request.extensions());
    ApiError::NotFound(format!("no route for {path}"))
}

/// The router behind its shared layers.
type Layered = Traced<Hooked<Hooked<Router, CloseUnread>, Observe>>;

/// The router behind its shared layers, with the one step that must come
/// before routing.
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
        // A Router is always ready, and so are the layers around it.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.service
            .call(path::make_routable(request).map(axum::body::Body::new))
    }
}

/// The route table being built: each route with its methods, its `405`s
/// and its `RouteLayer`, which knows the route's template.
struct Table {
    app: Arc<App>,
    router: Router<Arc<App>>,
}

impl Table {
    fn new(app: Arc<App>) -> Table {
        Table {
            app,
            router: Router::new(),
        }
    }

    fn route(mut self, template: &'static str, methods: Methods) -> Table {
        let router = methods.into_method_router(&self.app, template);
        self.router = self.router.route(template, router);
        self
    }
}

/// The methods one path answers, with the handler of each. axum's own
/// `MethodRouter` would also answer HEAD with the GET handler (a HEAD would
/// pop an element) and spell `Allow` its own way: the contract answers
/// every method not listed, HEAD included, `405` with `Allow` listing the
/// methods as `GET, POST, PUT`.
struct Methods {
    router: MethodRouter<Arc<App>>,
    allow: Vec<&'static str>,
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
            router: MethodRouter::new(),
            allow: Vec::new(),
            while_draining: false,
        }
    }

    fn get<H: Handler<T, Arc<App>>, T: 'static>(mut self, handler: H) -> Methods {
        self.router = self.router.get(handler);
        self.allow.push("GET");
        self
    }

    fn post<H: Handler<T, Arc<App>>, T: 'static>(mut self, handler: H) -> Methods {
        self.router = self.router.post(handler);
        self.allow.push("POST");
        self
    }

    fn put<H: Handler<T, Arc<App>>, T: 'static>(mut self, handler: H) -> Methods {
        self.router = self.router.put(handler);
        self.allow.push("PUT");
        self
    }

    fn delete<H: Handler<T, Arc<App>>, T: 'static>(mut self, handler: H) -> Methods {
        self.router = self.router.delete(handler);
        self.allow.push("DELETE");
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

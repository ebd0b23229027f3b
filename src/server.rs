//! The listener, the connections and graceful shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::App;
use crate::store::Store;

/// A bound server, not yet serving: binding first lets the caller learn the
/// port actually picked for `:0` before requests arrive.
pub struct Server {
    listener: TcpListener,
    app: Arc<App>,
    shutdown_timeout: Duration,
}

impl Server {
    /// Creates the store and binds the listener. Call inside a tokio runtime.
    pub async fn bind(config: &Config) -> io::Result<Server> {
        let store = Store::new(config.store())?;
        let listener = TcpListener::bind(config.listen).await?;
        Ok(Server {
            listener,
            app: Arc::new(App::new(store, config.request_limits())),
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn store(&self) -> Store {
        self.app.store.clone()
    }

    /// Serves until `shutdown` completes, then stops accepting, answers
    /// waiting consumers `503`, lets requests in flight finish (up to the
    /// shutdown timeout) and removes every spill file.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let Server {
            listener,
            app,
            shutdown_timeout,
        } = self;
        let graceful = GracefulShutdown::new();
        let mut builder = http1::Builder::new();
        builder.timer(TokioTimer::new()).keep_alive(true);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, _) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors, typically: back off instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let app = app.clone();
                    let service = service_fn(move |req| app.clone().serve(req));
                    let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        tracing::info!("shutting down: no longer accepting connections");
        app.begin_draining();
        app.store.begin_shutdown();
        if tokio::time::timeout(shutdown_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(timeout = ?shutdown_timeout, "requests still in flight at the shutdown timeout were cut off");
        }
        app.store.purge();
        tracing::info!("shutdown complete");
        Ok(())
    }
}

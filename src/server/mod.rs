//! The listener, the connections and graceful shutdown.

mod stop;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::http::{router, App, JobLimits};
use crate::jobs::Jobs;
use crate::store::Store;
use stop::StopSignals;

/// A bound server, not yet serving: binding first lets the caller learn the
/// port actually picked for `:0` before requests arrive.
pub struct Server {
    listener: TcpListener,
    app: Arc<App>,
    /// Where the embedded engine keeps this process's spill files.
    spill_dir: std::path::PathBuf,
    limits: ConnectionLimits,
    builder: http1::Builder,
}

/// What one connection may cost, so slow or hostile clients cannot take the
/// server's memory, descriptors or attention from everyone else.
#[derive(Clone, Debug)]
struct ConnectionLimits {
    shutdown_timeout: Duration,
    max_connections: usize,
}

/// The runtime the server runs on. The benchmark ceiling
/// (`examples/ceiling.rs`) uses the same, so the comparison is fair.
pub fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// The HTTP/1 settings of every connection. Public so that the benchmark
/// ceiling serves with exactly the same ones.
pub fn http1_builder(config: &Config) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        // Also bounds how long an idle keep-alive connection is kept.
        .header_read_timeout(config.header_read_timeout)
        .max_header_size(config.max_header_size)
        .max_headers(config.max_headers);
    builder
}

impl Server {
    /// Creates the store and binds the listener. Call inside a tokio runtime.
    pub async fn bind(config: &Config) -> io::Result<Server> {
        let store = Store::new(config.store())?;
        let listener = TcpListener::bind(config.listen).await?;
        let spill_dir = store.spill_dir().to_owned();
        let store: Arc<Store> = Arc::new(store);
        let mut app =
            App::new(store.clone(), config.request_limits()).with_auth(config.auth.clone());
        // Jobs are not durable yet: a durable server does not take them.
        if config.data_dir.is_none() {
            let limits = JobLimits {
                config: config.jobs.clone(),
                max_attempts: config.max_deliveries,
            };
            app = app.with_jobs(Arc::new(Jobs::new(store, config.jobs.clone())), limits);
        }
        Ok(Server {
            listener,
            spill_dir,
            app: Arc::new(app),
            limits: ConnectionLimits {
                shutdown_timeout: config.shutdown_timeout,
                max_connections: config.max_connections,
            },
            builder: http1_builder(config),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The folder holding this process's spill files.
    pub fn spill_dir(&self) -> &std::path::Path {
        &self.spill_dir
    }

    /// Serves until `shutdown` completes, then stops accepting, answers
    /// waiting consumers `503`, lets requests in flight finish (up to the
    /// shutdown timeout) and removes every spill file.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let Server {
            listener,
            app,
            limits,
            builder,
            ..
        } = self;
        let routes = router(app.clone());
        let connections = TaskTracker::new();
        let mut stops = StopSignals::default();
        // One permit per open connection: at the cap, new connections wait in
        // the kernel's backlog instead of costing memory and descriptors.
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        tokio::pin!(shutdown);
        loop {
            let slot = tokio::select! {
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break, // never closed; stop rather than spin
                },
                () = &mut shutdown => break,
            };
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors, typically: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let service = TowerToHyperService::new(routes.for_peer(peer));
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let stop = stops.register();
            connections.spawn(async move {
                let mut conn = std::pin::pin!(conn);
                let ended = tokio::select! {
                    biased;
                    ended = conn.as_mut() => ended,
                    _ = stop => {
                        // Finish the request in flight, then close; an idle
                        // keep-alive connection closes at once.
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                drop(slot);
            });
        }
        drop(listener);
        tracing::info!("shutting down: no longer accepting connections");
        app.begin_draining();
        app.backend.begin_shutdown();
        if let Some(jobs) = &app.jobs {
            jobs.store.begin_shutdown();
        }
        stops.stop_all();
        connections.close();
        let timeout = limits.shutdown_timeout;
        if tokio::time::timeout(timeout, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?timeout,
                "requests still in flight at the shutdown timeout were cut off"
            );
        }
        if let Some(jobs) = &app.jobs {
            jobs.store.close().await;
        }
        app.backend.close().await;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

//! The listener, the connections and graceful shutdown: plain HTTP/1.1
//! and h2c, or HTTPS with HTTP/1.1 and HTTP/2 (`tls`).

mod connection;
mod descriptors;
mod head_limit;
mod idle;
mod limits;
mod settings;
mod stop;
pub mod tls;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::Signal;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use crate::backend::nats::{NatsBackend, NatsLimits};
use crate::backend::Backend;
use crate::config::Config;
use crate::http::{router, App, JobLimits};
use crate::jobs::durable::JobDurability;
use crate::jobs::Jobs;
use crate::store::Store;
use connection::Protocols;
pub use descriptors::{out_of_descriptors, raise_open_file_limit};
use idle::Activity;
pub use limits::{LimitSettings, Limits};
pub use settings::{TlsConfig, TlsFiles, TlsSettings};
use stop::StopSignals;
pub use tls::peer::ClientName;
pub use tls::reload::Certificates;

/// A bound server, not yet serving: binding first lets the caller learn the
/// port actually picked for `:0` before requests arrive.
pub struct Server {
    listener: TcpListener,
    app: Arc<App>,
    /// Where the embedded engine keeps this process's spill files; `None`
    /// with the NATS backend.
    spill_dir: Option<std::path::PathBuf>,
    limits: ConnectionLimits,
    protocols: Protocols,
    /// Present when the port serves HTTPS.
    tls: Option<ServedTls>,
}

/// The certificates served, and the signal that reloads them.
struct ServedTls {
    certificates: Arc<Certificates>,
    hangups: Signal,
}

/// What one connection may cost, so slow or hostile clients cannot take the
/// server's memory, descriptors or attention from everyone else.
#[derive(Clone, Debug)]
struct ConnectionLimits {
    shutdown_timeout: Duration,
    /// `--max-connections`, lowered to what the open-file limit allows.
    max_connections: usize,
}

/// While a new client waits for a slot at the cap, how often the accept
/// loop looks again for an idle connection to close (one that was busy
/// may have finished its request).
const EVICTION_RETRY: Duration = Duration::from_millis(100);

/// A slot under the connection cap for a client just accepted: a free
/// one, or else the slot of the connection idle the longest, which is told
/// to close. When every connection is busy, it waits, looking again every
/// `EVICTION_RETRY`, so that a client is served as soon as one is idle.
async fn admit(slots: &Arc<Semaphore>, stops: &mut StopSignals) -> OwnedSemaphorePermit {
    loop {
        if let Ok(slot) = slots.clone().try_acquire_owned() {
            return slot;
        }
        let closing = stops.close_oldest_idle();
        if closing {
            tracing::debug!("at the connection cap: closing the connection idle the longest");
        }
        let retry = if closing {
            // Its slot comes back as soon as its task ends.
            Duration::from_secs(1)
        } else {
            EVICTION_RETRY
        };
        if let Ok(Ok(slot)) = tokio::time::timeout(retry, slots.clone().acquire_owned()).await {
            return slot;
        }
    }
}

/// Serves one accepted connection: TLS when the port has an acceptor.
async fn serve(
    stream: TcpStream,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    protocols: &Protocols,
    routes: crate::http::router::Api,
    activity: Arc<Activity>,
    stop: stop::Stop,
) {
    let _ = stream.set_nodelay(true);
    match acceptor {
        Some(acceptor) => {
            protocols
                .serve_tls(stream, acceptor, routes, activity, stop)
                .await
        }
        None => protocols.serve_plain(stream, routes, activity, stop).await,
    }
}

/// What the NATS backend takes from the server's settings besides `[nats]`.
fn nats_limits(config: &Config) -> NatsLimits {
    NatsLimits {
        max_deliveries: config.max_deliveries,
        max_element_size: config.max_element_size,
        namespace_quota: config.namespace_quota,
        namespace_quotas: config.namespace_quotas.clone(),
        quota_retry_after: config.quota_retry_after,
    }
}

/// The runtime the server runs on. The benchmark ceiling
/// (`examples/ceiling.rs`) uses the same, so the comparison is fair.
pub fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Reads the TLS files `config` names, if any: a file that cannot be used
/// is an error naming it, for the operator to fix before starting.
pub fn load_certificates(config: &Config) -> Result<Option<Certificates>, tls::TlsFileError> {
    config.tls.files.clone().map(Certificates::load).transpose()
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
        // hyper's parser only stops what blobq cannot check itself: blobq's
        // own, lower limits answer a problem document (`head_limit`).
        .max_header_size(head_limit::parser_ceiling(config).max_header_size)
        .max_headers(head_limit::parser_ceiling(config).max_headers);
    builder
}

impl Server {
    /// Creates the store and binds the listener; serves HTTPS with
    /// `certificates` (loaded from `config.tls`, see [`load_certificates`]).
    /// Call inside a tokio runtime.
    pub async fn bind(config: &Config, certificates: Option<Certificates>) -> io::Result<Server> {
        let tls = match certificates {
            Some(certificates) => Some(ServedTls {
                certificates: Arc::new(certificates),
                hangups: tls::reload::hangups()?,
            }),
            None => None,
        };
        let mut nats_backend = None;
        let (backend, store): (Arc<dyn Backend>, Option<Arc<Store>>) = match &config.nats {
            Some(nats) => {
                let nats = Arc::new(NatsBackend::start(nats.clone(), nats_limits(config)));
                nats_backend = Some(nats.clone());
                (nats, None)
            }
            None => {
                let store = Arc::new(Store::new(config.store())?);
                (store.clone(), Some(store))
            }
        };
        let listener =
            descriptors::bind(config.listen, config.limits.listen_backlog).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot listen on {}: {e}", config.listen))
            })?;
        let spill_dir = store.as_ref().map(|s| s.spill_dir().to_owned());
        let mut app = App::new(backend, config.request_limits()).with_auth(config.auth.clone());
        app = app.with_batch(config.batch).with_dashboard(config.ui);
        // Jobs live where the queues do: the embedded engine with the
        // embedded store, key-value buckets on NATS.
        let limits = JobLimits {
            config: config.jobs.clone(),
            max_attempts: config.max_deliveries,
        };
        if let Some(store) = store {
            let jobs = Jobs::open(store, config.jobs.clone(), JobDurability::of(config)).await?;
            app = app.with_jobs(Arc::new(jobs), limits);
        } else if let Some(nats) = nats_backend {
            app = app.with_jobs(Arc::new(nats.job_store(config.jobs.clone())), limits);
        }
        let app = Arc::new(app);
        crate::http::ui::sample_in_background(&app);
        Ok(Server {
            listener,
            spill_dir,
            app: app.clone(),
            limits: ConnectionLimits {
                shutdown_timeout: config.shutdown_timeout,
                max_connections: descriptors::current_connection_cap(config.max_connections),
            },
            protocols: Protocols::new(config, app.clone()),
            tls,
        })
    }

    /// Whether the port serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The folder holding this process's spill files, with the embedded
    /// backend.
    pub fn spill_dir(&self) -> Option<&std::path::Path> {
        self.spill_dir.as_deref()
    }

    /// Serves until `shutdown` completes, then stops accepting, answers
    /// waiting consumers `503`, lets requests in flight finish (up to the
    /// shutdown timeout) and removes every spill file.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let Server {
            listener,
            app,
            limits,
            protocols,
            tls,
            ..
        } = self;
        let protocols = Arc::new(protocols);
        let routes = router(app.clone());
        let (certificates, reloads) = match tls {
            Some(ServedTls {
                certificates,
                hangups,
            }) => {
                let reloads =
                    tokio::spawn(tls::reload::reload_on_hangup(certificates.clone(), hangups));
                (Some(certificates), Some(reloads))
            }
            None => (None, None),
        };
        let connections = TaskTracker::new();
        let mut stops = StopSignals::default();
        // One permit per open connection. At the cap, a new client takes
        // the slot of the connection idle the longest, which is closed; if
        // none is idle, it waits for one to end, and clients after it wait
        // in the kernel's backlog.
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        // Whether accepting fails (out of descriptors, typically): logged
        // when it starts and when it ends, not at every retry.
        let mut accept_failing = false;
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        if !accept_failing {
                            tracing::warn!(error = %e, "accept failed; retrying every 50 ms");
                            accept_failing = true;
                        }
                        // Back off instead of spinning.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            if std::mem::take(&mut accept_failing) {
                tracing::info!("accepting connections again");
            }
            let slot = tokio::select! {
                slot = admit(&slots, &mut stops) => slot,
                () = &mut shutdown => break,
            };
            let activity = Activity::new();
            let (routes, stop, protocols) = (
                routes.for_peer(peer),
                stops.register(activity.clone()),
                protocols.clone(),
            );
            let acceptor = certificates.as_ref().map(|c| c.acceptor());
            connections.spawn(async move {
                serve(stream, acceptor, &protocols, routes, activity, stop).await;
                drop(slot);
            });
        }
        drop(listener);
        if let Some(reloads) = reloads {
            reloads.abort();
        }
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

//! The connection to the NATS cluster: made in the background at start-up,
//! retried with backoff until it succeeds, so that blobq serves (`503`s and
//! an unhealthy `/healthz` saying why) while NATS is unreachable. Once
//! connected, the client reconnects by itself after a loss.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use async_nats::jetstream::Context;
use async_nats::{Client, ConnectOptions, Event};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::settings::{NatsAuth, NatsConfig};
use crate::backend::{BackendError, StorageFault, StoragePlace};

/// Retry-After, in seconds, of a request answered `503` because NATS
/// cannot be reached: the client library retries every few seconds.
pub const UNAVAILABLE_RETRY_AFTER: u64 = 2;
/// First wait between two attempts to connect at start-up; it doubles up
/// to [`MAX_CONNECT_BACKOFF`].
const FIRST_CONNECT_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two attempts to connect at start-up.
const MAX_CONNECT_BACKOFF: Duration = Duration::from_secs(5);

/// The client once connected, and why it is not, meanwhile.
pub struct Link {
    connected: OnceLock<(Client, Context)>,
    /// Told when the first connection is made.
    ready: Notify,
    /// Why the last attempt to connect failed, for `/healthz` and `503`s.
    last_error: Mutex<String>,
}

impl Link {
    /// Starts connecting in the background; stops trying once `closing` is
    /// cancelled.
    pub fn start(config: &NatsConfig, closing: CancellationToken) -> Arc<Link> {
        let link = Arc::new(Link {
            connected: OnceLock::new(),
            ready: Notify::new(),
            last_error: Mutex::new("connecting to NATS".into()),
        });
        let (config, connecting) = (config.clone(), link.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = connecting.connect(config) => {}
                () = closing.cancelled() => {}
            }
        });
        link
    }

    /// Tries every server in turn, with backoff, until one answers.
    async fn connect(&self, config: NatsConfig) {
        let mut backoff = FIRST_CONNECT_BACKOFF;
        let mut failing = false;
        loop {
            match connect_once(&config).await {
                Ok(client) => {
                    let info = client.server_info();
                    tracing::info!(server = %info.server_name, cluster = ?info.cluster, "connected to NATS");
                    let mut js = async_nats::jetstream::new(client.clone());
                    js.set_timeout(config.request_timeout);
                    let _ = self.connected.set((client, js));
                    self.ready.notify_waiters();
                    return;
                }
                Err(why) => {
                    let mut last = self
                        .last_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    // Once when it starts failing, and again when the reason changes.
                    if !failing || *last != why {
                        tracing::warn!(reason = %why, retry_in = ?backoff, "cannot connect to NATS; serving 503 until connected, retrying with backoff");
                    }
                    *last = why;
                    failing = true;
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_CONNECT_BACKOFF);
        }
    }

    /// The JetStream context, or `503` while NATS cannot be reached.
    pub fn js(&self) -> Result<&Context, BackendError> {
        match self.connected.get() {
            Some((client, js)) if is_up(client) => Ok(js),
            Some(_) => Err(unavailable("the connection to NATS is lost, reconnecting")),
            None => Err(unavailable(&format!(
                "not connected to NATS yet ({})",
                self.last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
            ))),
        }
    }

    /// The client, once first connected.
    pub async fn connected(&self) -> Client {
        loop {
            let ready = self.ready.notified();
            if let Some(client) = self.client() {
                return client.clone();
            }
            ready.await;
        }
    }

    /// The client, if ever connected.
    pub fn client(&self) -> Option<&Client> {
        self.connected.get().map(|(client, _)| client)
    }

    /// Why NATS cannot be reached now, for `/healthz`.
    pub fn fault(&self) -> Option<StorageFault> {
        let reason = match self.connected.get() {
            Some((client, _)) if is_up(client) => return None,
            Some(_) => "connection lost, reconnecting".to_owned(),
            None => self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        };
        Some(StorageFault {
            place: StoragePlace::Cluster,
            full: false,
            out_of_descriptors: false,
            reason,
        })
    }
}

fn is_up(client: &Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}

/// A `503` for `reason`.
pub fn unavailable(reason: &str) -> BackendError {
    BackendError::Unavailable {
        reason: reason.to_owned(),
        retry_after: UNAVAILABLE_RETRY_AFTER,
    }
}

/// One attempt over the server list; the error in words, without secrets.
async fn connect_once(config: &NatsConfig) -> Result<Client, String> {
    let mut options = ConnectOptions::new()
        .name("blobq")
        .connection_timeout(config.request_timeout)
        .request_timeout(Some(config.request_timeout))
        // After the first connection, the client reconnects by itself.
        .max_reconnects(None)
        .event_callback(|event| async move { log_event(event) });
    options = match &config.auth {
        NatsAuth::None => options,
        NatsAuth::Credentials(path) => options
            .credentials_file(path)
            .await
            .map_err(|e| format!("cannot read the credentials file {}: {e}", path.display()))?,
        NatsAuth::UserPassword(user, password) => {
            options.user_and_password(user.clone(), password.clone())
        }
        NatsAuth::Token(token) => options.token(token.clone()),
    };
    if let Some(ca) = &config.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    options
        .connect(config.servers.as_slice())
        .await
        .map_err(|e| e.to_string())
}

/// Connection changes after the first connection, one line each.
fn log_event(event: Event) {
    match event {
        Event::Disconnected => tracing::warn!("lost the connection to NATS; reconnecting"),
        Event::Connected => tracing::info!("connected to NATS again"),
        Event::ServerError(e) => tracing::warn!(error = %e, "NATS server error"),
        Event::ClientError(e) => tracing::warn!(error = %e, "NATS client error"),
        Event::LameDuckMode => tracing::warn!("the NATS server is going away (lame duck mode)"),
        Event::SlowConsumer(_) | Event::Draining | Event::Closed => {}
    }
}

//! The TLS configuration in force, swapped for a new one on `SIGHUP`.
//!
//! Each new connection takes the configuration current when it arrives;
//! connections already open keep theirs. Files that fail to load leave the
//! previous configuration in place, and the log says why.

use std::sync::{Arc, PoisonError, RwLock};

use rustls::ServerConfig;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_rustls::TlsAcceptor;

use super::load;
use crate::server::settings::TlsFiles;

/// The files and the configuration last loaded from them.
pub struct Certificates {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl Certificates {
    /// Loads `files`, failing with the file at fault.
    pub fn load(files: TlsFiles) -> Result<Certificates, super::TlsFileError> {
        let config = load(&files)?;
        Ok(Certificates {
            files,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// An acceptor with the configuration in force.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = self.current.read().unwrap_or_else(PoisonError::into_inner);
        TlsAcceptor::from(config.clone())
    }

    /// Reads the files again; on failure keeps the configuration in force.
    pub fn reload(&self) {
        match load(&self.files) {
            Ok(config) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS files not reloaded; the previous certificate stays in force");
            }
        }
    }
}

/// Listens for `SIGHUP`. Made when the server binds, before it announces
/// its address, so that a signal sent once it listens is never missed
/// (nor kills the process, which is what `SIGHUP` does by default).
pub fn hangups() -> std::io::Result<Signal> {
    signal(SignalKind::hangup())
}

/// Reloads `certificates` on every `SIGHUP`, until the task is aborted.
pub async fn reload_on_hangup(certificates: Arc<Certificates>, mut hangups: Signal) {
    while hangups.recv().await.is_some() {
        let certificates = certificates.clone();
        // File reads and key parsing: off the runtime's workers.
        if let Err(e) = tokio::task::spawn_blocking(move || certificates.reload()).await {
            tracing::warn!(error = %e, "TLS reload failed");
        }
    }
}

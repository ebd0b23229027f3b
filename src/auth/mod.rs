//! Authentication and authorisation: who a caller is (a static token or a
//! JWT, `docs/SECURITY.md`) and whether the route asked for is theirs to
//! use. It owns the credentials, their reload on SIGHUP, the grants and the
//! decision per request ([`Gate`]); the HTTP layer (`http/layers.rs`)
//! turns that decision into answers, and the route table
//! (`http/router.rs`) says what each route asks ([`Access`]).
//!
//! With no credential configured blobq is open: [`Auth::open`], no gate,
//! and the layer passes every request straight on.

mod credentials;
mod failures;
mod gate;
mod grant;
mod jwt;
mod settings;
mod token;

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;

pub use credentials::AuthError;
pub use failures::Failure;
pub use gate::{Gate, Refusal, RoutePolicy, Verdict};
pub use grant::{Access, Caller, Grant, NamespacePattern, Role};
pub use jwt::JwtRules;
pub use settings::{AuthConfig, AuthSettings, NewToken, TokenCommand};
pub use token::{digest_hex, entry_toml, mint, TokenEntry};

use credentials::Credentials;
use failures::FailureLog;

/// The authentication of one server: open, or the credentials in force. A
/// cheap clone; every clone sees a reload.
#[derive(Clone, Default)]
pub struct Auth(Option<Arc<Authority>>);

/// The state behind an enabled [`Auth`].
struct Authority {
    config: AuthConfig,
    /// Replaced whole by a reload: a request sees the old set or the new.
    current: ArcSwap<Credentials>,
    failures: FailureLog,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("Auth(open)"),
            // The settings name files and counts, never a digest.
            Some(a) => f
                .debug_struct("Auth")
                .field("config_file", &a.config.config_file)
                .field("tokens", &a.current.load().tokens.len())
                .field("file", &a.config.file)
                .field("jwt_key", &a.config.jwt_key)
                .field("jwt", &a.config.jwt)
                .field("metrics_open", &a.config.metrics_open)
                .finish(),
        }
    }
}

impl Auth {
    /// No authentication: every request is served.
    pub fn open() -> Auth {
        Auth(None)
    }

    /// Reads every credential `config` names; open if it names none.
    pub fn load(config: AuthConfig) -> Result<Auth, AuthError> {
        if !config.enabled() {
            return Ok(Auth::open());
        }
        let credentials = Credentials::load(&config)?;
        Ok(Auth(Some(Arc::new(Authority {
            config,
            current: ArcSwap::from_pointee(credentials),
            failures: FailureLog::default(),
        }))))
    }

    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Reads every credential file again. On any error the credentials in
    /// force stay, and the error says which file and why.
    pub fn reload(&self) -> Result<(), AuthError> {
        let Some(authority) = &self.0 else {
            return Ok(());
        };
        let fresh = Credentials::reload(&authority.config)?;
        authority.current.store(Arc::new(fresh));
        Ok(())
    }

    /// Reloads on every SIGHUP from now on, logging the outcome. The signal
    /// is registered before this returns, so a SIGHUP sent once the server
    /// says it listens is never the default action (exit). Call inside a
    /// tokio runtime; does nothing when authentication is off.
    pub fn reload_on_sighup(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        if !self.is_enabled() {
            return Ok(());
        }
        let mut hangups = signal(SignalKind::hangup())?;
        let auth = self.clone();
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match auth.reload() {
                    Ok(()) => tracing::info!("credentials reloaded"),
                    Err(e) => {
                        tracing::warn!(error = %e, "credentials not reloaded; the previous ones stay")
                    }
                }
            }
        });
        Ok(())
    }

    /// The gate of a router with `policy`; `None` when open.
    pub fn gate(&self, policy: RoutePolicy) -> Option<Arc<Gate>> {
        self.0
            .as_ref()
            .map(|authority| Arc::new(Gate::new(authority.clone(), policy)))
    }
}

impl Authority {
    /// The caller `token` names: a static token, else a JWT.
    fn authenticate(&self, token: &str) -> Result<Caller, Failure> {
        let credentials = self.current.load();
        if let Some(caller) = token::find(&credentials.tokens, token) {
            return Ok(caller.clone());
        }
        match &credentials.jwt {
            Some(keys) if token.bytes().filter(|&b| b == b'.').count() == 2 => {
                keys.verify(token, &self.config.jwt)
            }
            _ => Err(Failure::Unknown),
        }
    }
}

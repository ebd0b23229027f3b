//! The `[auth]` settings: flags, `BLOBQ_*` variables and the TOML table,
//! layered like every other setting (`config.rs`), and what they resolve
//! to once the defaults are applied.

use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;

use super::jwt::JwtRules;
use super::token::TokenEntry;

/// The authentication settings, each optional so the sources can be
/// layered. Configured at all (a token, a token file or a JWT key), they
/// close every route but `/healthz` to callers without a credential.
#[derive(Args, Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// TOML file of [[auth.tokens]] entries, re-read on SIGHUP [default: none]
    #[arg(long = "auth-file", env = "BLOBQ_AUTH_FILE", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Public key (PEM) or JWKS file that JWTs are verified with, re-read on SIGHUP [default: none]
    #[arg(long = "auth-jwt-key", env = "BLOBQ_AUTH_JWT_KEY", value_name = "FILE")]
    pub jwt_key: Option<PathBuf>,
    /// The `iss` a JWT must carry [default: not checked]
    #[arg(
        long = "auth-jwt-issuer",
        env = "BLOBQ_AUTH_JWT_ISSUER",
        value_name = "ISS"
    )]
    pub jwt_issuer: Option<String>,
    /// The `aud` a JWT must carry [default: not checked]
    #[arg(
        long = "auth-jwt-audience",
        env = "BLOBQ_AUTH_JWT_AUDIENCE",
        value_name = "AUD"
    )]
    pub jwt_audience: Option<String>,
    /// Serve /metrics without a credential even when authentication is on [default: false]
    #[arg(long = "metrics-open", env = "BLOBQ_METRICS_OPEN", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub metrics_open: Option<bool>,
    /// Static tokens (TOML only: [[auth.tokens]] entries).
    #[arg(skip)]
    pub tokens: Option<Vec<TokenEntry>>,
}

impl AuthSettings {
    /// `self` where set, else `lower`.
    pub fn or(self, lower: AuthSettings) -> AuthSettings {
        AuthSettings {
            file: self.file.or(lower.file),
            jwt_key: self.jwt_key.or(lower.jwt_key),
            jwt_issuer: self.jwt_issuer.or(lower.jwt_issuer),
            jwt_audience: self.jwt_audience.or(lower.jwt_audience),
            metrics_open: self.metrics_open.or(lower.metrics_open),
            tokens: self.tokens.or(lower.tokens),
        }
    }

    /// The settings in force; `config_file` is the TOML file the tokens
    /// came from, re-read for them on SIGHUP.
    pub fn resolve(self, config_file: Option<PathBuf>) -> AuthConfig {
        AuthConfig {
            config_file,
            tokens: self.tokens.unwrap_or_default(),
            file: self.file,
            jwt_key: self.jwt_key,
            jwt: JwtRules {
                issuer: self.jwt_issuer,
                audience: self.jwt_audience,
            },
            metrics_open: self.metrics_open.unwrap_or(false),
        }
    }
}

/// The authentication settings in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthConfig {
    pub config_file: Option<PathBuf>,
    /// The `[[auth.tokens]]` of the settings file, as read at start-up.
    pub tokens: Vec<TokenEntry>,
    pub file: Option<PathBuf>,
    pub jwt_key: Option<PathBuf>,
    pub jwt: JwtRules,
    pub metrics_open: bool,
}

impl AuthConfig {
    /// Whether any credential is configured, which turns authentication on.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty() || self.file.is_some() || self.jwt_key.is_some()
    }
}

/// `blobq token ...`.
#[derive(clap::Subcommand, Debug)]
pub enum TokenCommand {
    /// Print a fresh random token, once, and the [[auth.tokens]] entry to
    /// paste into the settings file or the --auth-file
    New(NewToken),
}

/// `blobq token new`: what the new token grants.
#[derive(Args, Debug)]
pub struct NewToken {
    /// Shown in the log of requests refused to the token, never the token itself
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// A namespace, a prefix ending in *, or * for all (repeatable)
    #[arg(long = "namespace", value_name = "PATTERN", required = true)]
    pub namespaces: Vec<String>,
    /// producer, consumer, observer or admin (repeatable)
    #[arg(long = "role", value_name = "ROLE", required = true)]
    pub roles: Vec<String>,
}

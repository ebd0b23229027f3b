//! Settings: each one a flag, an environment variable `BLOBQ_<FLAG>` and a key
//! of the TOML file given with `--config`. Flags win over the environment
//! (clap handles both), which wins over the file, which wins over the
//! defaults below. `etc/blobq.toml` documents every key.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::Args;
use serde::Deserialize;

mod cli;
mod logging;
mod overflow;

pub use cli::{Cli, Command, ServeArgs};
pub use logging::{LogConfig, LogFormat, LogSettings, ACCESS_TARGET};
pub use overflow::OverflowSettings;

use crate::auth::{Auth, AuthError, AuthSettings};
use crate::backend::name::Name;
use crate::http::batch::{BatchLimits, BatchSettings};
use crate::http::head_limit::HeadLimits;
use crate::http::ui::{UiConfig, UiSettings};
use crate::http::RequestLimits;
use crate::jobs::{JobConfig, JobSettings};
use crate::server::{LimitSettings, Limits, TlsConfig, TlsSettings};
use crate::store::overflow::OverflowConfig;
use crate::store::{DurabilityConfig, FsyncMode, Quota, StoreConfig};

/// Parses `--fsync`: the store's own names and descriptions, listed by
/// `--help` and in clap's error for any other value.
fn fsync_mode_parser() -> impl TypedValueParser<Value = FsyncMode> {
    let possible =
        FsyncMode::ALL.map(|mode| PossibleValue::new(mode.name()).help(mode.description()));
    PossibleValuesParser::new(possible).try_map(|name| name.parse::<FsyncMode>())
}

/// Every setting, each optional so the three sources can be layered.
#[derive(Args, Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free port [default: 127.0.0.1:8080]
    #[arg(long, env = "BLOBQ_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Directory for spill files [default: the system temporary directory]
    #[arg(long, env = "BLOBQ_SPILL_DIR", value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,
    /// Bodies of this many bytes or more are spilled to disk [default: 102400]
    #[arg(long, env = "BLOBQ_SPILL_THRESHOLD", value_name = "BYTES")]
    pub spill_threshold: Option<u64>,
    /// Largest accepted body [default: 1073741824]
    #[arg(long, env = "BLOBQ_MAX_ELEMENT_SIZE", value_name = "BYTES")]
    pub max_element_size: Option<u64>,
    /// Lifetime of an element pushed without X-QueueServer-Lifetime [default: 3600]
    #[arg(long, env = "BLOBQ_DEFAULT_LIFETIME", value_name = "S")]
    pub default_lifetime: Option<u64>,
    /// Longest lifetime a client may ask for [default: 86400]
    #[arg(long, env = "BLOBQ_MAX_LIFETIME", value_name = "S")]
    pub max_lifetime: Option<u64>,
    /// Longest ?timeout= a pop may wait [default: 300]
    #[arg(long, env = "BLOBQ_MAX_TIMEOUT", value_name = "S")]
    pub max_timeout: Option<u64>,
    /// Deliveries of a leased element before it is dead-lettered [default: 10]
    #[arg(long, env = "BLOBQ_MAX_DELIVERIES", value_name = "N")]
    pub max_deliveries: Option<u32>,
    /// Longest ?lease= a consumer may ask for, in seconds [default: 43200]
    #[arg(long, env = "BLOBQ_MAX_LEASE", value_name = "S")]
    pub max_lease: Option<u64>,
    /// Most X-Custom-Data pairs per element [default: 64]
    #[arg(long, env = "BLOBQ_MAX_CUSTOM_DATA", value_name = "N")]
    pub max_custom_data: Option<usize>,
    /// An empty queue nobody waits on is dropped after this many seconds [default: 60]
    #[arg(long, env = "BLOBQ_QUEUE_IDLE_TIMEOUT", value_name = "S")]
    pub queue_idle_timeout: Option<u64>,
    /// On SIGTERM, how long requests in flight may take to finish [default: 30]
    #[arg(long, env = "BLOBQ_SHUTDOWN_TIMEOUT", value_name = "S")]
    pub shutdown_timeout: Option<u64>,
    /// Most elements (ready or leased) one namespace may hold; 0: no limit [default: 0]
    #[arg(long, env = "BLOBQ_NAMESPACE_MAX_ELEMENTS", value_name = "N")]
    pub namespace_max_elements: Option<u64>,
    /// Most blob bytes one namespace may hold; 0: no limit [default: 0]
    #[arg(long, env = "BLOBQ_NAMESPACE_MAX_BYTES", value_name = "BYTES")]
    pub namespace_max_bytes: Option<u64>,
    /// Retry-After, in seconds, of a push refused for a quota [default: 1]
    #[arg(long, env = "BLOBQ_QUOTA_RETRY_AFTER", value_name = "S")]
    pub quota_retry_after: Option<u64>,
    /// Bytes of bodies held in memory before small ones spill to disk too; 0: no limit [default: 1073741824]
    #[arg(long, env = "BLOBQ_MEMORY_LIMIT", value_name = "BYTES")]
    pub memory_limit: Option<u64>,
    /// Quotas of particular namespaces (TOML only: a [namespaces.NAME] table
    /// with max_elements and max_bytes).
    #[arg(skip)]
    pub namespaces: Option<HashMap<String, Quota>>,
    /// Most connections served at once; more wait in the listen backlog [default: 10000]
    #[arg(long, env = "BLOBQ_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Seconds a client gets to send a request's headers (also the idle keep-alive limit) [default: 10]
    #[arg(long, env = "BLOBQ_HEADER_READ_TIMEOUT", value_name = "S")]
    pub header_read_timeout: Option<u64>,
    /// Seconds a request body may go without sending any bytes [default: 30]
    #[arg(long, env = "BLOBQ_BODY_READ_TIMEOUT", value_name = "S")]
    pub body_read_timeout: Option<u64>,
    /// Largest request head (request line and headers) in bytes [default: 16384]
    #[arg(long, env = "BLOBQ_MAX_HEADER_SIZE", value_name = "BYTES")]
    pub max_header_size: Option<usize>,
    /// Most header lines in one request [default: 100]
    #[arg(long, env = "BLOBQ_MAX_HEADERS", value_name = "N")]
    pub max_headers: Option<usize>,
    /// Durable mode: keep every element in a log under DIR and replay it at
    /// start-up [default: none, elements live in memory and temporary files]
    #[arg(long, env = "BLOBQ_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// When the log reaches stable storage: always (before each answer),
    /// batch (every --fsync-interval-ms) or never (left to the OS) [default: batch]
    #[arg(long, env = "BLOBQ_FSYNC", value_parser = fsync_mode_parser(), value_name = "MODE")]
    pub fsync: Option<FsyncMode>,
    /// Longest time between log syncs in batch mode, in milliseconds [default: 100]
    #[arg(long, env = "BLOBQ_FSYNC_INTERVAL_MS", value_name = "MS")]
    pub fsync_interval_ms: Option<u64>,
    /// Size at which a log segment is sealed and may be compacted [default: 67108864]
    #[arg(long, env = "BLOBQ_LOG_SEGMENT_BYTES", value_name = "BYTES")]
    pub log_segment_bytes: Option<u64>,
    /// Start even if the log is damaged in the middle, dropping only the
    /// damaged records [default: false]
    #[arg(long, env = "BLOBQ_REPAIR", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub repair: Option<bool>,
    /// Log filter, in tracing's EnvFilter syntax [default: info]
    #[arg(long, env = "BLOBQ_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// Authentication: the `[auth]` table (docs/SECURITY.md).
    #[command(flatten)]
    #[serde(default)]
    pub auth: AuthSettings,
    /// The jobs API's settings (a [jobs] table in the file).
    #[command(flatten)]
    #[serde(default)]
    pub jobs: JobSettings,
    /// HTTPS, mutual TLS and HTTP/2 (the `[tls]` table).
    #[command(flatten)]
    #[serde(default)]
    pub tls: TlsSettings,
    /// Batches (the `[batch]` table).
    #[command(flatten)]
    #[serde(default)]
    pub batch: BatchSettings,
    /// Names, listings and the listen backlog (the `[limits]` table).
    #[command(flatten)]
    #[serde(default)]
    pub limits: LimitSettings,
    /// Log format and the access log (the `[logging]` table).
    #[command(flatten)]
    #[serde(default)]
    pub logging: LogSettings,
    /// Overflow segments (the `[overflow]` table).
    #[command(flatten)]
    #[serde(default)]
    pub overflow: OverflowSettings,
    /// The dashboard at /ui (the `[ui]` table).
    #[command(flatten)]
    #[serde(default)]
    pub ui: UiSettings,
    /// The backend, and the NATS JetStream cluster's settings (the `[nats]` table).
    #[command(flatten)]
    #[serde(default)]
    pub nats: crate::backend::nats::NatsSettings,
}

/// Fills each unset field of `$hi` from `$lo`.
macro_rules! layer {
    ($hi:expr, $lo:expr, $($field:ident),*) => {
        Settings { $($field: $hi.$field.or($lo.$field)),* }
    };
}

impl Settings {
    /// `self` where set, else `lower`.
    pub fn or(self, lower: Settings) -> Settings {
        layer!(
            self,
            lower,
            listen,
            spill_dir,
            spill_threshold,
            max_element_size,
            default_lifetime,
            max_lifetime,
            max_timeout,
            max_deliveries,
            max_lease,
            max_custom_data,
            queue_idle_timeout,
            shutdown_timeout,
            namespace_max_elements,
            namespace_max_bytes,
            quota_retry_after,
            memory_limit,
            namespaces,
            max_connections,
            header_read_timeout,
            body_read_timeout,
            max_header_size,
            max_headers,
            data_dir,
            fsync,
            fsync_interval_ms,
            log_segment_bytes,
            repair,
            log,
            auth,
            jobs,
            tls,
            batch,
            limits,
            logging,
            overflow,
            ui,
            nats
        )
    }
}

/// The settings in force, with every default applied and checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub spill_dir: PathBuf,
    pub spill_threshold: u64,
    pub max_element_size: u64,
    pub default_lifetime: u64,
    pub max_lifetime: u64,
    pub max_timeout: Duration,
    pub max_deliveries: u32,
    pub max_lease: Duration,
    pub max_custom_data: usize,
    pub queue_idle_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub namespace_quota: Quota,
    pub namespace_quotas: HashMap<String, Quota>,
    pub quota_retry_after: u64,
    pub memory_limit: u64,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_header_size: usize,
    pub max_headers: usize,
    pub data_dir: Option<PathBuf>,
    pub fsync: FsyncMode,
    pub fsync_interval: Duration,
    pub log_segment_bytes: u64,
    pub repair: bool,
    pub log: String,
    /// The credentials in force, read at start-up; open when none is set.
    pub auth: Auth,
    pub jobs: JobConfig,
    pub tls: TlsConfig,
    pub batch: BatchLimits,
    pub limits: Limits,
    pub logging: LogConfig,
    pub overflow: OverflowConfig,
    pub ui: UiConfig,
    /// `Some` when queues are kept in a NATS JetStream cluster.
    pub nats: Option<crate::backend::nats::NatsConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Auth(#[from] AuthError),
}

impl Config {
    /// Layers flags and environment over the file over the defaults.
    pub fn load(args: ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => Settings::default(),
        };
        Config::build(args.settings.or(file), args.config)
    }

    pub fn from_settings(s: Settings) -> Result<Config, ConfigError> {
        Config::build(s, None)
    }

    /// The settings in force; `config_file` is the file they were read
    /// from, which a reload of the credentials reads again.
    fn build(s: Settings, config_file: Option<PathBuf>) -> Result<Config, ConfigError> {
        let max_lifetime = s.max_lifetime.unwrap_or(86400);
        let config = Config {
            listen: s
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            spill_dir: s.spill_dir.unwrap_or_else(std::env::temp_dir),
            spill_threshold: s.spill_threshold.unwrap_or(100 * 1024),
            max_element_size: s.max_element_size.unwrap_or(1 << 30),
            // Unset, the default follows a lowered maximum instead of contradicting it.
            default_lifetime: s.default_lifetime.unwrap_or(3600.min(max_lifetime)),
            max_lifetime,
            max_timeout: Duration::from_secs(s.max_timeout.unwrap_or(300)),
            max_deliveries: s.max_deliveries.unwrap_or(10),
            max_lease: Duration::from_secs(s.max_lease.unwrap_or(43200)),
            max_custom_data: s.max_custom_data.unwrap_or(64),
            queue_idle_timeout: Duration::from_secs(s.queue_idle_timeout.unwrap_or(60)),
            shutdown_timeout: Duration::from_secs(s.shutdown_timeout.unwrap_or(30)),
            namespace_quota: Quota {
                max_elements: s.namespace_max_elements.unwrap_or(0),
                max_bytes: s.namespace_max_bytes.unwrap_or(0),
            },
            namespace_quotas: s.namespaces.unwrap_or_default(),
            quota_retry_after: s.quota_retry_after.unwrap_or(1),
            memory_limit: s.memory_limit.unwrap_or(1 << 30),
            max_connections: s.max_connections.unwrap_or(10_000),
            header_read_timeout: Duration::from_secs(s.header_read_timeout.unwrap_or(10)),
            body_read_timeout: Duration::from_secs(s.body_read_timeout.unwrap_or(30)),
            max_header_size: s.max_header_size.unwrap_or(16 * 1024),
            max_headers: s.max_headers.unwrap_or(100),
            data_dir: s.data_dir,
            fsync: s.fsync.unwrap_or(FsyncMode::Batch),
            fsync_interval: Duration::from_millis(s.fsync_interval_ms.unwrap_or(100)),
            log_segment_bytes: s.log_segment_bytes.unwrap_or(64 << 20),
            repair: s.repair.unwrap_or(false),
            log: s.log.unwrap_or_else(|| "info".into()),
            auth: Auth::load(s.auth.resolve(config_file))?,
            jobs: s.jobs.resolve().map_err(ConfigError::Invalid)?,
            tls: s.tls.resolve()?,
            batch: s.batch.resolve().map_err(ConfigError::Invalid)?,
            limits: s.limits.resolve()?,
            logging: s.logging.resolve(),
            overflow: s.overflow.resolve().map_err(ConfigError::Invalid)?,
            ui: s.ui.resolve().map_err(ConfigError::Invalid)?,
            nats: s.nats.resolve().map_err(ConfigError::Invalid)?,
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let fail = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        self.logging
            .filter(&self.log)
            .map_err(ConfigError::Invalid)?;
        if self.max_lifetime == 0 || self.default_lifetime == 0 {
            return fail("default-lifetime and max-lifetime must be at least 1 second");
        }
        if self.default_lifetime > self.max_lifetime {
            return fail("default-lifetime must not exceed max-lifetime");
        }
        if self.max_lease.is_zero() {
            return fail("max-lease must be at least 1 second");
        }
        for name in self.namespace_quotas.keys() {
            if let Err(e) = Name::parse(name) {
                return Err(ConfigError::Invalid(format!(
                    "[namespaces.{name}]: the name {e}"
                )));
            }
        }
        if self.max_connections == 0 || self.max_headers == 0 {
            return fail("max-connections and max-headers must be at least 1");
        }
        if self.header_read_timeout.is_zero() || self.body_read_timeout.is_zero() {
            return fail("header-read-timeout and body-read-timeout must be at least 1 second");
        }
        if self.max_header_size < 1024 {
            return fail("max-header-size must be at least 1024 bytes");
        }
        if self.max_deliveries == 0 {
            return fail("max-deliveries must be at least 1");
        }
        if self.fsync_interval.is_zero() {
            return fail("fsync-interval-ms must be at least 1");
        }
        if self.nats.is_some() && self.data_dir.is_some() {
            return fail(
                "data-dir is the embedded backend's log: it cannot go with a nats:// backend",
            );
        }
        if self.log_segment_bytes < 4096 {
            return fail("log-segment-bytes must be at least 4096");
        }
        Ok(())
    }

    pub fn store(&self) -> StoreConfig {
        StoreConfig {
            spill_dir: self.spill_dir.clone(),
            spill_threshold: self.spill_threshold,
            max_element_size: self.max_element_size,
            queue_idle_timeout: self.queue_idle_timeout,
            max_deliveries: self.max_deliveries,
            namespace_quota: self.namespace_quota,
            namespace_quotas: self.namespace_quotas.clone(),
            quota_retry_after: self.quota_retry_after,
            memory_limit: self.memory_limit,
            overflow: self.overflow,
            durability: self.data_dir.as_ref().map(|dir| DurabilityConfig {
                dir: dir.clone(),
                fsync: self.fsync,
                fsync_interval: self.fsync_interval,
                segment_bytes: self.log_segment_bytes,
                repair: self.repair,
            }),
            names: self.limits.names,
        }
    }

    pub fn request_limits(&self) -> RequestLimits {
        RequestLimits {
            default_lifetime: self.default_lifetime,
            max_lifetime: self.max_lifetime,
            max_timeout: self.max_timeout,
            max_lease: self.max_lease,
            body_read_timeout: self.body_read_timeout,
            max_custom_data: self.max_custom_data,
            max_page_size: self.limits.max_page_size,
            head: HeadLimits::new(self.max_header_size, self.max_headers),
        }
    }
}

fn read_file(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

#[cfg(test)]
mod tests;

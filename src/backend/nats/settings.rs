//! The `[nats]` settings: which backend holds the queues (the embedded
//! store, or a NATS JetStream cluster), and how to reach and use the
//! cluster. docs/SCALE-OUT.md describes them; `etc/blobq.toml` lists them.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

pub use super::store_config::BlobStore;
use super::store_config::S3Settings;

/// The `[nats]` table, each setting optional so the sources can be layered.
#[derive(Args, Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct NatsSettings {
    /// Where queues are kept: "embedded" (memory, spill files and the
    /// optional log) or nats://host:4222[,host2:4222,...] (a JetStream cluster) [default: embedded]
    #[arg(long = "backend", env = "BLOBQ_BACKEND", value_name = "URLS")]
    pub backend: Option<String>,
    /// NATS credentials file (a user JWT and its NKey seed) [default: none]
    #[arg(
        long = "nats-credentials",
        env = "BLOBQ_NATS_CREDENTIALS",
        value_name = "FILE"
    )]
    pub credentials: Option<PathBuf>,
    /// NATS user name, with --nats-password [default: none]
    #[arg(long = "nats-user", env = "BLOBQ_NATS_USER", value_name = "USER")]
    pub user: Option<String>,
    /// NATS password of --nats-user [default: none]
    #[arg(
        long = "nats-password",
        env = "BLOBQ_NATS_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// NATS token [default: none]
    #[arg(
        long = "nats-token",
        env = "BLOBQ_NATS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Verify the NATS servers' TLS certificates with the CAs of this PEM
    /// file, and require TLS [default: none]
    #[arg(long = "nats-tls-ca", env = "BLOBQ_NATS_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Copies JetStream keeps of each stream (a server outside a cluster keeps 1) [default: 3]
    #[arg(long = "nats-replicas", env = "BLOBQ_NATS_REPLICAS", value_name = "N")]
    pub replicas: Option<usize>,
    /// Seconds JetStream waits for an acknowledgement before it hands a
    /// delivered element out again; the node holding a lease renews it
    /// well within that [default: 30]
    #[arg(long = "nats-ack-wait", env = "BLOBQ_NATS_ACK_WAIT", value_name = "S")]
    pub ack_wait: Option<u64>,
    /// Seconds an operation waits for JetStream before answering 503 [default: 5]
    #[arg(
        long = "nats-request-timeout",
        env = "BLOBQ_NATS_REQUEST_TIMEOUT",
        value_name = "S"
    )]
    pub request_timeout: Option<u64>,
    /// Milliseconds a pop that would not wait gives JetStream to hand over
    /// an element: a pull that asks for no wait at all can miss one whose
    /// push was acknowledged an instant before [default: 50]
    #[arg(
        long = "nats-empty-pop-wait",
        env = "BLOBQ_NATS_EMPTY_POP_WAIT",
        value_name = "MS"
    )]
    pub empty_pop_wait: Option<u64>,
    /// Largest body kept inline in a JetStream message; a larger one is
    /// kept in the object store (see --blob-store) [default: 262144]
    #[arg(
        long = "nats-max-inline",
        env = "BLOBQ_NATS_MAX_INLINE",
        value_name = "BYTES"
    )]
    pub max_inline: Option<u64>,
    /// Where bodies past --nats-max-inline are kept: "nats" (a JetStream
    /// object store bucket per namespace) or s3://bucket[/prefix] [default: nats]
    #[arg(long = "blob-store", env = "BLOBQ_BLOB_STORE", value_name = "URL")]
    pub blob_store: Option<String>,
    /// S3 endpoint other than AWS's, e.g. http://127.0.0.1:9000 (MinIO, moto) [default: AWS]
    #[arg(
        long = "blob-store-endpoint",
        env = "BLOBQ_BLOB_STORE_ENDPOINT",
        value_name = "URL"
    )]
    pub blob_store_endpoint: Option<String>,
    /// S3 region [default: AWS_REGION, else us-east-1]
    #[arg(
        long = "blob-store-region",
        env = "BLOBQ_BLOB_STORE_REGION",
        value_name = "REGION"
    )]
    pub blob_store_region: Option<String>,
    /// S3 access key id, with --blob-store-secret-access-key [default: AWS_ACCESS_KEY_ID, or the instance's role]
    #[arg(
        long = "blob-store-access-key-id",
        env = "BLOBQ_BLOB_STORE_ACCESS_KEY_ID",
        value_name = "ID"
    )]
    pub blob_store_access_key_id: Option<String>,
    /// S3 secret access key of --blob-store-access-key-id [default: AWS_SECRET_ACCESS_KEY]
    #[arg(
        long = "blob-store-secret-access-key",
        env = "BLOBQ_BLOB_STORE_SECRET_ACCESS_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub blob_store_secret_access_key: Option<String>,
    /// Seconds between two sweeps for stored objects that no element or
    /// blob refers to any more (their elements' lifetimes ended) [default: 300]
    #[arg(
        long = "blob-sweep-interval",
        env = "BLOBQ_BLOB_SWEEP_INTERVAL",
        value_name = "S"
    )]
    pub blob_sweep_interval: Option<u64>,
}

/// The `[nats]` settings in force when the NATS backend is chosen.
#[derive(Clone)]
pub struct NatsConfig {
    /// The server URLs, as the client connects to them.
    pub servers: Vec<async_nats::ServerAddr>,
    pub auth: NatsAuth,
    pub tls_ca: Option<PathBuf>,
    pub replicas: usize,
    pub ack_wait: Duration,
    pub request_timeout: Duration,
    /// How long a pop that would not wait still pulls.
    pub empty_pop_wait: Duration,
    pub max_inline: u64,
    /// Where bodies past `max_inline` are kept.
    pub blob_store: BlobStore,
    /// How often a node looks for objects no element or blob refers to.
    pub sweep_interval: Duration,
}

/// How blobq proves itself to NATS.
#[derive(Clone, PartialEq, Eq)]
pub enum NatsAuth {
    None,
    Credentials(PathBuf),
    UserPassword(String, String),
    Token(String),
}

/// Shows the servers and the kind of credential, never a secret.
impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match &self.auth {
            NatsAuth::None => "none".to_owned(),
            NatsAuth::Credentials(path) => format!("credentials file {}", path.display()),
            NatsAuth::UserPassword(user, _) => format!("user {user}"),
            NatsAuth::Token(_) => "token".to_owned(),
        };
        f.debug_struct("NatsConfig")
            .field("servers", &self.servers)
            .field("auth", &auth)
            .field("tls_ca", &self.tls_ca)
            .field("replicas", &self.replicas)
            .field("ack_wait", &self.ack_wait)
            .field("request_timeout", &self.request_timeout)
            .field("max_inline", &self.max_inline)
            .field("blob_store", &self.blob_store)
            .field("sweep_interval", &self.sweep_interval)
            .finish()
    }
}

/// Largest inline body by default: well under NATS's default
/// `max_payload` (1 MiB), so that a message never nears it.
const DEFAULT_MAX_INLINE: u64 = 256 * 1024;

/// What `--backend` names when it is not a NATS URL list.
const EMBEDDED: &str = "embedded";

impl NatsSettings {
    /// `self` where set, else `lower`.
    pub fn or(self, lower: NatsSettings) -> NatsSettings {
        NatsSettings {
            backend: self.backend.or(lower.backend),
            credentials: self.credentials.or(lower.credentials),
            user: self.user.or(lower.user),
            password: self.password.or(lower.password),
            token: self.token.or(lower.token),
            tls_ca: self.tls_ca.or(lower.tls_ca),
            replicas: self.replicas.or(lower.replicas),
            ack_wait: self.ack_wait.or(lower.ack_wait),
            request_timeout: self.request_timeout.or(lower.request_timeout),
            empty_pop_wait: self.empty_pop_wait.or(lower.empty_pop_wait),
            max_inline: self.max_inline.or(lower.max_inline),
            blob_store: self.blob_store.or(lower.blob_store),
            blob_store_endpoint: self.blob_store_endpoint.or(lower.blob_store_endpoint),
            blob_store_region: self.blob_store_region.or(lower.blob_store_region),
            blob_store_access_key_id: self
                .blob_store_access_key_id
                .or(lower.blob_store_access_key_id),
            blob_store_secret_access_key: self
                .blob_store_secret_access_key
                .or(lower.blob_store_secret_access_key),
            blob_sweep_interval: self.blob_sweep_interval.or(lower.blob_sweep_interval),
        }
    }

    /// `None` for the embedded store; the NATS settings, defaults applied
    /// and checked, for `nats://` URLs.
    pub fn resolve(self) -> Result<Option<NatsConfig>, String> {
        let backend = self.backend.as_deref().unwrap_or(EMBEDDED).trim();
        if backend == EMBEDDED {
            return Ok(None);
        }
        // The first URL names the scheme; the others may be host:port alone.
        if !(backend.starts_with("nats://") || backend.starts_with("tls://")) {
            return Err(format!(
                "backend: {backend:?} is neither \"embedded\" nor nats://host:port[,host:port...]"
            ));
        }
        let mut servers = Vec::new();
        for url in backend.split(',').map(str::trim) {
            let addr = async_nats::ServerAddr::from_str(url)
                .ok()
                .filter(|a| !a.host().is_empty());
            servers.push(addr.ok_or_else(|| format!("backend: {url:?} is not a NATS URL"))?);
        }
        let auth = match (self.credentials, self.user, self.password, self.token) {
            (None, None, None, None) => NatsAuth::None,
            (Some(file), None, None, None) => NatsAuth::Credentials(file),
            (None, Some(user), Some(password), None) => NatsAuth::UserPassword(user, password),
            (None, None, None, Some(token)) => NatsAuth::Token(token),
            (None, Some(_), None, None) | (None, None, Some(_), None) => {
                return Err("nats-user and nats-password must be given together".into())
            }
            _ => {
                return Err(
                    "give one NATS credential: nats-credentials, nats-user with \
                            nats-password, or nats-token"
                        .into(),
                )
            }
        };
        let replicas = self.replicas.unwrap_or(3);
        if !(1..=5).contains(&replicas) {
            return Err("nats-replicas must be 1 to 5 (JetStream's own limit)".into());
        }
        let ack_wait = self.ack_wait.unwrap_or(30);
        if ack_wait < 2 {
            return Err("nats-ack-wait must be at least 2 seconds".into());
        }
        let request_timeout = self.request_timeout.unwrap_or(5);
        if request_timeout == 0 {
            return Err("nats-request-timeout must be at least 1 second".into());
        }
        let empty_pop_wait = self.empty_pop_wait.unwrap_or(50);
        if empty_pop_wait == 0 || empty_pop_wait > 1000 * request_timeout {
            return Err(
                "nats-empty-pop-wait must be at least 1 ms and within nats-request-timeout".into(),
            );
        }
        let max_inline = self.max_inline.unwrap_or(DEFAULT_MAX_INLINE);
        if max_inline == 0 {
            return Err("nats-max-inline must be at least 1 byte".into());
        }
        let sweep_interval = self.blob_sweep_interval.unwrap_or(300);
        if sweep_interval == 0 {
            return Err("blob-sweep-interval must be at least 1 second".into());
        }
        let blob_store = BlobStore::resolve(S3Settings {
            url: self.blob_store,
            endpoint: self.blob_store_endpoint,
            region: self.blob_store_region,
            access_key_id: self.blob_store_access_key_id,
            secret_access_key: self.blob_store_secret_access_key,
        })?;
        Ok(Some(NatsConfig {
            servers,
            auth,
            tls_ca: self.tls_ca,
            replicas,
            ack_wait: Duration::from_secs(ack_wait),
            request_timeout: Duration::from_secs(request_timeout),
            empty_pop_wait: Duration::from_millis(empty_pop_wait),
            max_inline,
            blob_store,
            sweep_interval: Duration::from_secs(sweep_interval),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(backend: &str) -> NatsSettings {
        NatsSettings {
            backend: Some(backend.into()),
            ..NatsSettings::default()
        }
    }

    #[test]
    fn the_embedded_store_is_the_default_and_nats_urls_choose_nats() {
        assert!(NatsSettings::default().resolve().unwrap().is_none());
        assert!(with("embedded").resolve().unwrap().is_none());
        let c = with("nats://a:4222, b:4223").resolve().unwrap();
        let c = c.expect("the NATS backend");
        assert_eq!(c.servers.len(), 2);
        assert_eq!((c.replicas, c.ack_wait.as_secs()), (3, 30));
        assert!(c.auth == NatsAuth::None);
        for bad in [
            "redis://x:1",
            "nats://",
            "a:4222",
            "",
            "nats://a:1,",
            "nats://a:1,x:y",
        ] {
            assert!(with(bad).resolve().is_err(), "{bad}");
        }
    }

    #[test]
    fn one_credential_at_a_time_and_secrets_are_never_shown() {
        let s = NatsSettings {
            user: Some("u".into()),
            password: Some("hunter2".into()),
            ..with("nats://a:4222")
        };
        let c = s.clone().resolve().unwrap().unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        let both = NatsSettings {
            token: Some("t".into()),
            ..s
        };
        assert!(both.resolve().is_err());
        let alone = NatsSettings {
            user: Some("u".into()),
            ..with("nats://a:4222")
        };
        assert!(alone.resolve().is_err());
        let zero = NatsSettings {
            replicas: Some(0),
            ..with("nats://a:4222")
        };
        assert!(zero.resolve().is_err());
    }

    #[test]
    fn large_bodies_go_to_the_object_store_past_a_default_threshold() {
        let c = with("nats://a:4222").resolve().unwrap().unwrap();
        assert_eq!(c.max_inline, 256 * 1024);
        assert!(matches!(c.blob_store, BlobStore::Nats));
        assert_eq!(c.sweep_interval.as_secs(), 300);
        let s3 = NatsSettings {
            blob_store: Some("s3://b/p".into()),
            blob_store_endpoint: Some("http://127.0.0.1:9".into()),
            ..with("nats://a:4222")
        };
        let c = s3.resolve().unwrap().unwrap();
        assert!(matches!(c.blob_store, BlobStore::S3 { .. }));
        let never = NatsSettings {
            blob_sweep_interval: Some(0),
            ..with("nats://a:4222")
        };
        assert!(never.resolve().is_err());
        let bad = NatsSettings {
            blob_store: Some("ftp://x".into()),
            ..with("nats://a:4222")
        };
        assert!(bad.resolve().is_err());
    }

    #[test]
    fn a_pop_that_would_not_wait_still_pulls_for_a_bounded_while() {
        let c = with("nats://a:4222").resolve().unwrap().unwrap();
        assert_eq!(c.empty_pop_wait.as_millis(), 50);
        let set = |ms| NatsSettings {
            empty_pop_wait: Some(ms),
            ..with("nats://a:4222")
        };
        assert_eq!(
            set(5)
                .resolve()
                .unwrap()
                .unwrap()
                .empty_pop_wait
                .as_millis(),
            5
        );
        assert!(set(0).resolve().is_err());
        assert!(set(5001).resolve().is_err(), "past the request timeout");
    }
}

//! The `[tls]` settings: the certificate files of HTTPS and mutual TLS, and
//! the limits of HTTP/2, which is served over TLS (ALPN `h2`) and on plain
//! connections that open with its preface (h2c).

use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;

use crate::config::ConfigError;

/// The `[tls]` table, each setting optional so the sources can be layered.
#[derive(Args, Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs --tls-key [default: none, plain HTTP]
    #[arg(long = "tls-cert", env = "BLOBQ_TLS_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1)
    #[arg(long = "tls-key", env = "BLOBQ_TLS_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Require client certificates signed by a CA of this PEM file (mutual TLS) [default: none]
    #[arg(
        long = "tls-client-ca",
        env = "BLOBQ_TLS_CLIENT_CA",
        value_name = "FILE"
    )]
    pub client_ca: Option<PathBuf>,
    /// Most requests in flight at once on one HTTP/2 connection [default: 256]
    #[arg(
        long = "http2-max-streams",
        env = "BLOBQ_HTTP2_MAX_STREAMS",
        value_name = "N"
    )]
    pub http2_max_streams: Option<u32>,
}

/// The files of the server's TLS identity, re-read together on `SIGHUP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Present: clients must show a certificate signed by one of its CAs.
    pub client_ca: Option<PathBuf>,
}

/// The `[tls]` settings in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// `None`: the port speaks plain HTTP/1.1 and h2c.
    pub files: Option<TlsFiles>,
    pub http2_max_streams: u32,
}

impl TlsSettings {
    /// `self` where set, else `lower`.
    pub fn or(self, lower: TlsSettings) -> TlsSettings {
        TlsSettings {
            cert: self.cert.or(lower.cert),
            key: self.key.or(lower.key),
            client_ca: self.client_ca.or(lower.client_ca),
            http2_max_streams: self.http2_max_streams.or(lower.http2_max_streams),
        }
    }

    /// The defaults applied and the combination checked; the files are
    /// read later, by the server (`tls::load`).
    pub fn resolve(self) -> Result<TlsConfig, ConfigError> {
        let fail = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        let files = match (self.cert, self.key, self.client_ca) {
            (Some(cert), Some(key), client_ca) => Some(TlsFiles {
                cert,
                key,
                client_ca,
            }),
            (None, None, None) => None,
            (None, None, Some(_)) => return fail("tls-client-ca needs tls-cert and tls-key"),
            _ => return fail("tls-cert and tls-key must be given together"),
        };
        let http2_max_streams = self.http2_max_streams.unwrap_or(256);
        if http2_max_streams == 0 {
            return fail("http2-max-streams must be at least 1");
        }
        Ok(TlsConfig {
            files,
            http2_max_streams,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_serve_plain_http_with_a_stream_limit() {
        let c = TlsSettings::default().resolve().unwrap();
        assert_eq!(c.files, None);
        assert_eq!(c.http2_max_streams, 256);
    }

    #[test]
    fn certificate_and_key_come_together_and_a_client_ca_needs_both() {
        let with = |cert: bool, key: bool, ca: bool| TlsSettings {
            cert: cert.then(|| "c.pem".into()),
            key: key.then(|| "k.pem".into()),
            client_ca: ca.then(|| "ca.pem".into()),
            http2_max_streams: None,
        };
        assert!(with(true, false, false).resolve().is_err());
        assert!(with(false, true, false).resolve().is_err());
        assert!(with(false, false, true).resolve().is_err());
        let files = with(true, true, true).resolve().unwrap().files.unwrap();
        assert_eq!(files.client_ca, Some("ca.pem".into()));
    }

    #[test]
    fn the_tls_table_of_the_file_and_the_flags_layer_like_every_setting() {
        use crate::config::{Cli, Command, Config, Settings};
        use clap::Parser;
        let file: Settings =
            toml::from_str("[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nhttp2_max_streams = 8\n")
                .unwrap();
        let cli = Cli::try_parse_from(["blobq", "serve", "--tls-key", "flag.pem"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        let tls = Config::from_settings(args.settings.or(file)).unwrap().tls;
        let files = tls.files.unwrap();
        assert_eq!((files.cert, files.key), ("c.pem".into(), "flag.pem".into()));
        assert_eq!(tls.http2_max_streams, 8);
        assert!(toml::from_str::<Settings>("[tls]\ncertificate = \"c.pem\"\n").is_err());
    }

    #[test]
    fn a_zero_stream_limit_is_refused() {
        let s = TlsSettings {
            http2_max_streams: Some(0),
            ..TlsSettings::default()
        };
        assert!(s.resolve().is_err());
    }
}

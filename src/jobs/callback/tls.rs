//! The HTTP client callbacks are sent with: hyper's, over a connector that
//! speaks plain HTTP or, for `https://` URLs, TLS with rustls and the
//! aws-lc-rs provider (the one the server's own TLS uses), trusting the
//! system's certificate authorities and those of
//! `--job-callback-ca-file`.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use super::CallbackConfig;

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The client for `config`'s callbacks. The system's authorities are read
/// only when an `https://` prefix is allowed, once.
pub fn client(config: &CallbackConfig) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(config.timeout));
    let https = config.allow.iter().any(|p| p.starts_with("https://"));
    let roots = if https {
        roots(&config.extra_roots)
    } else {
        RootCertStore::empty()
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the aws-lc-rs provider supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// The system's certificate authorities and `extra`; what cannot be read
/// or used is logged and left out.
fn roots(extra: &[CertificateDer<'static>]) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    for e in &system.errors {
        tracing::warn!(error = %e, "some of the system's certificate authorities could not be read for https callbacks");
    }
    roots.add_parsable_certificates(system.certs);
    let (_, unusable) = roots.add_parsable_certificates(extra.iter().cloned());
    if unusable > 0 {
        tracing::warn!(
            unusable,
            "certificates of job-callback-ca-file that are not usable authorities were left out"
        );
    }
    if roots.is_empty() {
        tracing::warn!("no certificate authority is trusted for https callbacks: each will fail");
    }
    roots
}

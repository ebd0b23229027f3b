//! HTTPS with rustls: the server's certificate chain and key, and the CAs
//! client certificates must chain to, read from PEM files into a rustls
//! configuration ([`load`]); re-reading them on `SIGHUP` ([`reload`]); and
//! the name of a verified client ([`peer`]).
//!
//! TLS 1.2 and 1.3 only, with rustls' default provider (aws-lc-rs); ALPN
//! offers `h2` first, then `http/1.1`.

pub mod peer;
pub mod reload;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::version::{TLS12, TLS13};
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};

use super::settings::TlsFiles;

/// The versions offered: older ones have known weaknesses (and rustls does
/// not implement them anyway).
pub const PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] = &[&TLS13, &TLS12];

/// The ALPN protocols offered, preferred first.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A TLS file that cannot be used, and why; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("TLS file {}: {reason}", path.display())]
pub struct TlsFileError {
    pub path: PathBuf,
    pub reason: String,
}

fn fail(path: &Path, reason: impl ToString) -> TlsFileError {
    TlsFileError {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// The rustls configuration of `files`: the chain, its key, and the client
/// CAs when mutual TLS is asked for.
pub fn load(files: &TlsFiles) -> Result<ServerConfig, TlsFileError> {
    let chain = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| fail(&files.key, pem_reason(e, "private key")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|e| fail(&files.cert, e))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => builder.with_client_cert_verifier(client_verifier(path, provider)?),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        fail(
            &files.key,
            format!(
                "does not go with the certificate {}: {e}",
                files.cert.display()
            ),
        )
    })?;
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Every certificate of a PEM file, in order; at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| fail(path, pem_reason(e, "certificate")))?;
    if chain.is_empty() {
        return Err(fail(path, "no PEM certificate in the file"));
    }
    Ok(chain)
}

/// Verifies client certificates against the CAs of `path`: one is required.
fn client_verifier(
    path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsFileError> {
    let mut roots = RootCertStore::empty();
    for ca in certificates(path)? {
        roots.add(ca).map_err(|e| fail(path, e))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| fail(path, e))
}

/// pki-types' PEM errors, worded for an operator.
fn pem_reason(error: rustls::pki_types::pem::Error, what: &str) -> String {
    use rustls::pki_types::pem::Error;
    match error {
        Error::Io(e) => format!("cannot read it: {e}"),
        Error::NoItemsFound => format!("no PEM {what} in the file"),
        other => format!("not a valid PEM {what}: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tls_1_2_and_1_3_and_h2_before_http1() {
        let versions: Vec<_> = PROTOCOL_VERSIONS.iter().map(|v| v.version).collect();
        assert_eq!(
            versions,
            [
                rustls::ProtocolVersion::TLSv1_3,
                rustls::ProtocolVersion::TLSv1_2
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(["localhost".to_owned()]).unwrap();
        let files = TlsFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            client_ca: None,
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, signing_key.serialize_pem()).unwrap();
        let config = load(&files).unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}

//! TLS and HTTP clients for the tests: rustls connections with a chosen
//! ALPN, protocol versions and client certificate, and hyper's HTTP/1.1 and
//! HTTP/2 clients over one connection each, so a test knows exactly which
//! connection and protocol a request used.

use std::error::Error;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::pki::Identity;
use crate::common::STEP;

pub type Body = BoxBody<Bytes, Box<dyn Error + Send + Sync>>;

/// How a test client speaks TLS.
pub struct Tls<'a> {
    pub ca: CertificateDer<'static>,
    pub alpn: &'a [&'a [u8]],
    pub versions: &'a [&'static SupportedProtocolVersion],
    pub identity: Option<Identity>,
}

impl<'a> Tls<'a> {
    /// Trusts `ca`, offers `alpn`, TLS 1.2 and 1.3, no client certificate.
    pub fn new(ca: CertificateDer<'static>, alpn: &'a [&'a [u8]]) -> Tls<'a> {
        Tls {
            ca,
            alpn,
            versions: rustls::ALL_VERSIONS,
            identity: None,
        }
    }

    pub fn config(self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca).expect("trust the CA");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(self.versions)
            .expect("versions")
            .with_root_certificates(roots);
        let mut config = match self.identity {
            Some(id) => builder
                .with_client_auth_cert(id.chain, id.key)
                .expect("client identity"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A TLS connection to `addr` for the name `localhost`.
    pub async fn connect(self, addr: &str) -> std::io::Result<TlsStream<TcpStream>> {
        let connector = TlsConnector::from(self.config());
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost").expect("name");
        tokio::time::timeout(STEP, connector.connect(name, tcp))
            .await
            .expect("TLS handshake hung")
    }
}

/// One HTTP connection, either version, and the authority its requests name.
#[derive(Clone)]
pub enum Conn {
    H1(Arc<tokio::sync::Mutex<http1::SendRequest<Body>>>),
    H2(http2::SendRequest<Body>, &'static str),
}

/// An answer read to its end.
pub struct Answer {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn http1<I>(io: I) -> Conn
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(TokioIo::new(io))
        .await
        .expect("HTTP/1 handshake");
    tokio::spawn(conn);
    Conn::H1(Arc::new(tokio::sync::Mutex::new(sender)))
}

/// HTTP/2 over `io`; `scheme` is what the requests' URIs say (`https` or
/// `http`).
pub async fn http2<I>(io: I, scheme: &'static str) -> Conn
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(io))
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    Conn::H2(sender, scheme)
}

pub fn empty() -> Body {
    Empty::new().map_err(|e| match e {}).boxed()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

impl Conn {
    /// Sends one request and reads its answer, failing after [`STEP`].
    pub async fn send(&self, method: Method, path: &str, body: Body) -> Answer {
        self.try_send(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, empty()).await
    }

    pub async fn post(&self, path: &str, body: impl Into<Bytes>) -> Answer {
        self.send(Method::POST, path, full(body)).await
    }

    /// [`Conn::send`] with extra request headers.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Answer {
        self.try_send_with(method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// [`Conn::send`], answering the failure instead of panicking.
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        body: Body,
    ) -> Result<Answer, Box<dyn Error + Send + Sync>> {
        self.try_send_with(method, path, &[], body).await
    }

    async fn try_send_with(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Result<Answer, Box<dyn Error + Send + Sync>> {
        let mut request = Request::builder().method(method);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let sent = async {
            let response = match self {
                Conn::H1(sender) => {
                    let request = request.uri(path).header("host", "localhost").body(body)?;
                    let mut sender = sender.lock().await;
                    sender.ready().await?;
                    sender.send_request(request).await?
                }
                Conn::H2(sender, scheme) => {
                    let request = request
                        .uri(format!("{scheme}://localhost{path}"))
                        .body(body)?;
                    let mut sender = sender.clone();
                    sender.ready().await?;
                    sender.send_request(request).await?
                }
            };
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok(Answer {
                status: parts.status,
                version: parts.version,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(STEP, sent)
            .await
            .map_err(|_| format!("{path}: no answer within {STEP:?}"))?
    }
}

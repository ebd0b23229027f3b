//! Who is calling, when mutual TLS verified a client certificate.

use std::fmt;
use std::sync::Arc;

use rustls::ServerConnection;
use x509_cert::der::Decode;

/// The subject of the client certificate the TLS handshake verified, in
/// RFC 4514 form (`CN=thumbnailer,O=media`). Every request of a mutual-TLS
/// connection carries it as an extension, so that a layer or a handler
/// can tell callers apart without parsing certificates again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientName(pub Arc<str>);

impl fmt::Display for ClientName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl ClientName {
    /// The name of the client `session` verified, if it showed a
    /// certificate. rustls has already checked the chain; a subject that
    /// cannot be decoded is named by that fact rather than refused.
    pub fn of(session: &ServerConnection) -> Option<ClientName> {
        let leaf = session.peer_certificates()?.first()?;
        let name = match x509_cert::Certificate::from_der(leaf) {
            Ok(cert) => cert.tbs_certificate().subject().to_string(),
            Err(_) => "(undecodable subject)".to_owned(),
        };
        Some(ClientName(name.into()))
    }
}

/// A service that gives every request the name of the connection's client.
#[derive(Clone)]
pub struct Named<S> {
    inner: S,
    name: ClientName,
}

impl<S> Named<S> {
    pub fn new(inner: S, name: ClientName) -> Named<S> {
        Named { inner, name }
    }
}

impl<S, B> tower::Service<http::Request<B>> for Named<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        request.extensions_mut().insert(self.name.clone());
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use tower::{service_fn, ServiceExt};

    use super::*;

    #[tokio::test]
    async fn every_request_carries_the_client_name() {
        let echo = service_fn(|request: http::Request<()>| async move {
            Ok::<_, std::convert::Infallible>(request.extensions().get::<ClientName>().cloned())
        });
        let name = ClientName("CN=worker".into());
        let named = Named::new(echo, name.clone());
        for _ in 0..2 {
            let seen = named.clone().oneshot(http::Request::new(())).await;
            assert_eq!(seen, Ok(Some(name.clone())));
        }
    }
}

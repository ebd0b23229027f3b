//! Serving one accepted connection: its opening (the TLS handshake, or on a
//! plain port the check for HTTP/2's preface), then HTTP/1.1 or HTTP/2
//! until the client leaves or the server stops.
//!
//! The opening is bounded by the header read timeout, as a request head
//! is: a client that connects and sends nothing, or trickles its
//! handshake, loses its connection (and its slot under the cap). Every
//! request is counted in the connection's `Activity`, which tells the
//! accept loop whether the connection is idle.

use std::convert::Infallible;
use std::io;
use std::time::Duration;

use axum::extract::Request;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tower::Service;

use std::sync::Arc;

use super::head_limit;
use super::idle::{Activity, IdleWatch};
use super::stop::Stop;
use super::tls::peer::{ClientName, Named};
use crate::config::Config;
use crate::http::router::Api;
use crate::http::App;

/// What HTTP/2 prior knowledge (h2c) opens with (RFC 9113, 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The settings of both HTTP versions, shared by every connection.
pub(super) struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    /// How long a client gets to complete the TLS handshake, or to show
    /// which HTTP version it speaks; and how long an HTTP/2 connection is
    /// kept unused (HTTP/1's header read timeout does both for HTTP/1).
    opening_timeout: Duration,
    /// Where refused heads are counted.
    app: Arc<App>,
}

/// The HTTP/2 settings of every connection: the same header ceiling as
/// HTTP/1's parser (blobq checks its own limit, see `head_limit`), and a
/// cap on the requests in flight on one connection (each holds a task and
/// buffers, as a connection of HTTP/1 does).
fn http2_builder(config: &Config) -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.tls.http2_max_streams)
        .max_header_list_size(
            u32::try_from(head_limit::parser_ceiling(config).max_header_size).unwrap_or(u32::MAX),
        );
    builder
}

impl Protocols {
    pub fn new(config: &Config, app: Arc<App>) -> Protocols {
        Protocols {
            http1: super::http1_builder(config),
            http2: http2_builder(config),
            opening_timeout: config.header_read_timeout,
            app,
        }
    }

    /// Serves a plain connection: HTTP/2 if it opens with the preface,
    /// HTTP/1.1 otherwise. `activity` counts its requests.
    pub async fn serve_plain<S>(
        &self,
        stream: TcpStream,
        service: S,
        activity: Arc<Activity>,
        mut stop: Stop,
    ) where
        S: RequestService,
    {
        let opened = tokio::select! {
            biased;
            () = &mut stop => return,
            opened = tokio::time::timeout(self.opening_timeout, opens_with_h2_preface(&stream)) => opened,
        };
        match opened {
            Ok(Ok(h2)) => self.serve_http(stream, h2, service, activity, stop).await,
            Ok(Err(e)) => tracing::debug!(error = %e, "connection failed before its first request"),
            Err(_) => tracing::debug!("connection sent no request in time"),
        }
    }

    /// Serves a TLS connection: the handshake, then the HTTP version ALPN
    /// agreed on (HTTP/1.1 when the client offered none). A verified client
    /// certificate's subject goes with every request as a [`ClientName`].
    pub async fn serve_tls<S>(
        &self,
        stream: TcpStream,
        acceptor: TlsAcceptor,
        service: S,
        activity: Arc<Activity>,
        mut stop: Stop,
    ) where
        S: RequestService,
    {
        let handshake = tokio::select! {
            biased;
            () = &mut stop => return,
            accepted = tokio::time::timeout(self.opening_timeout, acceptor.accept(stream)) => accepted,
        };
        let stream = match handshake {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake refused");
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake not completed in time");
                return;
            }
        };
        let session = stream.get_ref().1;
        let h2 = session.alpn_protocol() == Some(b"h2");
        match ClientName::of(session) {
            Some(name) => {
                tracing::debug!(client = %name, "client certificate verified");
                let service = Named::new(service, name);
                self.serve_http(stream, h2, service, activity, stop).await;
            }
            None => self.serve_http(stream, h2, service, activity, stop).await,
        }
    }

    async fn serve_http<I, S>(
        &self,
        io: I,
        h2: bool,
        service: S,
        activity: Arc<Activity>,
        stop: Stop,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: RequestService,
    {
        let io = TokioIo::new(io);
        let service = TowerToHyperService::new(activity.count(service));
        let ended = if h2 {
            let watch = IdleWatch::new(activity, self.opening_timeout);
            finish(self.http2.serve_connection(io, service), stop, Some(watch)).await
        } else {
            finish(self.http1.serve_connection(io, service), stop, None).await
        };
        if let Err(e) = ended {
            self.count_refusal(&e);
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }

    /// Counts in the request metrics an HTTP/1 request hyper refused
    /// itself, before any route saw it: a malformed head (`400`) or one
    /// past the parser's ceilings (`431`). hyper writes that answer on its
    /// own, with no body: it offers no hook for a problem document (heads
    /// merely over blobq's limits get one, see `http::head_limit`).
    fn count_refusal(&self, e: &hyper::Error) {
        if !e.is_parse() || e.is_parse_version_h2() || e.is_parse_status() {
            return;
        }
        let status = if e.is_parse_too_large() { 431 } else { 400 };
        head_limit::count_refused_head(&self.app, status);
    }
}

/// The answer of the router ([`Api`]), whose body every service served
/// here shares.
type Answer = <Api as Service<Request<Incoming>>>::Response;

/// The router as a connection serves it, with or without a client's name.
pub(super) trait RequestService:
    Service<Request<Incoming>, Response = Answer, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<S> RequestService for S where
    S: Service<Request<Incoming>, Response = Answer, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + 'static
{
}

/// Drives `conn` to its end; once the server stops (or the accept loop
/// needs its slot), or `idle` finds it unused, lets the requests in flight
/// finish and closes (an idle connection closes at once).
async fn finish<C>(conn: C, stop: Stop, idle: Option<IdleWatch>) -> Result<(), hyper::Error>
where
    C: GracefulConnection<Error = hyper::Error>,
{
    let mut conn = std::pin::pin!(conn);
    let unused = async {
        match &idle {
            Some(watch) => watch.idle().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        ended = conn.as_mut() => ended,
        () = stop => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        () = unused => {
            tracing::debug!("closing an unused HTTP/2 connection");
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// Whether a plain connection opens with HTTP/2's preface. Only peeks, so
/// the HTTP/1 connection that usually follows reads its bytes itself.
async fn opens_with_h2_preface(stream: &TcpStream) -> io::Result<bool> {
    let mut seen = [0u8; H2_PREFACE.len()];
    loop {
        let n = stream.peek(&mut seen).await?;
        if n == 0 || seen[..n] != H2_PREFACE[..n] {
            // Closed, or an HTTP/1 request (none starts like the preface
            // past its first byte): HTTP/1 answers or sees the end.
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        // Part of the preface so far. A peek answers at once while bytes
        // wait unread, so wait a little for the rest instead of spinning.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    /// What `opens_with_h2_preface` says of a connection whose client sent
    /// `chunks`, a little apart.
    async fn sniff(chunks: &'static [&'static [u8]]) -> bool {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            for chunk in chunks {
                s.write_all(chunk).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            drop(s); // the end of the stream, after its bytes
        });
        let (server, _) = listener.accept().await.unwrap();
        let h2 = tokio::time::timeout(Duration::from_secs(10), opens_with_h2_preface(&server))
            .await
            .expect("sniff hung")
            .unwrap();
        client.await.unwrap();
        h2
    }

    #[tokio::test]
    async fn the_preface_is_recognised_even_in_pieces() {
        assert!(sniff(&[H2_PREFACE]).await);
        assert!(sniff(&[b"PRI * HT", b"TP/2.0\r\n\r\nSM\r\n\r\n"]).await);
    }

    #[tokio::test]
    async fn http1_requests_and_a_closed_connection_are_not_http2() {
        assert!(!sniff(&[b"POST /qs/a/b HTTP/1.1\r\n"]).await);
        assert!(!sniff(&[b"P", b"UT /qs/a/b HTTP/1.1\r\n"]).await);
        assert!(!sniff(&[b"GET / HTTP/1.1\r\n\r\n"]).await);
        assert!(!sniff(&[]).await);
    }
}

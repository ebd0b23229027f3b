//! HTTPS, mutual TLS, certificate reload on SIGHUP and HTTP/2 (over TLS by
//! ALPN, and h2c on a plain port), through the real server, with a
//! throwaway CA made for each test.

#[path = "tls/client.rs"]
mod client;
mod common;
#[path = "tls/handshake.rs"]
mod handshake;
#[path = "tls/http2.rs"]
mod http2;
#[path = "tls/mutual.rs"]
mod mutual;
#[path = "tls/pki.rs"]
mod pki;
#[path = "tls/reload.rs"]
mod reload;
#[path = "auth/role_table.rs"]
mod role_table;
#[path = "tls/secured.rs"]
mod secured;
// The authentication tests' credentials; this crate uses only the tokens.
#[path = "auth/support.rs"]
#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};

use client::{Conn, Tls};
use common::{Options, TestServer, STEP};
use pki::{Ca, ServerFiles};

/// ALPN lists a client may offer.
const H2: &[&[u8]] = &[b"h2"];
const HTTP11: &[&[u8]] = &[b"http/1.1"];
const BOTH: &[&[u8]] = &[b"h2", b"http/1.1"];

/// A server on HTTPS, with the CA that signed its certificate and the
/// folder holding its files.
struct TlsServer {
    server: TestServer,
    ca: Ca,
    files: ServerFiles,
    dir: tempfile::TempDir,
}

impl TlsServer {
    /// Starts blobq with a fresh certificate named `server-1`, plus `more`.
    async fn start(more: impl FnOnce(Options, &Ca, &std::path::Path) -> Options) -> TlsServer {
        let dir = tempfile::tempdir().expect("tls dir");
        let ca = Ca::new("blobq test CA");
        let files = ca.server_files(dir.path(), "server-1");
        let options = common::options()
            .arg("--tls-cert", files.cert.display())
            .arg("--tls-key", files.key.display());
        let server = more(options, &ca, dir.path()).start().await;
        TlsServer {
            server,
            ca,
            files,
            dir,
        }
    }

    /// A client of this server's CA offering `alpn`.
    fn client<'a>(&self, alpn: &'a [&'a [u8]]) -> Tls<'a> {
        Tls::new(self.ca.der(), alpn)
    }

    /// A new TLS connection speaking what ALPN agreed on.
    async fn connect(&self, alpn: &[&[u8]]) -> Conn {
        let stream = self
            .client(alpn)
            .connect(&self.server.addr)
            .await
            .expect("TLS connection");
        if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
            client::http2(stream, "https").await
        } else {
            client::http1(stream).await
        }
    }
}

/// Waits until the server's log has a line containing every one of `parts`.
async fn wait_for_log(server: &TestServer, parts: &[&str]) -> String {
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(line) = server
            .log()
            .into_iter()
            .find(|line| parts.iter().all(|p| line.contains(p)))
        {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {parts:?}; log: {:?}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

//! What the TLS port accepts: HTTP/1.1 or HTTP/2 as ALPN agrees, TLS 1.2
//! and 1.3 but not 1.1, no plain HTTP; and the start-up refusal of files
//! that cannot be used.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http::Version;
use rustls::version::{TLS12, TLS13};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

#[tokio::test]
async fn alpn_picks_http2_or_http1_and_both_serve_the_api() {
    let tls = TlsServer::start(|o, _, _| o).await;
    for (alpn, version) in [
        (BOTH, Version::HTTP_2),
        (H2, Version::HTTP_2),
        (HTTP11, Version::HTTP_11),
        (&[][..], Version::HTTP_11),
    ] {
        let conn = tls.connect(alpn).await;
        let pushed = conn.post("/qs/tls/alpn", "hello").await;
        assert_eq!(pushed.status, 202, "{alpn:?}: {}", pushed.text());
        assert_eq!(pushed.version, version, "ALPN {alpn:?}");
        let popped = conn.get("/qs/tls/alpn").await;
        assert_eq!(
            (popped.status.as_u16(), popped.text().as_str()),
            (200, "hello")
        );
        assert_eq!(popped.version, version);
    }
}

#[tokio::test]
async fn tls_1_2_and_1_3_are_accepted() {
    let tls = TlsServer::start(|o, _, _| o).await;
    for (versions, want) in [
        (&[&TLS12][..], rustls::ProtocolVersion::TLSv1_2),
        (&[&TLS13][..], rustls::ProtocolVersion::TLSv1_3),
    ] {
        let mut client = tls.client(HTTP11);
        client.versions = versions;
        let stream = client.connect(&tls.server.addr).await.expect("handshake");
        assert_eq!(stream.get_ref().1.protocol_version(), Some(want));
        let conn = client::http1(stream).await;
        assert_eq!(conn.get("/healthz").await.status, 200);
    }
}

/// rustls, on both sides, cannot even offer TLS 1.1: this is the first
/// message of a client that offers nothing newer (RFC 4346's ClientHello),
/// and the server must answer with a fatal `protocol_version` alert.
#[tokio::test]
async fn a_tls_1_1_client_hello_gets_a_protocol_version_alert() {
    let tls = TlsServer::start(|o, _, _| o.arg("--log", "info,blobq=debug")).await;
    let mut hello = vec![0x03, 0x02]; // client_version: TLS 1.1
    hello.extend([7u8; 32]); // random
    hello.push(0); // no session id
    hello.extend([0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // two CBC suites of TLS 1.1
    hello.extend([0x01, 0x00]); // null compression only
                                // One extension, which rustls asks for before it looks at the version:
                                // signature_algorithms, ecdsa_secp256r1_sha256 and rsa_pkcs1_sha256.
    hello.extend([
        0x00, 0x0a, 0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x04, 0x01,
    ]);
    let mut handshake = vec![0x01, 0x00, 0x00, hello.len() as u8]; // ClientHello
    handshake.extend(hello);
    let mut record = vec![0x16, 0x03, 0x01, 0x00, handshake.len() as u8];
    record.extend(handshake);
    let answer = exchange(&tls.server.addr, &record).await;
    wait_for_log(&tls.server, &["TLS handshake refused"]).await;
    assert!(answer.len() >= 7, "no alert: {answer:?}");
    assert_eq!(answer[0], 0x15, "not an alert record: {answer:?}");
    assert_eq!(
        (answer[5], answer[6]),
        (2, 70),
        "not a fatal protocol_version alert: {:?}",
        tls.server.log()
    );
}

#[tokio::test]
async fn plain_http_to_the_tls_port_is_closed_without_an_answer() {
    let tls = TlsServer::start(|o, _, _| o).await;
    let answer = exchange(
        &tls.server.addr,
        b"POST /qs/plain/q HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi",
    )
    .await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "answered in plain HTTP: {:?}",
        String::from_utf8_lossy(&answer)
    );
    let conn = tls.connect(HTTP11).await;
    let stats = conn.get("/qs/plain/q/stats").await;
    assert_eq!(stats.status, 404, "the plain request was served");
}

/// Writes `bytes` to a new connection and reads until the server closes it.
async fn exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut answer))
        .await
        .expect("the server kept the connection open")
        .ok(); // a reset after the alert is a close too
    answer
}

/// Runs `blobq serve` with `flags` and expects it to stop at once with exit
/// status 2 and a message naming `named`.
fn refuses_to_start(flags: &[OsString], named: &Path) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_blobq"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(flags)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start blobq");
    let deadline = Instant::now() + STEP;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("blobq started with unusable TLS files");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&named.display().to_string()),
        "the message does not name {}: {stderr}",
        named.display()
    );
}

#[test]
fn unusable_tls_files_stop_the_server_at_start_naming_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new("start-up CA");
    let good = ca.server_files(dir.path(), "good");
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n").expect("write");
    let other = tempfile::tempdir().expect("dir");
    let other_key = Ca::new("other").server_files(other.path(), "other").key;
    let flags = |cert: &Path, key: &Path| -> Vec<OsString> {
        vec![
            "--tls-cert".into(),
            cert.into(),
            "--tls-key".into(),
            key.into(),
        ]
    };
    refuses_to_start(&flags(&missing, &good.key), &missing);
    refuses_to_start(&flags(&garbage, &good.key), &garbage);
    refuses_to_start(&flags(&good.cert, &garbage), &garbage);
    refuses_to_start(&flags(&good.cert, &other_key), &other_key);
    let mut with_ca = flags(&good.cert, &good.key);
    with_ca.extend(["--tls-client-ca".into(), garbage.clone().into()]);
    refuses_to_start(&with_ca, &garbage);
}

/// Whether the server closes a connection on which the client sent
/// `bytes` and then nothing, within `within`.
async fn closed_after_stalling(addr: &str, bytes: &[u8], within: Duration) -> bool {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut rest = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut rest))
        .await
        .is_ok()
}

#[tokio::test]
async fn a_stalled_handshake_or_preface_loses_its_connection() {
    let tls = TlsServer::start(|o, _, _| o.arg("--header-read-timeout", 1)).await;
    let plain = common::options()
        .arg("--header-read-timeout", 1)
        .start()
        .await;
    let within = Duration::from_secs(8);
    assert!(
        closed_after_stalling(&tls.server.addr, b"", within).await,
        "a client that never sent its ClientHello kept its connection"
    );
    assert!(
        closed_after_stalling(&tls.server.addr, &[0x16, 0x03, 0x01, 0x00], within).await,
        "a client that stopped inside its ClientHello kept its connection"
    );
    assert!(
        closed_after_stalling(&plain.addr, b"PRI * HTTP/2.0\r\n", within).await,
        "a client that stopped inside the HTTP/2 preface kept its connection"
    );
}

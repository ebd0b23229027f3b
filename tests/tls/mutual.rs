//! Mutual TLS: with `--tls-client-ca`, only clients showing a certificate
//! of that CA are served, and their subject is logged as their name.

use super::*;

/// A server requiring client certificates of its own CA, logging at debug.
async fn start() -> TlsServer {
    TlsServer::start(|o, ca, dir| {
        o.arg("--tls-client-ca", ca.write(dir, "clients.pem").display())
            .arg("--log", "info,blobq=debug")
    })
    .await
}

/// Whether a client showing `identity` (or none) gets an answer. With TLS
/// 1.3 the client finishes its side of the handshake before the server
/// has judged its certificate, so the refusal may surface on the request.
async fn served(tls: &TlsServer, identity: Option<pki::Identity>) -> bool {
    // HTTP/1.1: its client sends nothing before the request, so a refusal
    // shows as the request's failure, never as a failed HTTP/2 preface.
    let mut client = tls.client(HTTP11);
    client.identity = identity;
    let Ok(stream) = client.connect(&tls.server.addr).await else {
        return false;
    };
    let conn = client::http1(stream).await;
    conn.try_send(http::Method::GET, "/healthz", client::empty())
        .await
        .is_ok_and(|a| a.status == 200)
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let tls = start().await;
    assert!(!served(&tls, None).await);
}

#[tokio::test]
async fn a_certificate_of_another_ca_is_refused() {
    let tls = start().await;
    let stranger = Ca::new("someone else's CA").client("intruder");
    assert!(!served(&tls, Some(stranger)).await);
}

#[tokio::test]
async fn a_certificate_of_the_ca_is_served_and_its_subject_logged() {
    let tls = start().await;
    assert!(served(&tls, Some(tls.ca.client("thumbnailer"))).await);
    let line = wait_for_log(&tls.server, &["client certificate verified"]).await;
    assert!(
        line.contains("CN=thumbnailer") && line.contains("O=blobq tests"),
        "{line}"
    );
}

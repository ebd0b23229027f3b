//! `SIGHUP` re-reads the certificate files: new connections get the new
//! certificate, open ones keep working, and files that fail to load leave
//! the previous certificate in force.

use std::process::Command;

use super::*;

/// The leaf certificate a new connection is shown.
async fn served_leaf(tls: &TlsServer) -> rustls::pki_types::CertificateDer<'static> {
    let stream = tls
        .client(HTTP11)
        .connect(&tls.server.addr)
        .await
        .expect("TLS connection");
    stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("certificates")[0]
        .clone()
}

fn hang_up(server: &TestServer) {
    let pid = server.pid().expect("running");
    let status = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[tokio::test]
async fn sighup_serves_new_files_and_keeps_the_old_ones_when_the_new_fail() {
    let tls = TlsServer::start(|o, _, _| o).await;
    assert_eq!(served_leaf(&tls).await, tls.files.leaf);
    let open = tls.connect(H2).await;

    let second = tls.ca.server_files(tls.dir.path(), "server-2");
    assert_ne!(second.leaf, tls.files.leaf);
    hang_up(&tls.server);
    wait_for_log(&tls.server, &["TLS certificate reloaded"]).await;
    assert_eq!(
        served_leaf(&tls).await,
        second.leaf,
        "still the old certificate"
    );
    assert_eq!(
        open.get("/healthz").await.status,
        200,
        "an open connection broke"
    );

    std::fs::write(&second.key, "-----BEGIN PRIVATE KEY-----\nbroken\n").expect("write");
    hang_up(&tls.server);
    let line = wait_for_log(&tls.server, &["TLS files not reloaded"]).await;
    assert!(line.contains(&second.key.display().to_string()), "{line}");
    assert_eq!(
        served_leaf(&tls).await,
        second.leaf,
        "lost the certificate in force"
    );
    assert_eq!(
        tls.connect(BOTH).await.get("/healthz").await.status,
        200,
        "the server stopped serving"
    );
}

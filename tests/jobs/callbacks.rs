//! `X-Job-Callback`: the finished job's document POSTed to an allowed URL,
//! signed in the Standard Webhooks scheme, retried after a failure, and
//! never in the way of a request; over HTTPS to a receiver whose authority
//! `--job-callback-ca-file` names. The receiver is a small hyper server on
//! a free port inside the test.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::common::{options, TestServer, STEP};
use super::{claim, pki, put_result, submit_with};

/// The key the signed tests use, as the scheme spells it.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A callback the receiver got.
struct Hit {
    headers: http::HeaderMap,
    body: Bytes,
    at: Instant,
}

/// How the receiver answers.
#[derive(Clone)]
enum Answer {
    /// These statuses in turn, then `200` for good.
    Statuses(Arc<Mutex<Vec<u16>>>),
    /// Never: it reads the request and sleeps.
    Hang,
}

/// A tiny HTTP server that records every request; stopped when dropped.
struct Receiver {
    addr: SocketAddr,
    scheme: &'static str,
    hits: mpsc::UnboundedReceiver<Hit>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start(answer: Answer) -> Receiver {
        Receiver::serve(answer, None).await
    }

    /// The receiver over HTTPS, with `tls`'s certificate.
    async fn start_tls(answer: Answer, tls: TlsAcceptor) -> Receiver {
        Receiver::serve(answer, Some(tls)).await
    }

    async fn serve(answer: Answer, tls: Option<TlsAcceptor>) -> Receiver {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, hits) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let (tx, answer) = (tx.clone(), answer.clone());
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let (tx, answer) = (tx.clone(), answer.clone());
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes());
                        let hit = Hit {
                            headers: parts.headers,
                            body: body.unwrap_or_default(),
                            at: Instant::now(),
                        };
                        let _ = tx.send(hit);
                        let status = match answer {
                            Answer::Hang => {
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                                200
                            }
                            Answer::Statuses(list) => {
                                let mut list = list.lock().unwrap();
                                if list.is_empty() {
                                    200
                                } else {
                                    list.remove(0)
                                }
                            }
                        };
                        let mut response = hyper::Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                let tls = tls.clone();
                connections.spawn(async move {
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    }
                });
            }
        });
        Receiver {
            addr,
            scheme,
            hits,
            task,
        }
    }

    fn answering(statuses: &[u16]) -> Answer {
        Answer::Statuses(Arc::new(Mutex::new(statuses.to_vec())))
    }

    /// The allowed prefix for this receiver's callbacks.
    fn prefix(&self) -> String {
        format!("{}://{}/hooks/", self.scheme, self.addr)
    }

    fn url(&self, name: &str) -> String {
        format!("{}{name}", self.prefix())
    }

    async fn next(&mut self) -> Hit {
        tokio::time::timeout(STEP, self.hits.recv())
            .await
            .expect("a callback within the step")
            .expect("the receiver runs")
    }

    /// Nothing more arrives within `quiet`.
    async fn nothing_more(&mut self, quiet: Duration) {
        if let Ok(Some(hit)) = tokio::time::timeout(quiet, self.hits.recv()).await {
            panic!(
                "an unexpected callback: {}",
                String::from_utf8_lossy(&hit.body)
            );
        }
    }
}

fn value<'h>(hit: &'h Hit, name: &str) -> &'h str {
    hit.headers
        .get(name)
        .unwrap_or_else(|| panic!("header {name}"))
        .to_str()
        .unwrap()
}

/// Checks the Standard Webhooks signature of `hit` with the test's key.
fn verify(hit: &Hit) {
    let id = value(hit, "webhook-id");
    let timestamp = value(hit, "webhook-timestamp");
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&hit.body);
    let signature = value(hit, "webhook-signature");
    let sent = signature.strip_prefix("v1,").expect("a v1 signature");
    let sent = base64::engine::general_purpose::STANDARD
        .decode(sent)
        .expect("base64");
    mac.verify_slice(&sent).expect("the signature verifies");
    let age = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .abs_diff(timestamp.parse().unwrap());
    assert!(age < 60, "webhook-timestamp is {age} s off");
}

async fn server_for(receiver: &Receiver, extra: &[(&str, &str)]) -> TestServer {
    let mut opts = options()
        .arg("--job-callback-allow", receiver.prefix())
        .arg("--job-callback-secret", SECRET);
    for (flag, value) in extra {
        opts = opts.arg(flag, value);
    }
    opts.start().await
}

/// Submits a job with a callback to `url`; its id.
async fn submit_calling(server: &TestServer, nsq: &str, url: &str) -> String {
    let r = submit_with(server, nsq, "input", &[("x-job-callback", url)]).await;
    assert_eq!(r.status(), 202);
    let doc: Value = r.json().await.unwrap();
    doc["id"].as_str().unwrap().to_owned()
}

async fn metrics(server: &TestServer) -> String {
    server.get("/metrics").await.text().await.unwrap()
}

#[tokio::test]
async fn a_succeeded_job_is_called_back_once_signed() {
    let mut receiver = Receiver::start(Receiver::answering(&[])).await;
    let server = server_for(&receiver, &[]).await;
    let id = submit_calling(&server, "acme/export", &receiver.url("done")).await;
    receiver.nothing_more(Duration::from_millis(300)).await;
    let held = claim(&server, "acme/export", "").await.unwrap();
    put_result(&server, "acme/export", &held, b"zip").await;

    let hit = receiver.next().await;
    assert_eq!(value(&hit, "content-type"), "application/json");
    assert_eq!(value(&hit, "webhook-id"), id);
    verify(&hit);
    let doc: Value = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(doc["id"], id.as_str());
    assert_eq!(doc["state"], "succeeded");
    assert_eq!(doc["done"], true);
    assert_eq!(doc["result"]["size"], 3);
    // The same document GET answers.
    let got = server.json(&format!("/jobs/acme/export/{id}"), 200).await;
    assert_eq!(doc, got);

    receiver.nothing_more(Duration::from_millis(1500)).await;
    let m = metrics(&server).await;
    assert!(m.contains("blobq_job_callbacks_delivered_total 1"), "{m}");
    assert!(m.contains("blobq_job_callback_failures_total 0"), "{m}");
}

#[tokio::test]
async fn a_receiver_that_answers_500_is_called_again() {
    let mut receiver = Receiver::start(Receiver::answering(&[500, 503])).await;
    let server = server_for(&receiver, &[]).await;
    let id = submit_calling(&server, "acme/export", &receiver.url("cancelled")).await;
    let r = server
        .post(&format!("/jobs/acme/export/{id}/cancel"), "")
        .await;
    assert_eq!(r.status(), 200);

    let first = receiver.next().await;
    let second = receiver.next().await;
    let third = receiver.next().await;
    for hit in [&first, &second, &third] {
        assert_eq!(value(hit, "webhook-id"), id, "the same id on every attempt");
        verify(hit);
        let doc: Value = serde_json::from_slice(&hit.body).unwrap();
        assert_eq!(doc["state"], "cancelled");
        assert_eq!(doc["error"]["code"], "CANCELLED");
    }
    let waited = second.at - first.at;
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
    assert!(third.at - second.at >= waited / 2);
    receiver.nothing_more(Duration::from_millis(1500)).await;
    let m = metrics(&server).await;
    assert!(m.contains("blobq_job_callbacks_delivered_total 1"), "{m}");
    assert!(m.contains("blobq_job_callback_failures_total 2"), "{m}");
}

#[tokio::test]
async fn a_callback_failing_for_its_whole_retry_period_is_given_up() {
    let mut receiver = Receiver::start(Receiver::answering(&[500; 100])).await;
    let server = server_for(&receiver, &[("--job-callback-retry-for", "1")]).await;
    let id = submit_calling(&server, "acme/export", &receiver.url("failing")).await;
    let r = server
        .post(&format!("/jobs/acme/export/{id}/cancel"), "")
        .await;
    assert_eq!(r.status(), 200);
    receiver.next().await;
    // Retries come after 0.5 to 1 s, then 1 to 2 s: within one second of
    // the first attempt there is room for one at most.
    let mut attempts = 1;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(3), receiver.hits.recv()).await
    {
        attempts += 1;
    }
    assert!((1..=2).contains(&attempts), "{attempts} attempts");
    let m = metrics(&server).await;
    assert!(m.contains("blobq_job_callbacks_abandoned_total 1"), "{m}");
    assert!(m.contains("blobq_job_callbacks_delivered_total 0"), "{m}");
    assert!(
        m.contains(&format!("blobq_job_callback_failures_total {attempts}")),
        "{m}"
    );
    let log = server.log();
    let gave_up = log.iter().filter(|l| l.contains("gave up a job callback"));
    assert_eq!(gave_up.count(), 1, "{log:?}");
}

#[tokio::test]
async fn a_hanging_receiver_delays_no_request_and_no_other_job() {
    let mut hanging = Receiver::start(Answer::Hang).await;
    let server = server_for(
        &hanging,
        &[
            ("--job-callback-timeout", "60"),
            ("--job-callback-concurrency", "2"),
        ],
    )
    .await;
    // Fill every delivery slot with a callback that never ends.
    for _ in 0..4 {
        let id = submit_calling(&server, "acme/slow", &hanging.url("hang")).await;
        let r = server
            .post(&format!("/jobs/acme/slow/{id}/cancel"), "")
            .await;
        assert_eq!(r.status(), 200);
    }
    hanging.next().await;
    hanging.next().await;

    // Another job, with a callback too, goes through its whole life at once.
    for _ in 0..3 {
        let started = Instant::now();
        let id = submit_calling(&server, "acme/fast", &hanging.url("hang")).await;
        let held = claim(&server, "acme/fast", "").await.unwrap();
        assert_eq!(held.id, id);
        put_result(&server, "acme/fast", &held, b"done").await;
        let doc = server
            .json(&format!("/jobs/acme/fast/{id}?wait=5"), 200)
            .await;
        assert_eq!(doc["state"], "succeeded");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "a job's life took {took:?}");
    }
}

#[tokio::test]
async fn a_callback_outside_the_allowed_prefixes_is_refused_and_stores_nothing() {
    let receiver = Receiver::start(Receiver::answering(&[])).await;
    let server = server_for(&receiver, &[]).await;
    let elsewhere = format!("http://{}/other", receiver.addr);
    let escaping = format!("{}../other", receiver.prefix());
    let through_userinfo = format!("http://{}@example.com/hooks/", receiver.addr);
    for url in [
        elsewhere.as_str(),
        escaping.as_str(),
        through_userinfo.as_str(),
        "http://example.com/hooks/",
        "not a url",
        "/hooks/relative",
    ] {
        let r = submit_with(&server, "acme/export", "input", &[("x-job-callback", url)]).await;
        assert_eq!(r.status(), 400, "{url}");
        let problem: Value = r.json().await.unwrap();
        assert_eq!(
            problem["type"], "urn:blobq:problem:callback-not-allowed",
            "{url}"
        );
    }
    assert_eq!(server.get("/jobs/acme").await.status(), 404);
    let ns = server.get("/qs/acme").await;
    assert_eq!(ns.status(), 404, "no blob was stored");

    // A server that allows no prefix refuses every callback.
    let closed = options().start().await;
    let r = submit_with(
        &closed,
        "acme/export",
        "input",
        &[("x-job-callback", &receiver.url("done"))],
    )
    .await;
    assert_eq!(r.status(), 400);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["type"], "urn:blobq:problem:callback-not-allowed");
}

/// A TLS acceptor serving a certificate for 127.0.0.1 that `ca` signed.
fn acceptor(ca: &pki::Ca, dir: &std::path::Path) -> TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let files = ca.server_files(dir, "callback receiver");
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

#[tokio::test]
async fn an_https_receiver_gets_signed_callbacks_once_its_authority_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::Ca::new("blobq callback tests");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let mut receiver =
        Receiver::start_tls(Receiver::answering(&[]), acceptor(&ca, dir.path())).await;
    assert!(receiver.prefix().starts_with("https://127.0.0.1:"));
    let trusting = server_for(
        &receiver,
        &[("--job-callback-ca-file", ca_file.to_str().unwrap())],
    )
    .await;
    let id = submit_calling(&trusting, "acme/export", &receiver.url("done")).await;
    let held = claim(&trusting, "acme/export", "").await.unwrap();
    put_result(&trusting, "acme/export", &held, b"zip").await;
    let hit = receiver.next().await;
    assert_eq!(value(&hit, "webhook-id"), id);
    verify(&hit);
    let doc: Value = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(doc["state"], "succeeded");

    // Without the authority the receiver's certificate is not trusted:
    // nothing reaches it, and the attempt counts as failed.
    let untrusting = server_for(&receiver, &[]).await;
    let id = submit_calling(&untrusting, "acme/export", &receiver.url("done")).await;
    let r = untrusting
        .post(&format!("/jobs/acme/export/{id}/cancel"), "")
        .await;
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + STEP;
    while !metrics(&untrusting)
        .await
        .contains("blobq_job_callback_failures_total 1")
    {
        assert!(
            Instant::now() < deadline,
            "the untrusted attempt did not fail"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    receiver.nothing_more(Duration::from_millis(300)).await;
}

//! Shutdown (a case of two nodes, as the others) and callbacks sent by
//! whichever NATS node finished the job, once, its sweeper's included.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::common::{self, TestServer, STEP};
use super::nats::NatsServer;
use super::{claim, put_result, submit, submit_with};

pub async fn on_shutdown_long_polls_and_waiting_claims_answer_503(a: &TestServer, b: &TestServer) {
    let id = submit(b, "ns/q", "x").await;
    let poll = a.spawn_get(&format!("/jobs/ns/q/{id}?wait=60"));
    let claim = {
        let (client, url) = (
            reqwest::Client::new(),
            a.url("/jobs/ns/idle/claim?timeout=60"),
        );
        tokio::spawn(async move {
            client
                .post(url)
                .send()
                .await
                .expect("claim")
                .status()
                .as_u16()
        })
    };
    a.wait_for_json("/jobs/ns", "a waiting worker", |v| {
        v["queues"]["idle"]["waiting_workers"] == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.terminate();
    let (status, body) = tokio::time::timeout(STEP, poll)
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("shutting-down"));
    assert_eq!(
        tokio::time::timeout(STEP, claim)
            .await
            .expect("answered")
            .unwrap(),
        503
    );
}

/// Receives callbacks: each request's path and JSON body.
struct Receiver {
    port: u16,
    hits: mpsc::UnboundedReceiver<(String, Value)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().unwrap().port();
        let (tx, hits) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut raw = Vec::new();
                    let mut buf = [0u8; 4096];
                    let (head_end, length) = loop {
                        let n = tcp.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        raw.extend_from_slice(&buf[..n]);
                        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (end + 4, length);
                        }
                    };
                    while raw.len() < head_end + length {
                        let n = tcp.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        raw.extend_from_slice(&buf[..n]);
                    }
                    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
                    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                    let body = serde_json::from_slice(&raw[head_end..head_end + length])
                        .unwrap_or(Value::Null);
                    let answer =
                        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                    let _ = tcp.write_all(answer).await;
                    let _ = tx.send((path, body));
                });
            }
        });
        Receiver { port, hits, task }
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/hooks/{name}", self.port)
    }

    async fn next(&mut self) -> (String, Value) {
        tokio::time::timeout(STEP, self.hits.recv())
            .await
            .expect("a callback in time")
            .expect("the receiver runs")
    }

    async fn nothing_more(&mut self, quiet: Duration) {
        if let Ok(Some(hit)) = tokio::time::timeout(quiet, self.hits.recv()).await {
            panic!("an unexpected callback: {hit:?}");
        }
    }
}

#[tokio::test]
async fn nodes_call_back_finished_jobs_once() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let mut receiver = Receiver::start().await;
    let prefix = format!("http://127.0.0.1:{}/hooks/", receiver.port);
    let node = || async {
        let node = common::options()
            .arg("--backend", nats.url())
            .arg("--job-callback-allow", &prefix)
            .start()
            .await;
        node.wait_for_json("/healthz", "connected to NATS", |_| true)
            .await;
        node
    };
    let (a, b) = (node().await, node().await);
    let done = submit_with(
        &a,
        "ns/q",
        "x",
        &[("x-job-callback", &receiver.url("done"))],
    )
    .await;
    let id = done.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let held = claim(&b, "ns/q", "").await.unwrap();
    put_result(&b, "ns/q", &held, b"out").await;
    let (path, doc) = receiver.next().await;
    assert_eq!(path, "/hooks/done");
    assert_eq!(
        (doc["id"].as_str(), doc["state"].as_str()),
        (Some(&*id), Some("succeeded"))
    );
    // Expired by a sweep: both nodes sweep, one changes the job, one calls.
    let headers = [
        ("x-job-callback", receiver.url("expired")),
        ("x-queueserver-lifetime", "1".into()),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = submit_with(&b, "ns/other", "y", &headers).await;
    let expiring = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (path, doc) = receiver.next().await;
    assert_eq!(path, "/hooks/expired");
    assert_eq!(doc["id"], expiring.as_str());
    assert_eq!(doc["error"]["code"], "EXPIRED");
    receiver.nothing_more(Duration::from_secs(3)).await;
    let v = submit_with(&a, "ns/q", "z", &[("x-job-callback", "http://elsewhere/")]).await;
    assert_eq!(v.status(), 400, "only allowed prefixes");
}

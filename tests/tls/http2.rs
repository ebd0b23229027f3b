//! The API over HTTP/2: streamed large bodies, a blocking pop woken by a
//! push on another stream of the same connection, many concurrent streams
//! on one connection, error answers; over TLS (ALPN `h2`) and as h2c on a
//! plain port.

use std::collections::BTreeSet;

use bytes::Bytes;
use futures_util::stream;
use http::{Method, Version};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::net::TcpStream;

use super::*;
use crate::common::pattern;

/// An HTTP/2 connection over TLS.
async fn h2_over_tls(tls: &TlsServer) -> Conn {
    let conn = tls.connect(H2).await;
    assert!(matches!(conn, Conn::H2(..)), "ALPN did not agree on h2");
    conn
}

#[tokio::test]
async fn a_4_mib_push_streams_in_and_pops_back_whole() {
    let tls = TlsServer::start(|o, _, _| o).await;
    let conn = h2_over_tls(&tls).await;
    let data = Bytes::from(pattern(4 << 20, 9));
    let chunks: Vec<Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>> = data
        .chunks(64 << 10)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let body = StreamBody::new(stream::iter(chunks)).boxed();
    let pushed = conn.send(Method::POST, "/qs/h2/big", body).await;
    assert_eq!(pushed.status, 202, "{}", pushed.text());
    assert_eq!(pushed.version, Version::HTTP_2);
    let popped = conn.get("/qs/h2/big").await;
    assert_eq!(popped.status, 200);
    assert_eq!(popped.body.len(), data.len());
    assert!(popped.body == data, "the popped body differs");
}

#[tokio::test]
async fn a_blocking_pop_is_woken_by_a_push_on_another_stream() {
    let tls = TlsServer::start(|o, _, _| o).await;
    let conn = h2_over_tls(&tls).await;
    let waiting = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.get("/qs/h2/wake?timeout=30").await })
    };
    let deadline = Instant::now() + STEP;
    loop {
        let stats = conn.get("/qs/h2/wake/stats").await;
        if stats.status == 200 && stats.text().contains("\"waiting\":1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pop never waited: {}",
            stats.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(conn.post("/qs/h2/wake", "wake up").await.status, 202);
    let popped = tokio::time::timeout(STEP, waiting)
        .await
        .expect("the waiting pop was never answered")
        .expect("pop task");
    assert_eq!(
        (popped.status.as_u16(), popped.text().as_str()),
        (200, "wake up")
    );
}

#[tokio::test]
async fn sixty_four_streams_at_once_on_one_connection() {
    let tls = TlsServer::start(|o, _, _| o).await;
    let conn = h2_over_tls(&tls).await;
    let all = |f: fn(Conn, usize) -> tokio::task::JoinHandle<client::Answer>| {
        let tasks: Vec<_> = (0..64).map(|i| f(conn.clone(), i)).collect();
        async move {
            let mut answers = Vec::new();
            for task in tasks {
                answers.push(task.await.expect("stream task"));
            }
            answers
        }
    };
    let pushes = all(|conn, i| {
        tokio::spawn(async move { conn.post("/qs/h2/many", format!("element {i}")).await })
    })
    .await;
    assert!(pushes.iter().all(|a| a.status == 202));
    let pops = all(|conn, _| tokio::spawn(async move { conn.get("/qs/h2/many").await })).await;
    assert!(pops
        .iter()
        .all(|a| a.status == 200 && a.version == Version::HTTP_2));
    let got: BTreeSet<String> = pops.iter().map(client::Answer::text).collect();
    let sent: BTreeSet<String> = (0..64).map(|i| format!("element {i}")).collect();
    assert_eq!(got, sent);
}

#[tokio::test]
async fn errors_are_problem_documents_and_the_connection_goes_on() {
    let tls = TlsServer::start(|o, _, _| o.arg("--max-element-size", 1000)).await;
    let conn = h2_over_tls(&tls).await;
    let bad_name = conn.post("/qs/h2/no%20spaces", "x").await;
    let too_large = conn.post("/qs/h2/q", vec![b'x'; 64 << 10]).await;
    let bad_timeout = conn.get("/qs/h2/q?timeout=forever").await;
    for (answer, status) in [(&bad_name, 400), (&too_large, 413), (&bad_timeout, 400)] {
        assert_eq!(answer.status, status, "{}", answer.text());
        assert_eq!(answer.headers["content-type"], "application/problem+json");
        assert!(
            !answer.headers.contains_key("connection"),
            "an HTTP/2 answer with a Connection header"
        );
    }
    assert_eq!(conn.post("/qs/h2/q", "fits").await.status, 202);
    assert_eq!(conn.get("/qs/h2/q").await.text(), "fits");
}

#[tokio::test]
async fn h2c_with_prior_knowledge_and_http1_share_the_plain_port() {
    let server = common::start().await;
    let tcp = TcpStream::connect(&server.addr).await.expect("connect");
    let conn = client::http2(tcp, "http").await;
    let pushed = conn.post("/qs/h2c/q", "plain h2").await;
    assert_eq!(
        (pushed.status.as_u16(), pushed.version),
        (202, Version::HTTP_2)
    );
    let popped = server.get("/qs/h2c/q").await; // HTTP/1.1, reqwest
    assert_eq!(popped.version(), reqwest::Version::HTTP_11);
    assert_eq!(popped.text().await.expect("body"), "plain h2");
    let concurrent: Vec<_> = (0..16)
        .map(|i| {
            let conn = conn.clone();
            tokio::spawn(async move { conn.post("/qs/h2c/q", format!("{i}")).await.status })
        })
        .collect();
    for task in concurrent {
        assert_eq!(task.await.expect("task"), 202);
    }
}

/// An h2c connection to a plain server.
async fn h2c(server: &TestServer) -> Conn {
    let tcp = TcpStream::connect(&server.addr).await.expect("connect");
    client::http2(tcp, "http").await
}

#[tokio::test]
async fn an_unused_http2_connection_is_closed_but_not_while_a_pop_waits() {
    let server = common::options()
        .arg("--header-read-timeout", 1)
        .start()
        .await;
    let conn = h2c(&server).await;
    let waited = conn.get("/qs/idle/q?timeout=3").await;
    assert_eq!(
        waited.status, 204,
        "a pop longer than the idle period was cut"
    );
    let Conn::H2(sender, _) = &conn else {
        unreachable!("h2c is HTTP/2")
    };
    let deadline = Instant::now() + STEP;
    while !sender.is_closed() {
        assert!(Instant::now() < deadline, "an unused connection was kept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn shutdown_answers_a_waiting_pop_and_closes_http2_connections() {
    let mut server = common::options()
        .arg("--shutdown-timeout", 60)
        .start()
        .await;
    let conn = h2c(&server).await;
    let idle = h2c(&server).await;
    assert_eq!(idle.get("/healthz").await.status, 200);
    let waiting = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.get("/qs/stop/q?timeout=60").await })
    };
    server.wait_for_waiters("stop", "q", 1).await;
    let asked = Instant::now();
    server.terminate();
    let popped = waiting.await.expect("pop task");
    assert_eq!(popped.status, 503, "{}", popped.text());
    assert!(server.wait_exit().await.success());
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "open HTTP/2 connections held the shutdown for {:?}",
        asked.elapsed()
    );
}

//! The tests' side of batches on the wire: `multipart/mixed` bodies written
//! by hand, answers read back by a splitter of their own (not the server's
//! reader; multer keeps one value per header name, and a part may repeat
//! `X-Custom-Data`), and the requests of the batch routes.

#![allow(dead_code)] // tests/batch.rs and tests/suite/ each use a part of it

use common::TestServer;

use crate::common;

/// One part of a batch push: header lines and a body.
#[derive(Clone, Debug, Default)]
pub struct Part {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Part {
    pub fn new(body: impl Into<Vec<u8>>) -> Part {
        Part {
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Part {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

pub const BOUNDARY: &str = "b0undary-7e1c";

/// `parts` as a `multipart/mixed` body with [`BOUNDARY`].
pub fn encode(parts: &[Part]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        for (name, value) in &part.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&part.body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

/// POSTs `body` to the batch route of `ns/q` with [`BOUNDARY`].
pub async fn post_raw(server: &TestServer, ns: &str, q: &str, body: Vec<u8>) -> reqwest::Response {
    server
        .client
        .post(server.url(&format!("/qs/{ns}/{q}/batch")))
        .header(
            "content-type",
            format!("multipart/mixed; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()
        .await
        .expect("POST batch")
}

/// Pushes `parts` as one batch, expecting `202`; the answer's elements.
pub async fn push(
    server: &TestServer,
    ns: &str,
    q: &str,
    parts: &[Part],
) -> Vec<serde_json::Value> {
    let r = post_raw(server, ns, q, encode(parts)).await;
    assert_eq!(r.status(), 202, "batch push: {:?}", r.text().await);
    let v: serde_json::Value = r.json().await.expect("json");
    v["elements"].as_array().expect("elements").clone()
}

/// One part of a batch pop's answer.
#[derive(Debug)]
pub struct Popped {
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Popped {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("ascii"))
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().expect("ascii"))
            .collect()
    }
}

/// A batch pop's answer: status, `X-QueueServer-Count`, parts.
#[derive(Debug)]
pub struct Batch {
    pub status: u16,
    pub count: Option<usize>,
    pub parts: Vec<Popped>,
}

/// GET `path` (a batch pop) and reads its parts.
pub async fn pop(server: &TestServer, path: &str) -> Batch {
    read(server.get(path).await).await
}

/// Reads a batch pop's answer.
pub async fn read(r: reqwest::Response) -> Batch {
    let status = r.status().as_u16();
    let count = r
        .headers()
        .get("x-queueserver-count")
        .map(|v| v.to_str().unwrap().parse().expect("a count"));
    if status != 200 {
        return Batch {
            status,
            count,
            parts: Vec::new(),
        };
    }
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    let boundary = content_type
        .strip_prefix("multipart/mixed; boundary=")
        .unwrap_or_else(|| panic!("a multipart answer: {content_type}"))
        .to_owned();
    let length: u64 = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = r.bytes().await.expect("the body");
    assert_eq!(bytes.len() as u64, length, "Content-Length is exact");
    let parts = split(&bytes, &boundary);
    Batch {
        status,
        count,
        parts,
    }
}

/// POSTs a batch acknowledgement of `receipts`; status and answer.
pub async fn ack(
    server: &TestServer,
    ns: &str,
    q: &str,
    receipts: &[&str],
) -> (u16, serde_json::Value) {
    let r = server
        .client
        .post(server.url(&format!("/qs/{ns}/{q}/leases/ack")))
        .json(&serde_json::json!({ "receipts": receipts }))
        .send()
        .await
        .expect("POST ack");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json"))
}

/// Elements ready in `ns/q` (0 if it does not exist).
pub async fn queued(server: &TestServer, ns: &str, q: &str) -> u64 {
    let r = server.get(&format!("/qs/{ns}/{q}/stats")).await;
    if r.status() == 404 {
        return 0;
    }
    let v: serde_json::Value = r.json().await.expect("stats");
    v["elements"].as_u64().expect("elements")
}

/// The server's blob bytes, in memory and on disk.
pub async fn stored_bytes(server: &TestServer) -> (u64, u64) {
    let t = server.json("/qs", 200).await;
    (
        t["memory_bytes"].as_u64().unwrap_or(0),
        t["disk_bytes"].as_u64().unwrap_or(0),
    )
}

/// A whole `multipart/mixed` answer cut at its delimiters: no preamble,
/// every delimiter line a bare CRLF, the close delimiter last.
fn split(body: &[u8], boundary: &str) -> Vec<Popped> {
    let delimiter = format!("\r\n--{boundary}").into_bytes();
    let mut text = b"\r\n".to_vec();
    text.extend_from_slice(body);
    let mut at = Vec::new();
    let mut i = 0;
    while i + delimiter.len() <= text.len() {
        if text[i..].starts_with(&delimiter) {
            at.push(i);
            i += delimiter.len();
        } else {
            i += 1;
        }
    }
    assert_eq!(at.first(), Some(&0), "the answer starts with a delimiter");
    let last = *at.last().expect("a close delimiter");
    assert_eq!(
        &text[last + delimiter.len()..],
        b"--\r\n",
        "the close delimiter ends it"
    );
    at.windows(2)
        .map(|w| {
            let part = &text[w[0] + delimiter.len()..w[1]];
            let part = part
                .strip_prefix(b"\r\n")
                .expect("a delimiter line ends in CRLF");
            let end = part
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|p| p + 2)
                .or_else(|| part.starts_with(b"\r\n").then_some(0))
                .expect("a part's head ends");
            let mut headers = http::HeaderMap::new();
            for line in std::str::from_utf8(&part[..end])
                .expect("ascii")
                .split("\r\n")
            {
                if line.is_empty() {
                    continue;
                }
                let (name, value) = line.split_once(": ").expect("name: value");
                headers.append(
                    http::HeaderName::from_bytes(name.as_bytes()).expect("a name"),
                    http::HeaderValue::from_str(value).expect("a value"),
                );
            }
            Popped {
                headers,
                body: part[end + 2..].to_vec(),
            }
        })
        .collect()
}

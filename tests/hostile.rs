//! Hostile clients over raw sockets: truncated and malformed bodies, oversized
//! and malformed heads, hostile names and numbers, slow bodies, slowloris and
//! a full connection table. Every case must get a clear 4xx or a closed
//! connection, leave nothing behind (no element, no byte, no spill file), and
//! the server must keep serving afterwards.
//!
//! Every server here spills at 100 bytes, so any partial body that was kept
//! would show up as a file in the spill directory.

#[path = "hostile/bodies.rs"]
mod bodies;
mod common;
#[path = "hostile/connections.rs"]
mod connections;
#[path = "hostile/heads.rs"]
mod heads;

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use common::{TestServer, STEP};

/// Bodies of this many bytes or more go to a spill file.
const SPILL_THRESHOLD: u64 = 100;

/// A server that spills small bodies, plus extra flags.
async fn start_with(flags: &[(&str, u64)]) -> TestServer {
    let mut options = common::options().arg("--spill-threshold", SPILL_THRESHOLD);
    for (flag, value) in flags {
        options = options.arg(flag, value);
    }
    options.start().await
}

/// What came back on a raw connection.
#[derive(Debug)]
enum Reply {
    /// A complete response (the first one on the connection).
    Answer {
        status: u16,
        head: String,
        body: Vec<u8>,
    },
    /// The server closed (or reset) the connection without a byte.
    Closed,
}

impl Reply {
    fn status(&self) -> Option<u16> {
        match self {
            Reply::Answer { status, .. } => Some(*status),
            Reply::Closed => None,
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The value of header `name` in a response head, case-insensitively.
fn head_value<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// Reads one response from `s`: the head, then `Content-Length` bytes of body
/// (or up to EOF when there is none). Fails the test if the server neither
/// answers nor closes within `limit`: a hang is a server bug.
async fn read_reply_within(s: &mut TcpStream, limit: Duration) -> Reply {
    let deadline = Instant::now() + limit;
    let mut buf = Vec::new();
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("not an HTTP status line: {head:?}"));
            let body_len = if (100..200).contains(&status) || status == 204 || status == 304 {
                Some(0)
            } else {
                head_value(&head, "content-length").map(|v| v.parse::<usize>().expect("length"))
            };
            if let Some(len) = body_len {
                if buf.len() >= end + 4 + len {
                    let body = buf[end + 4..end + 4 + len].to_vec();
                    return Reply::Answer { status, head, body };
                }
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout_at(deadline.into(), s.read(&mut chunk)).await {
            Err(_) => panic!(
                "the server neither answered nor closed within {limit:?}; got {:?}",
                String::from_utf8_lossy(&buf)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    if buf.is_empty() {
        return Reply::Closed;
    }
    // Closed after a response without a length: the body ran to EOF.
    let end = find(&buf, b"\r\n\r\n").unwrap_or_else(|| {
        panic!(
            "connection closed mid-response: {:?}",
            String::from_utf8_lossy(&buf)
        )
    });
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {head:?}"));
    Reply::Answer {
        status,
        head,
        body: buf[end + 4..].to_vec(),
    }
}

async fn read_reply(s: &mut TcpStream) -> Reply {
    read_reply_within(s, STEP).await
}

async fn connect(server: &TestServer) -> TcpStream {
    tokio::time::timeout(STEP, TcpStream::connect(&server.addr))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Sends `request` on a fresh connection and reads the answer. A failed write
/// is not a failure: the server may answer and close before reading it all.
async fn exchange(server: &TestServer, request: &[u8]) -> Reply {
    let mut s = connect(server).await;
    let _ = s.write_all(request).await;
    read_reply(&mut s).await
}

/// A request with `Connection: close`; a `Content-Length` is added for a
/// non-empty body unless `headers` frame the body themselves.
fn request(method: &str, path: &[u8], headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(method.as_bytes());
    r.push(b' ');
    r.extend_from_slice(path);
    r.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for h in headers {
        r.extend_from_slice(h.as_bytes());
        r.extend_from_slice(b"\r\n");
    }
    let framed = headers.iter().any(|h| {
        let h = h.to_ascii_lowercase();
        h.starts_with("content-length:") || h.starts_with("transfer-encoding:")
    });
    if !body.is_empty() && !framed {
        r.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(body);
    r
}

/// `reply` is a status in `allowed`, or (if `may_close`) a closed connection.
/// hyper refuses what it cannot parse itself, with a bare status; when blobq
/// answered instead (a problem document), its type must be `kind`.
fn assert_refused(what: &str, reply: &Reply, allowed: &[u16], may_close: bool, kind: &str) {
    match reply {
        Reply::Closed => assert!(may_close, "{what}: closed without an answer"),
        Reply::Answer { status, head, body } => {
            assert!(
                allowed.contains(status),
                "{what}: status {status}, expected one of {allowed:?} (or a close: {may_close}); head {head:?}"
            );
            if head_value(head, "content-type") == Some("application/problem+json") {
                check_problem_doc(what, *status, kind, body);
            }
        }
    }
}

fn check_problem_doc(what: &str, status: u16, kind: &str, body: &[u8]) {
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{what}: problem body is not JSON ({e}): {body:?}"));
    assert_eq!(v["status"], status, "{what}: {v}");
    assert_eq!(
        v["type"],
        format!("urn:blobq:problem:{kind}"),
        "{what}: problem type: {v}"
    );
    for field in ["title", "detail"] {
        assert!(
            v[field].as_str().is_some_and(|s| !s.is_empty()),
            "{what}: problem field {field}: {v}"
        );
    }
}

/// `reply` is blobq's own problem document: `status`, of type `kind`.
fn assert_problem(what: &str, reply: &Reply, status: u16, kind: &str) {
    let Reply::Answer {
        status: got,
        head,
        body,
    } = reply
    else {
        panic!("{what}: closed without an answer, expected {status} {kind}");
    };
    assert_eq!(
        *got,
        status,
        "{what}: head {head:?}, body {:?}",
        String::from_utf8_lossy(body)
    );
    assert_eq!(
        head_value(head, "content-type"),
        Some("application/problem+json"),
        "{what}: errors from blobq are problem documents; head {head:?}"
    );
    check_problem_doc(what, status, kind, body);
}

/// Waits (bounded) until a spill file exists: the server is receiving the
/// body and has written part of it to disk.
async fn wait_for_spill_file(server: &TestServer, what: &str) {
    let deadline = Instant::now() + STEP;
    while server.spill_files().is_empty() {
        assert!(
            Instant::now() < deadline,
            "{what}: the server never started spilling the body"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The spill root holds nothing but the server's own (empty) folder.
fn spill_root_is_clean(server: &TestServer) -> Result<(), String> {
    let entries: Vec<_> = std::fs::read_dir(server.spill_root.path())
        .map_err(|e| format!("cannot list the spill root: {e}"))?
        .flatten()
        .map(|e| e.path())
        .collect();
    let own_folder = match entries.as_slice() {
        [only] if only.is_dir() => only,
        _ => return Err(format!("the spill root holds {entries:?}")),
    };
    let name = own_folder.file_name().unwrap_or_default().to_string_lossy();
    if !name.starts_with("blobq-") {
        return Err(format!(
            "unexpected folder in the spill root: {own_folder:?}"
        ));
    }
    let inside: Vec<_> = std::fs::read_dir(own_folder)
        .map_err(|e| format!("cannot list {own_folder:?}: {e}"))?
        .flatten()
        .map(|e| e.path())
        .collect();
    if inside.is_empty() {
        Ok(())
    } else {
        Err(format!("left in the spill folder: {inside:?}"))
    }
}

/// `ns/q`, the queue every hostile request aims at, holds nothing (or was
/// never created).
async fn hostile_queue_is_empty(server: &TestServer) -> Result<(), String> {
    let r = server.get("/qs/ns/q/stats").await;
    match r.status().as_u16() {
        404 => Ok(()),
        200 => {
            let v: serde_json::Value = r.json().await.expect("stats json");
            if v["elements"] == 0 && v["bytes"] == 0 && v["leased"] == 0 {
                Ok(())
            } else {
                Err(format!("queue ns/q: {v}"))
            }
        }
        other => Err(format!("queue ns/q stats: status {other}")),
    }
}

/// Waits (bounded) until nothing is kept: no file in the spill folder (and
/// nothing else in the spill root), queue `ns/q` empty, and the server totals
/// show no element and no byte, with exactly `pushes` accepted pushes. The
/// server notices a vanished client asynchronously, hence the polling.
async fn assert_nothing_kept(server: &TestServer, what: &str, pushes: u64) {
    let deadline = Instant::now() + STEP;
    loop {
        let files = spill_root_is_clean(server);
        let queue = hostile_queue_is_empty(server).await;
        let totals = server.json("/qs", 200).await;
        let clean = files.is_ok()
            && queue.is_ok()
            && totals["elements"] == 0
            && totals["memory_bytes"] == 0
            && totals["disk_bytes"] == 0
            && totals["leased"] == 0;
        if clean {
            assert_eq!(
                totals["pushes"], pushes,
                "{what}: accepted pushes: {totals}"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: something partial was kept after {STEP:?}: spill root {files:?}, {queue:?}, totals {totals}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A normal push and pop of a spilled element, bounded by [`STEP`].
async fn round_trip(server: &TestServer, i: usize) {
    let body = common::pattern(SPILL_THRESHOLD as usize + i % 7, i as u8);
    let step = async {
        let r = server.post("/qs/sane/rt", body.clone()).await;
        assert_eq!(r.status(), 202, "round trip {i}: push");
        let r = server.get("/qs/sane/rt").await;
        assert_eq!(r.status(), 200, "round trip {i}: pop");
        assert!(
            r.bytes().await.expect("pop body").as_ref() == body.as_slice(),
            "round trip {i}: popped bytes differ"
        );
    };
    tokio::time::timeout(STEP, step)
        .await
        .unwrap_or_else(|_| panic!("round trip {i} did not complete within {STEP:?}"));
}

/// The closing check of every case: nothing kept, then the server still
/// serves, and the round trip itself leaves nothing behind either.
async fn assert_clean_and_serving(server: &TestServer, what: &str, pushes: u64) {
    assert_nothing_kept(server, what, pushes).await;
    round_trip(server, 0).await;
    assert_nothing_kept(server, &format!("{what}, after a round trip"), pushes + 1).await;
}

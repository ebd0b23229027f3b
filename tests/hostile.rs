//! Hostile clients over raw sockets: truncated and malformed bodies, oversized
//! and malformed heads, hostile names and numbers, slow bodies, slowloris and
//! a full connection table. Every case must get a clear 4xx or a closed
//! connection, leave nothing behind (no element, no byte, no spill file), and
//! the server must keep serving afterwards.
//!
//! Every server here spills at 100 bytes, so any partial body that was kept
//! would show up as a file in the spill directory.

mod common;

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

#[tokio::test]
async fn a_truncated_body_closed_by_the_client_leaves_nothing() {
    let server = start_with(&[]).await;
    let mut s = connect(&server).await;
    let head = "POST /qs/ns/q HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n";
    s.write_all(head.as_bytes()).await.expect("send head");
    s.write_all(&common::pattern(1000, 1))
        .await
        .expect("send part of the body");
    // 5000 announced bytes go to disk: wait until the partial file exists, so
    // the check below cannot pass before the server has even begun.
    wait_for_spill_file(&server, "truncated body").await;
    drop(s);
    assert_clean_and_serving(&server, "truncated body, then close", 0).await;
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_then_half_closed_leaves_nothing() {
    let server = start_with(&[]).await;
    // Spilled (announced length above the threshold) and in memory (below).
    for (announced, sent) in [(5000usize, 1000usize), (90, 40)] {
        let what = format!("Content-Length {announced} with {sent} bytes, half-closed");
        let mut s = connect(&server).await;
        let head =
            format!("POST /qs/ns/q HTTP/1.1\r\nHost: x\r\nContent-Length: {announced}\r\n\r\n");
        s.write_all(head.as_bytes()).await.expect("send head");
        s.write_all(&common::pattern(sent, 2))
            .await
            .expect("send part of the body");
        if announced as u64 >= SPILL_THRESHOLD {
            wait_for_spill_file(&server, &what).await;
        }
        s.shutdown().await.expect("half-close");
        let reply = read_reply(&mut s).await;
        assert_refused(&what, &reply, &[400], true, "body-read-failed");
        drop(s);
        assert_nothing_kept(&server, &what, 0).await;
    }
    assert_clean_and_serving(&server, "short bodies", 0).await;
}

#[tokio::test]
async fn invalid_chunked_encoding_is_refused_and_nothing_is_stored() {
    let server = start_with(&[]).await;
    let te = "Transfer-Encoding: chunked";
    let bodies: [(&str, &[u8]); 7] = [
        ("bad hex size", b"zz\r\nhello\r\n0\r\n\r\n"),
        ("negative size", b"-5\r\nhello\r\n0\r\n\r\n"),
        ("missing CRLF after the data", b"5\r\nhelloXX0\r\n\r\n"),
        (
            "size overflowing 64 bits",
            b"fffffffffffffffffffff\r\nx\r\n0\r\n\r\n",
        ),
        ("size line without CRLF", b"5hello\r\n0\r\n\r\n"),
        ("data longer than its size", b"3\r\nhello\r\n0\r\n\r\n"),
        ("body cut off before the last chunk", b"5\r\nhello\r\n"),
    ];
    for (what, body) in bodies {
        let mut s = connect(&server).await;
        let _ = s
            .write_all(&request("POST", b"/qs/ns/q", &[te], body))
            .await;
        // Half-close so that a body cut short ends instead of stalling.
        let _ = s.shutdown().await;
        let reply = read_reply(&mut s).await;
        assert_refused(what, &reply, &[400], true, "body-read-failed");
        drop(s);
        assert_nothing_kept(&server, what, 0).await;
    }
    // Both framings at once (request smuggling territory). RFC 9112 section
    // 6.3: the chunked framing wins and the connection is closed after the
    // answer, so no second request can hide in the body; refusing is fine too.
    let what = "chunked and Content-Length";
    let reply = exchange(
        &server,
        &request(
            "POST",
            b"/qs/ns/q",
            &[te, "Content-Length: 5"],
            b"5\r\nhello\r\n0\r\n\r\nGET /qs/ns/q HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
    )
    .await;
    let mut pushes = 0;
    match &reply {
        Reply::Answer {
            status: 202, head, ..
        } => {
            assert_eq!(head_value(head, "connection"), Some("close"), "{what}");
            let r = server.get("/qs/ns/q").await;
            assert_eq!(r.status(), 200, "{what}: pop");
            assert_eq!(&r.bytes().await.expect("pop body")[..], b"hello", "{what}");
            pushes = 1;
        }
        other => assert_refused(what, other, &[400], true, "-"),
    }
    assert_nothing_kept(&server, what, pushes).await;

    // A valid 300-byte chunk (spilled), then garbage: the partial file goes.
    let what = "valid spilled chunk, then a bad size";
    let mut s = connect(&server).await;
    s.write_all(&request("POST", b"/qs/ns/q", &[te], b""))
        .await
        .expect("send head");
    let mut chunk = b"12c\r\n".to_vec();
    chunk.extend_from_slice(&common::pattern(300, 3));
    chunk.extend_from_slice(b"\r\n");
    s.write_all(&chunk).await.expect("send a chunk");
    wait_for_spill_file(&server, what).await;
    let _ = s.write_all(b"xyz!\r\nmore\r\n0\r\n\r\n").await;
    let reply = read_reply(&mut s).await;
    assert_refused(what, &reply, &[400], true, "body-read-failed");
    drop(s);
    assert_clean_and_serving(&server, "invalid chunked bodies", pushes).await;
}

#[tokio::test]
async fn oversized_heads_get_431() {
    let server = start_with(&[]).await;
    // hyper answers these itself (no problem document) and closes.
    let huge = format!("X-Custom-Data: k={}", "v".repeat(20 * 1024));
    let reply = exchange(&server, &request("POST", b"/qs/ns/q", &[&huge], b"hello")).await;
    assert_refused("a 20 KiB header value", &reply, &[431], false, "-");

    let long_path = format!("/qs/ns/{}", "q".repeat(20 * 1024));
    let reply = exchange(&server, &request("GET", long_path.as_bytes(), &[], b"")).await;
    assert_refused("a 20 KiB path", &reply, &[431, 414], false, "-");

    let many: Vec<String> = (0..150).map(|i| format!("X-Filler-{i}: {i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let reply = exchange(&server, &request("POST", b"/qs/ns/q", &many, b"hello")).await;
    assert_refused("150 headers", &reply, &[431], false, "-");

    // Many custom-data lines, each valid: refused as a head, not half-stored.
    let custom: Vec<String> = (0..150).map(|i| format!("X-Custom-Data: k{i}=v")).collect();
    let custom: Vec<&str> = custom.iter().map(String::as_str).collect();
    let reply = exchange(&server, &request("POST", b"/qs/ns/q", &custom, b"hello")).await;
    assert_refused("150 X-Custom-Data headers", &reply, &[431], false, "-");

    // Within the head limits but over --max-custom-data (64): blobq's 400.
    let custom: Vec<String> = (0..65).map(|i| format!("X-Custom-Data: k{i}=v")).collect();
    let custom: Vec<&str> = custom.iter().map(String::as_str).collect();
    let reply = exchange(&server, &request("POST", b"/qs/ns/q", &custom, b"hello")).await;
    assert_problem("65 X-Custom-Data pairs", &reply, 400, "invalid-custom-data");
    assert_clean_and_serving(&server, "oversized heads", 0).await;
}

#[tokio::test]
async fn non_utf8_bytes_in_the_request_line_are_refused() {
    let server = start_with(&[]).await;
    // Raw bytes above 0x7f: hyper refuses the request line (a bare 400).
    let raw: [&[u8]; 4] = [
        b"/qs/\xff\xfe/q",
        b"/qs/ns/q\xff",
        b"/qs/ns/\xc3\x28",
        b"/\xff",
    ];
    for path in raw {
        let what = format!("path {:?}", String::from_utf8_lossy(path));
        for method in ["GET", "POST"] {
            let body: &[u8] = if method == "POST" { b"payload" } else { b"" };
            let reply = exchange(&server, &request(method, path, &[], body)).await;
            assert_refused(&format!("{method} {what}"), &reply, &[400], true, "-");
        }
    }
    // Valid UTF-8 that is no name, and percent-encoded bytes (never decoded,
    // so the '%' itself is refused): blobq's own 400.
    let named: [&[u8]; 5] = [
        b"/qs/ns/\xc3\xa9",
        b"/qs/%ff%fe/q",
        b"/qs/ns/%c3%28",
        b"/qs/ns/caf%C3%A9",
        b"/tbs/%ff/blobs",
    ];
    for path in named {
        let what = format!("POST {:?}", String::from_utf8_lossy(path));
        let reply = exchange(&server, &request("POST", path, &[], b"payload")).await;
        assert_problem(&what, &reply, 400, "invalid-name");
    }
    assert_clean_and_serving(&server, "non-UTF-8 paths", 0).await;
}

#[tokio::test]
async fn dot_and_encoded_names_are_refused_without_touching_files() {
    let server = start_with(&[]).await;
    // Nothing in a path is percent-decoded or normalised: a `..` segment is a
    // reserved name, an encoded one holds a '%', and extra segments match no
    // route.
    let bad_name = (400, "invalid-name");
    let no_route = (404, "not-found");
    let posts = [
        ("/qs/ns/..", bad_name),
        ("/qs/ns/.", bad_name),
        ("/qs/../q", bad_name),
        ("/qs/./q", bad_name),
        ("/qs/ns/%2e%2e", bad_name),
        ("/qs/ns/%2E%2E", bad_name),
        ("/qs/%2e%2e/q", bad_name),
        ("/qs/ns%2Fq/x", bad_name),
        ("/qs/ns/a%2Fb", bad_name),
        ("/qs/ns/a%2fb", bad_name),
        ("/qs/ns/a/../b", no_route),
        ("/qs/ns/../../../../etc/passwd", no_route),
        ("/qs/ns/%2e%2e%2f%2e%2e%2fetc%2fpasswd", bad_name),
        ("/qs/ns/a%00b", bad_name),
        ("/tbs/../blobs", bad_name),
        ("/tbs/%2e%2e/blobs", bad_name),
        ("/tbs/ns%2F../blobs", bad_name),
    ];
    for (path, (status, kind)) in posts {
        let reply = exchange(&server, &request("POST", path.as_bytes(), &[], b"payload")).await;
        assert_problem(&format!("POST {path}"), &reply, status, kind);
    }
    let gets = [
        ("/qs/..", bad_name),
        ("/qs/.", bad_name),
        ("/qs/%2e%2e", bad_name),
        ("/qs/ns/..", bad_name),
        ("/qs/ns/../stats", bad_name),
        ("/qs/../q/stats", bad_name),
        ("/qs/ns/a/../b", no_route),
        ("/qs/ns/..%2f..%2fetc%2fpasswd", bad_name),
        // A blob id is looked up, never used as a path: an unknown blob.
        ("/tbs/ns/blobs/..", no_route),
        ("/tbs/ns/blobs/..%2F..%2Fetc%2Fpasswd", no_route),
        ("/tbs/ns/blobs/../../../etc/passwd", no_route),
        ("/tbs/../blobs/x", bad_name),
        ("/tbs/%2e%2e/blobs/x", bad_name),
    ];
    for (path, (status, kind)) in gets {
        let what = format!("GET {path}");
        let reply = exchange(&server, &request("GET", path.as_bytes(), &[], b"")).await;
        assert_problem(&what, &reply, status, kind);
        if let Reply::Answer { body, .. } = &reply {
            assert!(
                !String::from_utf8_lossy(body).contains("root:"),
                "{what}: served a file: {body:?}"
            );
        }
    }
    let reply = exchange(&server, &request("DELETE", b"/tbs/ns/blobs/..", &[], b"")).await;
    assert_problem("DELETE /tbs/ns/blobs/..", &reply, 404, "not-found");
    // A receipt is looked up too: `..` is an unknown lease.
    let reply = exchange(&server, &request("DELETE", b"/qs/ns/q/leases/..", &[], b"")).await;
    assert_problem("DELETE /qs/ns/q/leases/..", &reply, 404, "not-found");
    assert_clean_and_serving(&server, "hostile names", 0).await;
}

#[tokio::test]
async fn control_and_non_ascii_bytes_in_header_values_are_refused() {
    let server = start_with(&[]).await;
    // Control bytes: hyper refuses the head itself (a bare 400).
    let control = [
        "X-Custom-Data: a=b\0c",
        "X-QueueServer-Lifetime: 10\0",
        "X-QueueServer-ContentType: text/plain\0x",
        "Content-Type: text/\0plain",
        "X-Custom-Data: a=b\rc",
        "X-Custom-Data: a=\x01\x02",
        "X-Custom-Data: a=\x7f",
    ];
    for h in control {
        let what = format!("header {h:?}");
        let reply = exchange(&server, &request("POST", b"/qs/ns/q", &[h], b"payload")).await;
        assert_refused(&what, &reply, &[400], true, "-");
    }
    // Bytes above 0x7f pass hyper; blobq refuses them with a problem.
    let non_ascii: [(&[u8], &str); 5] = [
        (b"X-Custom-Data: a=\xff", "invalid-custom-data"),
        (b"X-Custom-Data: a=caf\xc3\xa9", "invalid-custom-data"),
        (b"X-QueueServer-Lifetime: \xff", "invalid-header"),
        (b"Content-Type: text/\xe9", "invalid-header"),
        (b"X-QueueServer-ContentType: a\xff/b", "invalid-header"),
    ];
    for (h, kind) in non_ascii {
        let what = format!("header {:?}", String::from_utf8_lossy(h));
        let mut r = b"POST /qs/ns/q HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".to_vec();
        r.extend_from_slice(h);
        r.extend_from_slice(b"\r\nContent-Length: 7\r\n\r\npayload");
        let reply = exchange(&server, &r).await;
        assert_problem(&what, &reply, 400, kind);
    }
    // A tab inside a value reaches blobq, which accepts only visible ASCII.
    let reply = exchange(
        &server,
        &request("POST", b"/qs/ns/q", &["X-Custom-Data: a=b\tc"], b"payload"),
    )
    .await;
    assert_problem(
        "a tab in a custom value",
        &reply,
        400,
        "invalid-custom-data",
    );
    assert_clean_and_serving(&server, "bad bytes in headers", 0).await;
}

/// The receipt of an element popped from `ns/q` under a 30 s lease.
async fn lease_one(server: &TestServer) -> String {
    let r = server.post("/qs/ns/q", "leased").await;
    assert_eq!(r.status(), 202, "push to lease");
    let r = server.get("/qs/ns/q?lease=30").await;
    assert_eq!(r.status(), 200, "pop under a lease");
    common::header(&r, "x-queueserver-lease").to_owned()
}

#[tokio::test]
async fn negative_and_enormous_numbers_are_refused_everywhere() {
    let server = start_with(&[]).await;
    let lifetimes = [
        "-1",
        "0",
        "99999999999999999999999",
        "18446744073709551615",
        "18446744073709551616",
        "1e99",
        "1.5",
        "+1",
        "0x10",
        "86401",
        "NaN",
        "inf",
    ];
    for v in lifetimes {
        let h = format!("X-QueueServer-Lifetime: {v}");
        for (method, path, body) in [
            ("POST", "/qs/ns/q", &b"payload"[..]),
            ("PUT", "/qs/ns/q", b""),
            ("POST", "/tbs/ns/blobs", b"payload"),
        ] {
            let what = format!("{method} {path} with {h}");
            let reply = exchange(&server, &request(method, path.as_bytes(), &[&h], body)).await;
            assert_problem(&what, &reply, 400, "invalid-lifetime");
        }
    }
    // hyper refuses a malformed length itself: a bare 400.
    let lengths = [
        "-1",
        "99999999999999999999999",
        "18446744073709551616",
        "1e3",
        "+5",
        "5, 6",
        "0x10",
        "",
    ];
    for v in lengths {
        let h = format!("Content-Length: {v}");
        let what = format!("POST with {h:?}");
        let reply = exchange(&server, &request("POST", b"/qs/ns/q", &[&h], b"12345")).await;
        assert_refused(&what, &reply, &[400], true, "-");
    }
    // hyper keeps u64::MAX and u64::MAX - 1 for its own use and answers 431
    // to them; below that, blobq refuses anything above the maximum element
    // size before reading a byte.
    for v in ["18446744073709551615", "18446744073709551614"] {
        let h = format!("Content-Length: {v}");
        let reply = exchange(&server, &request("POST", b"/qs/ns/q", &[&h], b"12345")).await;
        assert_refused(&format!("POST with {h}"), &reply, &[431], true, "-");
    }
    for v in ["18446744073709551613", "1073741825"] {
        let h = format!("Content-Length: {v}");
        for path in ["/qs/ns/q", "/tbs/ns/blobs"] {
            let reply = exchange(&server, &request("POST", path.as_bytes(), &[&h], b"12345")).await;
            assert_problem(
                &format!("POST {path} with {h}"),
                &reply,
                413,
                "element-too-large",
            );
        }
    }
    let durations = [
        "-1",
        "-0.5",
        "1e308",
        "1e-9",
        "99999999999999999999999",
        "99999999999999999999999.5",
        "18446744073709551615",
        "18446744073709551616",
        "NaN",
        "inf",
        "0x10",
        "%31",
        "",
    ];
    for v in durations {
        for (method, path, kind) in [
            ("GET", format!("/qs/ns/q?timeout={v}"), "invalid-timeout"),
            ("GET", format!("/qs/ns/q?lease={v}"), "invalid-lease"),
            (
                "GET",
                format!("/qs/ns/q?timeout=0&lease={v}"),
                "invalid-lease",
            ),
            (
                "POST",
                format!("/qs/ns/q/leases/r/extend?lease={v}"),
                "invalid-lease",
            ),
        ] {
            let what = format!("{method} {path}");
            let reply = exchange(&server, &request(method, path.as_bytes(), &[], b"")).await;
            assert_problem(&what, &reply, 400, kind);
        }
    }
    for v in ["0", "0.0", "0.0001", "43201"] {
        let path = format!("/qs/ns/q?lease={v}");
        let reply = exchange(&server, &request("GET", path.as_bytes(), &[], b"")).await;
        assert_problem(&format!("GET {path}"), &reply, 400, "invalid-lease");
    }
    let reply = exchange(&server, &request("GET", b"/qs/ns/q?timeout=301", &[], b"")).await;
    assert_problem("GET ?timeout=301", &reply, 400, "invalid-timeout");

    // Extending a real lease with nonsense leaves the lease as it was: it
    // can still be acknowledged.
    let receipt = lease_one(&server).await;
    for v in ["-1", "0", "43201", "1e9", "18446744073709551616", "NaN"] {
        let path = format!("/qs/ns/q/leases/{receipt}/extend?lease={v}");
        let reply = exchange(&server, &request("POST", path.as_bytes(), &[], b"")).await;
        assert_problem(&format!("extend by {v}"), &reply, 400, "invalid-lease");
    }
    let r = server.delete(&format!("/qs/ns/q/leases/{receipt}")).await;
    assert_eq!(r.status(), 204, "acknowledge after refused extensions");
    assert_clean_and_serving(&server, "hostile numbers", 1).await;
}

#[tokio::test]
async fn numbers_near_an_absurd_maximum_are_refused_not_a_crash() {
    // Maxima no one should configure, but may: a number that rounds past
    // what a Duration holds used to panic the request's task (the client
    // saw a closed connection) instead of getting a 400.
    let server = start_with(&[("--max-timeout", u64::MAX), ("--max-lease", u64::MAX)]).await;
    for (key, kind) in [("timeout", "invalid-timeout"), ("lease", "invalid-lease")] {
        for v in ["18446744073709551615", "18446744073709551615.5", "1e30"] {
            let path = format!("/qs/ns/q?{key}={v}");
            let reply = exchange(&server, &request("GET", path.as_bytes(), &[], b"")).await;
            assert_problem(&format!("GET {path}"), &reply, 400, kind);
        }
    }
    // The longest lease that fits is granted, and can be acknowledged.
    let r = server.post("/qs/ns/q", "long").await;
    assert_eq!(r.status(), 202, "push");
    let r = server.get("/qs/ns/q?lease=18446744073709549568").await;
    assert_eq!(r.status(), 200, "pop under the longest lease");
    let receipt = common::header(&r, "x-queueserver-lease").to_owned();
    let r = server.delete(&format!("/qs/ns/q/leases/{receipt}")).await;
    assert_eq!(r.status(), 204, "acknowledge");
    assert_clean_and_serving(&server, "absurd maxima", 1).await;
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_leaves_nothing() {
    let server = start_with(&[("--body-read-timeout", 1)]).await;
    for (path, announced) in [("/qs/ns/q", 100), ("/qs/ns/q", 50), ("/tbs/ns/blobs", 5000)] {
        let what = format!("stalled body of {announced} bytes to {path}");
        let mut s = connect(&server).await;
        let head =
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {announced}\r\n\r\n");
        s.write_all(head.as_bytes()).await.expect("send head");
        s.write_all(&common::pattern(10, 4))
            .await
            .expect("send part of the body");
        if announced >= SPILL_THRESHOLD {
            wait_for_spill_file(&server, &what).await;
        }
        // Stall: the server must give up on its own. The bound is generous;
        // the timeout itself is 1 s.
        let reply = read_reply_within(&mut s, STEP).await;
        assert_problem(&what, &reply, 408, "body-timeout");
        drop(s);
        assert_nothing_kept(&server, &what, 0).await;
    }
    // A chunked body that stalls between chunks.
    let what = "stalled chunked body";
    let mut s = connect(&server).await;
    let head = "POST /qs/ns/q HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    s.write_all(head.as_bytes()).await.expect("send head");
    let mut chunk = b"12c\r\n".to_vec();
    chunk.extend_from_slice(&common::pattern(300, 6));
    chunk.extend_from_slice(b"\r\n");
    s.write_all(&chunk).await.expect("send a chunk");
    wait_for_spill_file(&server, what).await;
    let reply = read_reply_within(&mut s, STEP).await;
    assert_problem(what, &reply, 408, "body-timeout");
    drop(s);
    assert_clean_and_serving(&server, "stalled bodies", 0).await;
}

/// Raises this process's soft limit on open files to the hard limit, so a
/// thousand client sockets fit whatever the CI's default is.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Reads `r` until the server closes it, accepting only a 4xx answer before
/// the close. Returns an error message if it is still open at `deadline`.
async fn closed_by_server(mut r: impl AsyncRead + Unpin, deadline: Instant) -> Result<(), String> {
    let mut got = Vec::new();
    loop {
        let mut buf = [0u8; 1024];
        match tokio::time::timeout_at(deadline.into(), r.read(&mut buf)).await {
            Err(_) => {
                return Err(format!(
                    "still open; got {:?}",
                    String::from_utf8_lossy(&got)
                ))
            }
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    if got.is_empty() || got.starts_with(b"HTTP/1.1 4") {
        Ok(())
    } else {
        Err(format!(
            "answered before closing: {:?}",
            String::from_utf8_lossy(&got)
        ))
    }
}

/// A slowloris: sends a request line, then one more header line every
/// 200 ms, never finishing the head. Ends when the server closes the
/// connection; an error if that has not happened by `deadline`.
async fn slowloris(s: TcpStream, deadline: Instant) -> Result<(), String> {
    let (read, mut write) = s.into_split();
    let trickle = async move {
        if write
            .write_all(b"GET /qs HTTP/1.1\r\nHost: x\r\n")
            .await
            .is_ok()
        {
            for i in 0.. {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let line = format!("X-Slow-{i}: 1\r\n");
                if write.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
        }
        // Keep the write half (and so the connection) open until the read
        // side has seen the close.
        std::future::pending::<()>().await;
    };
    tokio::select! {
        closed = closed_by_server(read, deadline) => closed,
        () = trickle => unreachable!("the trickle never ends"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_do_not_starve_clients_and_are_closed() {
    const LORISES: usize = 1000;
    const ROUND_TRIPS: usize = 100;
    raise_fd_limit();
    let server = start_with(&[("--header-read-timeout", 1)]).await;
    // Generous: each loris should be cut off 1 s after it connected.
    let deadline = Instant::now() + STEP;
    let mut lorises = JoinSet::new();
    for i in 0..LORISES {
        let s = connect(&server).await;
        lorises.spawn(async move { slowloris(s, deadline).await.map_err(|e| (i, e)) });
    }
    // While they trickle their heads, a normal client works.
    for i in 0..ROUND_TRIPS {
        round_trip(&server, i).await;
    }
    let mut still_open = Vec::new();
    while let Some(result) = lorises.join_next().await {
        if let Err((i, e)) = result.expect("slowloris task") {
            still_open.push(format!("#{i}: {e}"));
        }
    }
    assert!(
        still_open.is_empty(),
        "{} of {LORISES} slowloris connections not closed by the server within {STEP:?}: {:?}",
        still_open.len(),
        &still_open[..still_open.len().min(5)]
    );
    assert_nothing_kept(&server, "slowloris", ROUND_TRIPS as u64).await;
    round_trip(&server, 0).await;
}

/// Sends `GET /healthz` on a kept-alive connection and expects `200`.
async fn healthz_on(s: &mut TcpStream, what: &str) {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap_or_else(|e| panic!("{what}: send: {e}"));
    let reply = read_reply(s).await;
    assert_eq!(reply.status(), Some(200), "{what}: {reply:?}");
}

#[tokio::test]
async fn at_the_connection_cap_a_new_client_waits_for_a_free_slot() {
    const CAP: usize = 20;
    // Idle keep-alive connections are kept 60 s: longer than this test, so
    // only the client frees slots here.
    let server = start_with(&[
        ("--max-connections", CAP as u64),
        ("--header-read-timeout", 60),
    ])
    .await;
    // Fill every slot with a keep-alive connection that then sits idle; its
    // answer proves the server accepted it (so it holds a slot).
    let mut held = Vec::with_capacity(CAP);
    for i in 0..CAP {
        let mut s = connect(&server).await;
        healthz_on(&mut s, &format!("held connection {i}")).await;
        held.push(s);
    }
    let mut late = connect(&server).await; // completes in the kernel's backlog
    late.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("send on the late connection");
    let mut peek = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(700), late.peek(&mut peek)).await;
    assert!(
        early.is_err(),
        "connection {} was served while all {CAP} slots were held: {early:?}",
        CAP + 1
    );
    // The held connections are still served meanwhile.
    healthz_on(&mut held[1], "a held connection at the cap").await;
    // Free one slot: the waiting connection is then accepted and answered.
    drop(held.swap_remove(0));
    let reply = read_reply(&mut late).await;
    assert_eq!(reply.status(), Some(200), "late connection: {reply:?}");
    drop(late);
    for (i, s) in held.iter_mut().enumerate() {
        healthz_on(s, &format!("held connection {i}, after")).await;
    }
    drop(held);
    assert_clean_and_serving(&server, "connection cap", 0).await;
}

#[tokio::test]
async fn expect_continue_above_the_maximum_gets_413_before_the_body_is_sent() {
    let server = start_with(&[("--max-element-size", 1000)]).await;
    for path in ["/qs/ns/q", "/tbs/ns/blobs"] {
        let what = format!("Expect: 100-continue over the maximum to {path}");
        let mut s = connect(&server).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.expect("send head");
        // No body is sent: the answer must come without it, and not be a 100.
        let reply = read_reply(&mut s).await;
        assert_problem(&what, &reply, 413, "element-too-large");
        if let Reply::Answer { head, .. } = &reply {
            assert_eq!(
                head_value(head, "connection"),
                Some("close"),
                "{what}: the unread body must not be taken for a next request"
            );
        }
        drop(s);
        assert_nothing_kept(&server, &what, 0).await;
    }

    // Control: within the maximum, the server asks for the body and takes it.
    let mut s = connect(&server).await;
    let head = "POST /qs/ns/q HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 500\r\nConnection: close\r\n\r\n";
    s.write_all(head.as_bytes()).await.expect("send head");
    let reply = read_reply(&mut s).await;
    assert_eq!(
        reply.status(),
        Some(100),
        "Expect within the maximum: {reply:?}"
    );
    let body = common::pattern(500, 5);
    s.write_all(&body).await.expect("send the body");
    let reply = read_reply(&mut s).await;
    assert_eq!(
        reply.status(),
        Some(202),
        "push after 100 Continue: {reply:?}"
    );
    let r = server.get("/qs/ns/q").await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.expect("pop body").as_ref() == body.as_slice());
    assert_clean_and_serving(&server, "Expect: 100-continue", 1).await;
}

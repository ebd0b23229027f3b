//! Hostile bodies: cut short, badly chunked, stalled, or announced above
//! the maximum behind `Expect: 100-continue`.

use super::*;

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

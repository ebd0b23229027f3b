//! Hostile heads: oversized, not UTF-8, names with dots or escapes,
//! control bytes in values, and numbers out of every range.

use super::*;

#[tokio::test]
async fn oversized_heads_get_431() {
    let server = start_with(&[]).await;
    // Over blobq's own limits (--max-header-size 16 KiB, --max-headers
    // 100): blobq's 431 problem document, and the connection closes.
    let huge = format!("X-Custom-Data: k={}", "v".repeat(20 * 1024));
    let reply = exchange(&server, &request("POST", b"/qs/ns/q", &[&huge], b"hello")).await;
    assert_problem(
        "a 20 KiB header value",
        &reply,
        431,
        "request-head-too-large",
    );
    // On a keep-alive connection too: its body unread, the connection ends.
    let mut s = connect(&server).await;
    let keep_alive =
        format!("POST /qs/ns/q HTTP/1.1\r\nHost: x\r\n{huge}\r\nContent-Length: 5\r\n\r\nhello");
    s.write_all(keep_alive.as_bytes()).await.unwrap();
    let reply = read_reply(&mut s).await;
    assert_problem(
        "a keep-alive 20 KiB head",
        &reply,
        431,
        "request-head-too-large",
    );
    let mut rest = [0u8; 64];
    let closed = tokio::time::timeout(STEP, s.read(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "the connection stays open after a refused head: {closed:?}"
    );

    let long_path = format!("/qs/ns/{}", "q".repeat(20 * 1024));
    let reply = exchange(&server, &request("GET", long_path.as_bytes(), &[], b"")).await;
    assert_problem("a 20 KiB path", &reply, 431, "request-head-too-large");

    // More lines than hyper's parser holds (100 by default, as
    // --max-headers): hyper's bare 431.
    let lots: Vec<String> = (0..150).map(|i| format!("X-Filler-{i}: {i}")).collect();
    let lots: Vec<&str> = lots.iter().map(String::as_str).collect();
    let reply = exchange(&server, &request("POST", b"/qs/ns/q", &lots, b"hello")).await;
    assert_refused("150 headers", &reply, &[431], false, "-");

    // Past hyper's size ceiling (64 KiB): hyper's bare 431.
    let enormous = format!("X-Custom-Data: k={}", "v".repeat(80 * 1024));
    let reply = exchange(
        &server,
        &request("POST", b"/qs/ns/q", &[&enormous], b"hello"),
    )
    .await;
    assert_refused("an 80 KiB header value", &reply, &[431], false, "-");

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
async fn transfer_codings_other_than_chunked_get_501_and_store_nothing() {
    let server = start_with(&[]).await;
    let body = b"5\r\nhello\r\n0\r\n\r\n";
    let cases: [(&str, &[&str]); 4] = [
        ("/qs/ns/q", &["Transfer-Encoding: gzip, chunked"]),
        (
            "/qs/ns/q",
            &["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"],
        ),
        ("/qs/ns/q", &["Transfer-Encoding: x-mine;p=1 , chunked"]),
        ("/tbs/ns/blobs", &["Transfer-Encoding: deflate, chunked"]),
    ];
    for (path, headers) in cases {
        let reply = exchange(&server, &request("POST", path.as_bytes(), headers, body)).await;
        let what = format!("POST {path} with {headers:?}");
        assert_problem(&what, &reply, 501, "unsupported-transfer-coding");
    }
    // A coding that does not end in chunked leaves no way to find the
    // body's end: hyper refuses it as malformed.
    let reply = exchange(
        &server,
        &request("POST", b"/qs/ns/q", &["Transfer-Encoding: gzip"], b"hello"),
    )
    .await;
    assert_refused(
        "Transfer-Encoding: gzip alone",
        &reply,
        &[400, 501],
        true,
        "-",
    );
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            r#"blobq_http_requests_total{route="/qs/{ns}/{queue}",method="POST",status="501"} 3"#
        ),
        "{metrics}"
    );
    assert_clean_and_serving(&server, "transfer codings", 0).await;
}

#[tokio::test]
async fn more_lines_than_max_headers_get_431_with_a_problem_document() {
    let server = start_with(&[("--max-headers", 40)]).await;
    let many: Vec<String> = (0..60).map(|i| format!("X-Filler-{i}: {i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let reply = exchange(&server, &request("POST", b"/qs/ns/q", &many, b"hello")).await;
    assert_problem("60 headers", &reply, 431, "too-many-headers");
    // Many custom-data lines, each valid: refused as a head, not half-stored.
    let custom: Vec<String> = (0..60).map(|i| format!("X-Custom-Data: k{i}=v")).collect();
    let custom: Vec<&str> = custom.iter().map(String::as_str).collect();
    let reply = exchange(&server, &request("POST", b"/qs/ns/q", &custom, b"hello")).await;
    assert_problem("60 X-Custom-Data headers", &reply, 431, "too-many-headers");
    assert_clean_and_serving(&server, "too many header lines", 0).await;
}

#[tokio::test]
async fn refusals_hyper_answers_itself_are_counted_in_the_metrics() {
    let server = start_with(&[]).await;
    // A header line without a colon: malformed, answered 400 by hyper.
    let reply = exchange(
        &server,
        b"GET /qs HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    )
    .await;
    assert_refused("a malformed header line", &reply, &[400], false, "-");
    let reply = exchange(&server, b"GET /qs HTTP/9.9\r\nHost: x\r\n\r\n").await;
    assert_refused("an unknown version", &reply, &[400, 505], true, "-");
    let huge = format!("X-Filler: {}", "v".repeat(80 * 1024));
    let reply = exchange(&server, &request("GET", b"/qs", &[&huge], b"")).await;
    assert_refused("an 80 KiB header", &reply, &[431], false, "-");
    // One over blobq's own limit: its problem document, counted as a
    // request of its method to no route.
    let large = format!("X-Filler: {}", "v".repeat(20 * 1024));
    let reply = exchange(&server, &request("GET", b"/qs", &[&large], b"")).await;
    assert_problem("a 20 KiB header", &reply, 431, "request-head-too-large");
    // Counted as each connection ends, just after the client saw it close.
    let deadline = Instant::now() + STEP;
    loop {
        let metrics = server.get("/metrics").await.text().await.unwrap();
        let count = |method: &str, status: u16| {
            let series = format!(
                r#"blobq_http_requests_total{{route="unknown",method="{method}",status="{status}"}} "#
            );
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(&series)?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        if count("OTHER", 400) >= 1 && count("OTHER", 431) == 1 && count("GET", 431) == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "not counted: {metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_clean_and_serving(&server, "hyper's refusals", 0).await;
}

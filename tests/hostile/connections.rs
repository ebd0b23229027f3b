//! Hostile connections: slowloris heads and a full connection table.

use super::*;

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

/// Holds `count` keep-alive connections, each answered once (so each holds
/// a slot), oldest first.
async fn hold_connections(server: &TestServer, count: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(count);
    for i in 0..count {
        let mut s = connect(server).await;
        healthz_on(&mut s, &format!("held connection {i}")).await;
        held.push(s);
    }
    held
}

/// Whether the server answers on `s` within `limit` (peeking only).
async fn answers_within(s: &TcpStream, limit: Duration) -> bool {
    let mut peek = [0u8; 64];
    tokio::time::timeout(limit, s.peek(&mut peek)).await.is_ok()
}

#[tokio::test]
async fn at_the_connection_cap_with_every_connection_busy_a_new_client_waits_for_a_free_slot() {
    const CAP: usize = 20;
    // Idle keep-alive connections are kept 60 s: longer than this test, so
    // only the client frees slots here.
    let server = start_with(&[
        ("--max-connections", CAP as u64),
        ("--header-read-timeout", 60),
    ])
    .await;
    let mut held = hold_connections(&server, CAP).await;
    // Every connection then waits in a pop: busy, so none is closed for a
    // newcomer. The first pop's wait is the shortest.
    for (i, s) in held.iter_mut().enumerate() {
        let timeout = if i == 0 { 2 } else { 30 };
        let pop = format!("GET /qs/cap/q{i}?timeout={timeout} HTTP/1.1\r\nHost: x\r\n\r\n");
        s.write_all(pop.as_bytes()).await.expect("send a pop");
    }
    // Time for the server to read every pop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut late = connect(&server).await; // completes in the kernel's backlog
    late.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("send on the late connection");
    assert!(
        !answers_within(&late, Duration::from_millis(700)).await,
        "connection {} was served while all {CAP} slots were busy",
        CAP + 1
    );
    // The first pop ends: its connection, idle now, makes room.
    let reply = read_reply(&mut held[0]).await;
    assert_eq!(reply.status(), Some(204), "the short pop: {reply:?}");
    let reply = read_reply_within(&mut late, Duration::from_secs(2)).await;
    assert_eq!(reply.status(), Some(200), "late connection: {reply:?}");
    assert!(
        matches!(read_reply(&mut held[0]).await, Reply::Closed),
        "the idle connection was closed for the newcomer"
    );
    // The busy ones were left alone.
    for s in &held[1..] {
        assert!(!answers_within(s, Duration::from_millis(10)).await);
    }
    drop(late);
    drop(held);
    assert_clean_and_serving(&server, "connection cap", 0).await;
}

#[tokio::test]
async fn at_the_connection_cap_idle_connections_make_room_oldest_first() {
    const CAP: usize = 500;
    let server = start_with(&[
        ("--max-connections", CAP as u64),
        ("--header-read-timeout", 60),
    ])
    .await;
    let mut held = hold_connections(&server, CAP).await;
    // The first held connection is used again: the second is now the one
    // idle the longest.
    healthz_on(&mut held[0], "the first held connection, again").await;
    for (newcomer, oldest) in [(0, 1), (1, 2), (2, 3)] {
        let started = Instant::now();
        let mut s = connect(&server).await;
        healthz_on(&mut s, &format!("newcomer {newcomer}")).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "newcomer {newcomer} waited {:?}",
            started.elapsed()
        );
        assert!(
            matches!(read_reply(&mut held[oldest]).await, Reply::Closed),
            "held connection {oldest}, idle the longest, closed"
        );
        // The newcomer keeps its connection, and goes idle in turn.
        held.push(s);
    }
    // Everything else is still open and served.
    for (i, s) in held
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| !(1..=3).contains(i))
    {
        healthz_on(s, &format!("held connection {i}, after")).await;
    }
    drop(held);
    assert_clean_and_serving(&server, "idle connections at the cap", 0).await;
}

//! The server as a process: configuration layering, graceful shutdown, and
//! idle queues being dropped.

mod common;

use std::process::Command;
use std::time::Duration;

use common::STEP;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn sigterm_answers_waiters_503_finishes_pushes_in_flight_removes_files_and_exits_0() {
    // Idle keep-alive connections are otherwise closed after the header read
    // timeout: make it longer than the test waits for them.
    let mut server = common::options()
        .arg("--spill-threshold", 1000)
        .arg("--header-read-timeout", 120)
        .start()
        .await;
    assert_eq!(
        server.post("/qs/ns/kept", vec![9u8; 5000]).await.status(),
        202
    );
    assert_eq!(server.spill_files().len(), 1);

    let waiter = {
        let (client, url) = (server.client.clone(), server.url("/qs/ns/w?timeout=60"));
        tokio::spawn(async move { client.get(url).send().await.expect("pop") })
    };
    server.wait_for_waiters("ns", "w", 1).await;

    // A push whose body is still arriving when the signal comes.
    let slow_push = {
        let (client, url) = (server.client.clone(), server.url("/qs/ns/slow"));
        let parts = futures_util::stream::unfold(0u8, |i| async move {
            if i == 3 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            Some((Ok::<_, std::io::Error>(vec![i; 100]), i + 1))
        });
        tokio::spawn(async move {
            client
                .post(url)
                .body(reqwest::Body::wrap_stream(parts))
                .send()
                .await
                .expect("slow push")
        })
    };
    // A keep-alive connection with no request in flight: shutdown must close
    // it at once rather than wait the shutdown timeout out.
    let mut idle = tokio::net::TcpStream::connect(&server.addr)
        .await
        .expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: blobq\r\n\r\n")
        .await
        .expect("request");
    let mut answer = [0u8; 512];
    let n = idle.read(&mut answer).await.expect("answer");
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"), "healthz answered");
    tokio::time::sleep(Duration::from_millis(450)).await; // first part sent
    server.terminate();

    let r = tokio::time::timeout(STEP, waiter)
        .await
        .expect("waiter answered")
        .expect("task");
    let p = common::problem(r, 503).await;
    assert!(
        p["detail"].as_str().unwrap().contains("shutting down"),
        "{p}"
    );
    let closed = tokio::time::timeout(STEP, idle.read(&mut answer))
        .await
        .expect("the idle connection was closed");
    assert_eq!(closed.expect("read"), 0, "closed without an answer");
    let r = tokio::time::timeout(STEP, slow_push)
        .await
        .expect("push answered")
        .expect("task");
    assert_eq!(r.status(), 202, "a request in flight is finished");

    let status = server.wait_exit().await;
    assert_eq!(status.code(), Some(0));
    assert!(
        common::files_below(server.spill_root.path()).is_empty()
            && std::fs::read_dir(server.spill_root.path()).unwrap().count() == 0,
        "spill folder removed"
    );
    assert!(server.log().iter().any(|l| l.contains("shutdown complete")));
    assert!(
        !server.log().iter().any(|l| l.contains("cut off")),
        "every connection ended before the shutdown timeout"
    );
    assert!(
        reqwest::get(server.url("/healthz")).await.is_err(),
        "no longer accepting connections"
    );
}

#[tokio::test]
async fn settings_come_from_the_environment() {
    let server = common::options()
        .env("BLOBQ_SPILL_THRESHOLD", 1000)
        .start()
        .await;
    assert_eq!(server.post("/qs/ns/q", vec![0u8; 2000]).await.status(), 202);
    assert_eq!(
        server.spill_files().len(),
        1,
        "threshold 1000 from BLOBQ_SPILL_THRESHOLD"
    );
}

#[tokio::test]
async fn flags_win_over_the_environment_which_wins_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blobq.toml");
    std::fs::write(&file, "max_element_size = 10\nmax_lifetime = 500\n").unwrap();

    let from_file = common::options()
        .arg("--config", file.display())
        .start()
        .await;
    common::problem(from_file.post("/qs/ns/q", vec![0u8; 20]).await, 413).await;
    let over = from_file
        .client
        .post(from_file.url("/qs/ns/q"))
        .header("X-QueueServer-Lifetime", 501)
        .body("x")
        .send()
        .await
        .unwrap();
    common::problem(over, 400).await;

    let env_over_file = common::options()
        .arg("--config", file.display())
        .env("BLOBQ_MAX_ELEMENT_SIZE", 100)
        .start()
        .await;
    assert_eq!(
        env_over_file.post("/qs/ns/q", vec![0u8; 20]).await.status(),
        202
    );
    common::problem(env_over_file.post("/qs/ns/q", vec![0u8; 101]).await, 413).await;

    let flag_over_env = common::options()
        .arg("--config", file.display())
        .env("BLOBQ_MAX_ELEMENT_SIZE", 100)
        .arg("--max-element-size", 1000)
        .start()
        .await;
    assert_eq!(
        flag_over_env
            .post("/qs/ns/q", vec![0u8; 500])
            .await
            .status(),
        202
    );
}

#[test]
fn a_bad_config_stops_the_server_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "spil_threshold = 5\n").unwrap();
    let cases: [(&[&str], &str); 3] = [
        (
            &["--config", "/nonexistent/blobq.toml"],
            "/nonexistent/blobq.toml",
        ),
        (&["--config", file.to_str().unwrap()], "spil_threshold"),
        (
            &["--default-lifetime", "100", "--max-lifetime", "10"],
            "default-lifetime",
        ),
    ];
    for (args, mention) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_blobq"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .expect("run blobq");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(mention), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn idle_empty_queues_and_namespaces_are_dropped_but_not_while_waited_on() {
    let server = common::options()
        .arg("--queue-idle-timeout", 1)
        .start()
        .await;
    assert_eq!(server.post("/qs/gone/q", "x").await.status(), 202);
    assert_eq!(server.get("/qs/gone/q").await.status(), 200);
    let waiter = server.spawn_get("/qs/kept/w?timeout=4");
    server.wait_for_waiters("kept", "w", 1).await;
    server
        .wait_for_json("/qs", "the idle namespace dropped", |v| {
            v["namespace_count"] == 1
        })
        .await;
    common::problem(server.get("/qs/gone/q/stats").await, 404).await;
    common::problem(server.get("/qs/gone").await, 404).await;
    // Still there: somebody waits on it.
    assert_eq!(server.json("/qs/kept/w/stats", 200).await["waiting"], 1);
    assert_eq!(server.post("/qs/kept/w", "for you").await.status(), 202);
    let (status, body) = tokio::time::timeout(STEP, waiter).await.unwrap().unwrap();
    assert_eq!((status, body.as_str()), (200, "for you"));
    // A later push re-creates a dropped queue.
    assert_eq!(server.post("/qs/gone/q", "again").await.status(), 202);
    assert_eq!(server.json("/qs/gone/q/stats", 200).await["pushed"], 1);
}

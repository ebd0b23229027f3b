//! `blobq job ...` against the real server; the worker's side of each job
//! is played over HTTP here so that every state is reached on purpose.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::common::{self, pattern, TestServer};
use super::{blobq, json, ok};

/// Starts `blobq ARGS` without waiting for it.
fn spawn_blobq(server: &TestServer, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_blobq"))
        .args(args)
        .env("BLOBQ_SERVER", format!("http://{}", server.addr))
        .env_remove("BLOBQ_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run blobq")
}

/// Waits for `child` to exit, killing it and failing after [`common::STEP`].
async fn finish(mut child: Child) -> Output {
    let deadline = Instant::now() + common::STEP;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("blobq did not finish");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.wait_with_output().expect("output")
}

/// Claims the next job of `ns/q` over HTTP: (id, lease receipt, input).
async fn claim(server: &TestServer, queue: &str) -> (String, String, Vec<u8>) {
    let answer = server
        .post(&format!("/jobs/{queue}/claim?lease=60&timeout=5"), "")
        .await;
    assert_eq!(answer.status(), 200, "a job to claim");
    let id = common::header(&answer, "x-job-id").to_owned();
    let lease = common::header(&answer, "x-queueserver-lease").to_owned();
    (id, lease, answer.bytes().await.expect("input").to_vec())
}

async fn worker_call(server: &TestServer, path: &str, lease: &str, body: serde_json::Value) {
    let answer = server
        .client
        .post(server.url(path))
        .header("x-queueserver-lease", lease)
        .json(&body)
        .send()
        .await
        .expect("worker call");
    assert_eq!(answer.status(), 200, "{path}");
}

#[tokio::test]
async fn a_job_round_trips_any_bytes_with_its_metadata_and_log() {
    let server = common::start().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.bin");
    let body = pattern(200_000, 7);
    std::fs::write(&input, &body).unwrap();
    let args = [
        "job",
        "submit",
        "ns/conv",
        input.to_str().unwrap(),
        "-t",
        "application/x-in",
        "-d",
        "user=alice",
        "--max-attempts",
        "3",
        "--retention",
        "600",
        "--idempotency-key",
        "conv-1",
        "--json",
    ];
    let submitted = json(&blobq(&server, &args, b""));
    assert_eq!(submitted["state"], "pending");
    assert_eq!(submitted["max_attempts"], 3);
    assert_eq!(submitted["metadata"]["user"], "alice");
    let id = submitted["id"].as_str().expect("an id").to_owned();
    // The same key answers with the same job; without --json, the id alone.
    // (An empty input: the server answers a repeat without reading its
    // body, and a large unread body can reset the connection first.)
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let mut repeat = args[..args.len() - 1].to_vec();
    repeat[3] = empty.to_str().unwrap();
    let again = ok(&blobq(&server, &repeat, b""));
    assert_eq!(again.trim(), id);

    let (claimed, lease, got) = claim(&server, "ns/conv").await;
    assert_eq!(claimed, id);
    assert!(got == body, "the input's bytes differ");
    let path = format!("/jobs/ns/conv/{id}");
    worker_call(
        &server,
        &format!("{path}/heartbeat"),
        &lease,
        serde_json::json!({"progress": 40, "message": "half"}),
    )
    .await;
    let human = ok(&blobq(&server, &["job", "get", "ns/conv", &id], b""));
    assert!(
        human.contains("state: running") && human.contains("progress: 40% half"),
        "{human}"
    );
    let log = json(&blobq(
        &server,
        &["job", "log", "ns/conv", &id, "--json"],
        b"",
    ));
    assert_eq!(log[0]["message"], "half");
    let log_text = ok(&blobq(&server, &["job", "log", "ns/conv", &id], b""));
    assert!(log_text.contains("40%  half"), "{log_text}");

    let result = pattern(70_000, 9);
    let stored = server
        .client
        .put(server.url(&format!("{path}/result")))
        .header("x-queueserver-lease", &lease)
        .header("x-job-status", "201")
        .header("content-type", "application/x-out")
        .body(result.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 200);

    let waited = json(&blobq(
        &server,
        &["job", "wait", "ns/conv", &id, "--json"],
        b"",
    ));
    assert_eq!(waited["state"], "succeeded");
    let out = dir.path().join("out.bin");
    let fetched = blobq(
        &server,
        &["job", "result", "ns/conv", &id, "-o", out.to_str().unwrap()],
        b"",
    );
    ok(&fetched);
    assert!(
        std::fs::read(&out).unwrap() == result,
        "the result's bytes differ"
    );
    let meta = String::from_utf8_lossy(&fetched.stderr);
    assert!(
        meta.contains("status: 201") && meta.contains("application/x-out"),
        "{meta}"
    );
    let as_json = json(&blobq(
        &server,
        &["job", "result", "ns/conv", &id, "--json"],
        b"",
    ));
    assert_eq!(as_json["status"], 201);
    assert!(as_json["body_base64"].is_string(), "binary bytes in base64");

    ok(&blobq(&server, &["job", "rm", "ns/conv", &id], b""));
    let gone = blobq(&server, &["job", "get", "ns/conv", &id], b"");
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("404"));
}

#[tokio::test]
async fn wait_follows_a_job_and_exits_1_with_its_error() {
    let server = common::start().await;
    let id = ok(&blobq(&server, &["job", "submit", "ns/w"], b"in"));
    let id = id.trim().to_owned();
    let pending = blobq(
        &server,
        &["job", "wait", "ns/w", &id, "--timeout", "1"],
        b"",
    );
    assert_eq!(
        pending.status.code(),
        Some(3),
        "still pending after its --timeout"
    );

    let mut waiting = spawn_blobq(&server, &["job", "wait", "ns/w", &id]);
    // Its stderr, a line per change of progress off a terminal.
    let stderr = waiting.stderr.take().expect("stderr");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let (_, lease, _) = claim(&server, "ns/w").await;
    let path = format!("/jobs/ns/w/{id}");
    // Each report shows while the job runs: the wait follows every change.
    for p in [10, 60] {
        worker_call(
            &server,
            &format!("{path}/heartbeat"),
            &lease,
            serde_json::json!({"progress": p, "message": format!("at {p}")}),
        )
        .await;
        let want = format!("progress: {p}% at {p}");
        let deadline = Instant::now() + common::STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines.recv_timeout(left).expect("a progress line in time");
            if line == want {
                break;
            }
        }
    }
    worker_call(
        &server,
        &format!("{path}/fail"),
        &lease,
        serde_json::json!({"code": "BROKEN", "message": "the input was bad"}),
    )
    .await;
    let waited = finish(waiting).await;
    assert_eq!(waited.status.code(), Some(1));
    let why: String = lines.iter().collect::<Vec<_>>().join("\n");
    assert!(why.contains("failed: BROKEN: the input was bad"), "{why}");
    assert!(String::from_utf8_lossy(&waited.stdout).contains("state: failed"));

    let no_result = blobq(&server, &["job", "result", "ns/w", &id], b"");
    assert_eq!(no_result.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_result.stderr).contains("409"));
}

#[tokio::test]
async fn cancel_and_list_every_page() {
    let server = common::start().await;
    let first = ok(&blobq(&server, &["job", "submit", "ns/many"], b"0"));
    let first = first.trim().to_owned();
    // More than one page of the server's largest.
    for i in 1..1003 {
        let r = server.post("/jobs/ns/many", i.to_string()).await;
        assert_eq!(r.status(), 202);
    }
    let cancelled = json(&blobq(
        &server,
        &["job", "cancel", "ns/many", &first, "--json"],
        b"",
    ));
    assert_eq!(cancelled["state"], "cancelled");
    let waited = blobq(&server, &["job", "wait", "ns/many", &first], b"");
    assert_eq!(
        waited.status.code(),
        Some(1),
        "a cancelled job did not succeed"
    );

    let all = json(&blobq(&server, &["job", "list", "ns/many", "--json"], b""));
    let jobs = all["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 1003);
    assert_eq!(jobs[0]["id"], first.as_str(), "oldest first");
    let only = json(&blobq(
        &server,
        &["job", "list", "ns/many", "--state", "cancelled", "--json"],
        b"",
    ));
    assert_eq!(only["jobs"].as_array().map(Vec::len), Some(1));
    let table = ok(&blobq(
        &server,
        &["job", "list", "ns/many", "--state", "cancelled"],
        b"",
    ));
    assert_eq!(table.lines().count(), 2, "a header and one row: {table}");
    assert!(table.contains(&first) && table.contains("cancelled"));

    let nothing = json(&blobq(&server, &["job", "list", "ns/none", "--json"], b""));
    assert_eq!(nothing["jobs"], serde_json::json!([]));
    let bad = blobq(&server, &["job", "get", "ns", "x"], b"");
    assert_eq!(bad.status.code(), Some(2), "NS/QUEUE is needed");
}

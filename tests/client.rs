//! The client subcommands (`blobq push`, `pop`, ...) run as processes
//! against the real server: binary-safe round trips, `--json` parsed,
//! exit statuses on errors.

mod common;
#[path = "client/jobs.rs"]
mod jobs;

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use common::TestServer;

/// Runs `blobq ARGS` against `server`, with `stdin` as its input; bounded
/// by a timeout.
fn blobq(server: &TestServer, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_blobq"))
        .args(args)
        .env("BLOBQ_SERVER", format!("http://{}", server.addr))
        .env_remove("BLOBQ_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run blobq");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    // Read the output while it runs (a large one would fill the pipe).
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(common::STEP) {
        Ok(output) => output.expect("output"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("blobq {args:?} did not finish");
        }
    }
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "status {:?}, stderr {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_str(ok(output).trim()).expect("a JSON document")
}

#[tokio::test]
async fn push_and_pop_round_trip_any_bytes_through_files_and_pipes() {
    let server = common::start().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.bin");
    let body: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    std::fs::write(&input, &body).unwrap();
    let path = input.to_str().unwrap();
    let args = [
        "push",
        "ns/q",
        path,
        "-t",
        "application/x-test",
        "-d",
        "k=v=w",
    ];
    let id = ok(&blobq(&server, &args, b""));
    assert_eq!(id.trim().len(), 36, "the element id: {id}");

    let output = dir.path().join("out.bin");
    let popped = blobq(
        &server,
        &["pop", "ns/q", "-o", output.to_str().unwrap()],
        b"",
    );
    ok(&popped);
    assert!(std::fs::read(&output).unwrap() == body, "the bytes differ");
    let meta = String::from_utf8_lossy(&popped.stderr);
    assert!(meta.contains(&format!("id: {}", id.trim())), "{meta}");
    assert!(meta.contains("content-type: application/x-test"), "{meta}");
    assert!(meta.contains("data: k=v=w"), "{meta}");

    // stdin in, stdout out, with bytes that are not UTF-8.
    ok(&blobq(
        &server,
        &["push", "ns/q", "-"],
        &[0, 159, 146, 150, 255],
    ));
    let piped = blobq(&server, &["pop", "ns/q"], b"");
    ok(&piped);
    assert_eq!(piped.stdout, [0, 159, 146, 150, 255]);
}

#[tokio::test]
async fn json_output_carries_the_element_and_its_body() {
    let server = common::start().await;
    let pushed = json(&blobq(
        &server,
        &["push", "ns/q", "--json", "-l", "60"],
        b"hello",
    ));
    assert_eq!(pushed["lifetime"], 60);
    ok(&blobq(&server, &["push", "ns/q"], &[0xff, 0xfe]));
    let text = json(&blobq(&server, &["pop", "ns/q", "--json"], b""));
    assert_eq!(text["id"], pushed["id"]);
    assert_eq!(text["body"], "hello");
    assert_eq!(text["size"], 5);
    let binary = json(&blobq(&server, &["pop", "ns/q", "--json"], b""));
    assert_eq!(binary["body_base64"], "//4=");
    let stats = json(&blobq(&server, &["stats", "ns/q", "--json"], b""));
    assert_eq!((&stats["pushed"], &stats["popped"]), (&2.into(), &2.into()));
}

#[tokio::test]
async fn leases_are_acknowledged_released_and_extended_by_receipt() {
    let server = common::start().await;
    for body in [b"one".as_slice(), b"two"] {
        ok(&blobq(&server, &["push", "ns/q"], body));
    }
    let first = json(&blobq(
        &server,
        &["pop", "ns/q", "--json", "--lease", "60"],
        b"",
    ));
    let receipt = first["lease"].as_str().expect("a receipt").to_owned();
    assert_eq!(first["deliveries"], 1);
    let extended = json(&blobq(
        &server,
        &["extend", "ns/q", &receipt, "--by", "120", "--json"],
        b"",
    ));
    assert_eq!(extended["lease"], 120);
    ok(&blobq(&server, &["release", "ns/q", &receipt], b""));
    let again = json(&blobq(
        &server,
        &["pop", "ns/q", "--json", "--lease", "60"],
        b"",
    ));
    assert_eq!(
        (&again["body"], &again["deliveries"]),
        (&"one".into(), &2.into())
    );
    let receipt = again["lease"].as_str().unwrap().to_owned();
    ok(&blobq(&server, &["ack", "ns/q", &receipt], b""));
    let gone = blobq(&server, &["ack", "ns/q", &receipt], b"");
    assert_eq!(gone.status.code(), Some(1));
    let why = String::from_utf8_lossy(&gone.stderr);
    assert!(why.contains("404") && why.contains("not-found"), "{why}");
}

#[tokio::test]
async fn tail_prints_and_acknowledges_then_stops_when_idle() {
    let server = common::start().await;
    for body in ["a", "b", "c"] {
        ok(&blobq(&server, &["push", "ns/q"], body.as_bytes()));
    }
    let tail = blobq(&server, &["tail", "ns/q", "--idle-exit", "1"], b"");
    assert_eq!(ok(&tail), "a\nb\nc\n");
    let stats = server.json("/qs/ns/q/stats", 200).await;
    assert_eq!(
        (&stats["elements"], &stats["leased"]),
        (&0.into(), &0.into())
    );
    let counted = blobq(
        &server,
        &["tail", "ns/q", "--idle-exit", "1", "-n", "1"],
        b"",
    );
    assert_eq!(counted.status.code(), Some(3), "nothing came");
}

#[tokio::test]
async fn purge_stats_and_blobs() {
    let server = common::start().await;
    for _ in 0..3 {
        ok(&blobq(&server, &["push", "ns/q"], b"x"));
    }
    let table = ok(&blobq(&server, &["stats", "ns"], b""));
    let row = table
        .lines()
        .find(|l| l.starts_with("q "))
        .expect("a row for q");
    assert_eq!(row.split_whitespace().nth(1), Some("3"), "{table}");
    assert_eq!(ok(&blobq(&server, &["purge", "ns/q"], b"")), "3 purged\n");
    let server_table = ok(&blobq(&server, &["stats"], b""));
    assert!(server_table.starts_with("blobq "), "{server_table}");

    let id = ok(&blobq(
        &server,
        &["blob", "put", "ns", "-t", "text/plain"],
        b"stored",
    ));
    let id = id.trim();
    assert_eq!(
        ok(&blobq(&server, &["blob", "get", "ns", id], b"")),
        "stored"
    );
    ok(&blobq(&server, &["blob", "rm", "ns", id], b""));
    let missing = blobq(&server, &["blob", "get", "ns", id], b"");
    assert_eq!(missing.status.code(), Some(1));
}

#[tokio::test]
async fn errors_have_exit_statuses() {
    let server = common::start().await;
    let empty = blobq(&server, &["pop", "ns/empty"], b"");
    assert_eq!(empty.status.code(), Some(3), "an empty queue");
    assert!(empty.stdout.is_empty());
    let usage = blobq(&server, &["pop", "not-a-queue"], b"");
    assert_eq!(usage.status.code(), Some(2));
    // A pop: refused before any body could be in flight.
    let refused = blobq(&server, &["pop", "ns/bad name"], b"");
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("400"));
    // A port just freed: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let url = format!("http://{closed}");
    let nobody = Command::new(env!("CARGO_BIN_EXE_blobq"))
        .args(["stats", "--server", &url])
        .output()
        .expect("run blobq");
    assert_eq!(nobody.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&nobody.stderr).contains(&url));
}

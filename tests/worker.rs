//! `blobq worker NS/QUEUE -- COMMAND` end to end: shell commands run as
//! workers against the real server, reporting progress and succeeding,
//! failing, hanging past their lease, and stopped with SIGTERM.

mod common;

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{pattern, TestServer};
use serde_json::Value;

/// Starts `blobq worker ARGS` against `server`.
fn worker(server: &TestServer, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_blobq"))
        .arg("worker")
        .args(args)
        .env("BLOBQ_SERVER", format!("http://{}", server.addr))
        .env_remove("BLOBQ_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run blobq worker")
}

/// Waits for the worker to exit with its output, killing it and failing
/// after [`common::STEP`].
fn finish(child: Child) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(common::STEP) {
        Ok(output) => output.expect("output"),
        Err(_) => {
            signal(pid, "KILL");
            panic!("the worker did not exit");
        }
    }
}

fn signal(pid: u32, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
}

/// Submits `body` to `ns/q` with `headers`; the job's id.
async fn submit(
    server: &TestServer,
    queue: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> String {
    let mut request = server.client.post(server.url(&format!("/jobs/{queue}")));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let answer = request.body(body).send().await.expect("submit");
    assert_eq!(answer.status(), 202);
    let job: Value = answer.json().await.expect("the job");
    job["id"].as_str().expect("an id").to_owned()
}

async fn job_in(server: &TestServer, path: &str, state: &str) -> Value {
    server
        .wait_for_json(path, state, |job| job["state"] == state)
        .await
}

#[tokio::test]
async fn a_command_reports_progress_and_its_stdout_is_the_result() {
    let server = common::start().await;
    let input = pattern(300_000, 3);
    let first = submit(
        &server,
        "ns/conv",
        input.clone(),
        &[
            ("x-custom-data", "user=alice"),
            ("x-custom-data", "file.name=a b"),
        ],
    )
    .await;
    let second = submit(&server, "ns/conv", b"small".to_vec(), &[]).await;
    let script = r#"printf 'progress 50 halfway\n' >&2
echo "noise from $BLOBQ_JOB_ID" >&2
cat
printf '|%s|%s|%s|%s' "$BLOBQ_JOB_ID" "$BLOBQ_JOB_ATTEMPT" "$BLOBQ_DATA_USER" "$BLOBQ_DATA_FILE_NAME""#;
    let child = worker(
        &server,
        &[
            "ns/conv",
            "-j",
            "2",
            "--max-jobs",
            "2",
            "--result-type",
            "application/x-out",
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    let output = finish(child);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains(&format!("noise from {first}")),
        "stderr passes through: {log}"
    );
    assert!(
        !log.contains("progress 50"),
        "progress lines are reports: {log}"
    );

    for (id, body, data) in [
        (&first, input, "alice|a b"),
        (&second, b"small".to_vec(), "|"), /* no metadata: both empty */
    ] {
        let job = job_in(&server, &format!("/jobs/ns/conv/{id}"), "succeeded").await;
        assert_eq!(job["result"]["content_type"], "application/x-out");
        let result = server.get(&format!("/jobs/ns/conv/{id}/result")).await;
        assert_eq!(result.status(), 200);
        let bytes = result.bytes().await.unwrap();
        let mut want = body;
        want.extend_from_slice(format!("|{id}|1|{data}").as_bytes());
        assert!(bytes[..] == want[..], "the result of {id} differs");
        let entries = server.json(&format!("/jobs/ns/conv/{id}/log"), 200).await;
        assert!(
            entries
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["progress"] == 50 && e["message"] == "halfway"),
            "{entries}"
        );
    }
}

#[tokio::test]
async fn a_failing_command_fails_its_job_with_its_status_and_stderr() {
    let server = common::start().await;
    let id = submit(&server, "ns/bad", b"x".to_vec(), &[]).await;
    let script = "echo first >&2; echo 'it broke' >&2; exit 3";
    let output = finish(worker(
        &server,
        &["ns/bad", "--max-jobs", "1", "--", "sh", "-c", script],
    ));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let job = job_in(&server, &format!("/jobs/ns/bad/{id}"), "failed").await;
    let error = &job["error"];
    assert_eq!(error["code"], "EXIT_STATUS");
    assert_eq!(error["message"], "exit status 3: it broke");
    assert_eq!(error["details"]["exit_status"], 3);
    assert_eq!(
        error["details"]["stderr"],
        serde_json::json!(["first", "it broke"])
    );

    // With --retry, a failure hands the job back while attempts are left.
    let again = submit(
        &server,
        "ns/bad",
        b"x".to_vec(),
        &[("x-job-max-attempts", "2")],
    )
    .await;
    let output = finish(worker(
        &server,
        &[
            "ns/bad",
            "--max-jobs",
            "2",
            "--retry",
            "--",
            "sh",
            "-c",
            script,
        ],
    ));
    assert!(output.status.success());
    let job = job_in(&server, &format!("/jobs/ns/bad/{again}"), "failed").await;
    assert_eq!(job["attempt"], 2, "tried twice");
}

#[tokio::test]
async fn heartbeats_keep_a_command_past_its_lease_until_its_timeout_kills_it() {
    let server = common::start().await;
    let id = submit(
        &server,
        "ns/slow",
        b"".to_vec(),
        &[("x-job-max-attempts", "1")],
    )
    .await;
    let path = format!("/jobs/ns/slow/{id}");
    let started = std::time::Instant::now();
    // `sleep` keeps the pipes open: the worker ends only if it is killed.
    let child = worker(
        &server,
        &[
            "ns/slow",
            "--lease",
            "2",
            "--job-timeout",
            "5",
            "--max-jobs",
            "1",
            "--",
            "sh",
            "-c",
            "sleep 30; echo late",
        ],
    );
    job_in(&server, &path, "running").await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let still = server.json(&path, 200).await;
    assert_eq!(
        still["state"], "running",
        "heartbeats renewed the 2 s lease"
    );
    let output = finish(child);
    assert!(output.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the command was killed"
    );
    let job = job_in(&server, &path, "failed").await;
    assert_eq!(job["error"]["code"], "TIMEOUT");
}

#[tokio::test]
async fn sigterm_lets_running_jobs_finish_then_exits() {
    let server = common::start().await;
    let id = submit(&server, "ns/term", b"in".to_vec(), &[]).await;
    let child = worker(
        &server,
        &["ns/term", "--", "sh", "-c", "sleep 1; echo finished"],
    );
    let path = format!("/jobs/ns/term/{id}");
    job_in(&server, &path, "running").await;
    signal(child.id(), "TERM");
    let output = finish(child);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    job_in(&server, &path, "succeeded").await;
    let result = server.get(&format!("{path}/result")).await;
    assert_eq!(result.text().await.unwrap(), "finished\n");
}

#[tokio::test]
async fn sigterm_past_the_grace_period_kills_and_hands_jobs_back() {
    let server = common::start().await;
    let id = submit(
        &server,
        "ns/grace",
        b"in".to_vec(),
        &[("x-job-max-attempts", "3")],
    )
    .await;
    let child = worker(
        &server,
        &["ns/grace", "--grace", "1", "--", "sh", "-c", "sleep 30"],
    );
    let path = format!("/jobs/ns/grace/{id}");
    job_in(&server, &path, "running").await;
    let pid = child.id();
    signal(pid, "TERM");
    let output = finish(child);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("WORKER_STOPPED"), "{log}");
    let job = job_in(&server, &path, "pending").await;
    assert_eq!(job["attempt"], 1, "handed back for another attempt");
}

#[tokio::test]
async fn a_cancelled_job_loses_its_lease_and_its_command_is_killed() {
    let server = common::start().await;
    let id = submit(&server, "ns/cancel", b"".to_vec(), &[]).await;
    let path = format!("/jobs/ns/cancel/{id}");
    let child = worker(
        &server,
        &[
            "ns/cancel",
            "--lease",
            "5",
            "--max-jobs",
            "1",
            "--",
            "sh",
            "-c",
            "sleep 30",
        ],
    );
    job_in(&server, &path, "running").await;
    let cancelled = server.post(&format!("{path}/cancel"), "").await;
    assert_eq!(cancelled.status(), 200);
    let output = finish(child);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("lease lost (job-cancelled)"), "{log}");
    assert_eq!(server.json(&path, 200).await["state"], "cancelled");
}

#[tokio::test]
async fn j_runs_that_many_commands_at_once() {
    let server = common::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ids = [
        submit(&server, "ns/par", b"".to_vec(), &[]).await,
        submit(&server, "ns/par", b"".to_vec(), &[]).await,
    ];
    // Each command waits until both have started: only two at once finish.
    let script = format!(
        "touch {0}/$BLOBQ_JOB_ID; while [ $(ls {0} | wc -l) -lt 2 ]; do sleep 0.05; done",
        dir.path().display()
    );
    let output = finish(worker(
        &server,
        &[
            "ns/par",
            "-j",
            "2",
            "--max-jobs",
            "2",
            "--job-timeout",
            "10",
            "--",
            "sh",
            "-c",
            &script,
        ],
    ));
    assert!(output.status.success());
    for id in ids {
        job_in(&server, &format!("/jobs/ns/par/{id}"), "succeeded").await;
    }
}

//! The operator's kit: `/metrics`' content type, the log format and the
//! access log, errors that name what failed, shell completions, man pages
//! and the systemd unit.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

fn blobq() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_blobq"));
    command
        .env_remove("BLOBQ_LOG")
        .env_remove("BLOBQ_LOG_FORMAT");
    command
}

/// Runs `blobq ARGS` to its end, bounded by [`common::STEP`].
fn run(args: &[&str]) -> Output {
    let child = blobq()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run blobq");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
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

/// A server started with `args`, its stderr lines arriving on a channel.
struct Logged {
    child: Child,
    lines: mpsc::Receiver<String>,
    _spill: tempfile::TempDir,
}

impl Logged {
    fn start(args: &[&str]) -> Logged {
        let spill = tempfile::tempdir().expect("spill dir");
        let mut child = blobq()
            .args(["serve", "--listen", "127.0.0.1:0", "--spill-dir"])
            .arg(spill.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start blobq");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Logged {
            child,
            lines,
            _spill: spill,
        }
    }

    /// The first line that `found` accepts, failing after [`common::STEP`].
    fn line<T>(&self, mut found: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + common::STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).expect("a log line in time");
            if let Some(v) = found(&line) {
                return v;
            }
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn metrics_are_served_as_openmetrics_text() {
    let server = common::start().await;
    server.get("/qs/ns/q").await;
    let answer = server.get("/metrics").await;
    assert_eq!(answer.status(), 200);
    assert_eq!(
        common::header(&answer, "content-type"),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = answer.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    // A counter family is typed without `_total` and sampled with it: the
    // OpenMetrics shape that the old text format would misread.
    let counters: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    assert!(!counters.is_empty(), "{text}");
    for family in counters {
        let sample = format!("{family}_total");
        assert!(
            text.lines().any(|l| l.starts_with(&sample)),
            "{family}: {text}"
        );
    }
}

#[test]
fn a_log_filter_that_would_log_nothing_stops_the_server_with_2() {
    for bad in ["inof", "info,blobq=loud"] {
        let output = run(&["serve", "--listen", "127.0.0.1:0", "--log", bad]);
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let why = String::from_utf8_lossy(&output.stderr);
        assert!(why.contains("invalid --log filter"), "{why}");
    }
}

#[test]
fn an_address_in_use_is_named() {
    let first = Logged::start(&[]);
    let addr = first.line(|l| {
        let after = l.split("addr=").nth(1)?;
        after.split_whitespace().next().map(str::to_owned)
    });
    let second = run(&["serve", "--listen", &addr]);
    assert_eq!(second.status.code(), Some(1));
    let why = String::from_utf8_lossy(&second.stderr);
    assert!(why.contains(&format!("cannot listen on {addr}")), "{why}");
}

#[tokio::test]
async fn json_logs_and_the_access_log() {
    let server = Logged::start(&["--log-format", "json", "--access-log"]);
    let addr = server.line(|l| {
        let line: Value = serde_json::from_str(l).expect("every line is JSON");
        (line["fields"]["message"] == "listening")
            .then(|| line["fields"]["addr"].as_str().unwrap().to_owned())
    });
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/qs/acme/secret-name?timeout=0");
    let answer = client.get(url).send().await.unwrap();
    assert_eq!(answer.status(), 204);
    let access = server.line(|l| {
        let line: Value = serde_json::from_str(l).expect("every line is JSON");
        (line["target"] == "blobq::access").then_some(line)
    });
    let fields = &access["fields"];
    assert_eq!(access["level"], "INFO");
    assert_eq!(fields["method"], "GET");
    assert_eq!(
        fields["route"], "/qs/{ns}/{queue}",
        "the template, not the names"
    );
    assert_eq!(fields["status"], 204);
    assert!(fields["duration_ms"].as_f64().is_some(), "{access}");
}

#[tokio::test]
async fn no_access_log_unless_asked_for() {
    let server = common::start().await;
    for _ in 0..3 {
        assert_eq!(server.get("/qs/ns/q").await.status(), 204);
    }
    // Time for any line the requests made to reach the log.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = server.log();
    assert!(
        !log.iter()
            .any(|l| l.contains("blobq::access") || l.contains("route=")),
        "{log:?}"
    );
}

#[test]
fn completions_for_each_shell() {
    for (shell, mark) in [
        ("bash", "_blobq()"),
        ("zsh", "#compdef blobq"),
        ("fish", "complete -c blobq"),
    ] {
        let output = run(&["completions", shell]);
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(script.contains(mark), "{shell}: {script}");
        assert!(
            script.contains("worker") && script.contains("submit"),
            "{shell}"
        );
    }
    assert_eq!(run(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn man_pages_for_the_binary_and_each_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(&["man", dir.path().to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let main = std::fs::read_to_string(dir.path().join("blobq.1")).expect("blobq.1");
    assert!(main.contains(".TH blobq 1"), "{main}");
    let serve = std::fs::read_to_string(dir.path().join("blobq-serve.1")).expect("blobq-serve.1");
    assert!(serve.contains("access\\-log"), "every flag is in its page");
    assert!(dir.path().join("blobq-worker.1").exists());
    assert!(dir.path().join("blobq-job-wait.1").exists());
}

#[test]
fn the_unit_is_hardened_and_starts_the_server_with_flags_it_has() {
    let unit = include_str!("../etc/blobq.service");
    for key in [
        "DynamicUser=yes",
        "StateDirectory=blobq",
        "LimitNOFILE=",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "KillSignal=SIGTERM",
    ] {
        assert!(unit.contains(key), "{key}");
    }
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    assert!(exec.starts_with("/usr/local/bin/blobq serve "), "{exec}");
    let help = String::from_utf8(run(&["serve", "--help"]).stdout).unwrap();
    for flag in exec.split_whitespace().filter(|w| w.starts_with("--")) {
        assert!(help.contains(flag), "{flag} is a flag of serve");
    }
    // The man pages it names are the ones `make man` writes.
    let dir = tempfile::tempdir().unwrap();
    assert!(run(&["man", dir.path().to_str().unwrap()]).status.success());
    for page in unit
        .lines()
        .filter_map(|l| l.strip_prefix("Documentation="))
        .flat_map(str::split_whitespace)
        .filter_map(|d| d.strip_prefix("man:"))
    {
        let name = page.replace("(1)", ".1");
        assert!(dir.path().join(&name).exists(), "{name}");
    }
}

//! Starts the real `blobq` binary on a free port for an integration test and
//! cleans up after it: the process is killed if still running and its spill
//! directory removed when the `TestServer` is dropped.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest any single step of a test may take before it is declared hung.
pub const STEP: Duration = Duration::from_secs(20);

/// Longest a request of a [`TestServer`]'s client may take: a blocking
/// request must ask the server to wait less.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

pub struct TestServer {
    child: Option<Child>,
    pub addr: String,
    /// Passed as `--spill-dir`; the server makes its own folder inside.
    pub spill_root: tempfile::TempDir,
    pub client: reqwest::Client,
    log: Arc<Mutex<Vec<String>>>,
    /// Whether [`TestServer::terminate`] sent it SIGTERM.
    terminated: AtomicBool,
}

/// A builder for the server's command line.
pub struct Options {
    args: Vec<String>,
    envs: Vec<(String, String)>,
    spill_root: Option<PathBuf>,
}

pub fn options() -> Options {
    Options {
        args: Vec::new(),
        envs: Vec::new(),
        spill_root: None,
    }
}

impl Options {
    pub fn arg(mut self, flag: &str, value: impl ToString) -> Self {
        self.args.push(flag.to_owned());
        self.args.push(value.to_string());
        self
    }

    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.envs.push((key.to_owned(), value.to_string()));
        self
    }

    /// Spill into `dir` (which the caller owns) instead of a fresh temp dir.
    pub fn spill_into(mut self, dir: &Path) -> Self {
        self.spill_root = Some(dir.to_owned());
        self
    }

    pub async fn start(self) -> TestServer {
        let spill_root = match &self.spill_root {
            Some(dir) => tempfile::Builder::new()
                .prefix("t-")
                .tempdir_in(dir)
                .expect("spill dir"),
            None => tempfile::tempdir().expect("spill dir"),
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_blobq"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--spill-dir")
            .arg(spill_root.path())
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("BLOBQ_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start blobq");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let lines = log.clone();
        // Keep draining stderr for the whole run so the server never blocks on logging.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("addr=").nth(1) {
                    let _ = tx.send(addr.split_whitespace().next().unwrap_or("").to_owned());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(STEP) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "blobq did not log its address; log: {:?}",
                    log.lock().unwrap()
                );
            }
        };
        TestServer {
            child: Some(child),
            addr,
            spill_root,
            client: reqwest::Client::builder()
                .timeout(CLIENT_TIMEOUT)
                .build()
                .expect("client"),
            log,
            terminated: AtomicBool::new(false),
        }
    }
}

/// A server with the default settings.
pub async fn start() -> TestServer {
    options().start().await
}

impl TestServer {
    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .body(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.put(self.url(path))
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE")
    }

    /// GET returning the parsed JSON body, asserting status `want`.
    pub async fn json(&self, path: &str, want: u16) -> serde_json::Value {
        let r = self.get(path).await;
        assert_eq!(r.status().as_u16(), want, "GET {path}");
        r.json().await.expect("json body")
    }

    /// Polls `path`'s JSON until `pred` holds, failing after [`STEP`].
    pub async fn wait_for_json(
        &self,
        path: &str,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + STEP;
        loop {
            let r = self.get(path).await;
            if r.status().is_success() {
                let v: serde_json::Value = r.json().await.expect("json");
                if pred(&v) {
                    return v;
                }
                assert!(
                    Instant::now() < deadline,
                    "timed out waiting for {what}; last: {v}"
                );
            } else {
                assert!(
                    Instant::now() < deadline,
                    "timed out waiting for {what}; status {}",
                    r.status()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until queue `ns/q` has `n` waiting consumers.
    pub async fn wait_for_waiters(&self, ns: &str, q: &str, n: u64) {
        self.wait_for_json(
            &format!("/qs/{ns}/{q}/stats"),
            &format!("{n} waiters"),
            |v| v["waiting"] == n,
        )
        .await;
    }

    /// Every regular file below the spill root.
    pub fn spill_files(&self) -> Vec<PathBuf> {
        files_below(self.spill_root.path())
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.terminated.store(true, Ordering::Relaxed);
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, failing after [`STEP`].
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + STEP;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "blobq did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// At the end of a test that may have sent SIGTERM: if it did, the
    /// server must have stopped gracefully, with a successful exit.
    pub async fn assert_clean_exit_if_terminated(&mut self) {
        if self.terminated.load(Ordering::Relaxed) && self.child.is_some() {
            let status = self.wait_exit().await;
            assert!(status.success(), "blobq exited with {status} after SIGTERM");
        }
    }

    /// Kills the process with SIGKILL, as a crash would, and reaps it.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
        }
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_below(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Deterministic bytes covering every byte value, NUL included.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

/// The parsed problem document of an error response, after checking status
/// and content type.
pub async fn problem(r: reqwest::Response, status: u16) -> serde_json::Value {
    let got = r.status().as_u16();
    if got != status {
        let body = r.text().await.unwrap_or_default();
        panic!("status {got}, expected {status}: {body}");
    }
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "errors are problem documents"
    );
    let v: serde_json::Value = r.json().await.expect("problem json");
    assert_eq!(v["status"], status);
    for field in ["type", "title", "detail"] {
        assert!(
            v[field].as_str().is_some_and(|s| !s.is_empty()),
            "problem field {field}: {v}"
        );
    }
    v
}

/// The single value of header `name` as text, failing the test if absent.
pub fn header<'r>(r: &'r reqwest::Response, name: &str) -> &'r str {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("header {name} missing; got {:?}", r.headers()))
        .to_str()
        .expect("ascii header")
}

/// Sends `req` after adding `headers` (repeated names are appended).
pub async fn send_with(
    mut req: reqwest::RequestBuilder,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request")
}

/// POSTs `body` to `path` with `headers` (repeated names are appended, not
/// replaced).
pub async fn post_with(
    server: &TestServer,
    path: &str,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    send_with(server.client.post(server.url(path)).body(body), headers).await
}

/// Pushes `body` and returns the push answer's JSON, asserting `202`.
pub async fn push_ok(
    server: &TestServer,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> serde_json::Value {
    let r = post_with(server, path, body, &[]).await;
    assert_eq!(r.status(), 202, "push to {path}");
    r.json().await.expect("push json")
}

/// Stores `body` through `POST /tbs/{ns}/blobs` and returns the answer's JSON,
/// asserting `201`, the `Location` and the `X-BlobStorage_Id`.
pub async fn store_blob(
    server: &TestServer,
    ns: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> serde_json::Value {
    let req = server
        .client
        .post(server.url(&format!("/tbs/{ns}/blobs")))
        .body(body);
    let r = send_with(req, headers).await;
    assert_eq!(r.status(), 201);
    let location = header(&r, "location").to_owned();
    let id_header = header(&r, "x-blobstorage_id").to_owned();
    let v: serde_json::Value = r.json().await.expect("json");
    let id = v["id"].as_str().expect("id");
    assert_eq!(location, format!("/tbs/{ns}/blobs/{id}"));
    assert_eq!(id_header, id);
    v
}

/// Every `X-Custom-Data` value, in the order received.
pub fn custom_data(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("x-custom-data")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect()
}

impl TestServer {
    /// Starts `GET path` in the background (a blocking pop, typically) and
    /// returns the task answering its status and body text.
    pub fn spawn_get(&self, path: &str) -> tokio::task::JoinHandle<(u16, String)> {
        let (client, url) = (self.client.clone(), self.url(path));
        tokio::spawn(async move {
            let r = client.get(url).send().await.expect("GET");
            let status = r.status().as_u16();
            (status, r.text().await.expect("body"))
        })
    }
}

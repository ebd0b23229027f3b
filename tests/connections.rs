//! Connections and file descriptors through the real server: the listen
//! backlog it is told to use, a connection cap fitted under the open-file
//! limit at start-up, and `503` with `Retry-After`, never `500` or `507`,
//! when the process runs out of descriptors. Idle connections at the cap
//! are in `tests/hostile/connections.rs`, with the other connection cases.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{options, STEP};

/// Sends `request` on `s` and reads one answer: (status, head, body).
fn exchange(s: &mut TcpStream, request: &[u8]) -> (u16, String, Vec<u8>) {
    s.set_read_timeout(Some(STEP)).unwrap();
    s.write_all(request).expect("send");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
                return (status, head, buf[end + 4..end + 4 + length].to_vec());
            }
        }
        let n = s.read(&mut chunk).expect("an answer in time");
        assert!(
            n > 0,
            "closed mid-answer: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

/// Sets the open-file limit of process `pid`; its previous (soft, hard).
fn set_open_file_limit(pid: u32, soft: u64, hard: Option<u64>) -> (u64, u64) {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit reads and writes only the structs passed.
    unsafe {
        assert_eq!(
            libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old),
            0
        );
        let new = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard.unwrap_or(old.rlim_max),
        };
        assert_eq!(
            libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()),
            0,
            "prlimit: {}",
            std::io::Error::last_os_error()
        );
    }
    (old.rlim_cur, old.rlim_max)
}

/// The lowest descriptor number process `pid` does not use: the next file
/// it opens gets it.
fn lowest_free_descriptor(pid: u32) -> u64 {
    let used: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|fd| !used.contains(fd)).unwrap()
}

#[tokio::test]
async fn out_of_descriptors_a_spilled_push_answers_503_with_retry_after_and_stores_nothing() {
    let server = options().arg("--spill-threshold", 1024).start().await;
    let pid = server.pid().expect("running");
    let mut s = TcpStream::connect(&server.addr).expect("connect");
    let (status, _, _) = exchange(&mut s, &get("/healthz"));
    assert_eq!(status, 200);
    // No descriptor left: the spill file of the next push cannot be made.
    let (soft, _) = set_open_file_limit(pid, lowest_free_descriptor(pid), None);
    let (status, head, body) = exchange(&mut s, &post("/qs/fd/q", &[7u8; 10_000]));
    let problem: serde_json::Value = serde_json::from_slice(&body).expect("a problem document");
    set_open_file_limit(pid, soft, None);
    assert_eq!(status, 503, "{head}\n{problem}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    assert_eq!(problem["type"], "urn:blobq:problem:out-of-descriptors");
    assert!(
        !problem["detail"].as_str().unwrap().contains('/'),
        "no path: {problem}"
    );
    // Nothing was kept, and with descriptors back the same push works.
    let stats = server.json("/qs", 200).await;
    assert_eq!(
        (stats["pushes"].as_u64(), stats["elements"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(
        server.spill_files().is_empty(),
        "{:?}",
        server.spill_files()
    );
    // The refused body was left unread, so that connection was closed.
    let mut s = TcpStream::connect(&server.addr).expect("connect");
    let (status, _, _) = exchange(&mut s, &post("/qs/fd/q", &[7u8; 10_000]));
    assert_eq!(status, 202);
    assert_eq!(server.json("/qs/fd/q/stats", 200).await["elements"], 1);
}

#[test]
fn a_connection_cap_above_the_open_file_limit_is_lowered_with_a_warning() {
    let mut own = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut own) }, 0);
    if own.rlim_max < 300 {
        eprintln!("skipped: the hard open-file limit is below 300 here");
        return;
    }
    let spill = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_blobq"));
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-connections",
            "10000",
        ])
        .arg("--spill-dir")
        .arg(spill.path())
        .env("BLOBQ_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe, as pre_exec requires.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 300,
                rlim_max: 300,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = command.spawn().expect("start blobq");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let listening = line.contains("listening");
            let _ = tx.send(line);
            if listening {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(STEP) {
        let listening = line.contains("listening");
        lines.push(line);
        if listening {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(lines.iter().any(|l| l.contains("listening")), "{lines:?}");
    // 300 - 64 reserved = 236, less a quarter (59) for body files.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("serving=177")),
        "{lines:?}"
    );
}

/// The backlog of the listening socket on `port`, as `ss` reports it
/// (`Send-Q` of a listener); `None` if `ss` cannot be run.
fn listen_backlog(port: &str) -> Option<u64> {
    let out = Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(2)?.parse().ok())
}

#[tokio::test]
async fn the_listen_backlog_is_the_systems_maximum_unless_set() {
    let set = options().arg("--listen-backlog", 77).start().await;
    let port = set.addr.rsplit(':').next().unwrap().to_owned();
    let Some(backlog) = listen_backlog(&port) else {
        eprintln!("skipped: `ss` cannot be run here");
        return;
    };
    assert_eq!(backlog, 77);
    let default = options().start().await;
    let port = default.addr.rsplit(':').next().unwrap().to_owned();
    let somaxconn: u64 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(listen_backlog(&port), Some(somaxconn));
    tokio::time::sleep(Duration::from_millis(1)).await;
}

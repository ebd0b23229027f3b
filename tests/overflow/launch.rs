//! Starts `blobq` with a spill directory of the test's choosing, so that
//! several servers can share one (the common harness gives each its own).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use crate::common::STEP;

/// A server process, killed and reaped when dropped.
pub struct Launched {
    child: Option<Child>,
    pub addr: String,
}

impl Launched {
    /// Starts a memory-mode server spilling into `spill_dir`.
    pub fn start(spill_dir: &Path, args: &[&str]) -> Launched {
        let mut child = Command::new(env!("CARGO_BIN_EXE_blobq"))
            .args(["serve", "--listen", "127.0.0.1:0", "--spill-dir"])
            .arg(spill_dir)
            .args(args)
            .env("BLOBQ_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start blobq");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("addr=").nth(1) {
                    let _ = tx.send(addr.split_whitespace().next().unwrap_or("").to_owned());
                }
            }
        });
        let Ok(addr) = rx.recv_timeout(STEP) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("blobq did not log its address");
        };
        Launched {
            child: Some(child),
            addr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// SIGKILL, as a crash would, and reaped.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
        }
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

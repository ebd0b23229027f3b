//! The `blobq` each case starts, stopped on drop.

use super::*;

/// A `blobq` started for one case; stopped (SIGTERM, then SIGKILL) on drop.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) _spill: tempfile::TempDir,
}

impl Server {
    pub(crate) fn start(bin: &str, extra: &[&str]) -> Result<Server> {
        let spill = tempfile::tempdir()?;
        let mut child = Command::new(bin)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--log", "info"])
            .arg("--spill-dir")
            .arg(spill.path())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let Some(line) = lines.next() else {
                let _ = child.kill();
                return Err("blobq exited before listening".into());
            };
            let line = line?;
            if let Some(rest) = line.split("addr=").nth(1) {
                break rest.split_whitespace().next().unwrap_or("").parse()?;
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Server {
            child,
            addr,
            _spill: spill,
        })
    }

    /// `VmRSS` or `VmHWM` of the server, in bytes.
    pub(crate) fn memory(&self, field: &str) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .ok_or_else(|| format!("no {field} in /proc status"))?;
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .ok_or("bad status line")?
            .parse()?;
        Ok(kib * 1024)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill only sends a signal to the child we started.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! A `nats-server` with JetStream for a test: started on a free port with
//! its store in a temporary directory, killed (and the directory removed)
//! when dropped. Without `nats-server` on the PATH a test is skipped with
//! a message, unless `BLOBQ_REQUIRE_NATS=1` (CI) makes that a failure.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a server may take to accept connections.
const READY_WITHIN: Duration = Duration::from_secs(20);

pub struct NatsServer {
    child: Child,
    pub port: u16,
    _store: tempfile::TempDir,
}

/// Whether `nats-server` can be run here; if not, says so, and fails when
/// the environment requires NATS.
pub fn available() -> bool {
    let found = Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("BLOBQ_REQUIRE_NATS").as_deref() != Ok("1"),
            "BLOBQ_REQUIRE_NATS=1 but nats-server is not on the PATH (.ci/install-nats)"
        );
        eprintln!("skipped: nats-server is not on the PATH (see .ci/install-nats)");
    }
    found
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

impl NatsServer {
    /// A fresh server on a free port, `None` (skipped) without nats-server.
    pub fn start() -> Option<NatsServer> {
        available().then(|| NatsServer::start_on(free_port()))
    }

    /// A fresh server on `port`.
    pub fn start_on(port: u16) -> NatsServer {
        NatsServer::spawn(port, &[])
    }

    /// `nats-server -js` on `port` with `args` besides, its store in a
    /// fresh directory; returns once it listens.
    fn spawn(port: u16, args: &[String]) -> NatsServer {
        let store = tempfile::tempdir().expect("a store directory");
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .arg("-sd")
            .arg(store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let server = NatsServer {
            child,
            port,
            _store: store,
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < READY_WITHIN,
                "nats-server never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// A fresh server of a cluster named `blobq`: `index` of `cluster`,
    /// each entry (client port, route port).
    pub fn start_in_cluster(index: usize, cluster: &[(u16, u16)]) -> NatsServer {
        NatsServer::start_in_cluster_with(index, cluster, &[])
    }

    /// As [`NatsServer::start_in_cluster`], with `extra` arguments (a
    /// configuration file, say) besides.
    pub fn start_in_cluster_with(
        index: usize,
        cluster: &[(u16, u16)],
        extra: &[String],
    ) -> NatsServer {
        let (port, route) = cluster[index];
        let routes: Vec<String> = cluster
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(_, (_, r))| format!("nats://127.0.0.1:{r}"))
            .collect();
        let args = [
            "-n".to_owned(),
            format!("n{index}"),
            "--cluster_name".to_owned(),
            "blobq".to_owned(),
            "--cluster".to_owned(),
            format!("nats://127.0.0.1:{route}"),
            "--routes".to_owned(),
            routes.join(","),
        ];
        NatsServer::spawn(port, &[&args[..], extra].concat())
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

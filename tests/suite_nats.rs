//! The HTTP integration suite (`tests/suite/`) against two blobq nodes on
//! a three-node NATS JetStream cluster on loopback, started once for the
//! whole binary and stopped when it ends. Each case has a NATS account of
//! its own (its nodes log in as its user), so that cases running at the
//! same time never see each other's namespaces, as they would not on a
//! server of their own. Skipped (every case ignored) without
//! `nats-server`, unless `BLOBQ_REQUIRE_NATS=1`.

mod common;
mod nats;
mod suite;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nats::NatsServer;

/// The password of every case's NATS user (a loopback cluster of a test).
const PASSWORD: &str = "suite";
/// JetStream's ack wait on the suite's nodes: short, so that leases
/// longer than it are kept by the nodes' progress beats, and a delivery
/// lost in flight comes back within a case's waits.
const ACK_WAIT: &str = "5";
/// Longest the cluster may take to elect its leaders and take a stream.
const CLUSTER_READY_WITHIN: Duration = Duration::from_secs(60);

/// The NATS user (and account) of case `i`; the last is the warm-up's.
fn user(i: usize) -> String {
    format!("case{i}")
}

/// A server configuration with one JetStream account per case.
fn accounts(cases: usize) -> String {
    let mut text = String::from("accounts {\n");
    for i in 0..=cases {
        let u = user(i);
        writeln!(
            text,
            "  {u}: {{ jetstream: enabled, users: [{{user: {u}, password: {PASSWORD}}}] }}"
        )
        .expect("a string");
    }
    text.push_str("}\n");
    text
}

/// Three clustered servers knowing `cases + 1` accounts, and their URLs
/// joined as `--backend` takes them.
fn cluster(cases: usize, dir: &tempfile::TempDir) -> (Vec<NatsServer>, String) {
    let config = dir.path().join("accounts.conf");
    std::fs::write(&config, accounts(cases)).expect("the accounts file");
    let ports: Vec<(u16, u16)> = (0..3)
        .map(|_| (nats::free_port(), nats::free_port()))
        .collect();
    let servers = (0..3)
        .map(|i| {
            let config = ["-c".to_owned(), config.display().to_string()];
            NatsServer::start_in_cluster_with(i, &ports, &config)
        })
        .collect();
    let urls: Vec<String> = ports
        .iter()
        .map(|(p, _)| format!("nats://127.0.0.1:{p}"))
        .collect();
    (servers, urls.join(","))
}

/// Pushes through a node of the warm-up account until the cluster has
/// elected its leaders and stores a replicated stream.
fn warm_up(backend: &str, cases: usize) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let node = common::options()
            .arg("--backend", backend)
            .arg("--nats-user", user(cases))
            .arg("--nats-password", PASSWORD)
            .start()
            .await;
        let deadline = Instant::now() + CLUSTER_READY_WITHIN;
        loop {
            let status = node.post("/qs/warm/up", "x").await.status();
            if status == 202 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster never took a push (last {status}); log: {:?}",
                node.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

fn main() -> ExitCode {
    let args = libtest_mimic::Arguments::from_args();
    if args.list || !nats::available() {
        return suite::run(&args, suite::Backend::embedded(), true);
    }
    let cases = suite::cases().len();
    let dir = tempfile::tempdir().expect("a config directory");
    let (servers, urls) = cluster(cases, &dir);
    warm_up(&urls, cases);
    let backend = suite::Backend {
        kind: suite::Kind::Nats,
        nodes: Box::new(move |i| {
            let node = || {
                common::options()
                    .arg("--backend", &urls)
                    .arg("--nats-user", user(i))
                    .arg("--nats-password", PASSWORD)
                    .arg("--nats-ack-wait", ACK_WAIT)
            };
            vec![node(), node()]
        }),
    };
    let code = suite::run(&args, backend, false);
    drop(servers);
    code
}

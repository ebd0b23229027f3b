//! One HTTP integration suite for every backend. A case is an async
//! function of a [`Target`]: the blobq node(s) started for it (one on the
//! embedded store; two sharing a NATS cluster, which the case sends its
//! requests to in turn or on purpose) and what that backend is documented
//! to do differently. `tests/suite_embedded.rs` and `tests/suite_nats.rs`
//! run the same [`cases`], each case on nodes of its own; the test harness
//! is libtest-mimic, so that a NATS cluster can be started once for a
//! whole binary and stopped when it ends.

#![allow(dead_code)] // each test binary uses a different part of the harness

/// `case!(function)` or `case!(function, "--flag" => "value", ...)`, in
/// the module of `function`; `case!(function, setup = files, ...)` also
/// has `files` write what the case's nodes read (see [`Case::setup`]).
macro_rules! case {
    ($f:ident $(, $flag:literal => $value:literal)* $(,)?) => {
        case!($f, setup = crate::suite::no_files $(, $flag => $value)*)
    };
    ($f:ident, setup = $setup:path $(, $flag:literal => $value:literal)* $(,)?) => {
        Case {
            name: concat!(module_path!(), "::", stringify!($f)),
            flags: &[$(($flag, $value)),*],
            setup: $setup,
            run: |t| Box::pin($f(t)),
        }
    };
}

mod auth;
mod batch;
mod batch_limits;
mod blobs;
mod blocking;
mod errors;
mod lease_ops;
mod leases;
mod leases_concurrent;
mod lifetimes;
mod purge;
mod queue;
pub mod target;
#[path = "../batch/wire.rs"]
mod wire;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Trial};

use crate::common::{self, TestServer, STEP};
pub use target::{Kind, Target};

/// Longest a case may run before it is declared hung.
const CASE_WITHIN: Duration = Duration::from_secs(180);

/// One case: its name, the flags its nodes are started with, its body.
#[derive(Clone, Copy)]
pub struct Case {
    pub name: &'static str,
    pub flags: &'static [(&'static str, &'static str)],
    /// Writes the files the case's nodes read into the case's own
    /// directory, and answers the flags naming them.
    pub setup: fn(&Path) -> Vec<(&'static str, String)>,
    pub run: fn(Target) -> Pin<Box<dyn Future<Output = ()>>>,
}

/// The setup of a case that needs no files.
pub fn no_files(_: &Path) -> Vec<(&'static str, String)> {
    Vec::new()
}

/// Every case of the suite.
pub fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    all.extend(queue::cases());
    all.extend(blobs::cases());
    all.extend(leases::cases());
    all.extend(leases_concurrent::cases());
    all.extend(lifetimes::cases());
    all.extend(blocking::cases());
    all.extend(batch::cases());
    all.extend(errors::cases());
    all.extend(purge::cases());
    all.extend(auth::cases());
    all
}

/// How the nodes of a case are started on one backend.
pub struct Backend {
    pub kind: Kind,
    /// The command lines of the nodes of case number `i` (before its flags).
    pub nodes: Box<dyn Fn(usize) -> Vec<common::Options> + Send + Sync>,
}

impl Backend {
    /// One blobq on its embedded store.
    pub fn embedded() -> Backend {
        Backend {
            kind: Kind::Embedded,
            nodes: Box::new(|_| vec![common::options()]),
        }
    }
}

/// Runs the cases `args` selects on `backend`; `skip` marks every one
/// ignored instead (no NATS here).
pub fn run(args: &Arguments, backend: Backend, skip: bool) -> ExitCode {
    let backend = std::sync::Arc::new(backend);
    let trials = cases()
        .into_iter()
        .enumerate()
        .map(|(i, case)| {
            let backend = backend.clone();
            let name = case.name.split("::suite::").last().unwrap_or(case.name);
            Trial::test(name, move || {
                run_case(&backend, i, case);
                Ok(())
            })
            .with_ignored_flag(skip)
        })
        .collect();
    libtest_mimic::run(args, trials).exit_code()
}

/// Starts case `i`'s nodes, waits until each is healthy, and runs it.
fn run_case(backend: &Backend, i: usize, case: Case) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let files = tempfile::tempdir().expect("a directory for the case's files");
    let files_flags = (case.setup)(files.path());
    runtime.block_on(async {
        let mut nodes = Vec::new();
        for mut options in (backend.nodes)(i) {
            for (flag, value) in case.flags {
                options = options.arg(flag, value);
            }
            for (flag, value) in &files_flags {
                options = options.arg(flag, value);
            }
            let node = options.start().await;
            healthy(&node).await;
            nodes.push(node);
        }
        let target = Target {
            kind: backend.kind,
            nodes,
            flags: case.flags,
        };
        tokio::time::timeout(CASE_WITHIN, (case.run)(target))
            .await
            .expect("the case finished in time");
    });
}

/// Waits until `node` answers `/healthz` with `200` (a NATS node is
/// connected), failing after [`STEP`].
async fn healthy(node: &TestServer) {
    let deadline = Instant::now() + STEP;
    while node.get("/healthz").await.status() != 200 {
        assert!(
            Instant::now() < deadline,
            "the node never became healthy; log: {:?}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

//! The `make bench` cases that wrk cannot measure, and the queue filler the
//! wrk pop cases need.
//!
//! ```text
//! cargo bench --bench scale -- fill URL --count N --size BYTES [--method M] [--expect STATUS] [--header 'K: V'] [--timeout SECONDS]
//! cargo bench --bench scale -- cases --blobq PATH [--only big,blocked,million,storm]
//! cargo bench --bench scale -- batch QUEUE_URL [--elements 100] [--size 100] [--batches N]
//! cargo bench --bench scale -- jobs --blobq PATH [--only rate,held,polls] [--seconds S] [--held N] [--pollers N]
//! cargo bench --bench scale -- backlog --blobq PATH | --webdis URL [--bytes N] [--size BYTES] [--serve-args ARGS] [--label TEXT]
//! cargo bench --bench scale -- jetstream ready|drop|load --servers URL[,URL...] [...]
//! ```
//!
//! `cases` starts a fresh `blobq` for each case (so each RSS figure is its
//! own) and prints one tab-separated row per result:
//! `target, case, req/s, p50 ms, p99 ms, note`. `jobs` does the same for
//! the jobs API (`jobs.rs`); `jetstream` measures NATS JetStream used
//! directly (`jetstream.rs`). `bench/run.sh` puts them in the table. Cargo runs bench targets under `cargo test --all-targets` too;
//! without the `--bench` flag that `cargo bench` passes, this exits at once.

mod backlog;
mod batch;
mod cases;
mod client;
mod jetstream;
mod jobs;
mod server;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, Error>;

/// Connections of the filler and of the push/pop loads, as wrk's `-c`.
const CONNECTIONS: usize = 64;
/// Longest wait for one answer of a fill or load before the connection is
/// given up and the request retried: a peer that stops reading must fail
/// the run, not hang it. A 1 MiB request takes milliseconds here.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const MIB: u64 = 1 << 20;

/// A common origin for timestamps written into bodies (wake-up latency).
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("scale: skipped (run by `make bench`, through `cargo bench`)");
        return;
    }
    let args: Vec<String> = args.into_iter().filter(|a| a != "--bench").collect();
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let outcome = runtime.block_on(async {
        match args.first().map(String::as_str) {
            Some("fill") => client::fill_command(&args[1..]).await,
            Some("cases") => cases::cases_command(&args[1..]).await,
            Some("batch") => batch::batch_command(&args[1..]).await,
            Some("jobs") => jobs::jobs_command(&args[1..]).await,
            Some("backlog") => backlog::backlog_command(&args[1..]).await,
            Some("jetstream") => jetstream::jetstream_command(&args[1..]).await,
            _ => Err(
                "usage: scale fill URL ... | scale cases --blobq PATH | scale batch URL ... | scale jobs --blobq PATH | scale backlog --blobq PATH | scale jetstream ready|drop|load ..."
                    .into(),
            ),
        }
    });
    if let Err(e) = outcome {
        eprintln!("scale: {e}");
        std::process::exit(1);
    }
}

/// 10 000 consumers need 10 000 descriptors on this side too.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// `--flag value` pairs after the positional arguments.
struct Flags {
    positional: Vec<String>,
    named: HashMap<String, Vec<String>>,
}

impl Flags {
    fn parse(args: &[String]) -> Flags {
        let mut flags = Flags {
            positional: Vec::new(),
            named: HashMap::new(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                let value = it.next().cloned().unwrap_or_default();
                flags.named.entry(name.to_owned()).or_default().push(value);
            } else {
                flags.positional.push(a.clone());
            }
        }
        flags
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.named
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    fn num(&self, name: &str, default: u64) -> Result<u64> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: not a number: {v}").into()),
        }
    }
}

//! The `make bench` cases that wrk cannot measure, and the queue filler the
//! wrk pop cases need.
//!
//! ```text
//! cargo bench --bench scale -- fill URL --count N --size BYTES [--method M] [--expect STATUS] [--header 'K: V'] [--timeout SECONDS]
//! cargo bench --bench scale -- cases --blobq PATH [--only big,blocked,million,storm]
//! ```
//!
//! `cases` starts a fresh `blobq` for each case (so each RSS figure is its
//! own) and prints one tab-separated row per result:
//! `target, case, req/s, p50 ms, p99 ms, note`. `bench/run.sh` puts them in
//! the table. Cargo runs bench targets under `cargo test --all-targets` too;
//! without the `--bench` flag that `cargo bench` passes, this exits at once.

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
            Some("fill") => fill_command(&args[1..]).await,
            Some("cases") => cases_command(&args[1..]).await,
            _ => Err("usage: scale fill URL ... | scale cases --blobq PATH".into()),
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

// ---------------------------------------------------------------- client

/// A request body of `remaining` bytes, sent as clones of one chunk, with an
/// exact size so the request carries `Content-Length`.
struct Repeat {
    chunk: Bytes,
    remaining: u64,
}

impl Repeat {
    fn new(size: u64) -> Repeat {
        Repeat {
            chunk: Bytes::from(vec![b'x'; size.min(MIB) as usize]),
            remaining: size,
        }
    }

    fn bytes(b: Bytes) -> Repeat {
        Repeat {
            remaining: b.len() as u64,
            chunk: b,
        }
    }
}

impl hyper::body::Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64);
        self.remaining -= n;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n as usize)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// One keep-alive HTTP/1 connection.
struct Conn {
    sender: SendRequest<Repeat>,
    host: String,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            sender,
            host: addr.to_string(),
        })
    }

    /// Sends a request and reads the whole answer: status, body size and
    /// the first bytes of the body.
    async fn send(
        &mut self,
        method: &Method,
        path: &str,
        headers: &[(String, String)],
        body: Repeat,
    ) -> Result<Answer> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &self.host);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        self.sender.ready().await?;
        let response = self.sender.send_request(req.body(body)?).await?;
        let status = response.status();
        let mut body = response.into_body();
        let mut answer = Answer {
            status,
            size: 0,
            head: Vec::new(),
        };
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                if answer.head.len() < 64 {
                    let take = (64 - answer.head.len()).min(data.len());
                    answer.head.extend_from_slice(&data[..take]);
                }
                answer.size += data.len() as u64;
            }
        }
        Ok(answer)
    }

    async fn get(&mut self, path: &str) -> Result<Answer> {
        self.send(&Method::GET, path, &[], Repeat::new(0)).await
    }
}

struct Answer {
    status: StatusCode,
    size: u64,
    head: Vec<u8>,
}

impl Answer {
    fn expect(self, status: u16, what: &str) -> Result<Answer> {
        if self.status.as_u16() != status {
            return Err(format!(
                "{what}: expected {status}, got {} ({})",
                self.status,
                String::from_utf8_lossy(&self.head)
            )
            .into());
        }
        Ok(self)
    }
}

/// One number from a JSON answer.
async fn json_number(conn: &mut Conn, path: &str, field: &str) -> Result<u64> {
    let mut req = Request::builder()
        .uri(path)
        .header(http::header::HOST, &conn.host);
    req = req.method(Method::GET);
    conn.sender.ready().await?;
    let response = conn.sender.send_request(req.body(Repeat::new(0))?).await?;
    let body = response.into_body().collect().await?.to_bytes();
    let value: serde_json::Value = serde_json::from_slice(&body)?;
    value[field]
        .as_u64()
        .ok_or_else(|| format!("{path}: no number {field} in {value}").into())
}

// ---------------------------------------------------------------- fill

/// What a filler or load sends, over and over.
#[derive(Clone)]
struct Job {
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    size: u64,
    expect: u16,
    /// Longest wait for one answer ([`REQUEST_TIMEOUT`] unless told).
    timeout: Duration,
}

/// What [`run_count`] measured.
struct Run {
    /// Requests per second.
    rate: f64,
    /// Each request's latency in microseconds, from sending it to its answer.
    latencies: Histogram<u64>,
}

/// Sends `job` `count` times over [`CONNECTIONS`] connections.
async fn run_count(addr: SocketAddr, job: Job, count: u64) -> Result<Run> {
    let left = Arc::new(AtomicU64::new(count));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS.min(count.max(1) as usize) {
        let (job, left) = (job.clone(), left.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Histogram::<u64>::new(3)?;
            let mut conn = Conn::open(addr).await?;
            let chunk = Repeat::new(job.size).chunk;
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                let sent = Instant::now();
                // A connection the server drops (webdis does, under load)
                // or stops reading (webdis did, once, filling 10 KiB
                // values: the run hung for good) is opened again and the
                // request retried, a few times.
                let mut tries = 0;
                let answer = loop {
                    let body = Repeat {
                        chunk: chunk.clone(),
                        remaining: job.size,
                    };
                    let sending = conn.send(&job.method, &job.path, &job.headers, body);
                    let answer = tokio::time::timeout(job.timeout, sending)
                        .await
                        .unwrap_or_else(|_| {
                            Err(format!(
                                "no answer to {} {} within {:?}",
                                job.method, job.path, job.timeout
                            )
                            .into())
                        });
                    match answer {
                        Ok(answer) => break answer,
                        Err(e) if tries < 3 => {
                            tries += 1;
                            eprintln!("scale: {e}; reconnecting");
                            conn = Conn::open(addr).await?;
                        }
                        Err(e) => return Err(e),
                    }
                };
                answer.expect(job.expect, &job.path)?;
                latencies.record(sent.elapsed().as_micros() as u64)?;
            }
            Ok::<_, Error>(latencies)
        }));
    }
    let mut latencies = Histogram::<u64>::new(3)?;
    for t in tasks {
        latencies.add(t.await??)?;
    }
    Ok(Run {
        rate: count as f64 / started.elapsed().as_secs_f64(),
        latencies,
    })
}

fn parse_url(url: &str) -> Result<(SocketAddr, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr = host.parse()?;
    Ok((addr, if path.is_empty() { "/" } else { path }.to_owned()))
}

async fn fill_command(args: &[String]) -> Result<()> {
    let flags = Flags::parse(args);
    let url = flags.positional.first().ok_or("fill: which URL?")?;
    let (addr, path) = parse_url(url)?;
    let headers = flags
        .named
        .get("header")
        .into_iter()
        .flatten()
        .map(|h| {
            let (k, v) = h.split_once(':').unwrap_or((h, ""));
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let job = Job {
        method: flags.get("method").unwrap_or("POST").parse()?,
        path,
        headers,
        size: flags.num("size", 100)?,
        expect: flags.num("expect", 202)? as u16,
        timeout: Duration::from_secs(flags.num("timeout", REQUEST_TIMEOUT.as_secs())?),
    };
    let count = flags.num("count", 1000)?;
    let rate = run_count(addr, job, count).await?.rate;
    eprintln!(
        "filled {count} in {:.1} s ({rate:.0} req/s)",
        count as f64 / rate
    );
    Ok(())
}

// ---------------------------------------------------------------- server

/// A `blobq` started for one case; stopped (SIGTERM, then SIGKILL) on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    _spill: tempfile::TempDir,
}

impl Server {
    fn start(bin: &str, extra: &[&str]) -> Result<Server> {
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
    fn memory(&self, field: &str) -> Result<u64> {
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

// ---------------------------------------------------------------- cases

/// One row of the table.
fn row(case: &str, rate: Option<f64>, p50_ms: Option<f64>, p99_ms: Option<f64>, note: &str) {
    let f = |v: Option<f64>, d: usize| v.map_or("-".to_owned(), |v| format!("{v:.d$}"));
    println!(
        "blobq\t{case}\t{}\t{}\t{}\t{note}",
        f(rate, 0),
        f(p50_ms, 2),
        f(p99_ms, 2)
    );
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

async fn cases_command(args: &[String]) -> Result<()> {
    let flags = Flags::parse(args);
    let bin = flags.get("blobq").ok_or("cases: --blobq PATH")?.to_owned();
    let only = flags.get("only").unwrap_or("big,blocked,million,storm");
    let million = flags.num("million", 1_000_000)?;
    let consumers = flags.num("consumers", 10_000)?;
    let mut push_rate = None;
    for case in only.split(',') {
        eprintln!("scale: case {case}");
        match case {
            "big" => big(&bin, flags.num("big", 1 << 30)?).await?,
            "blocked" => blocked(&bin, consumers, 100).await?,
            "million" => push_rate = Some(queued(&bin, million).await?),
            "storm" => storm(&bin, million, push_rate).await?,
            other => return Err(format!("unknown case {other}").into()),
        }
    }
    Ok(())
}

/// One element of `size` bytes pushed and popped: MB/s each way and peak RSS.
async fn big(bin: &str, size: u64) -> Result<()> {
    let server = Server::start(bin, &[])?;
    let mut conn = Conn::open(server.addr).await?;
    let started = Instant::now();
    conn.send(&Method::POST, "/qs/big/q", &[], Repeat::new(size))
        .await?
        .expect(202, "big push")?;
    let push = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let popped = conn.get("/qs/big/q").await?.expect(200, "big pop")?;
    let pop = started.elapsed().as_secs_f64();
    if popped.size != size {
        return Err(format!("big pop: {} bytes, expected {size}", popped.size).into());
    }
    let peak = server.memory("VmHWM")?;
    let label = format!("{} MiB element", size / MIB);
    for (what, secs) in [("push", push), ("pop", pop)] {
        row(
            &format!("{label} {what}"),
            None,
            None,
            None,
            &format!(
                "{:.0} MB/s ({secs:.2} s); server peak RSS {:.1} MiB",
                size as f64 / 1e6 / secs,
                mib(peak)
            ),
        );
    }
    Ok(())
}

/// `consumers` blocked pops across `queues` queues, then as many pushes:
/// RSS while they wait, and push-sent to pop-answered latency.
async fn blocked(bin: &str, consumers: u64, queues: u64) -> Result<()> {
    let max = (consumers + 1000).to_string();
    let server = Server::start(bin, &["--max-connections", &max])?;
    let addr = server.addr;
    let before = server.memory("VmRSS")?;
    let latencies = Arc::new(std::sync::Mutex::new(Histogram::<u64>::new(3)?));
    let mut tasks = Vec::new();
    // Connect in batches: a burst of 10 000 SYNs overflows the listen backlog.
    let connecting = Arc::new(tokio::sync::Semaphore::new(256));
    for i in 0..consumers {
        let latencies = latencies.clone();
        let connecting = connecting.clone();
        tasks.push(tokio::spawn(async move {
            let permit = connecting.acquire_owned().await?;
            let mut conn = Conn::open(addr).await?;
            drop(permit);
            let answer = conn
                .get(&format!("/qs/wake/q{}?timeout=120", i % queues))
                .await?
                .expect(200, "blocked pop")?;
            let now = EPOCH.elapsed().as_nanos() as u64;
            let sent = std::str::from_utf8(&answer.head)?.trim().parse::<u64>()?;
            latencies
                .lock()
                .map_err(|_| "poisoned")?
                .record(now.saturating_sub(sent) / 1000)?;
            // Kept open until every consumer has its answer, as a consumer
            // that pops again would: the server is not closing 10 000
            // connections while the wake-ups are being measured.
            Ok::<_, Error>(conn)
        }));
    }
    let mut probe = Conn::open(addr).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while json_number(&mut probe, "/qs", "waiting").await? < consumers {
        if Instant::now() > deadline {
            return Err("consumers did not all start waiting within 120 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waiting = server.memory("VmRSS")?;
    // Pushes carry their send time; each consumer subtracts it on arrival.
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut pushers = Vec::new();
    for _ in 0..CONNECTIONS {
        let next = next.clone();
        pushers.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= consumers {
                    return Ok::<_, Error>(());
                }
                let stamp = format!("{:020}", EPOCH.elapsed().as_nanos() as u64);
                conn.send(
                    &Method::POST,
                    &format!("/qs/wake/q{}", i % queues),
                    &[],
                    Repeat::bytes(Bytes::from(stamp)),
                )
                .await?
                .expect(202, "wake push")?;
            }
        }));
    }
    for t in pushers {
        t.await??;
    }
    let mut open = Vec::with_capacity(tasks.len());
    for t in tasks {
        open.push(t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(open);
    let h = latencies.lock().map_err(|_| "poisoned")?;
    row(
        &format!("{consumers} blocked consumers, {queues} queues: wake-up"),
        Some(consumers as f64 / elapsed),
        Some(h.value_at_quantile(0.5) as f64 / 1000.0),
        Some(h.value_at_quantile(0.99) as f64 / 1000.0),
        &format!(
            "server RSS {:.1} MiB while waiting ({:.1} MiB at start; {:.1} KiB per consumer)",
            mib(waiting),
            mib(before),
            (waiting.saturating_sub(before)) as f64 / 1024.0 / consumers as f64
        ),
    );
    Ok(())
}

/// `count` 100-byte elements queued: RSS per element. Returns the push rate.
async fn queued(bin: &str, count: u64) -> Result<f64> {
    let server = Server::start(bin, &[])?;
    let before = server.memory("VmRSS")?;
    let job = Job {
        method: Method::POST,
        path: "/qs/million/q".to_owned(),
        headers: Vec::new(),
        size: 100,
        expect: 202,
        timeout: REQUEST_TIMEOUT,
    };
    let run = run_count(server.addr, job, count).await?;
    let mut probe = Conn::open(server.addr).await?;
    let queued = json_number(&mut probe, "/qs/million/q/stats", "elements").await?;
    if queued != count {
        return Err(format!("{queued} elements queued, expected {count}").into());
    }
    let after = server.memory("VmRSS")?;
    // The queue and the blob table grow all the way: the longest push is
    // what a resize under the namespace's lock costs.
    let ms = |us: u64| us as f64 / 1000.0;
    row(
        &format!("{count} queued 100 B elements"),
        Some(run.rate),
        Some(ms(run.latencies.value_at_quantile(0.5))),
        Some(ms(run.latencies.value_at_quantile(0.99))),
        &format!(
            "server RSS {:.1} MiB (from {:.1}): {:.0} B per element; longest push {:.1} ms",
            mib(after),
            mib(before),
            after.saturating_sub(before) as f64 / count as f64,
            ms(run.latencies.max())
        ),
    );
    Ok(run.rate)
}

/// `count` elements all due within the same second, expiring while a
/// push/pop load runs: the load's throughput during the expiry against the
/// same load afterwards.
async fn storm(bin: &str, count: u64, push_rate: Option<f64>) -> Result<()> {
    let server = Server::start(bin, &[])?;
    let addr = server.addr;
    // Lifetimes are whole seconds from each push, so elements pushed over
    // the fill share a deadline only if each asks for what is left until a
    // common instant: they then all fall due in [due, due + 1 s).
    let rate = push_rate.unwrap_or(20_000.0) * 0.7;
    let fill_secs = count as f64 / rate + 3.0;
    let due = Instant::now() + Duration::from_secs_f64(fill_secs);
    let left = Arc::new(AtomicU64::new(count));
    let mut fillers = Vec::new();
    for _ in 0..CONNECTIONS {
        let left = left.clone();
        fillers.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let chunk = Repeat::new(100).chunk;
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                let secs = due
                    .saturating_duration_since(Instant::now())
                    .as_secs_f64()
                    .ceil()
                    .max(1.0);
                let lifetime = [(
                    "X-QueueServer-Lifetime".to_owned(),
                    format!("{}", secs as u64),
                )];
                conn.send(
                    &Method::POST,
                    "/qs/storm/doomed",
                    &lifetime,
                    Repeat::bytes(chunk.clone()),
                )
                .await?
                .expect(202, "storm fill")?;
            }
            Ok::<_, Error>(())
        }));
    }
    for t in fillers {
        t.await??;
    }
    let late = Instant::now().saturating_duration_since(due);
    if !late.is_zero() {
        eprintln!(
            "scale: storm fill ended {late:?} after the common deadline; the expiry is spread out"
        );
    }
    // The load: each connection pushes then pops, so a pop never finds the
    // queue empty.
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for _ in 0..CONNECTIONS {
        let (done, stop) = (done.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let chunk = Repeat::new(100).chunk;
            while stop.load(Ordering::Relaxed) == 0 {
                conn.send(
                    &Method::POST,
                    "/qs/storm/load",
                    &[],
                    Repeat::bytes(chunk.clone()),
                )
                .await?
                .expect(202, "load push")?;
                conn.get("/qs/storm/load").await?.expect(200, "load pop")?;
                done.fetch_add(2, Ordering::Relaxed);
            }
            Ok::<_, Error>(())
        }));
    }
    // Sample (time, requests done, elements expired) every 50 ms.
    let mut probe = Conn::open(addr).await?;
    let mut samples: Vec<(Instant, u64, u64)> = Vec::new();
    let mut finished_at = None;
    let give_up = Instant::now() + Duration::from_secs(120);
    loop {
        // Server-wide: an emptied idle queue may be dropped, stats and all.
        let expired = json_number(&mut probe, "/qs", "expirations").await?;
        let now = Instant::now();
        samples.push((now, done.load(Ordering::Relaxed), expired));
        if expired >= count && finished_at.is_none() {
            finished_at = Some(now);
        }
        match finished_at {
            Some(t) if now.duration_since(t) > Duration::from_secs(5) => break,
            _ if now > give_up => return Err("the elements did not expire within 120 s".into()),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(1, Ordering::Relaxed);
    for t in load {
        t.await??;
    }
    // Storm: from the last sample before the first expiry to the first
    // sample with all expired. Baseline: the 5 s after it.
    let first = samples.iter().position(|s| s.2 > 0).unwrap_or(0);
    let start = samples[first.saturating_sub(1)];
    let last = samples
        .iter()
        .position(|s| s.2 >= count)
        .ok_or("no sample with all expired")?;
    let end = samples[last];
    let tail = samples[samples.len() - 1];
    let rate = |a: (Instant, u64, u64), b: (Instant, u64, u64)| {
        (b.1 - a.1) as f64 / b.0.duration_since(a.0).as_secs_f64()
    };
    let during = rate(start, end);
    let baseline = rate(end, tail);
    row(
        &format!("{count} elements expiring under push/pop load"),
        Some(during),
        None,
        None,
        &format!(
            "{:.2}x the same load without expiry ({baseline:.0} req/s); expiry took {:.2} s",
            during / baseline,
            end.0.duration_since(start.0).as_secs_f64()
        ),
    );
    Ok(())
}

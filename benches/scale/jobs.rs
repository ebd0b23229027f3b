//! The jobs cases of `make bench` (`scale jobs`), one fresh `blobq` each:
//!
//! - `rate`: 64 clients each running jobs through submit, claim, result and
//!   get, against 64 clients each pushing and popping an element, on the
//!   same server: jobs per second beside push/pop pairs per second.
//! - `held`: many jobs submitted and kept: the server's RSS growth per job
//!   besides its input's bytes.
//! - `polls`: one long poll per job (`?wait=`), each on its own connection,
//!   then workers finishing the jobs: from a result's sending to its long
//!   poll's answer.
//!
//! Rows as the other scale cases print them; `bench/run.sh` judges them.

use super::cases::{mib, row};
use super::*;
use client::*;
use server::*;

/// The input of every job, as for the 100 B element cases.
const INPUT: usize = 100;

/// An answer read whole, with its headers.
struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn expect(self, status: u16, what: &str) -> Result<Reply> {
        if self.status.as_u16() != status {
            let body = String::from_utf8_lossy(&self.body);
            return Err(format!("{what}: expected {status}, got {} ({body})", self.status).into());
        }
        Ok(self)
    }

    fn header(&self, name: &str) -> Result<&str> {
        let value = self.headers.get(name).ok_or_else(|| format!("no {name}"))?;
        Ok(value.to_str()?)
    }

    fn json(&self) -> Result<serde_json::Value> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

/// One request on `conn`, its answer read whole (bounded by
/// [`REQUEST_TIMEOUT`]).
async fn call(
    conn: &mut Conn,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Reply> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, &conn.host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let request = req.body(Repeat::bytes(body))?;
    let exchange = async {
        conn.sender.ready().await?;
        let response = conn.sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok::<_, Error>(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer to {path} within {REQUEST_TIMEOUT:?}"))?
        .map_err(|e| format!("{path}: {e}").into())
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub(crate) async fn jobs_command(args: &[String]) -> Result<()> {
    let flags = Flags::parse(args);
    let bin = flags.get("blobq").ok_or("jobs: --blobq PATH")?.to_owned();
    let only = flags.get("only").unwrap_or("rate,held,polls");
    let seconds = flags.num("seconds", 5)?;
    for case in only.split(',') {
        eprintln!("scale: jobs case {case}");
        match case {
            "rate" => rate(&bin, Duration::from_secs(seconds)).await?,
            "held" => held(&bin, flags.num("held", 100_000)?).await?,
            "polls" => polls(&bin, flags.num("pollers", 10_000)?).await?,
            other => return Err(format!("unknown jobs case {other}").into()),
        }
    }
    Ok(())
}

/// Runs `cycle` on [`CONNECTIONS`] connections for `length`: cycles per
/// second and each cycle's latency in microseconds.
async fn closed_loop<F, Fut>(addr: SocketAddr, length: Duration, cycle: F) -> Result<Run>
where
    F: Fn(Conn) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Conn>> + Send,
{
    let started = Instant::now();
    let end = started + length;
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let cycle = cycle.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Histogram::<u64>::new(3)?;
            let mut conn = Conn::open(addr).await?;
            while Instant::now() < end {
                let sent = Instant::now();
                conn = cycle(conn).await?;
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
        rate: latencies.len() as f64 / started.elapsed().as_secs_f64(),
        latencies,
    })
}

/// Jobs per second through their four requests, against push/pop pairs
/// per second, on one server.
async fn rate(bin: &str, length: Duration) -> Result<()> {
    let server = Server::start(bin, &[])?;
    let input = Bytes::from(vec![b'x'; INPUT]);
    let body = input.clone();
    let pairs = closed_loop(server.addr, length, move |mut conn| {
        let body = body.clone();
        async move {
            call(&mut conn, Method::POST, "/qs/bench/pairs", &[], body)
                .await?
                .expect(202, "push")?;
            call(&mut conn, Method::GET, "/qs/bench/pairs", &[], Bytes::new())
                .await?
                .expect(200, "pop")?;
            Ok(conn)
        }
    })
    .await?;
    let jobs = closed_loop(server.addr, length, move |mut conn| {
        let input = input.clone();
        async move {
            let submitted = call(&mut conn, Method::POST, "/jobs/bench/work", &[], input)
                .await?
                .expect(202, "submit")?;
            let own = submitted.json()?["id"].as_str().ok_or("no id")?.to_owned();
            let claimed = call(
                &mut conn,
                Method::POST,
                "/jobs/bench/work/claim",
                &[],
                Bytes::new(),
            )
            .await?
            .expect(200, "claim")?;
            // Another client's job, maybe: workers take the oldest.
            let id = claimed.header("x-job-id")?.to_owned();
            let lease = claimed.header("x-queueserver-lease")?.to_owned();
            let path = format!("/jobs/bench/work/{id}/result");
            let lease = [("x-queueserver-lease", lease.as_str())];
            call(
                &mut conn,
                Method::PUT,
                &path,
                &lease,
                Bytes::from_static(b"done"),
            )
            .await?
            .expect(200, "result")?;
            let path = format!("/jobs/bench/work/{own}");
            call(&mut conn, Method::GET, &path, &[], Bytes::new())
                .await?
                .expect(200, "get")?;
            Ok(conn)
        }
    })
    .await?;
    let pair_row = "jobs: push and pop pairs, 100 B, 64 clients";
    row(
        pair_row,
        Some(pairs.rate),
        Some(ms(pairs.latencies.value_at_quantile(0.5))),
        Some(ms(pairs.latencies.value_at_quantile(0.99))),
        "pairs per second; latency of a pair",
    );
    row(
        "jobs: submit, claim, result and get, 100 B, 64 clients",
        Some(jobs.rate),
        Some(ms(jobs.latencies.value_at_quantile(0.5))),
        Some(ms(jobs.latencies.value_at_quantile(0.99))),
        &format!(
            "jobs per second ({:.2}x the pairs of \"{pair_row}\", same server); latency of all four",
            jobs.rate / pairs.rate
        ),
    );
    Ok(())
}

/// `count` jobs of 100 B submitted and kept: RSS per job.
async fn held(bin: &str, count: u64) -> Result<()> {
    let server = Server::start(bin, &[])?;
    let mut probe = Conn::open(server.addr).await?;
    // The first job makes the namespace and the queue.
    call(
        &mut probe,
        Method::POST,
        "/jobs/bench/held",
        &[],
        Bytes::from_static(b"x"),
    )
    .await?
    .expect(202, "first submit")?;
    let before = server.memory("VmRSS")?;
    let submit = Job {
        method: Method::POST,
        path: "/jobs/bench/held".to_owned(),
        headers: Vec::new(),
        size: INPUT as u64,
        expect: 202,
        timeout: REQUEST_TIMEOUT,
    };
    let run = run_count(server.addr, submit, count).await?;
    let counts = call(&mut probe, Method::GET, "/jobs/bench", &[], Bytes::new())
        .await?
        .expect(200, "counts")?
        .json()?;
    let pending = counts["queues"]["held"]["pending"].as_u64().unwrap_or(0);
    if pending != count + 1 {
        return Err(format!("{pending} jobs pending, expected {}", count + 1).into());
    }
    let after = server.memory("VmRSS")?;
    let per_job = after.saturating_sub(before) as f64 / count as f64 - INPUT as f64;
    row(
        &format!("jobs: {count} held"),
        Some(run.rate),
        Some(ms(run.latencies.value_at_quantile(0.5))),
        Some(ms(run.latencies.value_at_quantile(0.99))),
        &format!(
            "submits per second; server RSS {:.1} MiB (from {:.1}): {per_job:.0} B per job besides its {INPUT} B input",
            mib(after),
            mib(before),
        ),
    );
    Ok(())
}

/// `pollers` jobs, each long-polled on its own connection, then finished
/// by 64 workers: from each result's sending to its poll's answer.
async fn polls(bin: &str, pollers: u64) -> Result<()> {
    let max = (pollers + 1000).to_string();
    let server = Server::start(bin, &["--max-connections", &max])?;
    let addr = server.addr;
    let before = server.memory("VmRSS")?;
    // Submit the jobs; each input is its index, for the worker to report.
    let ids = Arc::new(std::sync::Mutex::new(vec![String::new(); pollers as usize]));
    let next = Arc::new(AtomicU64::new(0));
    let mut submitters = Vec::new();
    for _ in 0..CONNECTIONS {
        let (ids, next) = (ids.clone(), next.clone());
        submitters.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= pollers {
                    return Ok::<_, Error>(());
                }
                let reply = call(
                    &mut conn,
                    Method::POST,
                    "/jobs/bench/polled",
                    &[],
                    Bytes::from(i.to_string()),
                )
                .await?
                .expect(202, "submit")?;
                let id = reply.json()?["id"].as_str().ok_or("no id")?.to_owned();
                ids.lock().map_err(|_| "poisoned")?[i as usize] = id;
            }
        }));
    }
    for t in submitters {
        t.await??;
    }
    let ids = Arc::new(std::mem::take(&mut *ids.lock().map_err(|_| "poisoned")?));
    // When each job's result was sent, in nanoseconds since EPOCH.
    let finished: Arc<Vec<AtomicU64>> = Arc::new((0..pollers).map(|_| AtomicU64::new(0)).collect());
    let latencies = Arc::new(std::sync::Mutex::new(Histogram::<u64>::new(3)?));
    let asking = Arc::new(AtomicU64::new(0));
    let connecting = Arc::new(tokio::sync::Semaphore::new(256));
    let mut waiting = Vec::new();
    for i in 0..pollers as usize {
        let (ids, finished, latencies) = (ids.clone(), finished.clone(), latencies.clone());
        let (asking, connecting) = (asking.clone(), connecting.clone());
        waiting.push(tokio::spawn(async move {
            let permit = connecting.acquire_owned().await?;
            let mut conn = Conn::open(addr).await?;
            drop(permit);
            asking.fetch_add(1, Ordering::Relaxed);
            let path = format!("/jobs/bench/polled/{}?wait=120", ids[i]);
            let reply = call(&mut conn, Method::GET, &path, &[], Bytes::new())
                .await?
                .expect(200, "long poll")?;
            let now = EPOCH.elapsed().as_nanos() as u64;
            if reply.json()?["state"] != "succeeded" {
                return Err(format!(
                    "a long poll answered before its job finished: {:?}",
                    reply.body
                )
                .into());
            }
            let sent = finished[i].load(Ordering::Relaxed);
            latencies
                .lock()
                .map_err(|_| "poisoned")?
                .record(now.saturating_sub(sent) / 1000)?;
            // Kept open until every poll has its answer.
            Ok::<_, Error>(conn)
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while asking.load(Ordering::Relaxed) < pollers {
        if Instant::now() > deadline {
            return Err("the long polls did not all connect within 120 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // No statistic counts long polls: give the last requests time to land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let polling = server.memory("VmRSS")?;
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONNECTIONS {
        let finished = finished.clone();
        workers.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            loop {
                let claimed = call(
                    &mut conn,
                    Method::POST,
                    "/jobs/bench/polled/claim",
                    &[],
                    Bytes::new(),
                )
                .await?;
                if claimed.status == StatusCode::NO_CONTENT {
                    return Ok::<_, Error>(());
                }
                let claimed = claimed.expect(200, "claim")?;
                let i: usize = std::str::from_utf8(&claimed.body)?.parse()?;
                let id = claimed.header("x-job-id")?.to_owned();
                let lease = claimed.header("x-queueserver-lease")?.to_owned();
                let path = format!("/jobs/bench/polled/{id}/result");
                let lease = [("x-queueserver-lease", lease.as_str())];
                finished[i].store(EPOCH.elapsed().as_nanos() as u64, Ordering::Relaxed);
                call(
                    &mut conn,
                    Method::PUT,
                    &path,
                    &lease,
                    Bytes::from_static(b"done"),
                )
                .await?
                .expect(200, "result")?;
            }
        }));
    }
    for t in workers {
        t.await??;
    }
    let mut open = Vec::with_capacity(waiting.len());
    for t in waiting {
        open.push(t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(open);
    let h = latencies.lock().map_err(|_| "poisoned")?;
    row(
        &format!("jobs: {pollers} clients long-polling one job each: wake-up"),
        Some(pollers as f64 / elapsed),
        Some(h.value_at_quantile(0.5) as f64 / 1000.0),
        Some(h.value_at_quantile(0.99) as f64 / 1000.0),
        &format!(
            "jobs finished per second; from a result's sending to its poll's answer; server RSS {:.1} MiB while polling ({:.1} MiB at start)",
            mib(polling),
            mib(before)
        ),
    );
    Ok(())
}

//! The scale cases: a huge element, many blocked consumers, a million
//! queued elements, an expiry storm; one table row per result.

use super::*;
use client::*;
use server::*;

/// One row of the table.
pub(crate) fn row(
    case: &str,
    rate: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    note: &str,
) {
    let f = |v: Option<f64>, d: usize| v.map_or("-".to_owned(), |v| format!("{v:.d$}"));
    println!(
        "blobq\t{case}\t{}\t{}\t{}\t{note}",
        f(rate, 0),
        f(p50_ms, 2),
        f(p99_ms, 2)
    );
}

pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

pub(crate) async fn cases_command(args: &[String]) -> Result<()> {
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
pub(crate) async fn big(bin: &str, size: u64) -> Result<()> {
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
pub(crate) async fn blocked(bin: &str, consumers: u64, queues: u64) -> Result<()> {
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
pub(crate) async fn queued(bin: &str, count: u64) -> Result<f64> {
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
pub(crate) async fn storm(bin: &str, count: u64, push_rate: Option<f64>) -> Result<()> {
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

//! `scale batch`: batch pushes, then batch pops, over [`CONNECTIONS`]
//! keep-alive connections; one row each, in elements per second (wrk
//! counts requests, and cannot tell how many elements a pop carried).
//!
//! ```text
//! cargo bench --bench scale -- batch http://HOST:PORT/qs/NS/QUEUE [--elements 100] [--size 100] [--batches 20000]
//! ```
//!
//! The push phase sends `--batches` batches of `--elements` elements of
//! `--size` bytes; the pop phase pops that many batches back with
//! `?count=` the batch size, so every pop finds a whole batch ready and
//! the queue ends empty (checked).

use super::*;
use cases::row;
use client::{json_number, parse_url, Conn, Repeat};

const BOUNDARY: &str = "scale-batch-7d2f";

/// A batch of `elements` bodies of `size` bytes, as `multipart/mixed`.
fn batch_body(elements: u64, size: u64) -> Bytes {
    let mut body = Vec::new();
    for _ in 0..elements {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n\r\n").as_bytes());
        body.extend(std::iter::repeat_n(b'x', size as usize));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    Bytes::from(body)
}

/// Sends `count` requests of one kind over [`CONNECTIONS`] connections,
/// each answered `expect`; requests per second and latencies.
async fn run(
    addr: SocketAddr,
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Bytes,
    expect: u16,
    count: u64,
) -> Result<client::Run> {
    let left = Arc::new(AtomicU64::new(count));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS.min(count.max(1) as usize) {
        let (method, path, headers, body, left) = (
            method.clone(),
            path.clone(),
            headers.clone(),
            body.clone(),
            left.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Histogram::<u64>::new(3)?;
            let mut conn = Conn::open(addr).await?;
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                let sent = Instant::now();
                let sending = conn.send(&method, &path, &headers, Repeat::bytes(body.clone()));
                let answer = tokio::time::timeout(REQUEST_TIMEOUT, sending)
                    .await
                    .map_err(|_| format!("no answer to {method} {path}"))??;
                answer.expect(expect, &path)?;
                latencies.record(sent.elapsed().as_micros() as u64)?;
            }
            Ok::<_, Error>(latencies)
        }));
    }
    let mut latencies = Histogram::<u64>::new(3)?;
    for t in tasks {
        latencies.add(t.await??)?;
    }
    Ok(client::Run {
        rate: count as f64 / started.elapsed().as_secs_f64(),
        latencies,
    })
}

pub(crate) async fn batch_command(args: &[String]) -> Result<()> {
    let flags = Flags::parse(args);
    let url = flags.positional.first().ok_or("batch: which queue URL?")?;
    let (addr, path) = parse_url(url)?;
    let elements = flags.num("elements", 100)?;
    let size = flags.num("size", 100)?;
    let batches = flags.num("batches", 20_000)?;
    let case = format!("batch {elements} × {size} B");
    let ms = |run: &client::Run, q: f64| run.latencies.value_at_quantile(q) as f64 / 1000.0;
    let note =
        format!("elements/s; {batches} requests of {elements} elements, {CONNECTIONS} connections");

    let content_type = format!("multipart/mixed; boundary={BOUNDARY}");
    let headers = vec![("content-type".to_owned(), content_type)];
    let body = batch_body(elements, size);
    let push = run(
        addr,
        Method::POST,
        format!("{path}/batch"),
        headers,
        body,
        202,
        batches,
    )
    .await?;
    let rate = push.rate * elements as f64;
    row(
        &format!("{case} push"),
        Some(rate),
        Some(ms(&push, 0.5)),
        Some(ms(&push, 0.99)),
        &note,
    );

    let pop_path = format!("{path}?count={elements}");
    let pop = run(
        addr,
        Method::GET,
        pop_path,
        Vec::new(),
        Bytes::new(),
        200,
        batches,
    )
    .await?;
    let rate = pop.rate * elements as f64;
    row(
        &format!("{case} pop"),
        Some(rate),
        Some(ms(&pop, 0.5)),
        Some(ms(&pop, 0.99)),
        &note,
    );

    let mut conn = Conn::open(addr).await?;
    let stats = format!("{path}/stats");
    let (left, popped) = (
        json_number(&mut conn, &stats, "elements").await?,
        json_number(&mut conn, &stats, "popped").await?,
    );
    if left != 0 || popped != batches * elements {
        return Err(format!(
            "batch: {popped} popped and {left} left, not all {} pushed",
            batches * elements
        )
        .into());
    }
    Ok(())
}

//! `scale backlog`: a backlog larger than blobq's memory budget, pushed and
//! then popped over [`CONNECTIONS`] connections: push and pop rates and
//! latencies, the server's peak RSS, and what its spill folder still takes
//! on disk once the backlog is drained. The same against webdis+redis (the
//! peer, which holds it all in memory) with `--webdis URL`.
//!
//! ```text
//! cargo bench --bench scale -- backlog --blobq PATH [--bytes 4294967296] [--size 10240] [--serve-args "--memory-limit 0"] [--label ", --memory-limit 0"]
//! cargo bench --bench scale -- backlog --webdis http://HOST:PORT [--bytes N] [--size N]
//! ```
//!
//! Rows `backlog SIZE push` and `backlog SIZE pop` (with `--label` after
//! them), target blobq; `bench/run.sh` relabels the peer's.

use super::*;
use cases::{mib, row};
use client::*;
use server::*;

pub(crate) async fn backlog_command(args: &[String]) -> Result<()> {
    let flags = Flags::parse(args);
    let bytes = flags.num("bytes", 4 << 30)?;
    let size = flags.num("size", 10 * 1024)?.max(1);
    let count = bytes.div_ceil(size);
    let label = flags.get("label").unwrap_or("");
    let kib = if size % 1024 == 0 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    };
    let push_case = format!("backlog {kib} push{label}");
    let pop_case = format!("backlog {kib} pop{label}");
    let queued = format!("{:.0} MiB queued", mib(count * size));

    if let Some(url) = flags.get("webdis") {
        let (addr, _) = parse_url(url)?;
        let key = format!("backlog{size}");
        let push = push_job(format!("/LPUSH/{key}"), Method::PUT, size, 200);
        let pop = pop_job(format!("/RPOP/{key}.txt"));
        let (pushed, popped) = push_then_pop(addr, push, pop, count).await?;
        report(&push_case, &pushed, &queued);
        report(&pop_case, &popped, &queued);
        return Ok(());
    }

    let bin = flags
        .get("blobq")
        .ok_or("backlog: --blobq PATH or --webdis URL")?;
    let extra: Vec<&str> = flags
        .get("serve-args")
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let server = Server::start(bin, &extra)?;
    let path = "/qs/backlog/q".to_owned();
    let push = push_job(path.clone(), Method::POST, size, 202);
    let pop = pop_job(path.clone());
    let (pushed, popped) = push_then_pop(server.addr, push, pop, count).await?;
    let mut probe = Conn::open(server.addr).await?;
    let left = json_number(&mut probe, &format!("{path}/stats"), "elements").await?;
    if left != 0 {
        return Err(format!("backlog: {left} elements left after popping all {count}").into());
    }
    let note = format!(
        "{queued}; peak RSS {:.0} MiB; disk after draining {:.1} MiB",
        mib(server.memory("VmHWM")?),
        mib(disk_use(server._spill.path()))
    );
    report(&push_case, &pushed, &note);
    report(&pop_case, &popped, &note);
    Ok(())
}

fn push_job(path: String, method: Method, size: u64, expect: u16) -> Job {
    Job {
        method,
        path,
        headers: Vec::new(),
        size,
        expect,
        timeout: REQUEST_TIMEOUT,
    }
}

fn pop_job(path: String) -> Job {
    Job {
        method: Method::GET,
        path,
        headers: Vec::new(),
        size: 0,
        expect: 200,
        timeout: REQUEST_TIMEOUT,
    }
}

/// `count` pushes, then as many pops: every pop finds an element.
async fn push_then_pop(addr: SocketAddr, push: Job, pop: Job, count: u64) -> Result<(Run, Run)> {
    eprintln!("scale: backlog: {count} pushes");
    let pushed = run_count(addr, push, count).await?;
    eprintln!("scale: backlog: {count} pops");
    let popped = run_count(addr, pop, count).await?;
    Ok((pushed, popped))
}

fn report(case: &str, run: &Run, note: &str) {
    let ms = |q: f64| run.latencies.value_at_quantile(q) as f64 / 1000.0;
    row(case, Some(run.rate), Some(ms(0.5)), Some(ms(0.99)), note);
}

/// Bytes of the files below `dir`.
fn disk_use(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_use(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

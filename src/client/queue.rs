//! The queue subcommands: push, pop, the lease calls, tail and purge.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use reqwest::{Method, StatusCode};

use super::conn::{json_of, ClientError, Conn};
use super::output::{self, Element};
use super::{queue_path, Done};

/// A queue, as `NS/QUEUE`.
#[derive(Args, Debug)]
pub struct QueueArg {
    /// The queue, as NS/QUEUE
    #[arg(value_name = "NS/QUEUE")]
    pub queue: String,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// The queue, as NS/QUEUE
    #[arg(value_name = "NS/QUEUE")]
    pub queue: String,
    /// The file to push; `-` or none reads stdin
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The element's content type
    #[arg(long, short = 't', value_name = "TYPE")]
    pub content_type: Option<String>,
    /// A custom pair carried with the element (repeatable)
    #[arg(long = "data", short = 'd', value_name = "KEY=VALUE")]
    pub data: Vec<String>,
    /// Seconds the element may wait in its queue
    #[arg(long, short = 'l', value_name = "S")]
    pub lifetime: Option<u64>,
}

#[derive(Args, Debug)]
pub struct PopArgs {
    /// The queue, as NS/QUEUE
    #[arg(value_name = "NS/QUEUE")]
    pub queue: String,
    /// Write the body to FILE instead of stdout
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Wait up to S seconds for an element
    #[arg(long, short = 'w', value_name = "S", default_value = "0")]
    pub wait: f64,
    /// Pop under a lease of S seconds (acknowledge with `blobq ack`)
    #[arg(long, value_name = "S")]
    pub lease: Option<u64>,
    /// Pop the headers only; the blob stays readable by id
    #[arg(long)]
    pub header_only: bool,
}

#[derive(Args, Debug)]
pub struct LeaseArgs {
    /// The queue, as NS/QUEUE
    #[arg(value_name = "NS/QUEUE")]
    pub queue: String,
    /// The lease's receipt (X-QueueServer-Lease of the pop)
    pub receipt: String,
}

#[derive(Args, Debug)]
pub struct ExtendArgs {
    #[command(flatten)]
    pub lease: LeaseArgs,
    /// The lease's new length, in seconds from now
    #[arg(long, value_name = "S")]
    pub by: u64,
}

#[derive(Args, Debug)]
pub struct TailArgs {
    /// The queue, as NS/QUEUE
    #[arg(value_name = "NS/QUEUE")]
    pub queue: String,
    /// Each element's lease while it is printed, in seconds
    #[arg(long, value_name = "S", default_value_t = 30)]
    pub lease: u64,
    /// Stop after N elements
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,
    /// Stop once the queue has been empty for S seconds
    #[arg(long, value_name = "S")]
    pub idle_exit: Option<u64>,
}

/// How long one blocking pop of `tail` waits before it asks again.
const TAIL_POLL: Duration = Duration::from_secs(20);

pub async fn push(conn: &Conn, a: PushArgs) -> Result<Done, ClientError> {
    let path = queue_path(&a.queue)?;
    let mut request = conn.request(Method::POST, &path, Duration::ZERO);
    request = output::with_push_headers(request, a.content_type.as_deref(), &a.data, a.lifetime)?;
    let request = output::with_body(request, a.file.as_deref()).await?;
    let answer = conn.send(request, &[StatusCode::ACCEPTED]).await?;
    let body: serde_json::Value = json_of(answer, "the push answer").await?;
    if conn.json {
        output::print_json(&body);
    } else {
        println!("{}", body["id"].as_str().unwrap_or_default());
    }
    Ok(Done::Ok)
}

/// The query of a pop.
fn pop_query(wait: f64, lease: Option<u64>, header_only: bool) -> Result<String, ClientError> {
    if !(wait.is_finite() && wait >= 0.0) {
        return Err(ClientError::Usage(format!(
            "--wait {wait} is not a number of seconds"
        )));
    }
    let mut query = format!("?timeout={wait}");
    if let Some(s) = lease {
        query.push_str(&format!("&lease={s}"));
    }
    if header_only {
        query.push_str("&header_only=1");
    }
    Ok(query)
}

pub async fn pop(conn: &Conn, a: PopArgs) -> Result<Done, ClientError> {
    let path = queue_path(&a.queue)?;
    let query = pop_query(a.wait, a.lease, a.header_only)?;
    let wait = Duration::from_secs_f64(a.wait);
    let request = conn.request(Method::GET, &format!("{path}{query}"), wait);
    let answer = conn
        .send(request, &[StatusCode::OK, StatusCode::NO_CONTENT])
        .await?;
    if answer.status() == StatusCode::NO_CONTENT {
        return Ok(Done::Empty);
    }
    let element = Element::from_headers(answer.headers());
    match (conn.json, a.output.as_deref()) {
        (true, None) => {
            let body = answer
                .bytes()
                .await
                .map_err(|e| ClientError::io("the body was cut off", std::io::Error::other(e)))?;
            let body = (!a.header_only).then_some(&body[..]);
            output::print_json(&element.to_json(body));
        }
        (true, Some(file)) => {
            output::write_body(answer, Some(file)).await?;
            output::print_json(&element.to_json(None));
        }
        (false, file) => {
            element.print_human();
            output::write_body(answer, file).await?;
        }
    }
    Ok(Done::Ok)
}

fn lease_path(a: &LeaseArgs, action: &str) -> Result<String, ClientError> {
    Ok(format!(
        "{}/leases/{}{action}",
        queue_path(&a.queue)?,
        a.receipt
    ))
}

pub async fn ack(conn: &Conn, a: LeaseArgs) -> Result<Done, ClientError> {
    let request = conn.request(Method::DELETE, &lease_path(&a, "")?, Duration::ZERO);
    conn.send(request, &[StatusCode::NO_CONTENT]).await?;
    Ok(Done::Ok)
}

pub async fn release(conn: &Conn, a: LeaseArgs) -> Result<Done, ClientError> {
    let request = conn.request(Method::POST, &lease_path(&a, "/release")?, Duration::ZERO);
    conn.send(request, &[StatusCode::NO_CONTENT]).await?;
    Ok(Done::Ok)
}

pub async fn extend(conn: &Conn, a: ExtendArgs) -> Result<Done, ClientError> {
    let path = format!("{}?lease={}", lease_path(&a.lease, "/extend")?, a.by);
    let request = conn.request(Method::POST, &path, Duration::ZERO);
    let answer = conn.send(request, &[StatusCode::OK]).await?;
    let body: serde_json::Value = json_of(answer, "the extend answer").await?;
    if conn.json {
        output::print_json(&body);
    } else {
        println!("{} s left", body["lease"]);
    }
    Ok(Done::Ok)
}

pub async fn purge(conn: &Conn, a: QueueArg) -> Result<Done, ClientError> {
    let request = conn.request(Method::DELETE, &queue_path(&a.queue)?, Duration::ZERO);
    let answer = conn.send(request, &[StatusCode::OK]).await?;
    let body: serde_json::Value = json_of(answer, "the purge answer").await?;
    if conn.json {
        output::print_json(&body);
    } else {
        println!("{} purged", body["purged"]);
    }
    Ok(Done::Ok)
}

/// Pops in a loop under a lease, prints each element (its body on a line
/// of its own for people, one JSON object per line with `--json`), and
/// acknowledges it once printed: an element is lost only if it was shown.
pub async fn tail(conn: &Conn, a: TailArgs) -> Result<Done, ClientError> {
    let path = queue_path(&a.queue)?;
    let poll = a
        .idle_exit
        .map_or(TAIL_POLL, |s| TAIL_POLL.min(Duration::from_secs(s)));
    let query = pop_query(poll.as_secs_f64(), Some(a.lease), false)?;
    let mut shown = 0;
    let mut idle_since = tokio::time::Instant::now();
    while a.count.is_none_or(|n| shown < n) {
        let request = conn.request(Method::GET, &format!("{path}{query}"), poll);
        let answer = conn
            .send(request, &[StatusCode::OK, StatusCode::NO_CONTENT])
            .await?;
        if answer.status() == StatusCode::NO_CONTENT {
            let idle_for = idle_since.elapsed();
            if a.idle_exit
                .is_some_and(|s| idle_for >= Duration::from_secs(s))
            {
                break;
            }
            continue;
        }
        let element = Element::from_headers(answer.headers());
        let body = answer
            .bytes()
            .await
            .map_err(|e| ClientError::io("the body was cut off", std::io::Error::other(e)))?;
        if conn.json {
            output::print_json(&element.to_json(Some(&body)));
        } else {
            println!("{}", String::from_utf8_lossy(&body));
        }
        if let Some(receipt) = element.lease {
            let lease = LeaseArgs {
                queue: a.queue.clone(),
                receipt,
            };
            ack(conn, lease).await?;
        }
        shown += 1;
        idle_since = tokio::time::Instant::now();
    }
    Ok(if shown == 0 { Done::Empty } else { Done::Ok })
}

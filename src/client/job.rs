//! `blobq job submit|get|wait|result|cancel|list|log|rm`: the client's side
//! of the jobs API (docs/JOBS.md) from a shell.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::conn::{json_of, ClientError, Conn};
use super::output::{self, Element};
use super::{job_queue_path, Done};

#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// Submit a file (or stdin) as a job's input; prints the job's id
    Submit(SubmitArgs),
    /// Show a job
    Get(JobArgs),
    /// Wait for a job to finish, drawing its progress on a terminal; exit
    /// status 0 if it succeeded, 1 if it failed or was cancelled
    Wait(WaitArgs),
    /// Write a succeeded job's result to stdout or -o FILE (its status and
    /// content type on stderr)
    Result(ResultArgs),
    /// Cancel a pending or running job
    Cancel(JobArgs),
    /// List the jobs of NS/QUEUE, oldest first (every page)
    List(ListArgs),
    /// Show a job's progress log
    Log(JobArgs),
    /// Remove a finished job with its input and result
    Rm(JobArgs),
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// The job queue, as NS/QUEUE
    #[arg(value_name = "NS/QUEUE")]
    pub queue: String,
    /// The input file; `-` or none reads stdin
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The input's content type
    #[arg(long, short = 't', value_name = "TYPE")]
    pub content_type: Option<String>,
    /// A metadata pair handed to the worker (repeatable)
    #[arg(long = "data", short = 'd', value_name = "KEY=VALUE")]
    pub data: Vec<String>,
    /// Seconds the job may wait pending
    #[arg(long, short = 'l', value_name = "S")]
    pub lifetime: Option<u64>,
    /// How many times a worker may claim it
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,
    /// Seconds the job is kept once finished
    #[arg(long, value_name = "S")]
    pub retention: Option<u64>,
    /// A second submit with the same key answers with the first job
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

/// A job, as `NS/QUEUE ID`.
#[derive(Args, Debug)]
pub struct JobArgs {
    /// The job queue, as NS/QUEUE
    #[arg(value_name = "NS/QUEUE")]
    pub queue: String,
    /// The job's id
    pub id: String,
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// Give up after S seconds (exit status 3 if the job is still not done)
    #[arg(long, value_name = "S")]
    pub timeout: Option<u64>,
}

#[derive(Args, Debug)]
pub struct ResultArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// Write the result to FILE instead of stdout
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// The job queue, as NS/QUEUE
    #[arg(value_name = "NS/QUEUE")]
    pub queue: String,
    /// Only jobs in this state
    #[arg(long, value_name = "STATE", value_parser = ["pending", "running", "succeeded", "failed", "cancelled"])]
    pub state: Option<String>,
}

/// The longest one long poll of `job wait` asks the server to hold.
const WAIT_POLL: Duration = Duration::from_secs(30);
/// Jobs asked for per page of `job list` (the server's most).
const LIST_PAGE: u32 = 1000;

pub async fn run(conn: &Conn, command: JobCommand) -> Result<Done, ClientError> {
    match command {
        JobCommand::Submit(a) => submit(conn, a).await,
        JobCommand::Get(a) => get(conn, a).await,
        JobCommand::Wait(a) => wait(conn, a).await,
        JobCommand::Result(a) => result(conn, a).await,
        JobCommand::Cancel(a) => cancel(conn, a).await,
        JobCommand::List(a) => list(conn, a).await,
        JobCommand::Log(a) => log(conn, a).await,
        JobCommand::Rm(a) => remove(conn, a).await,
    }
}

fn job_path(a: &JobArgs, tail: &str) -> Result<String, ClientError> {
    if a.id.is_empty() || a.id.contains(['/', '?', '#']) {
        return Err(ClientError::Usage(format!("{:?} is not a job id", a.id)));
    }
    Ok(format!("{}/{}{tail}", job_queue_path(&a.queue)?, a.id))
}

async fn submit(conn: &Conn, a: SubmitArgs) -> Result<Done, ClientError> {
    let path = job_queue_path(&a.queue)?;
    let mut request = conn.request(Method::POST, &path, Duration::ZERO);
    request = output::with_push_headers(request, a.content_type.as_deref(), &a.data, a.lifetime)?;
    if let Some(n) = a.max_attempts {
        request = request.header("x-job-max-attempts", n);
    }
    if let Some(s) = a.retention {
        request = request.header("x-job-retention", s);
    }
    if let Some(key) = &a.idempotency_key {
        request = request.header("idempotency-key", key);
    }
    let request = output::with_body(request, a.file.as_deref()).await?;
    let answer = conn
        .send(request, &[StatusCode::ACCEPTED, StatusCode::OK])
        .await?;
    let job = json_of(answer, "the submit answer").await?;
    if conn.json {
        output::print_json(&job);
    } else {
        println!("{}", job["id"].as_str().unwrap_or_default());
    }
    Ok(Done::Ok)
}

async fn get(conn: &Conn, a: JobArgs) -> Result<Done, ClientError> {
    let request = conn.request(Method::GET, &job_path(&a, "")?, Duration::ZERO);
    let answer = conn.send(request, &[StatusCode::OK]).await?;
    print_job(conn, &json_of(answer, "the job").await?);
    Ok(Done::Ok)
}

async fn cancel(conn: &Conn, a: JobArgs) -> Result<Done, ClientError> {
    let request = conn.request(Method::POST, &job_path(&a, "/cancel")?, Duration::ZERO);
    let answer = conn.send(request, &[StatusCode::OK]).await?;
    print_job(conn, &json_of(answer, "the cancel answer").await?);
    Ok(Done::Ok)
}

async fn remove(conn: &Conn, a: JobArgs) -> Result<Done, ClientError> {
    let request = conn.request(Method::DELETE, &job_path(&a, "")?, Duration::ZERO);
    conn.send(request, &[StatusCode::NO_CONTENT]).await?;
    Ok(Done::Ok)
}

/// Long-polls the job until it is done: each poll names the version it has
/// (`If-None-Match`), so the server answers at the job's next change and
/// the bar moves as the worker reports.
async fn wait(conn: &Conn, a: WaitArgs) -> Result<Done, ClientError> {
    let path = job_path(&a.job, "")?;
    let deadline = a
        .timeout
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let bar = job_bar();
    let mut version: Option<String> = None;
    let mut job = Value::Null;
    loop {
        let left = deadline.map_or(WAIT_POLL, |d| {
            d.saturating_duration_since(tokio::time::Instant::now())
        });
        if left.is_zero() {
            bar.finish_and_clear();
            if conn.json {
                output::print_json(&job);
            }
            eprintln!(
                "blobq: job {} is still {}",
                a.job.id,
                job["state"].as_str().unwrap_or("unknown")
            );
            return Ok(Done::Empty);
        }
        // The first request reads the job as it is; then each waits for a
        // change from the version read (`?wait=` alone would wait for the
        // job's end, missing its progress). Whole seconds, at least one.
        let poll = left.min(WAIT_POLL).as_secs().max(1);
        let request = match &version {
            None => conn.request(Method::GET, &path, Duration::ZERO),
            Some(tag) => conn
                .request(
                    Method::GET,
                    &format!("{path}?wait={poll}"),
                    Duration::from_secs(poll),
                )
                .header("if-none-match", tag),
        };
        let answer = conn
            .send(request, &[StatusCode::OK, StatusCode::NOT_MODIFIED])
            .await?;
        if answer.status() == StatusCode::NOT_MODIFIED {
            continue;
        }
        version = answer
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let seen = (job["progress"].clone(), job["message"].clone());
        job = json_of(answer, "the job").await?;
        let progress = job["progress"].as_u64();
        let message = job["message"].as_str().unwrap_or_default();
        if !bar.is_hidden() {
            bar.set_position(progress.unwrap_or(0));
            bar.set_message(message.to_owned());
        } else if !conn.json && seen != (job["progress"].clone(), job["message"].clone()) {
            // Not a terminal: a line per change, for logs.
            if let Some(p) = progress {
                eprintln!("progress: {p}% {message}");
            }
        }
        if job["done"].as_bool() == Some(true) {
            break;
        }
    }
    bar.finish_and_clear();
    print_job(conn, &job);
    match job["state"].as_str() {
        Some("succeeded") => Ok(Done::Ok),
        state => Err(ClientError::JobDidNotSucceed(format!(
            "job {} {}{}",
            a.job.id,
            state.unwrap_or("ended"),
            error_text(&job["error"]).map_or_else(String::new, |e| format!(": {e}"))
        ))),
    }
}

/// A bar from 0 to 100 with the worker's message, hidden unless stderr is
/// a terminal.
fn job_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(100);
    let style = ProgressStyle::with_template("{spinner} [{bar:40}] {pos:>3}% {elapsed} {wide_msg}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

async fn result(conn: &Conn, a: ResultArgs) -> Result<Done, ClientError> {
    let request = conn.request(Method::GET, &job_path(&a.job, "/result")?, Duration::ZERO);
    let answer = conn.send(request, &[StatusCode::OK]).await?;
    let element = Element::from_headers(answer.headers());
    let status = answer
        .headers()
        .get("x-job-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u16>().ok());
    let described = |body: Option<&[u8]>| {
        let mut doc = serde_json::json!({
            "id": a.job.id,
            "status": status,
            "content_type": element.content_type,
        });
        if let (Some(body), Some(map)) = (body, doc.as_object_mut()) {
            map.extend(output::body_fields(body));
        }
        doc
    };
    match (conn.json, a.output.as_deref()) {
        (true, None) => {
            let body = answer
                .bytes()
                .await
                .map_err(|e| ClientError::io("the result was cut off", std::io::Error::other(e)))?;
            output::print_json(&described(Some(&body)));
        }
        (true, Some(file)) => {
            output::write_body(answer, Some(file)).await?;
            output::print_json(&described(None));
        }
        (false, file) => {
            if let Some(status) = status {
                eprintln!("status: {status}");
            }
            eprintln!("content-type: {}", element.content_type);
            output::write_body(answer, file).await?;
        }
    }
    Ok(Done::Ok)
}

async fn list(conn: &Conn, a: ListArgs) -> Result<Done, ClientError> {
    let path = job_queue_path(&a.queue)?;
    let mut jobs = Vec::new();
    let mut page_token: Option<String> = None;
    loop {
        let mut query = format!("?limit={LIST_PAGE}");
        if let Some(state) = &a.state {
            query.push_str(&format!("&state={state}"));
        }
        if let Some(token) = &page_token {
            query.push_str(&format!("&page_token={token}"));
        }
        let request = conn.request(Method::GET, &format!("{path}{query}"), Duration::ZERO);
        let answer = conn
            .send(request, &[StatusCode::OK, StatusCode::NOT_FOUND])
            .await?;
        // A queue that never had a job, or has none left, lists nothing.
        if answer.status() == StatusCode::NOT_FOUND {
            break;
        }
        let mut page = json_of(answer, "the job list").await?;
        if let Some(listed) = page["jobs"].as_array_mut() {
            jobs.append(listed);
        }
        match page["next_page_token"].as_str() {
            Some(token) => page_token = Some(token.to_owned()),
            None => break,
        }
    }
    if conn.json {
        output::print_json(&serde_json::json!({ "jobs": jobs }));
        return Ok(Done::Ok);
    }
    println!(
        "{:<36}  {:<9}  {:>4}  {:>7}  {:<24}  message",
        "id", "state", "%", "attempt", "created"
    );
    for job in &jobs {
        println!(
            "{:<36}  {:<9}  {:>4}  {:>7}  {:<24}  {}",
            job["id"].as_str().unwrap_or_default(),
            job["state"].as_str().unwrap_or_default(),
            job["progress"]
                .as_u64()
                .map_or_else(|| "-".to_owned(), |p| p.to_string()),
            format!("{}/{}", job["attempt"], job["max_attempts"]),
            job["created"].as_str().unwrap_or_default(),
            job["message"].as_str().unwrap_or_default(),
        );
    }
    Ok(Done::Ok)
}

async fn log(conn: &Conn, a: JobArgs) -> Result<Done, ClientError> {
    let request = conn.request(Method::GET, &job_path(&a, "/log")?, Duration::ZERO);
    let answer = conn.send(request, &[StatusCode::OK]).await?;
    let entries = json_of(answer, "the job's log").await?;
    if conn.json {
        output::print_json(&entries);
        return Ok(Done::Ok);
    }
    for entry in entries.as_array().into_iter().flatten() {
        println!(
            "{}  {:>4}  {}",
            entry["time"].as_str().unwrap_or_default(),
            entry["progress"]
                .as_u64()
                .map_or_else(|| "-".to_owned(), |p| format!("{p}%")),
            entry["message"].as_str().unwrap_or_default(),
        );
    }
    Ok(Done::Ok)
}

/// `CODE: message` of a job's error.
fn error_text(error: &Value) -> Option<String> {
    let code = error["code"].as_str()?;
    Some(match error["message"].as_str() {
        Some(message) if !message.is_empty() => format!("{code}: {message}"),
        _ => code.to_owned(),
    })
}

/// The job document as JSON, or as `key: value` lines for people.
fn print_job(conn: &Conn, job: &Value) {
    if conn.json {
        output::print_json(job);
        return;
    }
    let text = |key: &str| job[key].as_str().unwrap_or("-").to_owned();
    let mut lines = vec![
        format!("id: {}", text("id")),
        format!("state: {}", text("state")),
    ];
    if let Some(p) = job["progress"].as_u64() {
        match job["message"].as_str() {
            Some(message) => lines.push(format!("progress: {p}% {message}")),
            None => lines.push(format!("progress: {p}%")),
        }
    }
    lines.push(format!(
        "attempt: {} of {}",
        job["attempt"], job["max_attempts"]
    ));
    for key in ["created", "started", "finished", "expires"] {
        if job[key].is_string() {
            lines.push(format!("{key}: {}", text(key)));
        }
    }
    let input = &job["input"];
    lines.push(format!(
        "input: {} bytes {}",
        input["size"],
        input["content_type"].as_str().unwrap_or_default()
    ));
    let result = &job["result"];
    if result.is_object() {
        lines.push(format!(
            "result: {} bytes {} (status {})",
            result["size"],
            result["content_type"].as_str().unwrap_or_default(),
            result["status"]
        ));
    }
    if let Some(error) = error_text(&job["error"]) {
        lines.push(format!("error: {error}"));
    }
    if let Some(metadata) = job["metadata"].as_object() {
        for (k, v) in metadata {
            lines.push(format!("data: {k}={}", v.as_str().unwrap_or_default()));
        }
    }
    println!("{}", lines.join("\n"));
}

//! `blobq push`, `pop`, `stats` and the other client subcommands: the
//! HTTP API from a shell, without curl and `sed` to pull ids out of headers.
//!
//! Each subcommand is one request (or a loop of them, for `tail` and
//! `stats --watch`) through [`conn::Conn`], which knows the server's address,
//! sends the token, and turns a problem document into a [`ClientError`].
//! Output is for people (tables, `key: value` lines on stderr next to a
//! body on stdout) unless `--json`, which prints one JSON document per
//! answer on stdout for scripts.

mod blob;
mod conn;
mod job;
mod output;
mod queue;
mod stats;
mod worker;

use std::process::ExitCode;

use clap::{Args, Subcommand};

pub use blob::BlobCommand;
pub use conn::ClientError;
pub use job::JobCommand;

/// Exit status of a pop or tail that found nothing to take.
pub const EXIT_EMPTY: u8 = 3;

/// Where the server is and how to print, shared by every client subcommand.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// The server's base URL
    #[arg(
        long,
        env = "BLOBQ_SERVER",
        value_name = "URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
    /// A bearer token for a server that requires one
    #[arg(
        long,
        env = "BLOBQ_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// Print JSON documents (one per answer) instead of text for people
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for the server to answer a request (blocking pops
    /// add their own wait)
    #[arg(long, value_name = "S", default_value_t = 30, global = true)]
    pub request_timeout: u64,
}

/// A client subcommand's own arguments with the connection's.
#[derive(Args, Debug)]
pub struct Call<A: Args> {
    #[command(flatten)]
    pub conn: ClientArgs,
    #[command(flatten)]
    pub args: A,
}

/// `blobq blob ...`, with the connection's arguments.
#[derive(Args, Debug)]
pub struct BlobCall {
    #[command(flatten)]
    pub conn: ClientArgs,
    #[command(subcommand)]
    pub command: BlobCommand,
}

/// `blobq job ...`, with the connection's arguments.
#[derive(Args, Debug)]
pub struct JobCall {
    #[command(flatten)]
    pub conn: ClientArgs,
    #[command(subcommand)]
    pub command: JobCommand,
}

/// The client subcommands (the server is `blobq serve`).
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Push a file (or stdin) to NS/QUEUE; prints the element's id
    Push(Call<queue::PushArgs>),
    /// Pop the head of NS/QUEUE: the body to stdout or -o FILE, what it
    /// carried on stderr (or all of it in --json); exit status 3 if none came
    Pop(Call<queue::PopArgs>),
    /// Acknowledge a lease: the element is done with
    Ack(Call<queue::LeaseArgs>),
    /// Hand a leased element back to its queue now
    Release(Call<queue::LeaseArgs>),
    /// Restart a lease with a new length
    Extend(Call<queue::ExtendArgs>),
    /// Pop NS/QUEUE in a loop and print each element; leases are
    /// acknowledged once printed
    Tail(Call<queue::TailArgs>),
    /// Remove every ready element of NS/QUEUE
    Purge(Call<queue::QueueArg>),
    /// Statistics of the server, a namespace (NS) or a queue (NS/QUEUE)
    Stats(Call<stats::StatsArgs>),
    /// Store, read or delete blobs
    Blob(BlobCall),
    /// Submit jobs, follow them and fetch their results
    Job(JobCall),
    /// Run COMMAND once for each job of NS/QUEUE: the input on stdin,
    /// stdout the result (docs/CLIENT.md)
    Worker(Call<worker::WorkerArgs>),
}

impl ClientCommand {
    fn conn_args(&self) -> &ClientArgs {
        match self {
            ClientCommand::Push(c) => &c.conn,
            ClientCommand::Pop(c) => &c.conn,
            ClientCommand::Ack(c) | ClientCommand::Release(c) => &c.conn,
            ClientCommand::Extend(c) => &c.conn,
            ClientCommand::Tail(c) => &c.conn,
            ClientCommand::Purge(c) => &c.conn,
            ClientCommand::Stats(c) => &c.conn,
            ClientCommand::Blob(c) => &c.conn,
            ClientCommand::Job(c) => &c.conn,
            ClientCommand::Worker(c) => &c.conn,
        }
    }
}

/// Runs one client subcommand; its exit status.
pub fn run(command: ClientCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("blobq: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let conn = conn::Conn::new(command.conn_args())?;
        match command {
            ClientCommand::Push(c) => queue::push(&conn, c.args).await,
            ClientCommand::Pop(c) => queue::pop(&conn, c.args).await,
            ClientCommand::Ack(c) => queue::ack(&conn, c.args).await,
            ClientCommand::Release(c) => queue::release(&conn, c.args).await,
            ClientCommand::Extend(c) => queue::extend(&conn, c.args).await,
            ClientCommand::Tail(c) => queue::tail(&conn, c.args).await,
            ClientCommand::Purge(c) => queue::purge(&conn, c.args).await,
            ClientCommand::Stats(c) => stats::stats(&conn, c.args).await,
            ClientCommand::Blob(c) => blob::run(&conn, c.command).await,
            ClientCommand::Job(c) => job::run(&conn, c.command).await,
            ClientCommand::Worker(c) => worker::run(&conn, c.args).await,
        }
    });
    match outcome {
        Ok(Done::Ok) => ExitCode::SUCCESS,
        Ok(Done::Empty) => ExitCode::from(EXIT_EMPTY),
        Err(e) => {
            eprintln!("blobq: {e}");
            ExitCode::from(e.exit_status())
        }
    }
}

/// How a subcommand ended, when it did not fail.
#[derive(Debug, PartialEq, Eq)]
pub enum Done {
    Ok,
    /// A pop found nothing (exit status [`EXIT_EMPTY`]).
    Empty,
}

/// A queue named `NS/QUEUE` on the command line: the path `/qs/NS/QUEUE`.
/// The names are passed as given; the server checks them.
fn queue_path(spec: &str) -> Result<String, ClientError> {
    named_path("/qs", spec)
}

/// A job queue named `NS/QUEUE`: the path `/jobs/NS/QUEUE`.
fn job_queue_path(spec: &str) -> Result<String, ClientError> {
    named_path("/jobs", spec)
}

fn named_path(prefix: &str, spec: &str) -> Result<String, ClientError> {
    match spec.split_once('/') {
        Some((ns, queue)) if !ns.is_empty() && !queue.is_empty() && !queue.contains('/') => {
            Ok(format!("{prefix}/{ns}/{queue}"))
        }
        _ => Err(ClientError::Usage(format!(
            "{spec:?} is not a queue: write it NS/QUEUE, as in demo/jobs"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_is_named_ns_slash_queue() {
        assert_eq!(queue_path("demo/jobs").unwrap(), "/qs/demo/jobs");
        assert_eq!(job_queue_path("demo/jobs").unwrap(), "/jobs/demo/jobs");
        for bad in ["demo", "demo/", "/jobs", "a/b/c", ""] {
            assert!(
                matches!(queue_path(bad), Err(ClientError::Usage(_))),
                "{bad}"
            );
        }
    }
}

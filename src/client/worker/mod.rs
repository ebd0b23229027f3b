//! `blobq worker NS/QUEUE -- COMMAND ARGS...`: any program as a job worker.
//!
//! Each of `-j N` slots claims a job (a blocking claim under a lease), runs
//! the command once for it (`run.rs`), and claims again. SIGTERM or SIGINT
//! stops the claiming and lets running commands finish; after `--grace`
//! seconds (or at a second signal) the commands still running are killed
//! and their jobs handed back for another attempt. The worker then exits 0.

mod run;
mod stderr;

use std::cell::Cell;
use std::time::Duration;

use clap::Args;
use reqwest::{Method, StatusCode};
use tokio::sync::watch;

use super::conn::{ClientError, Conn};
use super::{job_queue_path, Done};

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// The job queue, as NS/QUEUE
    #[arg(value_name = "NS/QUEUE")]
    pub queue: String,
    /// Jobs run at once
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: u32,
    /// Each claim's lease, in seconds; heartbeats renew it every third of it
    #[arg(long, value_name = "S", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub lease: u64,
    /// Seconds one claim waits for a job before it asks again
    #[arg(long, value_name = "S", default_value_t = 20)]
    pub claim_wait: u64,
    /// Longest a command may run, in seconds: past it, it is killed and its
    /// job failed with the code TIMEOUT (retried while attempts are left)
    #[arg(long, value_name = "S")]
    pub job_timeout: Option<u64>,
    /// Seconds running commands may take to finish after SIGTERM before
    /// they are killed and their jobs handed back
    #[arg(long, value_name = "S", default_value_t = 30)]
    pub grace: u64,
    /// A command that fails hands its job back for another attempt (while
    /// attempts are left) instead of failing it for good
    #[arg(long)]
    pub retry: bool,
    /// Stop after claiming N jobs (once they are finished)
    #[arg(long, value_name = "N")]
    pub max_jobs: Option<u64>,
    /// The result's content type
    #[arg(long, value_name = "TYPE", default_value = "application/octet-stream")]
    pub result_type: String,
    /// Lines of a command's stderr kept for its failure report
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub stderr_lines: usize,
    /// The command and its arguments, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Where the worker is in its life; moves forward only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Working,
    /// Claims no more; running commands finish.
    Stopping,
    /// Running commands are killed and their jobs handed back.
    Killing,
}

/// What every slot shares.
struct Worker<'c> {
    conn: &'c Conn,
    args: WorkerArgs,
    /// `/jobs/NS/QUEUE`.
    path: String,
    /// Jobs claimed or being claimed, against `--max-jobs`.
    claimed: Cell<u64>,
}

/// The longest pause between claims while the server cannot be reached.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub async fn run(conn: &Conn, args: WorkerArgs) -> Result<Done, ClientError> {
    let path = job_queue_path(&args.queue)?;
    let (phase_tx, phase) = watch::channel(Phase::Working);
    let grace = Duration::from_secs(args.grace);
    let worker = Worker {
        conn,
        path,
        args,
        claimed: Cell::new(0),
    };
    let slots =
        futures_util::future::join_all((0..worker.args.jobs).map(|_| worker.slot(phase.clone())));
    tokio::select! {
        outcomes = slots => {
            outcomes.into_iter().collect::<Result<Vec<()>, _>>()?;
        }
        failed = signals(phase_tx, grace) => return Err(failed),
    }
    Ok(Done::Ok)
}

/// Moves the phase on at SIGTERM or SIGINT, and again after the grace
/// period or at a second signal. Returns only if the signals cannot be
/// listened for.
async fn signals(phase: watch::Sender<Phase>, grace: Duration) -> ClientError {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut interrupt) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => return ClientError::io("cannot listen for SIGTERM", e),
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = interrupt.recv() => {}
    }
    eprintln!(
        "blobq worker: stopping; running jobs have {} s to finish",
        grace.as_secs()
    );
    phase.send_replace(Phase::Stopping);
    tokio::select! {
        _ = tokio::time::sleep(grace) => {}
        _ = term.recv() => {}
        _ = interrupt.recv() => {}
    }
    eprintln!("blobq worker: killing the jobs still running and handing them back");
    phase.send_replace(Phase::Killing);
    std::future::pending().await
}

/// Completes once the phase is at least `at`.
async fn reached(phase: &mut watch::Receiver<Phase>, at: Phase) {
    // An error means the sender is gone: the worker is ending anyway.
    let _ = phase.wait_for(|p| *p >= at).await;
}

impl Worker<'_> {
    /// Claims and runs jobs one after another until the worker stops.
    async fn slot(&self, mut phase: watch::Receiver<Phase>) -> Result<(), ClientError> {
        let mut backoff = Duration::from_secs(1);
        loop {
            if *phase.borrow() != Phase::Working {
                return Ok(());
            }
            if self
                .args
                .max_jobs
                .is_some_and(|max| self.claimed.get() >= max)
            {
                return Ok(());
            }
            self.claimed.set(self.claimed.get() + 1);
            let claim = tokio::select! {
                claim = self.claim() => claim,
                // Dropping the claim's request hands any job it was about to
                // get back to the queue (docs/JOBS.md).
                _ = reached(&mut phase, Phase::Stopping) => Ok(None),
            };
            let claimed = match claim {
                Ok(Some(answer)) => answer,
                Ok(None) => {
                    self.claimed.set(self.claimed.get() - 1);
                    continue;
                }
                Err(e) if transient(&e) => {
                    self.claimed.set(self.claimed.get() - 1);
                    eprintln!(
                        "blobq worker: cannot claim: {e}; again in {} s",
                        backoff.as_secs()
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = reached(&mut phase, Phase::Stopping) => return Ok(()),
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
                Err(e) => return Err(e),
            };
            backoff = Duration::from_secs(1);
            run::Job::new(self, claimed).run(phase.clone()).await?;
        }
    }

    /// One blocking claim: the answer with the job, or none if none came.
    async fn claim(&self) -> Result<Option<reqwest::Response>, ClientError> {
        let wait = self.args.claim_wait;
        let request = self.conn.request(
            Method::POST,
            &format!(
                "{}/claim?lease={}&timeout={wait}",
                self.path, self.args.lease
            ),
            Duration::from_secs(wait),
        );
        let answer = self
            .conn
            .send(request, &[StatusCode::OK, StatusCode::NO_CONTENT])
            .await?;
        Ok((answer.status() == StatusCode::OK).then_some(answer))
    }
}

/// Whether a failed claim is worth trying again later: the server is
/// unreachable, overloaded or failing, rather than refusing the worker.
fn transient(error: &ClientError) -> bool {
    match error {
        ClientError::Transport { .. } => true,
        ClientError::Refused { status, .. } => {
            *status == StatusCode::TOO_MANY_REQUESTS
                || (status.is_server_error() && *status != StatusCode::NOT_IMPLEMENTED)
        }
        _ => false,
    }
}

//! One claimed job: the command run with the input on stdin and the job in
//! its environment, heartbeats while it runs, then its stdout stored as
//! the result or the job failed with its exit status and stderr.
//!
//! Stdout is spooled to an unlinked temporary file and uploaded once the
//! command has exited 0: a result must not be stored for a command that
//! then fails, and an upload held open while a slow command thinks would
//! be cut by the server's body read timeout.

use std::cell::{Cell, RefCell};
use std::io::SeekFrom;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::{Body, Method, Response, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _};
use tokio::process::Command;
use tokio::sync::watch;
use tokio_util::io::ReaderStream;

use super::stderr::{self, Progress};
use super::{reached, Phase, Worker};
use crate::client::conn::ClientError;
use crate::client::output::Element;

/// How long a command has to exit after SIGTERM before it gets SIGKILL.
const TERM_TO_KILL: Duration = Duration::from_secs(5);

/// A claimed job and what the claim's answer said about it.
pub struct Job<'w, 'c> {
    worker: &'w Worker<'c>,
    /// The claim's answer, whose body (the input) is taken once to feed
    /// the command.
    input: Cell<Option<Response>>,
    /// The last progress the server acknowledged.
    reported: RefCell<Option<Progress>>,
    id: String,
    /// The job's path, `/jobs/NS/QUEUE/ID`.
    path: String,
    lease: String,
    attempt: String,
    element: Element,
}

/// How a command's run ended.
enum Ending {
    Exited(ExitStatus),
    TimedOut,
    Stopped,
    /// Waiting for the command failed.
    Lost,
}

/// What the worker then tells the server.
enum Verdict {
    Succeeded,
    Failed {
        code: String,
        message: String,
        details: Value,
        retry: bool,
    },
}

impl<'w, 'c> Job<'w, 'c> {
    pub fn new(worker: &'w Worker<'c>, answer: Response) -> Job<'w, 'c> {
        let header = |name: &str| {
            answer
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let id = header("x-job-id");
        Job {
            path: format!("{}/{id}", worker.path),
            lease: header("x-queueserver-lease"),
            attempt: header("x-job-attempt"),
            element: Element::from_headers(answer.headers()),
            id,
            worker,
            input: Cell::new(Some(answer)),
            reported: RefCell::new(None),
        }
    }

    /// Runs the job to its end. An error is one that stops the worker (the
    /// command cannot be started); a job whose report fails is logged.
    pub async fn run(self, phase: watch::Receiver<Phase>) -> Result<(), ClientError> {
        eprintln!(
            "blobq worker: job {} claimed (attempt {})",
            self.id, self.attempt
        );
        let (progress_tx, progress_rx) = watch::channel(None);
        let outcome = tokio::select! {
            outcome = self.execute(phase, &progress_tx) => outcome,
            lost = self.heartbeats(progress_rx) => {
                eprintln!("blobq worker: job {}: {lost}; its command was killed", self.id);
                return Ok(());
            }
        };
        // The last report may have come as the command ended, after the
        // last heartbeat: it goes before the result.
        let last = progress_tx.borrow().clone();
        if last.is_some() && last != *self.reported.borrow() {
            if let Err(lost) = self.beat(last).await {
                eprintln!("blobq worker: job {}: {lost}", self.id);
                return Ok(());
            }
        }
        let (verdict, spool) = match outcome {
            Ok(done) => done,
            Err(Unstartable(e)) => {
                self.report(Verdict::Failed {
                    code: "COMMAND_NOT_STARTED".into(),
                    message: e.to_string(),
                    details: Value::Null,
                    retry: true,
                })
                .await;
                return Err(e);
            }
        };
        let verdict = match (verdict, spool) {
            (Verdict::Succeeded, Some(spool)) => match self.upload(spool).await {
                Ok(size) => {
                    eprintln!("blobq worker: job {} succeeded ({size} bytes)", self.id);
                    return Ok(());
                }
                Err(e) => Verdict::Failed {
                    code: "RESULT_NOT_STORED".into(),
                    message: stderr::clip(&e.to_string()).to_owned(),
                    details: Value::Null,
                    retry: true,
                },
            },
            (verdict, _) => verdict,
        };
        self.report(verdict).await;
        Ok(())
    }

    /// Starts the command, feeds it, follows it and waits for its end.
    async fn execute(
        &self,
        mut phase: watch::Receiver<Phase>,
        progress: &watch::Sender<Option<Progress>>,
    ) -> Result<(Verdict, Option<tokio::fs::File>), Unstartable> {
        let args = &self.worker.args;
        let mut child = self.command().spawn().map_err(|e| {
            Unstartable(ClientError::io(
                format!("cannot run {:?}", args.command[0]),
                e,
            ))
        })?;
        let group = Group(child.id().and_then(|id| i32::try_from(id).ok()));
        let spool = tempfile::tempfile()
            .map(tokio::fs::File::from_std)
            .map_err(|e| Unstartable(ClientError::io("cannot make a spool file", e)))?;
        let (stdin, stdout, err) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let feed = self.feed(stdin);
        let spooled = spool_stdout(stdout, spool);
        let followed = async {
            match err {
                Some(err) => stderr::follow(err, progress, args.stderr_lines).await,
                None => Vec::new(),
            }
        };
        let ending = async {
            let ending = tokio::select! {
                status = child.wait() => status.map_or(Ending::Lost, Ending::Exited),
                _ = sleep_or_never(args.job_timeout) => Ending::TimedOut,
                _ = reached(&mut phase, Phase::Killing) => Ending::Stopped,
            };
            if !matches!(ending, Ending::Exited(_)) {
                group.signal(libc::SIGTERM);
                if tokio::time::timeout(TERM_TO_KILL, child.wait())
                    .await
                    .is_err()
                {
                    group.signal(libc::SIGKILL);
                    let _ = child.wait().await;
                }
            }
            // Whatever the command left behind in its group would hold its
            // pipes open: a job's processes end with it.
            group.signal(libc::SIGKILL);
            ending
        };
        let ((), spool, kept, ending) = tokio::join!(feed, spooled, followed, ending);
        let timeout = args.job_timeout.unwrap_or(0);
        let verdict = match ending {
            Ending::Exited(status) if status.success() => {
                return Ok(match spool {
                    Ok(file) => (Verdict::Succeeded, Some(file)),
                    Err(e) => (
                        Verdict::Failed {
                            code: "RESULT_NOT_STORED".into(),
                            message: format!("cannot spool stdout: {e}"),
                            details: Value::Null,
                            retry: true,
                        },
                        None,
                    ),
                });
            }
            Ending::Exited(status) => {
                let (code, what) = match (
                    status.code(),
                    std::os::unix::process::ExitStatusExt::signal(&status),
                ) {
                    (Some(n), _) => ("EXIT_STATUS", format!("exit status {n}")),
                    (None, Some(s)) => ("KILLED_BY_SIGNAL", format!("killed by signal {s}")),
                    (None, None) => ("EXIT_STATUS", "ended".to_owned()),
                };
                let message = match kept.last() {
                    Some(line) => format!("{what}: {line}"),
                    None => what,
                };
                Verdict::Failed {
                    code: code.into(),
                    message: stderr::clip(&message).to_owned(),
                    details: json!({"exit_status": status.code(), "stderr": kept}),
                    retry: args.retry,
                }
            }
            Ending::TimedOut => Verdict::Failed {
                code: "TIMEOUT".into(),
                message: format!("ran longer than {timeout} s and was killed"),
                details: json!({"stderr": kept}),
                retry: true,
            },
            Ending::Lost => Verdict::Failed {
                code: "COMMAND_LOST".into(),
                message: "the worker lost track of the command".into(),
                details: json!({"stderr": kept}),
                retry: true,
            },
            Ending::Stopped => Verdict::Failed {
                code: "WORKER_STOPPED".into(),
                message: "the worker stopped before the command finished".into(),
                details: json!({"stderr": kept}),
                retry: true,
            },
        };
        Ok((verdict, None))
    }

    /// The command with the job in its environment, in a process group of
    /// its own (so that it and its children can be signalled together, and
    /// a Ctrl-C at the worker's terminal reaches only the worker).
    fn command(&self) -> Command {
        let args = &self.worker.args;
        let mut command = Command::new(&args.command[0]);
        command
            .args(&args.command[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .env_remove("BLOBQ_TOKEN")
            .env("BLOBQ_JOB_ID", &self.id)
            .env("BLOBQ_JOB_ATTEMPT", &self.attempt)
            .env("BLOBQ_JOB_QUEUE", &args.queue)
            .env("BLOBQ_JOB_CONTENT_TYPE", &self.element.content_type);
        for (key, value) in &self.element.custom {
            command.env(format!("BLOBQ_DATA_{}", env_key(key)), value);
        }
        command
    }

    /// Streams the claim's body (the input) into the command's stdin, then
    /// closes it. A command that does not read its input is not an error.
    async fn feed(&self, stdin: Option<tokio::process::ChildStdin>) {
        let Some(mut stdin) = stdin else { return };
        let Some(answer) = self.input.take() else {
            return;
        };
        let mut chunks = answer.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let Ok(chunk) = chunk else { return };
            if stdin.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = stdin.shutdown().await;
    }

    /// Sends heartbeats at a third of the lease, and at once (at most ten
    /// a second) when the command reports progress. Returns only if the
    /// lease is lost: the job was cancelled, or its lease ran out.
    async fn heartbeats(&self, mut progress: watch::Receiver<Option<Progress>>) -> String {
        let mut ticks = tokio::time::interval(Duration::from_secs(self.worker.args.lease) / 3);
        ticks.tick().await;
        let mut reporting = true;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                changed = progress.changed(), if reporting => {
                    reporting = changed.is_ok();
                }
            }
            let latest = progress.borrow_and_update().clone();
            if let Err(lost) = self.beat(latest).await {
                return lost;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One heartbeat renewing the lease, with `progress` if any; `Err` with
    /// the reason if the lease is lost. Other failures are logged: the
    /// next heartbeat may pass.
    async fn beat(&self, progress: Option<Progress>) -> Result<(), String> {
        let lease = self.worker.args.lease;
        let mut report = json!({ "lease": lease });
        if let Some(p) = &progress {
            report["progress"] = p.percent.into();
            if let Some(message) = &p.message {
                report["message"] = message.as_str().into();
            }
        }
        let request = self
            .worker
            .conn
            .request(
                Method::POST,
                &format!("{}/heartbeat", self.path),
                Duration::ZERO,
            )
            .header("x-queueserver-lease", &self.lease)
            .json(&report);
        match self.worker.conn.send(request, &[StatusCode::OK]).await {
            Ok(_) => {
                if progress.is_some() {
                    self.reported.replace(progress);
                }
            }
            Err(ClientError::Refused {
                status, problem, ..
            }) if status == StatusCode::CONFLICT || status == StatusCode::NOT_FOUND => {
                return Err(format!("lease lost ({problem})"));
            }
            Err(e) => eprintln!("blobq worker: job {}: heartbeat failed: {e}", self.id),
        }
        Ok(())
    }

    /// Uploads the spooled stdout as the result; its size.
    async fn upload(&self, mut spool: tokio::fs::File) -> Result<u64, ClientError> {
        let unreadable = |e| ClientError::io("cannot read the spooled stdout", e);
        let size = spool.seek(SeekFrom::End(0)).await.map_err(unreadable)?;
        spool.seek(SeekFrom::Start(0)).await.map_err(unreadable)?;
        let request = self
            .worker
            .conn
            .request(
                Method::PUT,
                &format!("{}/result", self.path),
                Duration::ZERO,
            )
            .header("x-queueserver-lease", &self.lease)
            .header("content-type", &self.worker.args.result_type)
            .header("content-length", size)
            .body(Body::wrap_stream(ReaderStream::new(spool)));
        self.worker.conn.send(request, &[StatusCode::OK]).await?;
        Ok(size)
    }

    /// Fails (or hands back) the job; a report the server refuses is logged.
    async fn report(&self, verdict: Verdict) {
        let Verdict::Failed {
            code,
            message,
            details,
            retry,
        } = verdict
        else {
            return;
        };
        eprintln!(
            "blobq worker: job {} {}: {code}: {message}",
            self.id,
            if retry { "handed back" } else { "failed" }
        );
        let request = self
            .worker
            .conn
            .request(Method::POST, &format!("{}/fail", self.path), Duration::ZERO)
            .header("x-queueserver-lease", &self.lease)
            .json(&json!({"code": code, "message": message, "details": details, "retry": retry}));
        if let Err(e) = self.worker.conn.send(request, &[StatusCode::OK]).await {
            eprintln!(
                "blobq worker: job {}: cannot report the failure: {e}",
                self.id
            );
        }
    }
}

/// The command could not be started: the worker stops.
struct Unstartable(ClientError);

/// The process group of a running command.
struct Group(Option<i32>);

impl Group {
    fn signal(&self, signal: i32) {
        if let Some(id) = self.0 {
            // SAFETY: kill only sends a signal; a group that is gone
            // answers ESRCH, which is ignored.
            unsafe { libc::kill(-id, signal) };
        }
    }
}

impl Drop for Group {
    /// A job abandoned midway (its lease lost) takes its processes along.
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

/// Copies the command's stdout into the spool file.
async fn spool_stdout(
    stdout: Option<tokio::process::ChildStdout>,
    mut spool: tokio::fs::File,
) -> std::io::Result<tokio::fs::File> {
    if let Some(mut stdout) = stdout {
        tokio::io::copy(&mut stdout, &mut spool).await?;
    }
    spool.flush().await?;
    Ok(spool)
}

async fn sleep_or_never(seconds: Option<u64>) {
    match seconds {
        Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
        None => std::future::pending().await,
    }
}

/// A metadata key as part of an environment variable's name: upper case,
/// anything but letters, digits and `_` as `_`.
pub fn env_key(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::env_key;

    #[test]
    fn metadata_keys_become_variable_names() {
        assert_eq!(env_key("user"), "USER");
        assert_eq!(env_key("file.name-2"), "FILE_NAME_2");
    }
}

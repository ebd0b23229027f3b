//! The `blobq` binary: parses the command line and runs the server, a
//! client subcommand, or a tool (a token, completions, man pages).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory as _, Parser};

use blobq::auth::{NewToken, TokenCommand};
use blobq::config::{Cli, Command, Config, LogFormat};
use blobq::server::{Certificates, Server};

/// jemalloc rather than glibc's malloc: a queue server allocates and frees
/// many small objects (elements, small bodies, header values) across
/// threads, where glibc's allocator spent much of a pop load consolidating,
/// and jemalloc keeps an idle connection smaller (docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args = match Cli::parse().command {
        Command::Serve(args) => *args,
        Command::Token(TokenCommand::New(new)) => return new_token(&new),
        Command::Client(command) => return blobq::client::run(command),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "blobq", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Command::Man { dir } => return man_pages(&dir),
    };
    let config = match Config::load(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("blobq: {e}");
            return ExitCode::from(2);
        }
    };
    let certificates = match blobq::server::load_certificates(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("blobq: {e}");
            return ExitCode::from(2);
        }
    };
    // The filter was checked when the settings were loaded.
    let filter = match config.logging.filter(&config.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("blobq: {e}");
            return ExitCode::from(2);
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.logging.format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().with_current_span(false).init(),
    }
    let runtime = match blobq::server::runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("blobq: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config, certificates)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config, certificates: Option<Certificates>) -> std::io::Result<()> {
    let shutdown = shutdown_signal();
    // Every connection and every body file being read or written is a
    // descriptor; `Server::bind` fits the connection cap under the limit.
    if let Err(e) = blobq::server::raise_open_file_limit() {
        tracing::warn!(error = %e, "cannot read the open-file limit");
    }
    config.auth.reload_on_sighup()?;
    let server = Server::bind(&config, certificates).await?;
    match (server.spill_dir(), &config.nats) {
        (Some(spill_dir), _) => {
            tracing::info!(addr = %server.local_addr()?, tls = server.is_tls(), spill_dir = %spill_dir.display(), "listening")
        }
        (None, nats) => {
            tracing::info!(addr = %server.local_addr()?, tls = server.is_tls(), nats = ?nats.as_ref().map(|n| &n.servers), "listening; queues in NATS JetStream")
        }
    }
    server.run(shutdown).await
}

/// `blobq token new`: the token on the first line of standard output, for
/// scripts, then the entry holding its digest; the token itself is kept
/// nowhere.
fn new_token(new: &NewToken) -> ExitCode {
    if let Err(e) = blobq::auth::Grant::parse(&new.namespaces, &new.roles, false) {
        eprintln!("blobq: {e}");
        return ExitCode::from(2);
    }
    let token = match blobq::auth::mint() {
        Ok(token) => token,
        Err(e) => {
            eprintln!("blobq: no random bytes from the OS: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{token}");
    println!();
    println!("# The token above is shown this once. Add this entry to the settings");
    println!("# file or the --auth-file, then send the server SIGHUP:");
    print!(
        "{}",
        blobq::auth::entry_toml(&new.name, &token, &new.namespaces, &new.roles)
    );
    ExitCode::SUCCESS
}

/// `blobq man DIR` (`make man`): a page for the binary and one for each
/// subcommand, from the same definitions as `--help`.
fn man_pages(dir: &std::path::Path) -> ExitCode {
    let written =
        std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(Cli::command(), dir));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "blobq: cannot write the man pages into {}: {e}",
                dir.display()
            );
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGTERM or SIGINT. The handlers are installed at once, not
/// when the future is first polled: a SIGTERM that arrives while the server
/// starts must stop it gracefully rather than kill it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        let (mut term, mut interrupt) = match (term, interrupt) {
            (Ok(term), Ok(interrupt)) => (term, interrupt),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM and SIGINT");
                std::future::pending::<()>().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    }
}

//! The command line: the subcommands, and the arguments of `serve`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::Settings;
use crate::auth::TokenCommand;

#[derive(Parser, Debug)]
#[command(
    name = "blobq",
    version,
    about = "A namespaced HTTP queue server for binary blobs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Make static tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    #[command(flatten)]
    Client(crate::client::ClientCommand),
    /// Print a completion script for SHELL on stdout
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (blobq.1 and one per subcommand) into DIR
    #[command(hide = true)]
    Man { dir: PathBuf },
}

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with settings (flags and environment override it).
    #[arg(long, env = "BLOBQ_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Settings,
}

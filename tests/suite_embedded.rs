//! The HTTP integration suite (`tests/suite/`) against one blobq on its
//! embedded store, each case on a server of its own.

mod common;
mod suite;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = libtest_mimic::Arguments::from_args();
    suite::run(&args, suite::Backend::embedded(), false)
}

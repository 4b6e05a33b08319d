//! The `dashpush` binary: CLI entry point.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::run()
}

//! preflightd: thin entry point. Parses the command line and dispatches to `check` or
//! `explain` (and, with the server, `serve`).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match args.command {
        cli::Command::Check(check) => cli::check::run(&check),
        cli::Command::Explain(explain) => cli::explain::run(&explain),
    }
}

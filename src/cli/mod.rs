//! The command line (DESIGN 2). Every flag also reads `PREFLIGHTD_<FLAG>`.

pub mod check;
pub mod explain;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "preflightd",
    version,
    about = "Answers CORS preflights at the edge from a rules file; proxies everything else"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate and lint rules files or directories; exit 0 ok, 1 errors (or warnings with --deny-warnings)
    Check(CheckArgs),
    /// Show which rule answers a preflight, why each other rule does not, and the exact answer
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Rules files or directories of *.toml files
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Treat warnings as errors
    #[arg(long, env = "PREFLIGHTD_DENY_WARNINGS")]
    pub deny_warnings: bool,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Rules file or directory
    #[arg(long, env = "PREFLIGHTD_RULES", default_value = "rules/")]
    pub rules: PathBuf,
    /// The page's origin, as the browser sends it in `Origin`
    #[arg(long)]
    pub origin: String,
    /// The actual request's method (`Access-Control-Request-Method`)
    #[arg(long)]
    pub method: String,
    /// The actual request's non-safelisted header names, comma-separated
    /// (`Access-Control-Request-Headers`)
    #[arg(long, default_value = "")]
    pub headers: String,
    /// The URL the page fetches (scheme and host set the Host; path the path)
    #[arg(long, default_value = "/")]
    pub url: String,
    /// The page fetches with `credentials: "include"`
    #[arg(long)]
    pub credentials: bool,
    /// The preflight asks for private network access
    #[arg(long)]
    pub private_network: bool,
}

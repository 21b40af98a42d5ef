//! Thin binary: parse the command line, start tracing, call the library.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// mimalloc: thread-local free lists, so a buffer allocated on one runtime worker and freed on
/// another takes no global lock (glibc malloc's arena lock showed up at ~9% of a request).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = fapi_guard::cli::Cli::parse();
    // Structured JSON logs on stderr (stdout may carry the audit trail). Never logs tokens.
    let filter = EnvFilter::try_from_env("FAPI_GUARD_LOG").unwrap_or_else(|_| {
        let default = match cli.command {
            fapi_guard::cli::Command::Demo { .. } => "warn",
            _ => "info",
        };
        EnvFilter::new(default)
    });
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    fapi_guard::cli::run(cli)
}

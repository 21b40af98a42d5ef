//! The command line (spec §3). Exit codes: 0 success, 1 check failure, 2 usage/configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::policy::PolicySet;

#[derive(Debug, Parser)]
#[command(
    name = "fapi-guard",
    version,
    about = "FAPI 2.0 enforcing sidecar proxy"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (the main job).
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Self-contained tour: sample upstream and issuer, scripted requests, printed decisions.
    Demo {
        /// Keep running after the script and print how to call it.
        #[arg(long)]
        serve: bool,
    },
    /// Policy tools for API owners.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Audit trail tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print the version.
    Version,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify JSON, sequence and hash chain of audit files (given in chain order); names the
    /// first broken line and exits 1.
    Verify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Least-privilege report: per client and delegation actor, what was granted against what
    /// was used, with ranked findings. Verifies every file first; exit 1 if any is untrusted.
    Report {
        /// Audit files or directories (rotated sets and several replicas, any order).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Policy directory or file compiled as one revision; repeat for older revisions.
        #[arg(long = "policies")]
        policies: Vec<PathBuf>,
        /// Window ending at --as-of: 30d, 12h, 2w, ...
        #[arg(long, default_value = "30d")]
        since: String,
        /// End of the window, RFC 3339 UTC (default: now).
        #[arg(long)]
        as_of: Option<String>,
        /// Tokens living longer than this (exp - iat) are reported: 10m, 1h, ...
        #[arg(long, default_value = "10m")]
        max_token_lifetime: String,
        #[arg(long, value_enum, default_value = "text")]
        format: crate::audit::report::Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Parse and compile policy files; errors as FILE:LINE:COL: FIELD: message.
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Run policy test files (`*_test.yaml`, or directories holding them); exit 1 on failure.
    Test {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run { config } => block_on(async move {
            match crate::app::run(&config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("fapi-guard: {e}");
                    ExitCode::from(2)
                }
            }
        }),
        Command::Demo { serve } => block_on(async move {
            match crate::demo::run(serve).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("fapi-guard demo: {e}");
                    ExitCode::from(1)
                }
            }
        }),
        Command::Policy {
            command: PolicyCommand::Check { paths },
        } => policy_check(&paths),
        Command::Policy {
            command: PolicyCommand::Test { paths },
        } => policy_test(&paths),
        Command::Audit {
            command: AuditCommand::Verify { files },
        } => ExitCode::from(u8::try_from(crate::audit::run_cli(&files)).unwrap_or(2)),
        Command::Audit {
            command:
                AuditCommand::Report {
                    paths,
                    policies,
                    since,
                    as_of,
                    max_token_lifetime,
                    format,
                },
        } => audit_report(
            paths,
            policies,
            &since,
            as_of.as_deref(),
            &max_token_lifetime,
            format,
        ),
        Command::Version => {
            println!("fapi-guard {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}

fn policy_check(paths: &[PathBuf]) -> ExitCode {
    match PolicySet::load(paths) {
        Ok(set) => {
            println!(
                "ok: {} api(s), {} route(s), revision {}",
                set.apis().len(),
                set.routes().len(),
                set.revision()
            );
            ExitCode::SUCCESS
        }
        Err(errs) => {
            for e in errs {
                eprintln!("{e}");
            }
            ExitCode::from(1)
        }
    }
}

fn policy_test(paths: &[PathBuf]) -> ExitCode {
    let files = crate::policy::testing::test_files(paths);
    if files.is_empty() {
        eprintln!("no *_test.yaml files found");
        return ExitCode::from(2);
    }
    let (mut passed, mut failed) = (0, 0);
    for file in files {
        match crate::policy::testing::run_file(&file) {
            Err(errs) => {
                for e in errs {
                    eprintln!("{e}");
                }
                return ExitCode::from(2);
            }
            Ok(results) => {
                for r in results {
                    if r.passed() {
                        passed += 1;
                        println!("ok    {}: {}", file.display(), r.name);
                    } else {
                        failed += 1;
                        println!(
                            "FAIL  {}: {}: expected {}, got {}",
                            file.display(),
                            r.name,
                            r.expected,
                            r.got
                        );
                    }
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn audit_report(
    paths: Vec<PathBuf>,
    policies: Vec<PathBuf>,
    since: &str,
    as_of: Option<&str>,
    max_token_lifetime: &str,
    format: crate::audit::report::Format,
) -> ExitCode {
    use crate::audit::report;
    let usage = |msg: String| {
        eprintln!("audit report: {msg}");
        ExitCode::from(2)
    };
    let since_secs = match report::parse_window(since) {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    let as_of_micros = match as_of {
        None => crate::clock::Clock::system().now_micros(),
        Some(t) => match report::stamp::parse_micros(t) {
            Some(m) => m,
            None => {
                return usage(format!(
                    "--as-of {t:?} is not RFC 3339 UTC (2026-11-24T06:00:00Z)"
                ));
            }
        },
    };
    let max_token_lifetime_secs = match crate::duration::parse(max_token_lifetime) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => return usage(format!("--max-token-lifetime: {e}")),
    };
    let opts = report::ReportOptions {
        paths,
        policies,
        since_secs,
        as_of_micros,
        max_token_lifetime_secs,
    };
    ExitCode::from(u8::try_from(report::run_cli(&opts, format)).unwrap_or(2))
}

fn block_on<F: std::future::Future<Output = ExitCode>>(f: F) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            eprintln!("fapi-guard: cannot start the runtime: {e}");
            ExitCode::from(2)
        }
    }
}

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
    /// Add the sidecar to Kubernetes manifests (multi-document YAML, stdin or -f) → stdout.
    Inject(InjectArgs),
    /// Mutating admission webhook injecting the sidecar into pods (AdmissionReview v1 over TLS).
    Webhook(WebhookArgs),
    /// Print the version.
    Version,
}

/// Defaults for `inject` and `webhook`; a workload's `fapi-guard.io/*` annotations win.
#[derive(Debug, clap::Args)]
pub struct InjectFlags {
    /// ConfigMap holding config.yaml (annotation fapi-guard.io/config).
    #[arg(long, default_value = "fapi-guard-config")]
    pub config_map: String,
    /// ConfigMap holding the policy files (annotation fapi-guard.io/policies).
    #[arg(long, default_value = "fapi-guard-policies")]
    pub policies: String,
    /// TLS Secret of the proxy listener (annotation fapi-guard.io/tls-secret).
    #[arg(long, default_value = "fapi-guard-tls")]
    pub tls_secret: String,
    /// Sidecar image (annotation fapi-guard.io/image).
    #[arg(long, default_value = crate::inject::DEFAULT_IMAGE)]
    pub image: String,
    /// Port the API listens on, on localhost (annotation fapi-guard.io/upstream-port); default:
    /// the pod's single declared port.
    #[arg(long)]
    pub upstream_port: Option<u16>,
    /// A regular container instead of a native sidecar (clusters before Kubernetes 1.29).
    #[arg(long)]
    pub classic: bool,
}

impl InjectFlags {
    pub fn options(&self) -> crate::inject::InjectOptions {
        crate::inject::InjectOptions {
            image: self.image.clone(),
            config_map: self.config_map.clone(),
            policies_config_map: self.policies.clone(),
            tls_secret: self.tls_secret.clone(),
            upstream_port: self.upstream_port,
            classic: self.classic,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct InjectArgs {
    /// Input file; `-` or absent: standard input.
    #[arg(short = 'f', long = "filename")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub flags: InjectFlags,
}

#[derive(Debug, clap::Args)]
pub struct WebhookArgs {
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub address: std::net::SocketAddr,
    /// PEM certificate (chain) presented to the API server; re-read when it changes.
    #[arg(long)]
    pub cert_file: PathBuf,
    #[arg(long)]
    pub key_file: PathBuf,
    #[command(flatten)]
    pub flags: InjectFlags,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify JSON, sequence and hash chain of audit files (given in chain order); names the
    /// first broken line and exits 1.
    Verify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
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
        Command::Inject(args) => {
            crate::inject::run_cli(args.file.as_deref(), &args.flags.options())
        }
        Command::Webhook(args) => block_on(async move {
            match crate::webhook::run(&args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("fapi-guard webhook: {e}");
                    ExitCode::from(2)
                }
            }
        }),
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

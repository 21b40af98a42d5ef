//! The command line. Exit codes: 0 success, 1 check failure, 2 usage/configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
        /// Path of the configuration file (YAML); relative paths inside it resolve against its
        /// directory.
        #[arg(long)]
        config: PathBuf,
    },
    /// Self-contained tour: sample upstream and issuer, scripted requests, printed decisions.
    Demo {
        /// Keep running after the script and print how to call it.
        #[arg(long)]
        serve: bool,
        /// Also run two replicas sharing this Redis (e.g. redis://127.0.0.1:6379) and show a
        /// DPoP proof replayed at the other replica refused.
        #[arg(long, value_name = "URL")]
        redis: Option<String>,
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
    /// Address the webhook's HTTPS listener binds.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub address: std::net::SocketAddr,
    /// PEM certificate (chain) presented to the API server; re-read when it changes.
    #[arg(long)]
    pub cert_file: PathBuf,
    /// PEM private key of --cert-file; re-read when it changes.
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
        /// Audit files, oldest first (a rotated set in rotation order).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also re-check the stored RFC 9421 signatures (request and response) against the
        /// signers' public keys; exit 1 at the first that does not verify.
        #[arg(long)]
        signatures: bool,
        /// With --signatures: a configuration whose `clients:` keys (and response signing key
        /// file) to use; jwks_uri are fetched.
        #[arg(long, requires = "signatures")]
        config: Option<PathBuf>,
        /// With --signatures: CLIENT_ID=JWKS_FILE, an archived key set of a client; repeatable.
        #[arg(long = "client-jwks", requires = "signatures", value_parser = crate::signature::recheck::parse_client_jwks)]
        client_jwks: Vec<(String, PathBuf)>,
        /// With --signatures: the sidecar's admin /jwks saved as a file (ephemeral response key).
        #[arg(long = "response-jwks", requires = "signatures")]
        response_jwks: Option<PathBuf>,
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
        /// Output format: `text` (terminal), `json` (machine-readable) or `html` (one page).
        #[arg(long, value_enum, default_value = "text")]
        format: crate::audit::report::Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Parse and compile policy and test files; every error as FILE:LINE:COL: FIELD: message,
    /// plus warnings for legal but suspicious policies. Exit 0 clean, 1 on errors.
    Check {
        /// Policy files, `*_test.yaml` files, or directories holding them.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Treat warnings as errors (exit 1 when there is any).
        #[arg(long)]
        strict: bool,
        /// Output format: `text` (one line per finding) or `json` (for CI annotations).
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
    },
    /// Show how a request is decided: each check in order (route, token, binding, scope,
    /// consent, delegation, purpose, assurance) with the values compared, and the deciding
    /// reason with its status and challenge. The claims are taken as a verified token.
    Explain {
        /// Policy files or directories.
        #[arg(long = "policy", required = true)]
        policies: Vec<PathBuf>,
        /// The request line, e.g. 'GET /accounts/acc-1'.
        #[arg(long)]
        request: String,
        /// JSON file with the token's claims (`--token` is accepted as another name).
        #[arg(long, alias = "token", value_name = "CLAIMS.json")]
        claims: Option<PathBuf>,
        /// How the token is presented; default: as its `cnf` implies.
        #[arg(long, value_enum)]
        binding: Option<crate::policy::testing::Presented>,
        /// JSON file with the consent record the consent service would return.
        #[arg(long, value_name = "RECORD.json")]
        consent: Option<PathBuf>,
        /// JSON file with the request body.
        #[arg(long, value_name = "BODY.json")]
        body: Option<PathBuf>,
        /// A request header, `Name: value` (repeatable), e.g. 'Consent-ID: bg-1'.
        #[arg(long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
    },
    /// Print the JSON Schema (draft 2020-12) of policy and policy test files, for editors
    /// (`# yaml-language-server: $schema=schema.json`) and CI validators.
    Schema,
    /// Run policy test files (`*_test.yaml`, or directories holding them); exit 1 on failure.
    Test {
        /// `*_test.yaml` files, or directories holding them.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Report routes no case exercises, deny reasons no case expects, and policy files
        /// under the paths that no test file names (at 0%).
        #[arg(long)]
        coverage: bool,
        /// Fail (exit 1) when coverage is below this percentage (implies --coverage).
        #[arg(long, value_name = "PERCENT")]
        min_coverage: Option<f64>,
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
        Command::Demo { serve, redis } => block_on(async move {
            match crate::demo::run_with(serve, redis.as_deref()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("fapi-guard demo: {e}");
                    ExitCode::from(1)
                }
            }
        }),
        Command::Policy {
            command:
                PolicyCommand::Check {
                    paths,
                    strict,
                    format,
                },
        } => policy_check(&paths, strict, format),
        Command::Policy {
            command:
                PolicyCommand::Explain {
                    policies,
                    request,
                    claims,
                    binding,
                    consent,
                    body,
                    headers,
                },
        } => policy_explain(
            &policies,
            request,
            [claims, consent, body],
            binding,
            &headers,
        ),
        Command::Policy {
            command: PolicyCommand::Schema,
        } => {
            print!("{}", crate::policy::schema::schema_text());
            ExitCode::SUCCESS
        }
        Command::Policy {
            command:
                PolicyCommand::Test {
                    paths,
                    coverage,
                    min_coverage,
                },
        } => policy_test(&paths, coverage, min_coverage),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    files,
                    signatures,
                    config,
                    client_jwks,
                    response_jwks,
                },
        } => {
            let chain = crate::audit::run_cli(&files);
            if chain != 0 || !signatures {
                return ExitCode::from(u8::try_from(chain).unwrap_or(2));
            }
            let sources = crate::signature::recheck::KeySources {
                config,
                client_jwks,
                response_jwks,
            };
            block_on(async move {
                let code = crate::signature::recheck::run_cli(&files, &sources).await;
                ExitCode::from(u8::try_from(code).unwrap_or(2))
            })
        }
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

/// `policy check --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckFormat {
    Text,
    Json,
}

fn policy_check(paths: &[PathBuf], strict: bool, format: CheckFormat) -> ExitCode {
    let report = crate::policy::check::check(paths);
    match format {
        CheckFormat::Text => print!("{}", report.text()),
        CheckFormat::Json => println!("{}", report.json()),
    }
    if report.errors() > 0 || (strict && report.warnings() > 0) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn policy_explain(
    policies: &[PathBuf],
    request: String,
    [claims, consent, body]: [Option<PathBuf>; 3],
    presented: Option<crate::policy::testing::Presented>,
    headers: &[String],
) -> ExitCode {
    use crate::policy::explain;
    let read = |p: &Option<PathBuf>| p.as_deref().map(explain::read_json).transpose();
    let input = (|| {
        let claims = match read(&claims)? {
            None => None,
            Some(serde_json::Value::Object(m)) => Some(m),
            Some(_) => return Err("--claims: the file must hold a JSON object".to_owned()),
        };
        let mut hs = std::collections::BTreeMap::new();
        for h in headers {
            let (k, v) = h
                .split_once(':')
                .ok_or_else(|| format!("--header {h:?}: expected `Name: value`"))?;
            hs.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        Ok(explain::Input {
            request,
            claims,
            presented,
            consent: read(&consent)?,
            body: read(&body)?,
            headers: hs,
        })
    })();
    match input.and_then(|i| explain::explain(policies, &i)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn policy_test(paths: &[PathBuf], coverage: bool, min_coverage: Option<f64>) -> ExitCode {
    use crate::policy::{coverage, testing};
    if testing::test_files(paths).is_empty() {
        eprintln!("no *_test.yaml files found");
        return ExitCode::from(2);
    }
    let measure = coverage || min_coverage.is_some();
    let (cov, runs) = match coverage::collect(paths, measure) {
        Ok(x) => x,
        Err(errs) => {
            for e in errs {
                eprintln!("{e}");
            }
            return ExitCode::from(2);
        }
    };
    let (mut passed, mut failed) = (0, 0);
    for (file, run) in runs {
        for r in run.results {
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
    println!("{passed} passed, {failed} failed");
    if measure {
        print!("{}", cov.report());
    }
    if let Some(min) = min_coverage
        && cov.percent() < min
    {
        println!(
            "coverage {:.1}% is below --min-coverage {min}",
            cov.percent()
        );
        return ExitCode::from(1);
    }
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

//! `fapi-guard demo`: a self-contained tour. Starts a sample banking API, a sample issuer, a
//! sample consent service and the
//! real proxy (loading the shipped `policies/` through the real loaders), sends a scripted set of
//! allowed and denied requests and prints what the proxy decided.
//!
//! Everything it writes (config, policies, the audit trail, and with `--serve` the token and
//! client certificate for the printed `curl` lines) lands in `./fapi-guard-demo/` and is kept
//! after exit, so the newcomer can run `fapi-guard audit verify` on the evidence.

mod consents;
mod http;
mod issuer;
mod revocation;
mod script;
mod signed;
mod upstream;

use std::path::PathBuf;
use std::time::Duration;

use crate::clock::Clock;
use crate::config::Config;
use crate::{app, server};

pub use issuer::SigningKey;

/// Where the demo writes its files, relative to the current directory; never deleted.
pub const DIR: &str = "fapi-guard-demo";

/// The shipped example policies, embedded so the demo runs from any directory.
const POLICIES: &[(&str, &str)] = &[
    ("accounts.yaml", include_str!("../policies/accounts.yaml")),
    ("payments.yaml", include_str!("../policies/payments.yaml")),
];

pub async fn run(serve: bool) -> Result<(), String> {
    run_with(serve, None).await
}

/// The tour; with `redis` (a Redis URL), also two replicas sharing that Redis.
pub async fn run_with(serve: bool, redis: Option<&str>) -> Result<(), String> {
    let upstream = upstream::serve().await?;
    let as_key = SigningKey::generate("demo-as-1")?;
    // The issuer side's Shared Signals transmitter key (its public half in `ssf-jwks.json`).
    let transmitter = SigningKey::generate("demo-ssf-1")?;
    // A fresh admin secret per run, kept in `admin.token` for the printed `curl` lines.
    let admin_token = uuid::Uuid::new_v4().simple().to_string();
    let jwks = issuer::serve_jwks(vec![as_key.jwk.clone()]).await?;
    let consent_service = consents::serve().await?;
    let tpp = signed::TppSigner::generate()?;

    let dir = PathBuf::from(DIR);
    // One trail per run: a previous run's evidence is kept beside it, never appended to.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let audit_name = format!("audit-{stamp}-{}.jsonl", std::process::id());
    let files = DemoFiles {
        upstream,
        jwks,
        consents: consent_service,
        audit_name: &audit_name,
        admin_token: &admin_token,
        transmitter: &transmitter,
    };
    let config = write_files(&dir, &files)
        .and_then(|c| signed::write_files(&dir, &tpp).map(|()| c))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let config = Config::load(&config).map_err(|e| e.to_string())?;
    let guard = app::build(config, Clock::system()).map_err(|e| e.to_string())?;
    guard.spawn_refresh();
    for _ in 0..100 {
        if guard.is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let running = server::start(guard.clone(), Duration::from_secs(2))
        .await
        .map_err(|e| e.to_string())?;

    println!("fapi-guard demo");
    println!("  sample API      http://{upstream}");
    println!("  consent service http://{consent_service}/consents/{{id}}");
    println!(
        "  sample issuer   {}  (JWKS at http://{jwks}/jwks)",
        issuer::ISSUER
    );
    println!(
        "  proxy           http://{}  (public_url {})",
        running.addr,
        issuer::AUDIENCE
    );
    println!("  policies        {}", dir.join("policies").display());
    println!();
    let mut outcome = script::run(running.addr, &as_key).await;
    if let (Ok(table), Some(admin)) = (&mut outcome, running.admin_addr) {
        let target = revocation::Target {
            proxy: running.addr,
            admin,
            admin_token: &admin_token,
        };
        let next = next_row(table);
        match revocation::run(&target, &as_key, &transmitter, next).await {
            Ok(rows) => table.push_str(&rows),
            Err(e) => outcome = Err(format!("{table}{e}")),
        }
    }
    let mut trails = vec![dir.join(&audit_name)];
    if let (Ok(table), Some(url)) = (&mut outcome, redis) {
        let next = next_row(table);
        let names = [
            format!("audit-{stamp}-{}-replica-a.jsonl", std::process::id()),
            format!("audit-{stamp}-{}-replica-b.jsonl", std::process::id()),
        ];
        match two_replicas(&dir, &files, url, &names, &as_key, &admin_token, next).await {
            Ok(rows) => table.push_str(&rows),
            Err(e) => outcome = Err(format!("{table}{e}")),
        }
        trails.extend(names.iter().map(|n| dir.join(n)));
    }
    let result = match outcome {
        Ok(table) => {
            print!("{table}");
            Ok(())
        }
        Err(e) => Err(e),
    };
    // RFC 9421: a signed payment, the same payment altered in transit, the signed answer.
    let result = match result {
        Ok(()) => signed::run(running.addr, &as_key, &tpp, &guard)
            .await
            .map(|section| print!("{section}")),
        e => e,
    };
    if serve && result.is_ok() {
        script::print_serve_help(&dir, running.addr, running.admin_addr, &as_key)?;
        println!("Audit trail (kept after exit):");
        println!("  {}", verify_command(&dir.join(&audit_name)));
        let _ = tokio::signal::ctrl_c().await;
    }
    running.shutdown(Duration::from_secs(1)).await;
    guard.audit().clone().shutdown().await;
    // A broken chain is a failed demo (exit 1), never a line printed beside exit 0.
    let trail = dir.join(&audit_name);
    let result = result.and_then(|()| trails.iter().try_for_each(|t| verify_trail(t)));
    println!(
        "\nThe trail is kept; check it yourself with:\n  {}",
        verify_command(&trail)
    );
    result
}

/// Two more proxies (replicas A and B) sharing the Redis at `url`; their tour's rows.
async fn two_replicas(
    dir: &std::path::Path,
    files: &DemoFiles<'_>,
    url: &str,
    audit_names: &[String; 2],
    as_key: &SigningKey,
    admin_token: &str,
    first: usize,
) -> Result<String, String> {
    // A prefix of its own, so the demo never touches another fleet's keys on that Redis.
    let prefix = format!("fapi-guard-demo-{}", uuid::Uuid::new_v4().simple());
    let mut running = Vec::new();
    for (name, audit) in ["a", "b"].iter().zip(audit_names) {
        let path = dir.join(format!("replica-{name}.yaml"));
        let config = revocation::replica_config(
            name,
            files.upstream,
            files.jwks,
            files.consents,
            url,
            &prefix,
            audit,
        );
        std::fs::write(&path, config).map_err(|e| format!("{}: {e}", path.display()))?;
        let config = Config::load(&path).map_err(|e| e.to_string())?;
        let guard = app::build(config, Clock::system()).map_err(|e| e.to_string())?;
        guard.spawn_refresh();
        let t = std::time::Instant::now();
        while !guard.is_ready() {
            if t.elapsed() > Duration::from_secs(5) {
                return Err(format!(
                    "replica {name} is not ready: is Redis reachable at {}?",
                    redacted(url)
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let r = server::start(guard.clone(), Duration::from_secs(2))
            .await
            .map_err(|e| e.to_string())?;
        running.push((guard, r));
    }
    let target = |i: usize| -> Result<revocation::Target<'_>, String> {
        let r = &running[i].1;
        Ok(revocation::Target {
            proxy: r.addr,
            admin: r.admin_addr.ok_or("replica without admin listener")?,
            admin_token,
        })
    };
    let rows = revocation::replicas(&target(0)?, &target(1)?, as_key, first, &redacted(url)).await;
    for (guard, r) in running {
        r.shutdown(Duration::from_secs(1)).await;
        guard.audit().clone().shutdown().await;
    }
    rows
}

/// The number of the next row: the tour's sections continue the table's numbering.
fn next_row(table: &str) -> usize {
    table
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .count()
        + 1
}

/// A Redis URL without its password, for printing.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

/// The command that checks `trail`, runnable as printed from the directory the demo ran in:
/// this executable by its absolute path, since after `cargo run` no `fapi-guard` is on `PATH`.
fn verify_command(trail: &std::path::Path) -> String {
    let exe = std::env::current_exe()
        .map_or_else(|_| "fapi-guard".to_owned(), |p| p.display().to_string());
    format!(
        "{} audit verify {}",
        shell_word(&exe),
        shell_word(&trail.display().to_string())
    )
}

/// `s` as one POSIX shell word: as is when plain, else single-quoted.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@,=".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// What `write_files` needs to know about this run.
struct DemoFiles<'a> {
    upstream: std::net::SocketAddr,
    jwks: std::net::SocketAddr,
    consents: std::net::SocketAddr,
    audit_name: &'a str,
    /// The admin listener's bearer secret (written to `admin.token`).
    admin_token: &'a str,
    /// The Shared Signals transmitter's key (public half written to `ssf-jwks.json`).
    transmitter: &'a SigningKey,
}

/// Verifies the demo's audit trail and prints its summary; a trail that does not verify is an
/// error, so `fapi-guard demo` exits 1.
fn verify_trail(path: &std::path::Path) -> Result<(), String> {
    match crate::audit::verify_files(&[path.to_path_buf()]) {
        Ok(summary) => {
            println!("\naudit trail (hash-chained, verified):\n{summary}");
            Ok(())
        }
        Err(e) => Err(format!("audit trail failed verification: {e:?}")),
    }
}

fn write_files(dir: &std::path::Path, f: &DemoFiles<'_>) -> std::io::Result<PathBuf> {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies)?;
    for (name, src) in POLICIES {
        std::fs::write(policies.join(name), src)?;
    }
    std::fs::write(dir.join("admin.token"), f.admin_token)?;
    revocation::write_jwks(&dir.join("ssf-jwks.json"), f.transmitter)?;
    let admin = "admin:\n  address: 127.0.0.1:0\n  token_file: admin.token\n";
    let revocation = revocation::config_section("ssf-jwks.json");
    let config = format!(
        "\
listen:
  address: 127.0.0.1:0
  public_url: {aud}
  forwarded_client_cert:            # as behind an ingress that terminates mTLS
    header: x-forwarded-client-cert
    format: xfcc
    trusted_peers: [127.0.0.1/32]
upstream:
  url: http://{upstream}
{admin}issuers:
  - issuer: {iss}
    jwks_uri: http://{jwks}/jwks
    audiences: [{aud}]
    max_token_lifetime: 10m
consent:
  url: http://{consents}/consents/{{id}}
{revocation}{signed}audit:
  sink: file
  path: {audit}
policies: [policies/]
",
        aud = issuer::AUDIENCE,
        iss = issuer::ISSUER,
        upstream = f.upstream,
        jwks = f.jwks,
        consents = f.consents,
        audit = f.audit_name,
        signed = signed::config_sections("tpp-1.jwks.json"),
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, config)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_paths_are_one_shell_word() {
        let cases = [
            (
                "/work/target/release/fapi-guard",
                "/work/target/release/fapi-guard",
            ),
            (
                "fapi-guard-demo/audit-1-2.jsonl",
                "fapi-guard-demo/audit-1-2.jsonl",
            ),
            ("/home/a b/fapi-guard", "'/home/a b/fapi-guard'"),
            ("/tmp/it's", "'/tmp/it'\\''s'"),
            ("$HOME", "'$HOME'"),
        ];
        for (raw, word) in cases {
            assert_eq!(shell_word(raw), word, "{raw}");
        }
    }

    /// The demo's own check can fail. A tampered or missing trail is an
    /// error (the CLI maps it to exit 1); an intact one passes.
    #[tokio::test]
    async fn a_broken_audit_trail_fails_the_demo() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("audit.jsonl");
        let settings = crate::audit::AuditSettings {
            sink: crate::audit::SinkSettings::File {
                path: path.clone(),
                rotate_bytes: None,
            },
            ..crate::audit::AuditSettings::stdout()
        };
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
        let log =
            crate::audit::AuditLog::start(settings, metrics, Clock::system()).expect("writer");
        for _ in 0..3 {
            log.record(crate::audit::AuditRecord::allow())
                .await
                .expect("recorded");
        }
        log.shutdown().await;
        verify_trail(&path).expect("an intact trail verifies");

        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        let cases: [(&str, String); 3] = [
            ("edited record", text.replacen("\"allow\"", "\"deny\"", 1)),
            ("deleted record", format!("{}\n{}\n", lines[0], lines[2])),
            ("garbage", "not json\n".to_owned()),
        ];
        for (name, tampered) in cases {
            std::fs::write(&path, tampered).expect("write");
            let e = verify_trail(&path).expect_err(name);
            assert!(e.contains("failed verification"), "{name}: {e}");
        }
        std::fs::remove_file(&path).expect("remove");
        assert!(verify_trail(&path).is_err(), "missing trail");
    }
}

//! `fapi-guard demo`: a self-contained tour. Starts a sample banking API, a sample issuer, a
//! sample consent service and the
//! real proxy (loading the shipped `policies/` through the real loaders), sends a scripted set of
//! allowed and denied requests and prints what the proxy decided.

mod consents;
mod http;
mod issuer;
mod script;
mod upstream;

use std::path::PathBuf;
use std::time::Duration;

use crate::clock::Clock;
use crate::config::Config;
use crate::{app, server};

pub use issuer::SigningKey;

/// The shipped example policies, embedded so the demo runs from any directory.
const POLICIES: &[(&str, &str)] = &[
    ("accounts.yaml", include_str!("../policies/accounts.yaml")),
    ("payments.yaml", include_str!("../policies/payments.yaml")),
];

pub async fn run(serve: bool) -> Result<(), String> {
    let upstream = upstream::serve().await?;
    let as_key = SigningKey::generate("demo-as-1")?;
    let jwks = issuer::serve_jwks(vec![as_key.jwk.clone()]).await?;
    let consent_service = consents::serve().await?;

    let dir = std::env::temp_dir().join(format!("fapi-guard-demo-{}", std::process::id()));
    let config = write_files(&dir, upstream, jwks, consent_service)
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
    let outcome = script::run(running.addr, &as_key).await;
    let result = match outcome {
        Ok(table) => {
            print!("{table}");
            Ok(())
        }
        Err(e) => Err(e),
    };
    if serve && result.is_ok() {
        script::print_serve_help(running.addr, &as_key)?;
        let _ = tokio::signal::ctrl_c().await;
    }
    running.shutdown(Duration::from_secs(1)).await;
    guard.audit().clone().shutdown().await;
    if result.is_ok() {
        match crate::audit::verify_files(&[dir.join("audit.jsonl")]) {
            Ok(summary) => println!("\naudit trail (hash-chained, verified):\n{summary}"),
            Err(e) => println!("\naudit trail failed verification: {e:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn write_files(
    dir: &std::path::Path,
    upstream: std::net::SocketAddr,
    jwks: std::net::SocketAddr,
    consents: std::net::SocketAddr,
) -> std::io::Result<PathBuf> {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies)?;
    for (name, src) in POLICIES {
        std::fs::write(policies.join(name), src)?;
    }
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
issuers:
  - issuer: {iss}
    jwks_uri: http://{jwks}/jwks
    audiences: [{aud}]
    max_token_lifetime: 10m
consent:
  url: http://{consents}/consents/{{id}}
audit:
  sink: file
  path: audit.jsonl
policies: [policies/]
",
        aud = issuer::AUDIENCE,
        iss = issuer::ISSUER,
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, config)?;
    Ok(path)
}

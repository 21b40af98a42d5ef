use std::path::Path;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::config::{Config, InvalidConfig};
use crate::txn_token::{MAX_LIFETIME, TxnTokenIssuer};

const CONFIG: &str = "\
listen:
  public_url: https://api.bank.example
upstream:
  url: http://127.0.0.1:8080
issuers:
  - issuer: https://as.bank.example
    jwks_file: as.jwks.json
    audiences: [https://api.bank.example]
policies: [policies/]
";

fn load(dir: &Path, extra: &str) -> Result<Config, InvalidConfig> {
    Config::from_yaml(&dir.join("config.yaml"), &format!("{CONFIG}{extra}"))
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).unwrap_or(""));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

#[test]
fn config_compiles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let none = load(d, "").expect("no section");
    assert!(none.transaction_token.mint.is_none() && none.transaction_token.accept.is_none());
    assert_eq!(
        none.upstream.identity_headers,
        crate::identity::IdentityHeaders::default()
    );

    let ephemeral = load(
        d,
        "transaction_token: {enabled: true, audience: bank.internal}\n",
    )
    .expect("ephemeral");
    let m = ephemeral.transaction_token.mint.expect("mint");
    assert_eq!(
        (m.issuer.as_str(), m.audience.as_str()),
        ("fapi-guard", "bank.internal")
    );
    assert_eq!(m.lifetime, MAX_LIFETIME);
    assert!(m.signing_key.is_none());

    // A key from file gives a stable kid across restarts.
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .expect("key");
    std::fs::write(d.join("txn.pem"), pem("PRIVATE KEY", pkcs8.as_ref())).expect("write");
    let from_file = load(
        d,
        "transaction_token:\n  enabled: true\n  audience: bank.internal\n  lifetime: 30s\n  \
         signing_key_file: txn.pem\n  accept: {issuer: edge, jwks_file: edge.jwks, audience: bank.internal}\n",
    )
    .expect("from file");
    let m = from_file.transaction_token.mint.expect("mint");
    assert_eq!(m.lifetime.as_secs(), 30);
    assert!(!format!("{m:?}").contains(&STANDARD.encode(pkcs8.as_ref())[..20]));
    let a = TxnTokenIssuer::new(&m).expect("a");
    let b = TxnTokenIssuer::new(&m).expect("b");
    assert_eq!(a.kid(), b.kid());
    let accept = from_file.transaction_token.accept.expect("accept");
    assert_eq!(accept.issuer.issuer, "edge");
    assert_eq!(
        accept.issuer.keys,
        crate::config::KeySource::File(d.join("edge.jwks"))
    );
    assert_eq!(accept.issuer.max_token_lifetime, MAX_LIFETIME);

    let custom = load(d, "").map(|c| c.upstream.identity_headers.subject);
    assert_eq!(
        custom.map(|h| h.to_string()).as_deref(),
        Ok("x-fapi-subject")
    );
}

#[test]
fn config_errors_name_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("rsa.pem"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .expect("write");
    let section = |extra: &str| format!("{CONFIG}{extra}");
    let cases = [
        (
            "no audience",
            section("transaction_token: {enabled: true}\n"),
            "transaction_token.audience",
        ),
        (
            "lifetime over 60s",
            section("transaction_token: {enabled: true, audience: d, lifetime: 2m}\n"),
            "transaction_token.lifetime",
        ),
        (
            "missing key file",
            section(
                "transaction_token: {enabled: true, audience: d, signing_key_file: nope.pem}\n",
            ),
            "transaction_token.signing_key_file",
        ),
        (
            "not a P-256 key",
            section("transaction_token: {enabled: true, audience: d, signing_key_file: rsa.pem}\n"),
            "transaction_token.signing_key_file",
        ),
        (
            "unknown key",
            section("transaction_token: {enabled: true, audiences: d}\n"),
            "transaction_token.audiences",
        ),
        (
            "two jwks sources",
            section(
                "transaction_token: {accept: {issuer: e, audience: d, jwks_file: a, jwks_uri: 'http://e/jwks'}}\n",
            ),
            "transaction_token.accept.jwks_uri",
        ),
        (
            "accept without audience",
            section("transaction_token: {accept: {issuer: e, jwks_file: a}}\n"),
            "transaction_token.accept",
        ),
        (
            "reserved identity header",
            CONFIG.replace(
                "  url: http://127.0.0.1:8080\n",
                "  url: http://127.0.0.1:8080\n  identity_headers: {subject: authorization}\n",
            ),
            "upstream.identity_headers.subject",
        ),
    ];
    for (name, src, field) in cases {
        let e = Config::from_yaml(&d.join("config.yaml"), &src).expect_err(name);
        assert!(e.field.starts_with(field), "{name}: {e}");
    }
}

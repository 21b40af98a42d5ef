use std::path::Path;

use super::*;

const MINIMAL: &str = "\
listen:
  address: 127.0.0.1:0
  public_url: https://API.Bank.Example:443/
upstream:
  url: http://127.0.0.1:8080/base/
issuers:
  - issuer: https://as.bank.example
    jwks_file: keys/as.jwks.json
    audiences: [https://api.bank.example]
policies: [policies/]
";

fn load(src: &str) -> Result<Config, InvalidConfig> {
    Config::from_yaml(Path::new("/etc/fapi-guard/config.yaml"), src)
}

#[test]
fn minimal_config_compiles_with_defaults() {
    let c = load(MINIMAL).expect("valid");
    assert_eq!(c.listen.public_url, "https://api.bank.example");
    assert_eq!(c.upstream.origin, "http://127.0.0.1:8080");
    assert_eq!(c.upstream.path_prefix, "/base");
    assert_eq!(c.listen.limits.max_header_bytes, 16384);
    let iss = &c.issuers[0];
    assert_eq!(iss.algorithms.len(), 3);
    assert_eq!(iss.max_token_lifetime, Duration::from_secs(600));
    assert_eq!(
        iss.keys,
        KeySource::File("/etc/fapi-guard/keys/as.jwks.json".into())
    );
    assert_eq!(
        c.policy_paths,
        vec![PathBuf::from("/etc/fapi-guard/policies/")]
    );
}

#[test]
fn unknown_key_names_line_column_and_path() {
    let src = MINIMAL.replace("    audiences:", "    audience_typo: x\n    audiences:");
    let e = load(&src).expect_err("typo must fail");
    assert_eq!(e.field, "issuers[0].audience_typo");
    assert_eq!(e.line, Some(9), "{e}");
    assert!(e.message.contains("unknown field `audience_typo`"), "{e}");
    let line = e.to_string();
    assert!(line.starts_with("/etc/fapi-guard/config.yaml:9:"), "{line}");
}

#[test]
fn semantic_errors_name_the_field() {
    let cases = [
        (
            "HS256 refused",
            MINIMAL.replace("    audiences:", "    algorithms: [HS256]\n    audiences:"),
            "issuers[0].algorithms[0]",
        ),
        (
            "none refused",
            MINIMAL.replace("    audiences:", "    algorithms: [none]\n    audiences:"),
            "issuers[0].algorithms[0]",
        ),
        (
            "public_url with path",
            MINIMAL.replace("https://API.Bank.Example:443/", "https://x/y"),
            "listen.public_url",
        ),
        (
            "https upstream",
            MINIMAL.replace("http://127.0.0.1:8080/base/", "https://x"),
            "upstream.url",
        ),
        (
            "both key sources",
            MINIMAL.replace(
                "    jwks_file:",
                "    jwks_uri: https://x/jwks\n    jwks_file:",
            ),
            "issuers[0].jwks_uri",
        ),
        (
            "bad duration",
            MINIMAL.replace("    audiences:", "    clock_skew: 10\n    audiences:"),
            "issuers[0].clock_skew",
        ),
    ];
    for (name, src, field) in cases {
        let e = load(&src).expect_err(name);
        assert_eq!(e.field, field, "{name}: {e}");
    }
}

#[test]
fn consent_section_compiles_and_names_its_fields() {
    let with = |section: &str| format!("{MINIMAL}consent:\n{section}");
    let c = load(&with(
        "  url: http://consent.bank.svc/consents/{id}\n  cache_ttl: 5s\n",
    ))
    .expect("valid");
    let s = c.consent.expect("consent settings");
    assert_eq!(
        (s.cache_ttl, s.timeout),
        (Duration::from_secs(5), Duration::from_millis(300))
    );
    assert!(load(MINIMAL).expect("valid").consent.is_none());
    let cases = [
        (
            "no placeholder",
            "  url: http://consent.bank.svc/consents\n",
            "consent.url",
        ),
        (
            "unknown key",
            "  url: http://c/{id}\n  ttl: 5s\n",
            "consent.ttl",
        ),
        (
            "bad duration",
            "  url: http://c/{id}\n  timeout: 300\n",
            "consent.timeout",
        ),
        (
            "zero timeout",
            "  url: http://c/{id}\n  timeout: 0s\n",
            "consent.timeout",
        ),
    ];
    for (name, section, field) in cases {
        let e = load(&with(section)).expect_err(name);
        assert_eq!(e.field, field, "{name}: {e}");
    }
}

#[test]
fn buffer_budget_and_replay_limit_compile_and_are_checked() {
    let c = load(MINIMAL).expect("valid");
    assert_eq!(c.listen.limits.max_buffered_bytes, 64 * 1024 * 1024);
    assert_eq!(c.dpop.replay_cache_max_entries, 500_000);
    let limits =
        |lines: &str| MINIMAL.replace("upstream:", &format!("  limits:\n{lines}upstream:"));
    let c = load(&limits(
        "    max_body_bytes: 4096\n    max_buffered_bytes: 8192\n",
    ))
    .expect("valid");
    assert_eq!(c.listen.limits.max_buffered_bytes, 8192);
    let e = load(&limits(
        "    max_body_bytes: 8192\n    max_buffered_bytes: 4096\n",
    ))
    .expect_err("a budget smaller than one body");
    assert_eq!(e.field, "listen.limits.max_buffered_bytes", "{e}");
    let c = load(&format!("{MINIMAL}dpop:\n  replay_cache_max_entries: 20\n")).expect("valid");
    assert_eq!(c.dpop.replay_cache_max_entries, 20);
    for bad in ["0", "50000001"] {
        let e = load(&format!(
            "{MINIMAL}dpop:\n  replay_cache_max_entries: {bad}\n"
        ))
        .expect_err(bad);
        assert_eq!(e.field, "dpop.replay_cache_max_entries", "{bad}: {e}");
        assert!(e.message.contains("outside 1..=50000000"), "{bad}: {e}");
    }
}

/// The admin listener has write endpoints, so off loopback it needs its
/// bearer secret; the read-only metrics listener may bind anywhere.
#[test]
fn admin_off_loopback_needs_a_token_file() {
    let dir = tempfile::tempdir().expect("dir");
    let token = dir.path().join("admin.token");
    std::fs::write(&token, "s3cret-admin-token-value\n").expect("write");
    let with = |admin: &str| load(&format!("{MINIMAL}admin:\n{admin}"));
    let cases: Vec<(&str, String, Result<(), &str>)> = vec![
        (
            "loopback without token",
            "  address: 127.0.0.1:9901\n".into(),
            Ok(()),
        ),
        (
            "ipv6 loopback without token",
            "  address: \"[::1]:9901\"\n".into(),
            Ok(()),
        ),
        (
            "any address without token",
            "  address: 0.0.0.0:9901\n".into(),
            Err("admin.token_file"),
        ),
        (
            "pod address without token",
            "  address: 10.1.2.3:9901\n".into(),
            Err("admin.token_file"),
        ),
        (
            "any address with token",
            format!(
                "  address: 0.0.0.0:9901\n  token_file: {}\n",
                token.display()
            ),
            Ok(()),
        ),
        (
            "metrics listener on the pod IP, admin on loopback",
            "  address: 127.0.0.1:9901\n  metrics_address: 0.0.0.0:9902\n".into(),
            Ok(()),
        ),
        (
            "metrics listener on the admin address",
            "  address: 127.0.0.1:9901\n  metrics_address: 127.0.0.1:9901\n".into(),
            Err("admin.metrics_address"),
        ),
        (
            "unreadable token file",
            "  address: 127.0.0.1:9901\n  token_file: /nonexistent/admin.token\n".into(),
            Err("admin.token_file"),
        ),
    ];
    for (name, admin, want) in cases {
        match (with(&admin), want) {
            (Ok(c), Ok(())) => {
                let a = c.admin.expect("admin section");
                let shown = format!("{a:?}");
                assert!(!shown.contains("s3cret"), "{name}: secret printed: {shown}");
            }
            (Err(e), Err(field)) => assert_eq!(e.field, field, "{name}: {e}"),
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
    let c = with(&format!(
        "  address: 0.0.0.0:9901\n  token_file: {}\n",
        token.display()
    ))
    .expect("valid");
    let a = c.admin.expect("admin");
    assert!(a.token.expect("token").matches(b"s3cret-admin-token-value"));
}

/// Keys fetched in clear text could be swapped on the way; plain http is
/// allowed only to loopback or with the per-source `allow_insecure_http: true`.
#[test]
fn remote_key_sources_need_https_off_loopback() {
    let issuer = |uri: &str, extra: &str| {
        load(&MINIMAL.replace(
            "    jwks_file: keys/as.jwks.json\n",
            &format!("    jwks_uri: {uri}\n{extra}"),
        ))
    };
    let accept = |uri: &str, extra: &str| {
        load(&format!(
            "{MINIMAL}transaction_token:\n  accept:\n    issuer: edge\n    audience: bank.internal\n    jwks_uri: {uri}\n{extra}"
        ))
    };
    let insecure = "    allow_insecure_http: true\n";
    let cases: Vec<(&str, Result<Config, InvalidConfig>, Result<(), &str>)> = vec![
        ("https", issuer("https://as.bank.example/jwks", ""), Ok(())),
        (
            "http loopback",
            issuer("http://127.0.0.1:8080/jwks", ""),
            Ok(()),
        ),
        (
            "http localhost",
            issuer("http://localhost:8080/jwks", ""),
            Ok(()),
        ),
        (
            "http ipv6 loopback",
            issuer("http://[::1]:8080/jwks", ""),
            Ok(()),
        ),
        (
            "http remote",
            issuer("http://as.bank.example/jwks", ""),
            Err("issuers[0].jwks_uri"),
        ),
        (
            "http remote allowed",
            issuer("http://as.bank.example/jwks", insecure),
            Ok(()),
        ),
        (
            "ftp",
            issuer("ftp://as.bank.example/jwks", insecure),
            Err("issuers[0].jwks_uri"),
        ),
        (
            "txn https",
            accept("https://edge.bank.svc/jwks", ""),
            Ok(()),
        ),
        (
            "txn http remote",
            accept("http://edge.bank.svc:9902/jwks", ""),
            Err("transaction_token.accept.jwks_uri"),
        ),
        (
            "txn http remote allowed",
            accept("http://edge.bank.svc:9902/jwks", insecure),
            Ok(()),
        ),
        (
            "txn http loopback",
            accept("http://127.0.0.1:9902/jwks", ""),
            Ok(()),
        ),
    ];
    for (name, got, want) in cases {
        match (got, want) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(field)) => {
                assert_eq!(e.field, field, "{name}: {e}");
                if name.contains("http remote") {
                    assert!(
                        e.message.contains("allow_insecure_http: true"),
                        "{name}: {e}"
                    );
                }
            }
            (got, want) => panic!("{name}: got {:?}, want {want:?}", got.map(|_| ())),
        }
    }
}

#[test]
fn introspection_is_per_issuer_and_at_most_one_issuer_has_it() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("introspection.secret"),
        "introspection-secret\n",
    )
    .expect("secret");
    let file = dir.path().join("config.yaml");
    let block = |url: &str, insecure: &str| {
        format!(
            "{insecure}    introspection:\n      url: {url}\n      client_id: fapi-guard\n      \
             client_secret_file: introspection.secret\n      cache_ttl: 10s\n"
        )
    };
    let with = |first: &str, second: Option<&str>| {
        let mut src = MINIMAL.replace(
            "    audiences: [https://api.bank.example]\n",
            &format!("    audiences: [https://api.bank.example]\n{first}"),
        );
        if let Some(second) = second {
            src = src.replace(
                "policies:",
                &format!(
                    "  - issuer: https://as2.bank.example\n    jwks_file: k.json\n    \
                     audiences: [a]\n{second}policies:"
                ),
            );
        }
        Config::from_yaml(&file, &src)
    };
    let c = with(&block("https://as.bank.example/introspect", ""), None).expect("valid");
    let i = c.issuers[0].introspection.as_ref().expect("introspection");
    assert_eq!(
        (i.url.to_string().as_str(), i.cache_ttl, i.timeout),
        (
            "https://as.bank.example/introspect",
            Duration::from_secs(10),
            Duration::from_secs(1)
        )
    );
    assert!(!format!("{c:?}").contains("introspection-secret"));
    assert!(
        with(
            &block(
                "http://as.bank.svc/introspect",
                "    allow_insecure_http: true\n"
            ),
            None
        )
        .is_ok(),
        "the issuer's allow_insecure_http covers its introspection endpoint"
    );
    let e = with(&block("http://as.bank.svc/introspect", ""), None).expect_err("clear text");
    assert_eq!(e.field, "issuers[0].introspection.url", "{e}");
    let e = with(
        &block("https://as.bank.example/introspect", ""),
        Some(&block("https://as2.bank.example/introspect", "")),
    )
    .expect_err("two introspecting issuers");
    assert_eq!(e.field, "issuers[1].introspection", "{e}");
    assert!(e.message.contains("only one issuer"), "{e}");
    assert!(
        with("", Some(&block("https://as2.bank.example/introspect", ""))).is_ok(),
        "any one issuer may have it"
    );
}

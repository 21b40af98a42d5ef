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
            "issuers[0].algorithms",
        ),
        (
            "none refused",
            MINIMAL.replace("    audiences:", "    algorithms: [none]\n    audiences:"),
            "issuers[0].algorithms",
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

//! Golden tests of load errors: `fapi-guard policy check` on broken policies and test files
//! (the real binary), and configuration files (`Config::from_yaml`). Each message is compared
//! exactly, with its file, line and column.

use std::path::Path;
use std::process::Command;

use fapi_guard::config::Config;

fn check(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fapi-guard"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["policy", "check"])
        .args(args)
        .output()
        .expect("run fapi-guard");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().expect("exit code"), text)
}

/// Drops the revision hash of the summary line, which changes with any byte of the file.
fn stable(s: &str) -> String {
    s.lines()
        .map(|l| match l.find(", revision sha256:") {
            Some(i) => format!("{}{}", &l[..i], &l[i + 82..]),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const D: &str = "tests/policy_check";

#[test]
fn broken_policies_report_every_error_at_its_line_and_column() {
    let cases: &[(&str, &[&str])] = &[
        (
            "syntax_error.yaml",
            &[
                "tests/policy_check/syntax_error.yaml:6:4: YAML syntax error: did not find expected '-' indicator",
            ],
        ),
        (
            "unknown_key.yaml",
            &[
                "tests/policy_check/unknown_key.yaml:6:5: routes[0].scope: unknown field `scope`, did you mean `scopes`?",
            ],
        ),
        (
            "wrong_type.yaml",
            &[
                "tests/policy_check/wrong_type.yaml:6:13: routes[0].public: invalid type: string \"sometimes\", expected a boolean",
            ],
        ),
        (
            "duplicate_route.yaml",
            &[
                "tests/policy_check/duplicate_route.yaml:8:11: routes[1] (get-account).name: duplicate route name \"get-account\": routes[0] (line 5) already has it",
            ],
        ),
        (
            "duplicate_key.yaml",
            &[
                "tests/policy_check/duplicate_key.yaml:7:5: routes[0].scopes: duplicate key `scopes`",
            ],
        ),
        (
            "ambiguous_template.yaml",
            &[
                "tests/policy_check/ambiguous_template.yaml:10:11: routes[1] (update-account).path: path /accounts/{account_id} overlaps path /accounts/{id} of route \"get-account\" (tests/policy_check/ambiguous_template.yaml:7:11): a request such as /accounts/account_id could match both; use one parameter name or a static segment",
            ],
        ),
        (
            "bad_duration.yaml",
            &[
                "tests/policy_check/bad_duration.yaml:10:21: routes[0].assurance.max_auth_age: duration \"5 minutes\": unknown unit \" minutes\" (ms, s, m, h)",
            ],
        ),
        (
            "unknown_reason_test.yaml",
            &[
                "tests/policy_check/unknown_reason_test.yaml:7:20: cases[0] (revoked consent).expect.deny: unknown deny reason `consent_revokd`, did you mean `consent_revoked`?",
            ],
        ),
        (
            "duplicate_key_and_more.yaml",
            &[
                "tests/policy_check/duplicate_key_and_more.yaml:7:5: routes[0].scopes: duplicate key `scopes`",
                "tests/policy_check/duplicate_key_and_more.yaml:10:13: routes[1] (get-account).method: \"FETCH\" is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
                "tests/policy_check/duplicate_key_and_more.yaml:12:5: routes[1].bindng: unknown field `bindng`, did you mean `binding`?",
            ],
        ),
        (
            "one_route_many_errors.yaml",
            &[
                "tests/policy_check/one_route_many_errors.yaml:4:13: routes[0] (create-payment).method: \"FETCH\" is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
                "tests/policy_check/one_route_many_errors.yaml:6:24: routes[0] (create-payment).scopes[1]: \"two words\" is not a scope token (RFC 6749 §3.3)",
                "tests/policy_check/one_route_many_errors.yaml:7:14: routes[0].binding: unknown variant `dpop_only`, expected one of `dpop`, `mtls`, `dpop_or_mtls`, `unbound_allowed`",
                "tests/policy_check/one_route_many_errors.yaml:8:5: routes[0].assurnce: unknown field `assurnce`, did you mean `assurance`?",
                "tests/policy_check/one_route_many_errors.yaml:11:21: routes[0].assurance.max_auth_age: duration \"5 minutes\": unknown unit \" minutes\" (ms, s, m, h)",
            ],
        ),
        (
            "many_errors_test.yaml",
            &[
                "tests/policy_check/many_errors_test.yaml:4:68: cases[0].request.header: unknown field `header`, did you mean `headers`?",
                "tests/policy_check/many_errors_test.yaml:6:20: cases[0] (two mistakes in one case).expect.deny: unknown deny reason `consent_revokd`, did you mean `consent_revoked`?",
                "tests/policy_check/many_errors_test.yaml:10:5: cases[1].expect: duplicate key `expect`",
                "tests/policy_check/many_errors_test.yaml:13:20: cases[2] (after the repeated key).expect.deny: unknown deny reason `route_not_fund`, did you mean `route_not_found`?",
            ],
        ),
        (
            "three_errors.yaml",
            &[
                "tests/policy_check/three_errors.yaml:9:24: routes[0] (list-accounts).scopes[1]: \"bad scope\" is not a scope token (RFC 6749 §3.3)",
                "tests/policy_check/three_errors.yaml:11:13: routes[1] (get-account).method: \"FETCH\" is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
                "tests/policy_check/three_errors.yaml:16:14: routes[2].binding: unknown variant `dpop_only`, expected one of `dpop`, `mtls`, `dpop_or_mtls`, `unbound_allowed`",
            ],
        ),
    ];
    for (file, want) in cases {
        let (code, out) = check(&[&format!("{D}/{file}")]);
        let want = format!("{}\n{} error(s), 0 warning(s)", want.join("\n"), want.len());
        assert_eq!(stable(&out), want, "{file}");
        assert_eq!(code, 1, "{file}");
    }
}

#[test]
fn every_file_is_checked_and_errors_are_not_cut_short() {
    let (code, out) = check(&[
        &format!("{D}/unknown_key.yaml"),
        &format!("{D}/wrong_type.yaml"),
        &format!("{D}/unknown_reason_test.yaml"),
    ]);
    assert_eq!(code, 1);
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(out.ends_with("3 error(s), 0 warning(s)\n"), "{out}");
}

#[test]
fn suspicious_policies_warn_and_strict_fails_on_warnings() {
    let file = format!("{D}/suspicious.yaml");
    let (code, out) = check(&[&file]);
    let want = "\
tests/policy_check/suspicious.yaml:2:7: warning: mode: audit forwards requests that would be denied; switch to enforce once fapi_guard_requests_total{decision=\"audit_deny\"} stays at 0
tests/policy_check/suspicious.yaml:4:12: warning: routes[0] (get-profile).binding: unbound_allowed accepts bearer tokens anyone who steals them can replay; FAPI 2.0 requires sender-constrained tokens (DPoP or mTLS)
tests/policy_check/suspicious.yaml:8:11: warning: routes[0] (get-profile).path: shadowed for GET /profile/me: that path belongs to route \"my-profile\", which has no GET route, so such requests get route_not_found instead of reaching this route
tests/policy_check/suspicious.yaml:10:7: warning: routes[0] (get-profile).consent: a consent rule on a route that requires no scope: any token of the client whose consent it names is enough; add scopes
tests/policy_check/suspicious.yaml:19:13: warning: routes[2] (ping).public: a public POST route lets anyone change state without a token
ok: 1 api(s), 4 route(s), 0 test file(s); 5 warning(s)";
    assert_eq!(stable(&out), want);
    assert_eq!(code, 0, "warnings alone pass");
    let (code, _) = check(&["--strict", &file]);
    assert_eq!(code, 1, "--strict fails on warnings");
}

#[test]
fn route_level_audit_mode_and_delegation_without_actors_warn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        "api: a\ndefaults:\n  scopes: [s]\nroutes:\n  - name: r\n    method: GET\n    path: /r\n    mode: audit\n    delegation:\n      max_depth: 0\n",
    )
    .expect("write");
    let (code, out) = check(&[file.to_str().expect("utf-8")]);
    let f = file.display();
    assert_eq!(
        stable(&out),
        format!(
            "{f}:8:11: warning: routes[0] (r).mode: audit forwards requests that would be denied; switch to enforce once fapi_guard_requests_total{{decision=\"audit_deny\"}} stays at 0 for this route\n\
             {f}:10:7: warning: routes[0] (r).delegation: no actors: every delegated token is refused, as without the section; list the actors or remove it\n\
             ok: 1 api(s), 1 route(s), 0 test file(s); 2 warning(s)"
        )
    );
    assert_eq!(code, 0);
}

#[test]
fn json_format_for_ci_annotations() {
    let (code, out) = check(&["--format", "json", &format!("{D}/unknown_key.yaml")]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        v,
        serde_json::json!({"errors": 1, "warnings": 0, "diagnostics": [{
            "severity": "error", "file": "tests/policy_check/unknown_key.yaml", "line": 6, "column": 5,
            "field": "routes[0].scope", "message": "unknown field `scope`, did you mean `scopes`?"}]})
    );
}

#[test]
fn shipped_policies_check_clean_even_strictly() {
    let (code, out) = check(&["--strict", "policies/"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 warning(s)"), "{out}");
}

// Configuration load errors (issue: every load error names file, line and column).

const CONFIG: &str = "\
listen:
  address: 127.0.0.1:0
  public_url: https://api.bank.example
upstream:
  url: http://127.0.0.1:8080
issuers:
  - issuer: https://as.bank.example
    jwks_file: keys/as.jwks.json
    audiences: [https://api.bank.example]
policies: [policies/]
";

fn config_error(src: &str) -> String {
    Config::from_yaml(Path::new("config.yaml"), src)
        .expect_err("must be refused")
        .to_string()
}

#[test]
fn config_load_errors_name_file_line_and_column() {
    let cases: &[(&str, String, &str)] = &[
        (
            "HS256",
            CONFIG.replace(
                "    audiences:",
                "    algorithms: [PS256, HS256]\n    audiences:",
            ),
            "config.yaml:9:25: issuers[0].algorithms[1]: \"HS256\" is never accepted (only asymmetric algorithms)",
        ),
        (
            "bad duration at the field",
            CONFIG.replace(
                "    audiences:",
                "    max_token_lifetime: 10 minutes\n    audiences:",
            ),
            "config.yaml:9:25: issuers[0].max_token_lifetime: duration \"10 minutes\": unknown unit \" minutes\" (ms, s, m, h)",
        ),
        (
            "duplicate key at the key",
            CONFIG.replace(
                "    audiences:",
                "    jwks_file: other.json\n    audiences:",
            ),
            "config.yaml:9:5: issuers[0].jwks_file: duplicate key `jwks_file`",
        ),
        (
            "mis-indented key",
            CONFIG.replace("  public_url:", "public_url:"),
            "config.yaml:3:1: listen: missing field `public_url`: the `public_url` here belongs to the top level, not listen; check its indentation",
        ),
        (
            "unknown key with a hint",
            CONFIG.replace("    audiences:", "    audience: [x]\n    audiences:"),
            "config.yaml:9:5: issuers[0].audience: unknown field `audience`, did you mean `audiences`?",
        ),
    ];
    for (name, src, want) in cases {
        assert_eq!(config_error(src), *want, "{name}");
    }
}

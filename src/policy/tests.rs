use std::path::PathBuf;

use http::Method;

use super::*;

const ACCOUNTS: &str = "\
api: accounts
audience: https://api.bank.example
defaults:
  binding: unbound_allowed
  scopes: [accounts]
routes:
  - name: list-accounts
    method: GET
    path: /accounts
  - name: get-account
    method: GET
    path: /accounts/{account_id}
  - name: special
    method: GET
    path: /accounts/special
  - name: update-account
    method: PUT
    path: /accounts/{account_id}
    scopes: [accounts, accounts:write]
    binding: dpop
  - name: health
    method: GET
    path: /health
    public: true
";

fn compile(srcs: &[(&str, &str)]) -> Result<PolicySet, Vec<InvalidConfig>> {
    let owned: Vec<(PathBuf, String)> = srcs
        .iter()
        .map(|(f, s)| (PathBuf::from(f), (*s).to_owned()))
        .collect();
    PolicySet::compile(&owned)
}

#[test]
fn routes_match_by_method_and_template() {
    let set = compile(&[("accounts.yaml", ACCOUNTS)]).expect("compiles");
    let cases: &[(&str, Method, &str, Option<&str>, Option<&str>)] = &[
        (
            "static",
            Method::GET,
            "/accounts",
            Some("list-accounts"),
            None,
        ),
        (
            "param",
            Method::GET,
            "/accounts/acc-1",
            Some("get-account"),
            Some("acc-1"),
        ),
        (
            "static beats param",
            Method::GET,
            "/accounts/special",
            Some("special"),
            None,
        ),
        (
            "other method",
            Method::PUT,
            "/accounts/acc-1",
            Some("update-account"),
            Some("acc-1"),
        ),
        (
            "method not defined",
            Method::DELETE,
            "/accounts/acc-1",
            None,
            None,
        ),
        (
            "trailing slash is a different path",
            Method::GET,
            "/accounts/",
            None,
            None,
        ),
        (
            "deeper path",
            Method::GET,
            "/accounts/acc-1/balances",
            None,
            None,
        ),
        ("unknown", Method::GET, "/payments", None, None),
        ("public", Method::GET, "/health", Some("health"), None),
    ];
    for (name, method, path, want, param) in cases {
        let got = set.lookup(method, path);
        assert_eq!(got.as_ref().map(|m| &*m.route.name), *want, "{name}");
        if let Some(p) = param {
            assert_eq!(
                got.and_then(|m| m.params.get("account_id")),
                Some(*p),
                "{name}"
            );
        }
    }
    let upd = set.lookup(&Method::PUT, "/accounts/a").expect("route");
    assert_eq!(upd.route.binding, Binding::Dpop);
    assert_eq!(upd.route.scopes.len(), 2);
    assert!(set.revision().starts_with("sha256:"));
}

#[test]
fn policy_errors_are_located() {
    let cases: &[(&str, String, &str, Option<usize>)] = &[
        (
            "unknown key",
            ACCOUNTS.replace(
                "    path: /accounts\n",
                "    path: /accounts\n    scope: [x]\n",
            ),
            "routes[0].scope",
            Some(10),
        ),
        (
            "bad binding",
            ACCOUNTS.replace("binding: dpop", "binding: dpopp"),
            "routes[3].binding",
            Some(20),
        ),
        (
            "bad method",
            ACCOUNTS.replace("method: PUT", "method: put"),
            "routes[3] (update-account).method",
            Some(17),
        ),
        (
            "duplicate method+path",
            ACCOUNTS.replace("path: /accounts/special", "path: /accounts/{account_id}"),
            "routes[2] (special).path",
            Some(15),
        ),
        (
            "ambiguous params",
            ACCOUNTS.replace("path: /accounts/special", "path: /accounts/{id}"),
            "routes[2] (special).path",
            Some(15),
        ),
        (
            "unnormalized template",
            ACCOUNTS.replace("path: /health", "path: /a//health"),
            "routes[4] (health).path",
            Some(23),
        ),
        (
            "partial param",
            ACCOUNTS.replace("path: /health", "path: /h{x}"),
            "routes[4] (health).path",
            Some(23),
        ),
        (
            "public with scopes",
            ACCOUNTS.replace("    public: true", "    public: true\n    scopes: [x]"),
            "routes[4] (health).public",
            Some(24),
        ),
        (
            "duplicate name",
            ACCOUNTS.replace("name: special", "name: get-account"),
            "routes[2] (get-account).name",
            Some(13),
        ),
        (
            "bad scope",
            ACCOUNTS.replace("[accounts, accounts:write]", "[\"a b\"]"),
            "routes[3] (update-account).scopes[0]",
            Some(19),
        ),
        (
            "consent param not in template",
            ACCOUNTS.replace(
                "    path: /accounts/{account_id}\n",
                "    path: /accounts/{account_id}\n    consent: {claim: c, resource: {accounts: \"{id}\"}}\n",
            ),
            "routes[1] (get-account).consent.resource.accounts",
            Some(13),
        ),
        (
            "consent unknown key",
            ACCOUNTS.replace(
                "    path: /accounts\n",
                "    path: /accounts\n    consent: {claim: c, permission: [p]}\n",
            ),
            "routes[0].consent.permission",
            Some(10),
        ),
        (
            "public with consent",
            ACCOUNTS.replace("    public: true", "    public: true\n    consent: {claim: c}"),
            "routes[4] (health).public",
            Some(24),
        ),
    ];
    let mut wrong = Vec::new();
    for (name, src, field, line) in cases {
        let errs = compile(&[("p.yaml", src)]).expect_err(name);
        if errs[0].field != *field || errs[0].line != *line {
            wrong.push(format!("{name}: {}", errs[0]));
        }
        assert!(errs[0].to_string().starts_with("p.yaml:"), "{name}");
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn apis_must_be_unique_and_routes_cannot_collide_across_files() {
    let errs = compile(&[("a.yaml", ACCOUNTS), ("b.yaml", ACCOUNTS)]).expect_err("dup api");
    assert!(
        errs[0].message.contains("already defined in a.yaml"),
        "{}",
        errs[0]
    );
    let other = ACCOUNTS.replace("api: accounts", "api: other");
    let errs = compile(&[("a.yaml", ACCOUNTS), ("b.yaml", &other)]).expect_err("collide");
    assert!(
        errs[0].message.contains("already defined by route"),
        "{}",
        errs[0]
    );
}

#[test]
fn shipped_policies_compile() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies");
    let set = PolicySet::load(&[dir]).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(set.routes().len() >= 4);
    let consent = |path: &str, method: Method| {
        set.lookup(&method, path)
            .and_then(|m| m.route.consent.clone())
            .unwrap_or_else(|| panic!("{path}: consent rule expected"))
    };
    let ais = consent("/open-banking/v4.0/aisp/accounts/acc-1", Method::GET);
    assert!(ais.requires_service() && !ais.needs_body());
    let pis = consent("/open-banking/v4.0/pisp/domestic-payments", Method::POST);
    assert!(pis.needs_body() && !pis.requires_service());
    let bg = consent("/v1/accounts/acc-1/balances", Method::GET);
    assert!(bg.requires_service());
}

#[test]
fn consent_rules_compile_into_routes() {
    let src = ACCOUNTS.replace(
        "    path: /accounts/{account_id}\n",
        "    path: /accounts/{account_id}\n    consent:\n      claim: openbanking_intent_id\n      permissions: [ReadAccountsDetail]\n      resource: {accounts: \"{account_id}\"}\n",
    );
    let set = compile(&[("p.yaml", &src)]).unwrap_or_else(|e| panic!("{e:?}"));
    let m = set.lookup(&Method::GET, "/accounts/acc-1").expect("route");
    assert!(
        m.route
            .consent
            .as_ref()
            .is_some_and(|c| c.requires_service())
    );
    assert_eq!(
        set.needs_consent_service().map(|r| &*r.name),
        Some("get-account")
    );
    let plain = compile(&[("p.yaml", ACCOUNTS)]).expect("compiles");
    assert!(plain.needs_consent_service().is_none());
    assert!(plain.routes().iter().all(|r| r.consent.is_none()));
}

const PAYMENTS: &str = "\
api: payments
routes:
  - name: create-payment
    method: POST
    path: /domestic-payments
    scopes: [payments]
    delegation:
      max_depth: 1
      actors: [\"spiffe://bank.example/ns/aggregators/*\"]
      chain: [\"spiffe://bank.example/*\"]
    purpose: [payment-initiation]
    assurance: {acr: [\"urn:bank:sca\"], max_auth_age: 5m}
";

#[test]
fn delegation_purpose_and_assurance_compile() {
    let set = compile(&[("payments.yaml", PAYMENTS)]).expect("compiles");
    let r = set
        .lookup(&Method::POST, "/domestic-payments")
        .expect("route")
        .route;
    let d = r.delegation.as_ref().expect("delegation");
    assert_eq!(d.max_depth, 1);
    assert_eq!(d.actors.len(), 1);
    assert_eq!(d.chain.as_ref().map(|c| c.len()), Some(1));
    assert_eq!(
        r.purpose.as_deref(),
        Some(&["payment-initiation".to_owned()][..])
    );
    let a = r.assurance.as_ref().expect("assurance");
    assert_eq!(a.acr_values(), Some("urn:bank:sca"));
    assert_eq!(a.max_age(), Some(300));
    let plain = compile(&[("a.yaml", ACCOUNTS)]).expect("compiles");
    let l = plain
        .lookup(&Method::GET, "/accounts")
        .expect("route")
        .route;
    assert!(l.delegation.is_none() && l.purpose.is_none() && l.assurance.is_none());
}

#[test]
fn delegation_purpose_and_assurance_errors_are_located() {
    let cases: &[(&str, String, &str, &str)] = &[
        (
            "unknown delegation key",
            PAYMENTS.replace("max_depth: 1", "maxdepth: 1"),
            "routes[0].delegation",
            "unknown field",
        ),
        (
            "infix glob",
            PAYMENTS.replace("aggregators/*", "*/aggregators"),
            "routes[0] (create-payment).delegation",
            "actors[0]",
        ),
        (
            "depth beyond the parser cap",
            PAYMENTS.replace("max_depth: 1", "max_depth: 99"),
            "routes[0] (create-payment).delegation",
            "max_depth",
        ),
        (
            "empty purpose",
            PAYMENTS.replace("[payment-initiation]", "[]"),
            "routes[0] (create-payment).purpose",
            "empty",
        ),
        (
            "unknown assurance key",
            PAYMENTS.replace("max_auth_age", "max_age"),
            "routes[0].assurance",
            "unknown field",
        ),
        (
            "bad acr",
            PAYMENTS.replace("[\"urn:bank:sca\"]", "[\"urn bank\"]"),
            "routes[0] (create-payment).assurance",
            "acr[0]",
        ),
        (
            "public with purpose",
            ACCOUNTS.replace("    public: true", "    public: true\n    purpose: [x]"),
            "routes[4] (health).public",
            "public",
        ),
    ];
    for (name, src, field, msg) in cases {
        let errs = compile(&[("p.yaml", src.as_str())]).expect_err(name);
        assert!(errs[0].field.starts_with(field), "{name}: {}", errs[0]);
        assert!(errs[0].to_string().contains(msg), "{name}: {}", errs[0]);
        assert!(errs[0].line.is_some(), "{name}: {}", errs[0]);
    }
}

#[test]
fn shipped_policy_tests_pass_and_a_wrong_expectation_fails() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies");
    let files = testing::test_files(&[dir]);
    assert!(files.len() >= 3, "{files:?}");
    for f in files {
        let results = testing::run_file(&f).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(!results.is_empty());
        for r in results {
            assert!(
                r.passed(),
                "{}: {}: expected {}, got {}",
                f.display(),
                r.name,
                r.expected,
                r.got
            );
        }
    }
    let tmp = tempfile::tempdir().expect("dir");
    std::fs::write(tmp.path().join("p.yaml"), ACCOUNTS).expect("policy");
    let case = "policy: p.yaml\ncases:\n  - name: wrong\n    request: {method: GET, path: /health}\n    expect: {deny: token_missing}\n  - name: unknown reason\n    request: {method: GET, path: /health}\n    expect: {deny: nope}\n";
    std::fs::write(tmp.path().join("p_test.yaml"), case).expect("test");
    let errs = testing::run_file(&tmp.path().join("p_test.yaml")).expect_err("unknown reason code");
    assert_eq!(
        errs[0].to_string(),
        format!(
            "{}:8:20: cases[1] (unknown reason).expect.deny: unknown deny reason `nope`",
            tmp.path().join("p_test.yaml").display()
        )
    );
    let one = case.split("  - name: unknown").next().unwrap_or_default();
    std::fs::write(tmp.path().join("p_test.yaml"), one).expect("test");
    let r = testing::run_file(&tmp.path().join("p_test.yaml")).expect("runs");
    assert_eq!((r[0].passed(), r[0].got.as_str()), (false, "allow"));
}

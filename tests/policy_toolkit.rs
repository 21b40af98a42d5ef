//! The shipped policies are fully covered by their tests, and the tests have teeth: copies of
//! the policies made more permissive in the ways a careless edit would (a scope dropped, a
//! consent permission removed, a consent status widened, a delegation actor widened or delegation
//! added, binding relaxed) each make `policy test` fail. A policy file without tests counts as
//! uncovered.

use std::path::{Path, PathBuf};
use std::process::Command;

use fapi_guard::policy::coverage;

fn policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// Every policy file under `policies/` has a test file, every case passes, and the coverage of
/// routes and of the deny reasons their policies can produce is 100%, per file and overall.
#[test]
fn shipped_policy_tests_pass_with_full_coverage() {
    let (cov, runs) = coverage::collect(&[policies()], true).unwrap_or_else(|e| panic!("{e:?}"));
    let files = fapi_guard::policy::policy_files(&[policies()], &mut Vec::new());
    assert!(!files.is_empty());
    for f in &files {
        let source = cov
            .sources
            .get(f)
            .unwrap_or_else(|| panic!("{}: not measured", f.display()));
        assert!(source.tested, "{}: no *_test.yaml names it", f.display());
        assert!(!source.routes.is_empty(), "{}", f.display());
        assert!(
            source.percent() >= 100.0,
            "{}: {:.1}%\n{}",
            f.display(),
            source.percent(),
            cov.report()
        );
    }
    assert_eq!(cov.sources.len(), files.len(), "{:?}", cov.sources.keys());
    assert_eq!(cov.untested().count(), 0);
    for (file, run) in &runs {
        for r in &run.results {
            assert!(
                r.passed(),
                "{}: {}: expected {}, got {}",
                file.display(),
                r.name,
                r.expected,
                r.got
            );
        }
    }
    for (_, route, c) in cov.routes() {
        assert!(c.exercised, "{route} not exercised");
    }
    assert!(cov.percent() >= 100.0, "{}", cov.report());
}

fn policy_test(dir: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fapi-guard"))
        .args(["policy", "test"])
        .args(extra)
        .arg(dir)
        .output()
        .expect("run fapi-guard");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A copy of `policies/` with `from` replaced by `to` in `file` (which must contain it).
fn mutated(file: &str, from: &str, to: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for e in std::fs::read_dir(policies()).expect("policies/") {
        let p = e.expect("entry").path();
        let name = p.file_name().expect("name").to_owned();
        let mut src = std::fs::read_to_string(&p).expect("read");
        if name == file {
            assert!(src.contains(from), "{file} has no {from:?}");
            src = src.replace(from, to);
        }
        std::fs::write(dir.path().join(name), src).expect("write");
    }
    dir
}

#[test]
fn more_permissive_policies_fail_their_tests() {
    let mutations = [
        (
            "scope dropped",
            "accounts.yaml",
            "  scopes: [accounts]\n",
            "  scopes: []\n",
        ),
        (
            "payments scope dropped",
            "payments.yaml",
            "  scopes: [payments]\n",
            "",
        ),
        (
            "consent permission removed",
            "accounts.yaml",
            "      permissions: [ReadBalances]\n",
            "",
        ),
        (
            "consent account check removed",
            "berlin-group.yaml",
            "      status: [valid]\n      resource: {accounts: \"{account_id}\"}\n  - name: bg-get-transactions",
            "      status: [valid]\n  - name: bg-get-transactions",
        ),
        (
            "delegation actor widened",
            "payments.yaml",
            "actors: [\"spiffe://bank.example/ns/aggregators/*\"]",
            "actors: [\"spiffe://*\"]",
        ),
        (
            "delegation depth widened",
            "payments.yaml",
            "max_depth: 1",
            "max_depth: 2",
        ),
        (
            "binding relaxed to DPoP or mTLS",
            "berlin-group.yaml",
            "binding: mtls",
            "binding: dpop_or_mtls",
        ),
        (
            "binding relaxed to unbound",
            "accounts.yaml",
            "binding: dpop_or_mtls",
            "binding: unbound_allowed",
        ),
        (
            "consent status widened",
            "accounts.yaml",
            "      status: [Authorised]\n",
            "      status: [Authorised, AwaitingAuthorisation]\n",
        ),
        (
            "Berlin Group consent status widened",
            "berlin-group.yaml",
            "status: [valid]",
            "status: [valid, received]",
        ),
        (
            "expired Berlin Group consents accepted",
            "berlin-group.yaml",
            "status: [valid]",
            "status: [valid, expired]",
        ),
        (
            "delegation added to a route that had none",
            "accounts.yaml",
            "    path: /open-banking/v4.0/aisp/accounts\n",
            "    path: /open-banking/v4.0/aisp/accounts\n    delegation: {max_depth: 1, actors: [\"spiffe://bank.example/ns/aggregators/*\"]}\n",
        ),
        (
            "payment approvals for any resource server accepted",
            "payments.yaml",
            "        type: payment_initiation\n",
            "        type: payment_initiation\n        locations: false\n",
        ),
        (
            "payment body check removed",
            "payments.yaml",
            "          /Data/Initiation/InstructedAmount/Amount: /instructedAmount/amount\n",
            "",
        ),
    ];
    let (code, out) = policy_test(&policies(), &[]);
    assert_eq!(code, 0, "the shipped policies pass: {out}");
    for (name, file, from, to) in mutations {
        let dir = mutated(file, from, to);
        let (code, out) = policy_test(dir.path(), &[]);
        assert_eq!(code, 1, "{name}: the tests must catch it:\n{out}");
        assert!(out.contains("\nFAIL  "), "{name}: {out}");
    }
}

#[test]
fn min_coverage_fails_below_the_threshold() {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in ["payments.yaml", "payments_test.yaml"] {
        std::fs::copy(policies().join(f), dir.path().join(f)).expect("copy");
    }
    let (code, out) = policy_test(dir.path(), &["--min-coverage", "100"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("coverage: 100.0% of 3 route(s)"), "{out}");
    // Drop every case of one route: it is reported, and coverage falls below 100.
    let src = std::fs::read_to_string(dir.path().join("payments_test.yaml")).expect("read");
    let kept: Vec<&str> = src
        .split("\n  - name: ")
        .filter(|c| !c.starts_with("get-payment-details"))
        .collect();
    std::fs::write(
        dir.path().join("payments_test.yaml"),
        kept.join("\n  - name: "),
    )
    .expect("write");
    let (code, out) = policy_test(dir.path(), &["--min-coverage", "100"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("not exercised: payments/get-payment-details"),
        "{out}"
    );
    assert!(
        out.contains("uncovered:     payments/get-payment-details: token_missing, token_audience_mismatch, binding_missing, scope_insufficient, delegation_not_allowed"),
        "{out}"
    );
    let (code, _) = policy_test(dir.path(), &["--min-coverage", "50"]);
    assert_eq!(code, 0);
}

#[test]
fn a_policy_file_without_tests_is_reported_at_zero_percent() {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in ["payments.yaml", "payments_test.yaml"] {
        std::fs::copy(policies().join(f), dir.path().join(f)).expect("copy");
    }
    std::fs::write(
        dir.path().join("legacy.yaml"),
        "api: legacy\ndefaults:\n  scopes: [legacy]\nroutes:\n  - {name: read, method: GET, path: /legacy}\n  - {name: write, method: POST, path: /legacy}\n",
    )
    .expect("write");
    let d = dir.path().display();
    let (code, out) = policy_test(dir.path(), &["--coverage"]);
    assert_eq!(code, 0, "the tests that exist pass: {out}");
    for line in [
        "not exercised: legacy/read".to_owned(),
        "uncovered:     legacy/read: token_missing, binding_missing, scope_insufficient, delegation_not_allowed".to_owned(),
        "not exercised: legacy/write".to_owned(),
        format!("{d}/legacy.yaml: 0.0% of 2 route(s) (no *_test.yaml names it)"),
        format!("{d}/payments.yaml: 100.0% of 3 route(s)"),
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} missing:\n{out}");
    }
    let total = out
        .lines()
        .find_map(|l| l.strip_prefix("coverage: "))
        .expect("total");
    // payments: 23 of 23 items (3 routes, 20 reasons); legacy: 0 of 10.
    assert!(total.starts_with("69.7% of 5 route(s)"), "{total}");
    let (code, out) = policy_test(dir.path(), &["--min-coverage", "100"]);
    assert_eq!(code, 1, "{out}");
    // Without --coverage the run is what it was: only the test files.
    let (code, out) = policy_test(dir.path(), &[]);
    assert_eq!(code, 0);
    assert!(!out.contains("legacy"), "{out}");
}

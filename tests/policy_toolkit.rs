//! The shipped policies are fully covered by their tests, and the tests have teeth: copies of
//! the policies made more permissive in the ways a careless edit would (a scope dropped, a
//! consent permission removed, a delegation actor widened, binding relaxed) each make
//! `policy test` fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use fapi_guard::policy::coverage::Coverage;
use fapi_guard::policy::testing;

fn policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

#[test]
fn shipped_policy_tests_pass_with_full_coverage() {
    let files = testing::test_files(&[policies()]);
    assert_eq!(files.len(), 3, "{files:?}");
    let mut cov = Coverage::default();
    for f in &files {
        let (results, set) =
            testing::run_file_with_policy(f).unwrap_or_else(|e| panic!("{}: {e:?}", f.display()));
        for r in &results {
            assert!(
                r.passed(),
                "{}: {}: expected {}, got {}",
                f.display(),
                r.name,
                r.expected,
                r.got
            );
        }
        cov.add(&set, &results);
    }
    assert_eq!(cov.routes.len(), 11);
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
        out.contains("uncovered:     payments/get-payment-details: token_missing, binding_missing, scope_insufficient"),
        "{out}"
    );
    let (code, _) = policy_test(dir.path(), &["--min-coverage", "50"]);
    assert_eq!(code, 0);
}

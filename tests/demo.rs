//! The demo is the newcomer's first contact: it must keep passing its own script, and keep its
//! evidence (the audit trail) under `./fapi-guard-demo/` for `fapi-guard audit verify`.

use std::path::{Path, PathBuf};

/// The demo writes into the current directory: each test runs it in a scratch directory of its
/// own, one at a time (the working directory is process-wide).
static CWD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn trails(dir: &Path) -> Vec<PathBuf> {
    let mut t: Vec<_> = std::fs::read_dir(dir)
        .expect("the demo directory is kept")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    t.sort();
    t
}

fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("trail")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_script_gets_every_expected_answer() {
    let _cwd = CWD.lock().await;
    let scratch = tempfile::tempdir().expect("scratch dir");
    std::env::set_current_dir(scratch.path()).expect("cd scratch");
    fapi_guard::demo::run(false)
        .await
        .expect("every demo step got its expected answer");

    let dir = scratch.path().join(fapi_guard::demo::DIR);
    let trails = trails(&dir);
    assert_eq!(trails.len(), 1, "one audit trail kept: {trails:?}");
    let summary = fapi_guard::audit::verify_files(&trails).expect("the kept trail verifies");
    // The script sends allowed and denied requests; both must be in the kept evidence.
    assert!(summary.allows > 0 && summary.denies > 0, "{summary:?}");
    // The revocation tour: a consent withdrawn through the admin API and a CAEP SET, each
    // applied (a `revocation` record) and refusing the next request.
    let recs = records(&trails[0]);
    for (source, kind) in [("admin", "consent"), ("ssf", "subject")] {
        assert!(
            recs.iter().any(|r| r["kind"] == "revocation"
                && r["revocation"]["source"] == source
                && r["revocation"]["kind"] == kind),
            "a {source} {kind} revocation is in the trail"
        );
    }
    for reason in ["consent_revoked", "token_revoked"] {
        assert!(
            recs.iter()
                .any(|r| r["kind"] == "decision" && r["reason"] == reason),
            "a request refused with {reason}"
        );
    }
}

/// `demo --redis URL`: two replicas sharing Redis; a proof used at one is refused at the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(fapi_guard_test_redis),
    ignore = "needs Redis: set FAPI_GUARD_TEST_REDIS=redis://127.0.0.1:6379"
)]
async fn demo_with_redis_shows_a_replay_refused_at_the_other_replica() {
    let url = std::env::var("FAPI_GUARD_TEST_REDIS").expect("FAPI_GUARD_TEST_REDIS");
    let _cwd = CWD.lock().await;
    let scratch = tempfile::tempdir().expect("scratch dir");
    std::env::set_current_dir(scratch.path()).expect("cd scratch");
    fapi_guard::demo::run_with(false, Some(&url))
        .await
        .expect("every demo step got its expected answer");
    let dir = scratch.path().join(fapi_guard::demo::DIR);
    let trails = trails(&dir);
    assert_eq!(
        trails.len(),
        3,
        "the proxy's and both replicas' trails: {trails:?}"
    );
    for t in &trails {
        fapi_guard::audit::verify_files(std::slice::from_ref(t)).expect("each kept trail verifies");
    }
    let b = trails
        .iter()
        .find(|t| t.to_string_lossy().ends_with("replica-b.jsonl"))
        .expect("replica B's trail");
    let recs = records(b);
    for reason in ["dpop_proof_replayed", "token_revoked"] {
        assert!(
            recs.iter()
                .any(|r| r["kind"] == "decision" && r["reason"] == reason),
            "replica B refused with {reason}"
        );
    }
}

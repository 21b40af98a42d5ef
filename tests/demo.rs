//! The demo is the newcomer's first contact: it must keep passing its own script, and keep its
//! evidence (the audit trail) under `./fapi-guard-demo/` for `fapi-guard audit verify`.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_script_gets_every_expected_answer() {
    // The demo writes into the current directory: run it in a scratch one so the repository
    // is not littered (this binary holds only this test, so changing the cwd is safe).
    let scratch = tempfile::tempdir().expect("scratch dir");
    std::env::set_current_dir(scratch.path()).expect("cd scratch");
    fapi_guard::demo::run(false)
        .await
        .expect("every demo step got its expected answer");

    let dir = scratch.path().join(fapi_guard::demo::DIR);
    let trails: Vec<_> = std::fs::read_dir(&dir)
        .expect("the demo directory is kept")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    assert_eq!(trails.len(), 1, "one audit trail kept: {trails:?}");
    let summary = fapi_guard::audit::verify_files(&trails).expect("the kept trail verifies");
    // The script sends allowed and denied requests; both must be in the kept evidence.
    assert!(summary.allows > 0 && summary.denies > 0, "{summary:?}");
}

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

/// `demo --serve`, as a newcomer runs it: the binary keeps running, and what it prints works
/// as printed. The `T=`/`C=` line and each `curl` line are run by `sh` (with `curl` replaced
/// by a shell function that records its arguments, so no curl needs to be installed) and the
/// recorded requests are sent; the admin `/metrics` line answers with the proxy's metrics; after
/// Ctrl-C the printed `audit verify` command succeeds without `fapi-guard` on `PATH`.
#[test]
fn demo_serve_prints_lines_that_work() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    let scratch = tempfile::tempdir().expect("scratch dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fapi-guard"))
        .args(["demo", "--serve"])
        .current_dir(scratch.path())
        // Only what a shell needs: the printed commands must not rely on a `fapi-guard` on PATH.
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo --serve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    // Read until the serve block is complete: its last line is the verify command.
    while !printed
        .iter()
        .rev()
        .nth(1)
        .is_some_and(|l: &String| l.starts_with("Audit trail"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => printed.push(l),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "demo --serve never printed its serve block:\n{}",
                    printed.join("\n")
                );
            }
        }
    }
    let all = printed.join("\n");
    let vars = printed
        .iter()
        .find(|l| l.trim_start().starts_with("T=$("))
        .unwrap_or_else(|| panic!("no T=/C= line in\n{all}"))
        .trim()
        .to_owned();
    let curls: Vec<String> = printed
        .iter()
        .map(|l| l.trim().to_owned())
        .filter(|l| l.starts_with("curl "))
        .collect();
    assert_eq!(
        curls.len(),
        4,
        "three proxy lines and the metrics line:\n{all}"
    );
    let short = curls.iter().all(|l| l.len() < 160);
    assert!(short, "curl lines stay short (tokens in variables):\n{all}");

    // Each line as the shell reads it; `curl` records its argv, NUL-separated, one call a line.
    let argv_file = scratch.path().join("curl-argv");
    let script = format!(
        "curl() {{ for a in \"$@\"; do printf '%s\\0' \"$a\"; done >> '{argv}'; printf '\\n' >> '{argv}'; }}\n{vars}\n{}\n",
        curls.join("\n"),
        argv = argv_file.display()
    );
    let sh = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(scratch.path())
        .status()
        .expect("sh");
    // The metrics line pipes into `grep`, which finds nothing in the fake curl's empty output.
    assert!(sh.code().is_some(), "{script}");
    let recorded = std::fs::read_to_string(&argv_file).expect("curl was called");
    let calls: Vec<Vec<&str>> = recorded
        .lines()
        .map(|l| l.split('\0').filter(|a| !a.is_empty()).collect())
        .collect();
    assert_eq!(calls.len(), 4, "{recorded:?}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut statuses = Vec::new();
    for argv in &calls {
        let mut req = http::Request::get("http://invalid/");
        let mut url = None;
        let mut args = argv.iter();
        while let Some(a) = args.next() {
            match *a {
                "-i" | "-s" => {}
                "-H" => {
                    let h = args.next().expect("-H value");
                    let (k, v) = h.split_once(": ").expect("header line");
                    assert!(
                        !v.is_empty(),
                        "{k} is empty: the shell variable was not set"
                    );
                    req = req.header(k, v);
                }
                u if u.starts_with("http://") => url = Some(u.to_owned()),
                other => panic!("unexpected curl argument {other:?} in {argv:?}"),
            }
        }
        let url = url.expect("a URL");
        let req = req
            .uri(url.as_str())
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request");
        let (status, body) = rt.block_on(async {
            use http_body_util::BodyExt;
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http();
            let resp = client
                .request(req)
                .await
                .expect("the printed address answers");
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        });
        if url.ends_with("/metrics") {
            assert!(
                body.lines()
                    .any(|l| l.starts_with("fapi_guard_requests_total{")),
                "the admin listener serves the proxy's metrics:\n{body}"
            );
        }
        statuses.push(status);
    }
    // /health, the certificate-bound call, the same without the certificate, then /metrics.
    assert_eq!(statuses, [200, 200, 401, 200], "{all}");

    // Ctrl-C ends the demo with exit 0; then the printed verify command runs as printed.
    let stopped = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(stopped.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "demo --serve did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let rest: Vec<String> = rx.try_iter().collect();
    let verify = rest
        .iter()
        .skip_while(|l| !l.contains("check it yourself with"))
        .nth(1)
        .unwrap_or_else(|| panic!("no verify command after exit in\n{}", rest.join("\n")))
        .trim()
        .to_owned();
    assert_eq!(
        verify,
        printed.last().expect("serve block").trim(),
        "one command, printed twice"
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&verify)
        .current_dir(scratch.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{verify}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

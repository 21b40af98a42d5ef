//! Crash safety of the audit trail with the real binary: drive load, `kill -9` the proxy mid-load,
//! then every request the upstream received must have its decision record, and
//! `fapi-guard audit verify` must pass on what was written. Then tamper with the file and watch
//! `audit verify` name the line.

mod common;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_fapi-guard");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn verify(files: &[&std::path::Path]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["audit", "verify"])
        .args(files)
        .output()
        .expect("run verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_loses_no_decision_record() {
    let key = TestKey::new("k1");
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("jwks.json"),
        json!({"keys": [key.jwks_entry()]}).to_string(),
    )
    .expect("jwks");
    std::fs::write(dir.path().join("policy.yaml"), POLICY).expect("policy");
    let (port, admin) = (free_port(), free_port());
    let config = format!(
        "listen:\n  address: 127.0.0.1:{port}\n  public_url: https://api.test.example\n\
         admin:\n  address: 127.0.0.1:{admin}\nupstream:\n  url: http://{}\n\
         issuers:\n  - issuer: {ISSUER}\n    jwks_file: jwks.json\n    audiences: [{AUDIENCE}]\n\
         audit:\n  sink: file\n  path: audit.jsonl\npolicies: [policy.yaml]\n",
        echo.addr
    );
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, config).expect("config");
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn proxy");
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(Ok(r)) = tokio::time::timeout(
            Duration::from_millis(200),
            client().request(
                http::Request::get(format!("http://127.0.0.1:{admin}/readyz"))
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .expect("req"),
            ),
        )
        .await
            && r.status() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ready, "proxy never became ready");

    let auth = Arc::new(format!("Bearer {}", key.token(|_, _| {})));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (auth, stop) = (auth.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let url = format!("http://127.0.0.1:{port}/accounts");
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::get(&url)
                    .header("authorization", auth.as_str())
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .expect("req");
                // Errors are expected once the proxy is killed.
                let _ = tokio::time::timeout(Duration::from_secs(2), client().request(req)).await;
            }
        }));
    }
    // Kill once real load has reached the upstream (at least 600 ms, and at least 21 forwards,
    // however slow a loaded machine is), so the test checks a kill in the middle of traffic.
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(600)).await;
    while echo.count() <= 20 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("kill -9"); // SIGKILL on Unix: no drain, no flush
    let _ = child.wait();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }

    let seen: HashSet<String> = echo
        .seen
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|s| {
            s.headers
                .get("x-fapi-interaction-id")?
                .to_str()
                .ok()
                .map(str::to_owned)
        })
        .collect();
    assert!(
        seen.len() > 20,
        "load reached the upstream ({} requests)",
        seen.len()
    );
    let audit = dir.path().join("audit.jsonl");
    let text = std::fs::read_to_string(&audit).expect("audit file");
    let recorded: HashSet<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kind"] == "decision" && r["decision"] == "allow")
        .filter_map(|r| r["interaction_id"].as_str().map(str::to_owned))
        .collect();
    let missing: Vec<_> = seen.difference(&recorded).collect();
    assert!(
        missing.is_empty(),
        "{} forwarded requests have no decision record",
        missing.len()
    );
    let (code, out) = verify(&[&audit]);
    assert_eq!(code, 0, "audit verify after kill -9: {out}");
    eprintln!(
        "kill test: {} requests forwarded, all recorded; {out}",
        seen.len()
    );

    // Tampering: each edit is named by line.
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 5);
    let edited = lines[2].replacen("\"GET\"", "\"PUT\"", 1);
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "edit a field",
            [&lines[..2], &[edited.as_str()], &lines[3..]]
                .concat()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ":4:",
        ),
        (
            "delete a line",
            [&lines[..2], &lines[3..]]
                .concat()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ":3:",
        ),
        (
            "swap two lines",
            [&lines[..2], &[lines[3], lines[2]], &lines[4..]]
                .concat()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ":3:",
        ),
    ];
    for (name, content, line) in cases {
        let f = dir.path().join("tampered.jsonl");
        std::fs::write(&f, content.join("\n") + "\n").expect("write");
        let (code, out) = verify(&[&f]);
        assert_eq!(code, 1, "{name}: {out}");
        assert!(out.contains(line), "{name}: expected {line} in {out}");
    }
}

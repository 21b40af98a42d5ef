//! The sidecar's life in a pod, with the real binary: startup to ready, policy reload from a
//! ConfigMap-style directory (the kubelet swaps a `..data` symlink) under load, SIGHUP, and the
//! SIGTERM drain (readiness off, `drain_delay` of service, in-flight requests finished, audit
//! flushed and verifiable, exit 0 within the grace period).

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Echo, TestKey, client};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

fn policy(routes: &[&str]) -> String {
    let mut p = String::from("api: accounts\ndefaults:\n  binding: unbound_allowed\nroutes:\n");
    for r in routes {
        p.push_str(&format!(
            "  - name: {}\n    method: GET\n    path: /{r}\n    public: true\n",
            r.replace('/', "-")
        ));
    }
    p
}

/// Writes `files` into a new timestamped directory and swaps `..data` to it, as the kubelet's
/// atomic writer does: `..data_tmp` → rename over `..data`, user-visible names are symlinks
/// through `..data`, the old directory is removed afterwards.
fn kubelet_write(dir: &Path, generation: u32, files: &[(&str, &str)]) {
    let ts = format!("..2026_11_25_12_00_{generation:02}.{generation}");
    std::fs::create_dir(dir.join(&ts)).expect("ts dir");
    for (name, text) in files {
        std::fs::write(dir.join(&ts).join(name), text).expect("write");
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    std::os::unix::fs::symlink(&ts, dir.join("..data_tmp")).expect("symlink");
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("rename");
    for (name, _) in files {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link).expect("link");
        }
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).expect("remove old");
    }
}

struct Sidecar {
    child: Child,
    dir: tempfile::TempDir,
    logs: Arc<Mutex<Vec<String>>>,
    addr: SocketAddr,
    admin: SocketAddr,
    started: Instant,
}

impl Sidecar {
    /// Starts `fapi-guard run` and waits for its "listening" log line.
    fn start(upstream: SocketAddr, listen_extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = TestKey::new("k1");
        std::fs::write(
            dir.path().join("jwks.json"),
            json!({"keys": [key.jwks_entry()]}).to_string(),
        )
        .expect("jwks");
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).expect("policies dir");
        kubelet_write(&policies, 1, &[("accounts.yaml", &policy(&["accounts"]))]);
        let config = format!(
            "listen:\n  address: 127.0.0.1:0\n  public_url: https://api.test.example\n{listen_extra}\
admin:\n  address: 127.0.0.1:0\nupstream:\n  url: http://{upstream}\n\
issuers:\n  - issuer: {}\n    jwks_file: jwks.json\n    audiences: [{}]\n\
audit:\n  sink: file\n  path: audit.jsonl\npolicies: [policies/]\n",
            common::ISSUER,
            common::AUDIENCE
        );
        std::fs::write(dir.path().join("config.yaml"), config).expect("config");
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_fapi-guard"))
            .args(["run", "--config"])
            .arg(dir.path().join("config.yaml"))
            .env("FAPI_GUARD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fapi-guard run");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["fields"]["message"] == "fapi-guard listening"
                {
                    let _ = tx.send(v["fields"].clone());
                }
                sink.lock().expect("lock").push(line);
            }
        });
        let fields = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| {
                panic!("no listening line; logs: {:?}", logs.lock().expect("lock"))
            });
        let addr = fields["addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("addr");
        // `admin = ?Some(127.0.0.1:port)` is logged with Debug formatting.
        let admin = fields["admin"]
            .as_str()
            .and_then(|a| a.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok())
            .expect("admin addr");
        Self {
            child,
            dir,
            logs,
            addr,
            admin,
            started,
        }
    }

    fn policies(&self) -> PathBuf {
        self.dir.path().join("policies")
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig}");
    }

    fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("lock").clone()
    }

    async fn admin_get(&self, path: &str) -> (u16, String) {
        let resp = client()
            .get(format!("http://{}{path}", self.admin).parse().expect("uri"))
            .await
            .expect("admin request");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn wait_ready(&self) -> Duration {
        for _ in 0..500 {
            if self.admin_get("/readyz").await.0 == 200 {
                return self.started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("never ready; logs: {:?}", self.logs());
    }

    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line"))
            .collect()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn status(url: &str) -> Result<u16, String> {
    let req = http::Request::get(url)
        .body(Full::new(bytes::Bytes::new()))
        .map_err(|e| e.to_string())?;
    match client().request(req).await {
        Ok(r) => {
            let s = r.status().as_u16();
            let _ = r.into_body().collect().await;
            Ok(s)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Requests `/accounts` from `workers` tasks until `stop`; returns (ok, failures).
fn load(
    addr: SocketAddr,
    workers: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    tokio::spawn(async move {
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..workers)
            .map(|_| {
                let (ok, failures, stop) = (ok.clone(), failures.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match status(&format!("http://{addr}/accounts")).await {
                            Ok(200) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            other => failures.lock().expect("lock").push(format!("{other:?}")),
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
        let f = failures.lock().expect("lock").clone();
        (ok.load(Ordering::Relaxed), f)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn configmap_reload_under_load() {
    let echo = Echo::start().await;
    let sidecar = Sidecar::start(echo.addr, "");
    let ready = sidecar.wait_ready().await;
    eprintln!(
        "startup to ready (keys from a file): {} ms",
        ready.as_millis()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let loader = load(sidecar.addr, 4, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new_route = format!("http://{}/statements", sidecar.addr);
    assert_eq!(
        status(&new_route).await,
        Ok(404),
        "not routed before the update"
    );

    // A ConfigMap update adds a route: enforced within a second.
    kubelet_write(
        &sidecar.policies(),
        2,
        &[("accounts.yaml", &policy(&["accounts", "statements"]))],
    );
    let swapped = Instant::now();
    loop {
        if status(&new_route).await == Ok(200) {
            break;
        }
        assert!(
            swapped.elapsed() < Duration::from_secs(1),
            "new policy not enforced within a second"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "ConfigMap swap to enforcement: {} ms",
        swapped.elapsed().as_millis()
    );
    let (_, metrics) = sidecar.admin_get("/metrics").await;
    let good_revision = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("fapi_guard_policy_info{revision=\"")?
                .split('"')
                .next()
        })
        .expect("policy_info")
        .to_owned();

    // A broken update (line 3 has a misspelt key) keeps the previous set in force.
    let broken =
        policy(&["accounts"]).replace("  binding: unbound_allowed", "  bindng: unbound_allowed");
    kubelet_write(&sidecar.policies(), 3, &[("accounts.yaml", &broken)]);
    let mut seen_error = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (_, m) = sidecar.admin_get("/metrics").await;
        if m.contains("fapi_guard_policy_reloads_total{result=\"error\"} 1") {
            seen_error = true;
            break;
        }
    }
    assert!(seen_error, "reload error not counted");
    assert_eq!(
        status(&new_route).await,
        Ok(200),
        "the old policy stays in force"
    );

    // SIGHUP reloads too (and reopens the audit file): the same broken file, a second error.
    sidecar.signal("-HUP");
    let mut counted = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (_, m) = sidecar.admin_get("/metrics").await;
        if m.contains("fapi_guard_policy_reloads_total{result=\"error\"} 2") {
            counted = true;
            break;
        }
    }
    assert!(counted, "SIGHUP did not reload the policies");

    stop.store(true, Ordering::Relaxed);
    let (ok, failures) = loader.await.expect("load");
    assert!(ok > 50, "load ran: {ok}");
    assert!(
        failures.is_empty(),
        "failed requests during reloads: {failures:?}"
    );

    let logs = sidecar.logs();
    let error_line = logs
        .iter()
        .find(|l| l.contains("policy reload rejected"))
        .expect("error logged");
    assert!(
        error_line.contains("accounts.yaml:3:3"),
        "file:line in the log: {error_line}"
    );
    assert!(error_line.contains("bindng"), "{error_line}");

    let reloads: Vec<Value> = sidecar
        .audit()
        .into_iter()
        .filter(|r| r["kind"] == "policy_reload")
        .collect();
    assert_eq!(reloads.len(), 3, "{reloads:?}");
    assert_eq!(reloads[0]["result"], "ok");
    assert_eq!(reloads[0]["policy_revision"], good_revision.as_str());
    for r in &reloads[1..] {
        assert_eq!(r["result"], "error");
        assert_eq!(
            r["policy_revision"],
            good_revision.as_str(),
            "names the revision kept"
        );
        assert!(
            r["error"]
                .as_str()
                .is_some_and(|e| e.contains("accounts.yaml:3:3")),
            "{r}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_gracefully() {
    const DRAIN_DELAY: Duration = Duration::from_millis(1500);
    const GRACE: Duration = Duration::from_secs(10); // terminationGracePeriodSeconds
    let echo = Echo::start().await;
    let sidecar = Sidecar::start(
        echo.addr,
        "  drain_delay: 1500ms\n  limits:\n    request_timeout: 5s\n",
    );
    let ready = sidecar.wait_ready().await;
    eprintln!(
        "startup to ready (keys from a file): {} ms",
        ready.as_millis()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let loader = load(sidecar.addr, 4, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut child = sidecar;
    child.signal("-TERM");
    let term = Instant::now();
    // Readiness goes false at once, while requests keep being served.
    let mut unready = None;
    while term.elapsed() < Duration::from_secs(1) {
        if child.admin_get("/readyz").await == (503, "draining\n".to_owned()) {
            unready = Some(term.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let unready = unready.expect("readiness never went false");

    // A slow request (300 ms at the API) started just before accepting stops must complete.
    tokio::time::sleep(DRAIN_DELAY.saturating_sub(term.elapsed() + Duration::from_millis(150)))
        .await;
    let slow_url = format!("http://{}/accounts?slow=1", child.addr);
    let in_flight = tokio::spawn(async move { status(&slow_url).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    assert!(
        term.elapsed() < DRAIN_DELAY,
        "load stopped inside drain_delay"
    );
    let (ok, failures) = loader.await.expect("load");
    assert_eq!(
        in_flight.await.expect("join"),
        Ok(200),
        "in-flight request finished"
    );
    assert!(ok > 50, "load ran: {ok}");
    assert!(
        failures.is_empty(),
        "requests failed during drain_delay: {failures:?}"
    );

    // New connections are refused once drain_delay is over.
    tokio::time::sleep(DRAIN_DELAY.saturating_sub(term.elapsed()) + Duration::from_millis(300))
        .await;
    assert!(
        status(&format!("http://{}/accounts", child.addr))
            .await
            .is_err()
            || child.child.try_wait().expect("wait").is_some()
    );

    let code = loop {
        if let Some(s) = child.child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            term.elapsed() < GRACE,
            "did not exit within the grace period"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let exited = term.elapsed();
    assert_eq!(
        code.code(),
        Some(0),
        "exit status; logs: {:?}",
        child.logs()
    );
    eprintln!(
        "SIGTERM → unready {} ms, exit {} ms",
        unready.as_millis(),
        exited.as_millis()
    );

    // Every answered request has its decision record, and the chain verifies.
    let decisions = child
        .audit()
        .into_iter()
        .filter(|r| r["kind"] == "decision" && r["route"] == "accounts")
        .count();
    assert_eq!(
        decisions,
        ok + 1,
        "a decision record per answered request (load + the slow one)"
    );
    let verify = Command::new(env!("CARGO_BIN_EXE_fapi-guard"))
        .args(["audit", "verify"])
        .arg(child.dir.path().join("audit.jsonl"))
        .output()
        .expect("audit verify");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

//! The real binary as a child process (`fapi-guard run`), for tests that need what only a
//! process has: its own stderr (log lines), its memory (`/proc/PID/status`), signals, and a
//! tracing subscriber of its own. Ports are picked free on 127.0.0.1; stderr goes to a file in
//! the test's directory so it can be read at any point.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use super::{Reply, client};

pub const BIN: &str = env!("CARGO_BIN_EXE_fapi-guard");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running `fapi-guard run`; killed (SIGKILL) when dropped unless already stopped.
pub struct ProxyProcess {
    pub child: Child,
    pub port: u16,
    pub admin: u16,
    pub dir: PathBuf,
    stderr_path: PathBuf,
}

impl ProxyProcess {
    /// Writes `dir/config.yaml`: a `listen:` section on a free port (with `listen_extra` lines
    /// added to it), an `admin:` section on another, then `rest` (upstream, issuers, audit,
    /// policies...; paths relative to `dir`). Starts the binary with stderr to `dir/stderr.log`.
    pub fn spawn(dir: &Path, listen_extra: &str, rest: &str) -> Self {
        let (port, admin) = (free_port(), free_port());
        let config = format!(
            "listen:\n  address: 127.0.0.1:{port}\n  public_url: https://api.test.example\n\
             {listen_extra}\nadmin:\n  address: 127.0.0.1:{admin}\n{rest}"
        );
        let cfg = dir.join("config.yaml");
        std::fs::write(&cfg, config).expect("write config");
        let stderr_path = dir.join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&cfg)
            .env("FAPI_GUARD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn fapi-guard");
        Self {
            child,
            port,
            admin,
            dir: dir.to_path_buf(),
            stderr_path,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits (up to 10 s) for admin `path` to answer 200; panics with the log otherwise.
    pub async fn wait_admin_200(&mut self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("fapi-guard exited ({status}):\n{}", self.stderr());
            }
            if let Ok(r) = try_get(&self.admin_url(path), &[], Duration::from_millis(500)).await
                && r.status == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("admin {path} never answered 200:\n{}", self.stderr());
    }

    pub async fn wait_healthy(&mut self) {
        self.wait_admin_200("/healthz").await;
    }

    pub async fn wait_ready(&mut self) {
        self.wait_admin_200("/readyz").await;
    }

    pub async fn readyz(&self) -> u16 {
        try_get(&self.admin_url("/readyz"), &[], Duration::from_secs(2))
            .await
            .map(|r| r.status)
            .expect("readyz answers")
    }

    /// The Prometheus text of admin `/metrics`.
    pub async fn metrics(&self) -> String {
        let req = Request::get(self.admin_url("/metrics"))
            .body(Full::new(Bytes::new()))
            .expect("req");
        let resp = tokio::time::timeout(Duration::from_secs(5), client().request(req))
            .await
            .expect("metrics in time")
            .expect("metrics");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        String::from_utf8(body.to_vec()).expect("utf8 metrics")
    }

    /// `metric_value` on a fresh scrape.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics().await, name, labels)
    }

    /// Resident memory in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// Peak resident memory in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    /// SIGTERM (graceful drain, audit queue flushed), then waits up to 15 s for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "fapi-guard did not exit after SIGTERM:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Sum of the samples of `name` whose labels include every `(label, value)` pair.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `fapi-guard audit verify FILES`: exit code and everything it printed.
pub fn audit_verify(files: &[&Path]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["audit", "verify"])
        .args(files)
        .output()
        .expect("run audit verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Every record of an audit file (a torn or non-JSON line fails the test).
pub fn audit_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

/// The interaction ids of `decision` records with `decision: allow`.
pub fn allowed_ids(records: &[Value]) -> HashSet<String> {
    records
        .iter()
        .filter(|r| r["kind"] == "decision" && r["decision"] == "allow")
        .filter_map(|r| r["interaction_id"].as_str().map(str::to_owned))
        .collect()
}

/// A GET that reports transport failures and timeouts instead of panicking.
pub async fn try_get(
    url: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<Reply, String> {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
    let work = async {
        let resp = client().request(req).await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e:?}"))?
            .to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            headers,
            body,
        })
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

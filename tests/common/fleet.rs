//! Fleets on Redis: real proxy processes (`fapi-guard run`) sharing one Redis or one Redis
//! Cluster, private `redis-server`s a test may kill and restart, and the checks every fleet
//! test ends with (each forwarded request audited, `audit verify` passing).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};

use super::process::{ProxyProcess, allowed_ids, audit_records, audit_verify, free_port, try_get};
use super::{AUDIENCE, Echo, ISSUER, POLICY, Reply, TestKey, get, send};

pub const ADMIN_TOKEN: &str = "fleet-admin-secret-0123456789";

/// The shared Redis named by `FAPI_GUARD_TEST_REDIS`; it must answer PING.
pub fn shared_redis() -> String {
    let url = std::env::var("FAPI_GUARD_TEST_REDIS")
        .ok()
        .filter(|v| !v.is_empty())
        .expect("FAPI_GUARD_TEST_REDIS names a Redis URL (see build.rs)");
    let mut c = ::redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| panic!("FAPI_GUARD_TEST_REDIS={url} is not reachable: {e}"));
    let pong: String = ::redis::cmd("PING").query(&mut c).expect("PING");
    assert_eq!(pong, "PONG");
    url
}

/// Tests built with `FAPI_GUARD_TEST_REDIS_SERVER` start their own `redis-server`; say clearly
/// when it is not there rather than failing somewhere inside.
pub fn require_redis_server() {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "NOTICE: this test starts its own redis-server, and none is on the PATH. Install it \
         (apt-get install redis-server) or build without FAPI_GUARD_TEST_REDIS_SERVER, which \
         lists the test as ignored."
    );
}

pub fn sync_conn(url: &str) -> ::redis::Connection {
    ::redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| panic!("redis at {url}: {e}"))
}

/// A private `redis-server` on a free port, which a test may kill and restart.
pub struct PrivateRedis {
    pub port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// With extra `redis-server` arguments (e.g. `["--maxmemory-policy", "allkeys-lru"]`).
    pub fn start_with(args: &[&str]) -> Self {
        require_redis_server();
        let mut r = Self {
            port: free_port(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            child: None,
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on the PATH");
        self.child = Some(child);
        for _ in 0..100 {
            let ok = ::redis::Client::open(self.url())
                .and_then(|c| c.get_connection())
                .is_ok();
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("private redis-server did not start on {}", self.port);
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The files every replica of a fleet shares: the issuer's JWKS, the policy, the admin token.
pub fn fixture(key: &TestKey) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("jwks.json"),
        json!({"keys": [key.jwks_entry()]}).to_string(),
    )
    .expect("jwks");
    std::fs::write(dir.path().join("policy.yaml"), POLICY).expect("policy");
    std::fs::write(dir.path().join("admin.token"), ADMIN_TOKEN).expect("token");
    dir
}

/// A fresh key prefix, so tests sharing one Redis never see each other's keys.
pub fn prefix() -> String {
    format!("fg-test-{}", uuid::Uuid::new_v4().simple())
}

/// `state:` lines for one Redis URL (or a YAML list of cluster nodes).
pub fn state(redis_url: &str, prefix: &str, mode: &str) -> String {
    format!(
        "state:\n  backend: redis\n  redis_url: {redis_url}\n  on_unavailable: {mode}\n  key_prefix: {prefix}\n"
    )
}

/// One proxy process of the fleet.
pub struct Replica {
    pub p: ProxyProcess,
    pub dir: PathBuf,
}

impl Replica {
    /// A replica on `redis_url` with `on_unavailable: mode`.
    pub fn spawn(
        base: &Path,
        name: &str,
        echo: &Echo,
        redis_url: &str,
        prefix: &str,
        mode: &str,
    ) -> Self {
        Self::spawn_with(base, name, echo, &state(redis_url, prefix, mode))
    }

    /// A replica whose configuration gets `extra` (a `state:` section, `revocation:`...).
    /// Files in `base` are copied into its own directory.
    pub fn spawn_with(base: &Path, name: &str, echo: &Echo, extra: &str) -> Self {
        let dir = base.join(name);
        std::fs::create_dir_all(&dir).expect("dir");
        for entry in std::fs::read_dir(base).expect("base").flatten() {
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy");
            }
        }
        let rest = format!(
            "  token_file: admin.token\nupstream:\n  url: http://{}\n\
             issuers:\n  - issuer: {ISSUER}\n    jwks_file: jwks.json\n    audiences: [{AUDIENCE}]\n\
             {extra}audit:\n  sink: file\n  path: audit.jsonl\npolicies: [policy.yaml]\n",
            echo.addr
        );
        let p = ProxyProcess::spawn(&dir, "", &rest);
        Self { p, dir }
    }

    pub fn port(&self) -> u16 {
        self.p.port
    }

    pub fn log(&self) -> String {
        self.p.stderr()
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }

    /// `/readyz`, or 0 when it does not answer.
    pub async fn readyz(&self) -> u16 {
        try_get(
            &self.p.admin_url("/readyz"),
            &[],
            Duration::from_millis(500),
        )
        .await
        .map_or(0, |r| r.status)
    }

    /// Waits until `/readyz` answers `want`.
    pub async fn wait_readyz(&self, want: u16, within: Duration) {
        let t = Instant::now();
        while t.elapsed() < within {
            if self.readyz().await == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "replica never answered /readyz {want}; log:\n{}",
            self.log()
        );
    }

    /// Waits until a metric line `line` is exposed.
    pub async fn wait_metric(&self, line: &str, within: Duration) {
        let t = Instant::now();
        while t.elapsed() < within {
            if self.metrics().await.lines().any(|l| l == line) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "never exposed {line:?}:\n{}\nlog:\n{}",
            self.metrics().await,
            self.log()
        );
    }

    pub async fn call(&self, token: &str) -> Reply {
        get(
            &self.p.url("/accounts"),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await
    }

    /// A DPoP request to `/accounts` with `proof`.
    pub async fn call_dpop(&self, token: &str, proof: &str) -> Reply {
        get(
            &self.p.url("/accounts"),
            &[("authorization", &format!("DPoP {token}")), ("dpop", proof)],
        )
        .await
    }

    pub async fn revoke(&self, body: Value) -> Reply {
        send(
            http::Request::post(self.p.admin_url("/revocations"))
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
                .body(Full::new(Bytes::from(body.to_string())))
                .expect("req"),
        )
        .await
    }

    /// `POST /ssf/events` with a signed SET.
    pub async fn push_set(&self, set: &str) -> Reply {
        send(
            http::Request::post(self.p.admin_url("/ssf/events"))
                .header("content-type", "application/secevent+jwt")
                .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
                .body(Full::new(Bytes::from(set.to_owned())))
                .expect("req"),
        )
        .await
    }

    pub async fn metrics(&self) -> String {
        self.p.metrics().await
    }
}

/// Every request the API received was allowed by some replica, with its `decision: allow`
/// record written; and every replica's trail verifies.
pub fn assert_every_forward_audited(echo: &Echo, replicas: &[&Replica]) {
    let mut allowed = HashSet::new();
    for r in replicas {
        allowed.extend(allowed_ids(&audit_records(&r.audit_path())));
        let (code, out) = audit_verify(&[&r.audit_path()]);
        assert_eq!(code, 0, "audit verify {}: {out}", r.dir.display());
    }
    let seen = echo.seen.lock().expect("lock").clone();
    let unaudited: Vec<String> = seen
        .iter()
        .map(|s| {
            s.headers
                .get("x-fapi-interaction-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        })
        .filter(|id| !allowed.contains(id))
        .collect();
    assert!(
        unaudited.is_empty(),
        "{} of {} forwarded requests have no decision record: {unaudited:?}",
        unaudited.len(),
        seen.len()
    );
}

pub fn jti_of(token: &str) -> String {
    use base64::Engine as _;
    let p = token.split('.').nth(1).expect("payload");
    let v: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .expect("b64"),
    )
    .expect("json");
    v["jti"].as_str().expect("jti").to_owned()
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// How many lines of `log` contain `needle`.
pub fn lines_with(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

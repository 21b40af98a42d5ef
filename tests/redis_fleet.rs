//! The fleet on one real Redis, with real proxy processes (the release binary built by cargo):
//! revocations posted to replica A refused at replica B (lag measured), a replica started later
//! refusing them from its first request, Redis killed and restarted under `deny` and `local`,
//! garbage in the store, and the fleet-wide DPoP replay store.
//!
//! Needs `FAPI_GUARD_TEST_REDIS` (a Redis URL, shared) at build time, and `redis-server` on the
//! PATH for the tests that kill their own private Redis.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use fapi_guard::state::{RedisReplay, RedisState, StateConfig};
use http_body_util::Full;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_fapi-guard");
const ADMIN_TOKEN: &str = "fleet-admin-secret-0123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The shared Redis named by `FAPI_GUARD_TEST_REDIS`; it must answer PING.
fn shared_redis() -> String {
    let url = std::env::var("FAPI_GUARD_TEST_REDIS")
        .ok()
        .filter(|v| !v.is_empty())
        .expect("FAPI_GUARD_TEST_REDIS names a Redis URL (see build.rs)");
    let mut c = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| panic!("FAPI_GUARD_TEST_REDIS={url} is not reachable: {e}"));
    let pong: String = redis::cmd("PING").query(&mut c).expect("PING");
    assert_eq!(pong, "PONG");
    url
}

/// A private `redis-server` on a free port, which this test may kill and restart.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Self {
        let mut r = Self {
            port: free_port(),
            child: None,
        };
        r.restart();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on the PATH (FAPI_GUARD_TEST_REDIS tests kill their own)");
        self.child = Some(child);
        for _ in 0..100 {
            let ok = redis::Client::open(self.url())
                .and_then(|c| c.get_connection())
                .is_ok();
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("private redis-server did not start on {}", self.port);
    }

    fn kill(&mut self) {
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

/// One proxy process.
struct Replica {
    child: Child,
    port: u16,
    admin: u16,
    dir: PathBuf,
}

impl Replica {
    fn spawn(
        base: &Path,
        name: &str,
        echo: &Echo,
        redis_url: &str,
        prefix: &str,
        mode: &str,
    ) -> Self {
        let dir = base.join(name);
        std::fs::create_dir_all(&dir).expect("dir");
        for f in ["jwks.json", "policy.yaml", "admin.token"] {
            std::fs::copy(base.join(f), dir.join(f)).expect("copy");
        }
        let (port, admin) = (free_port(), free_port());
        let config = format!(
            "listen:\n  address: 127.0.0.1:{port}\n  public_url: https://api.test.example\n\
             admin:\n  address: 127.0.0.1:{admin}\n  token_file: admin.token\n\
             upstream:\n  url: http://{}\n\
             issuers:\n  - issuer: {ISSUER}\n    jwks_file: jwks.json\n    audiences: [{AUDIENCE}]\n\
             state:\n  backend: redis\n  redis_url: {redis_url}\n  on_unavailable: {mode}\n  key_prefix: {prefix}\n\
             audit:\n  sink: file\n  path: audit.jsonl\npolicies: [policy.yaml]\n",
            echo.addr
        );
        std::fs::write(dir.join("config.yaml"), config).expect("config");
        let log = std::fs::File::create(dir.join("stderr.log")).expect("log");
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(dir.join("config.yaml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn proxy");
        Self {
            child,
            port,
            admin,
            dir,
        }
    }

    async fn readyz(&self) -> u16 {
        match tokio::time::timeout(
            Duration::from_millis(500),
            client().request(
                http::Request::get(format!("http://127.0.0.1:{}/readyz", self.admin))
                    .body(Full::new(Bytes::new()))
                    .expect("req"),
            ),
        )
        .await
        {
            Ok(Ok(r)) => r.status().as_u16(),
            _ => 0,
        }
    }

    /// Waits until `/readyz` answers `want`.
    async fn wait_readyz(&self, want: u16, within: Duration) {
        let t = Instant::now();
        while t.elapsed() < within {
            if self.readyz().await == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
        panic!("replica never answered /readyz {want}; log:\n{log}");
    }

    async fn call(&self, token: &str) -> Reply {
        get(
            &format!("http://127.0.0.1:{}/accounts", self.port),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await
    }

    async fn revoke(&self, body: serde_json::Value) -> Reply {
        send(
            http::Request::post(format!("http://127.0.0.1:{}/revocations", self.admin))
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
                .body(Full::new(Bytes::from(body.to_string())))
                .expect("req"),
        )
        .await
    }

    async fn metrics(&self) -> String {
        let resp = client()
            .request(
                http::Request::get(format!("http://127.0.0.1:{}/metrics", self.admin))
                    .body(Full::new(Bytes::new()))
                    .expect("req"),
            )
            .await
            .expect("metrics");
        let b = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .expect("body")
            .to_bytes();
        String::from_utf8_lossy(&b).into_owned()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fixture(key: &TestKey) -> tempfile::TempDir {
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

fn prefix() -> String {
    format!("fg-test-{}", uuid::Uuid::new_v4().simple())
}

fn jti_of(token: &str) -> String {
    use base64::Engine as _;
    let p = token.split('.').nth(1).expect("payload");
    let v: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .expect("b64"),
    )
    .expect("json");
    v["jti"].as_str().expect("jti").to_owned()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(fapi_guard_test_redis),
    ignore = "needs Redis: set FAPI_GUARD_TEST_REDIS=redis://127.0.0.1:6379"
)]
async fn revocations_posted_to_a_are_refused_at_b_and_at_a_replica_started_later() {
    let url = shared_redis();
    let key = TestKey::new("k1");
    let echo = Echo::start().await;
    let base = fixture(&key);
    let prefix = prefix();
    // Garbage in the store: counted and ignored, never applied.
    let mut raw = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .expect("redis");
    let _: () = redis::cmd("ZADD")
        .arg(format!("{prefix}:revocations"))
        .arg(now() + 600)
        .arg("{not a revocation")
        .query(&mut raw)
        .expect("zadd");

    let a = Replica::spawn(base.path(), "a", &echo, &url, &prefix, "deny");
    let b = Replica::spawn(base.path(), "b", &echo, &url, &prefix, "deny");
    a.wait_readyz(200, Duration::from_secs(20)).await;
    b.wait_readyz(200, Duration::from_secs(20)).await;
    let _: () = redis::cmd("PUBLISH")
        .arg(format!("{prefix}:revocations"))
        .arg("garbage")
        .query(&mut raw)
        .expect("publish");

    const N: usize = 100;
    let tokens: Vec<String> = (0..N).map(|_| key.token(|_, _| {})).collect();
    let mut lags = Vec::with_capacity(N);
    for t in &tokens {
        assert_eq!(
            b.call(t).await.status,
            200,
            "valid before (and cached at B)"
        );
        let started = Instant::now();
        let r = a.revoke(json!({"kind": "jti", "value": jti_of(t)})).await;
        assert_eq!(
            (r.status, r.body["fanout"].as_str()),
            (202, Some("published")),
            "{:?}",
            r.body
        );
        loop {
            let r = b.call(t).await;
            if r.status == 401 {
                assert_eq!(r.reason(), Some("token_revoked"));
                break;
            }
            assert_eq!(r.status, 200);
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "not enforced at B within 1 s"
            );
        }
        lags.push(started.elapsed());
    }
    lags.sort();
    let (p50, p99) = (percentile(&lags, 0.5), percentile(&lags, 0.99));
    println!(
        "revocation lag A (admin POST) → refused at B over {N}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        lags[N - 1].as_secs_f64() * 1e3
    );
    let before = echo.count();
    for t in &tokens {
        assert_eq!(
            a.call(t).await.reason(),
            Some("token_revoked"),
            "refused at A too"
        );
    }
    assert_eq!(echo.count(), before, "nothing reached the API");

    let mb = b.metrics().await;
    assert!(
        mb.contains(&format!(
            r#"fapi_guard_revocations_total{{kind="jti",source="redis"}} {N}"#
        )),
        "{mb}"
    );
    assert!(mb.contains("fapi_guard_state_backend_up 1"), "{mb}");
    assert!(
        mb.contains(r#"fapi_guard_revocation_errors_total{error="garbage",source="redis"} 2"#),
        "garbage in the store and on the channel counted: {mb}"
    );
    assert!(
        mb.contains("fapi_guard_revocation_lag_seconds_count 100"),
        "{mb}"
    );

    // A replica started after the revocations refuses them from its first request.
    let c = Replica::spawn(base.path(), "c", &echo, &url, &prefix, "deny");
    c.wait_readyz(200, Duration::from_secs(20)).await;
    for t in [&tokens[0], &tokens[N - 1]] {
        assert_eq!(c.call(t).await.reason(), Some("token_revoked"));
    }
    assert_eq!(c.call(&key.token(|_, _| {})).await.status, 200);
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:revocations"))
        .query(&mut raw)
        .expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(fapi_guard_test_redis),
    ignore = "needs Redis: set FAPI_GUARD_TEST_REDIS=redis://127.0.0.1:6379"
)]
async fn redis_down_deny_refuses_local_serves_and_both_recover_without_restart() {
    let _ = shared_redis();
    let mut redis = PrivateRedis::start();
    let key = TestKey::new("k1");
    let echo = Echo::start().await;
    let base = fixture(&key);
    let prefix = prefix();
    let a = Replica::spawn(base.path(), "deny", &echo, &redis.url(), &prefix, "deny");
    let b = Replica::spawn(base.path(), "local", &echo, &redis.url(), &prefix, "local");
    a.wait_readyz(200, Duration::from_secs(20)).await;
    b.wait_readyz(200, Duration::from_secs(20)).await;
    let token = key.token(|_, _| {});
    assert_eq!(a.call(&token).await.status, 200);
    assert_eq!(b.call(&token).await.status, 200);

    redis.kill();
    a.wait_readyz(503, Duration::from_secs(10)).await;
    let before = echo.count();
    let r = a.call(&token).await;
    assert_eq!(
        (r.status, r.reason()),
        (503, Some("dependency_unavailable")),
        "deny fails closed"
    );
    assert_eq!(
        echo.count(),
        before,
        "nothing forwarded by the deny replica"
    );
    let r = a
        .revoke(json!({"kind": "subject", "value": "someone"}))
        .await;
    assert_eq!(
        r.status, 503,
        "a revocation that cannot be fanned out asks for a retry"
    );
    assert_eq!(b.call(&token).await.status, 200, "local keeps serving");
    assert_eq!(b.readyz().await, 200, "local stays ready");
    let m = b.metrics().await;
    assert!(
        m.contains("fapi_guard_state_backend_up 0"),
        "local flags it: {m}"
    );
    let r = b
        .revoke(json!({"kind": "jti", "value": jti_of(&token)}))
        .await;
    assert_eq!(
        (r.status, r.body["fanout"].as_str()),
        (202, Some("local_only")),
        "{:?}",
        r.body
    );
    assert_eq!(
        b.call(&token).await.reason(),
        Some("token_revoked"),
        "applied locally"
    );

    redis.restart();
    a.wait_readyz(200, Duration::from_secs(15)).await;
    let t2 = key.token(|_, _| {});
    assert_eq!(a.call(&t2).await.status, 200, "deny replica recovered");
    let t = Instant::now();
    loop {
        if b.metrics().await.contains("fapi_guard_state_backend_up 1") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "local replica never reconnected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Fan-out works again: revoked at A, refused at B.
    let r = a.revoke(json!({"kind": "jti", "value": jti_of(&t2)})).await;
    assert_eq!(
        (r.status, r.body["fanout"].as_str()),
        (202, Some("published")),
        "{:?}",
        r.body
    );
    let t = Instant::now();
    while b.call(&t2).await.status != 401 {
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "fan-out after recovery"
        );
    }
    let log = std::fs::read_to_string(b.dir.join("stderr.log")).unwrap_or_default();
    assert!(
        log.contains("on_unavailable: local"),
        "local mode says so in a log line"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(fapi_guard_test_redis),
    ignore = "needs Redis: set FAPI_GUARD_TEST_REDIS=redis://127.0.0.1:6379"
)]
async fn a_proof_recorded_by_one_replica_is_a_replay_at_another() {
    let url = shared_redis();
    let replica = || async {
        let cfg: StateConfig = serde_yaml::from_str(&format!(
            "backend: redis\nredis_url: {url}\nkey_prefix: {}\n",
            "fg-replay-test"
        ))
        .expect("yaml");
        let settings = cfg.compile().expect("compile").redis.expect("redis");
        let metrics = Arc::new(fapi_guard::metrics::Metrics::new());
        let m = fapi_guard::revocation::RevocationMetrics::new(&metrics).expect("metrics");
        let s = Arc::new(RedisState::new(settings, m).expect("state"));
        s.connect().await.expect("connect");
        RedisReplay::new(s)
    };
    let (a, b) = (replica().await, replica().await);
    let key: [u8; 32] = *uuid::Uuid::new_v4()
        .as_bytes()
        .repeat(2)
        .first_chunk()
        .expect("32");
    let n = now();
    assert_eq!(
        a.check_and_insert(key, n + 60, n).await,
        Ok(true),
        "first use at A"
    );
    assert_eq!(
        b.check_and_insert(key, n + 60, n).await,
        Ok(false),
        "replayed at B"
    );
    assert_eq!(
        a.check_and_insert(key, n + 60, n).await,
        Ok(false),
        "replayed at A"
    );
    let mut other = key;
    other[0] ^= 1;
    assert_eq!(
        b.check_and_insert(other, n + 60, n).await,
        Ok(true),
        "another proof"
    );
    // The entry lives for the proof's window, no longer.
    let mut c = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .expect("redis");
    use base64::Engine as _;
    let k = format!(
        "fg-replay-test:dpop:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
    );
    let pttl: i64 = redis::cmd("PTTL").arg(&k).query(&mut c).expect("pttl");
    assert!((58_000..=60_000).contains(&pttl), "PTTL {pttl}");

    // A dead Redis: the check cannot be made, and says so.
    let mut private = PrivateRedis::start();
    let cfg: StateConfig =
        serde_yaml::from_str(&format!("backend: redis\nredis_url: {}\n", private.url()))
            .expect("yaml");
    let metrics = Arc::new(fapi_guard::metrics::Metrics::new());
    let m = fapi_guard::revocation::RevocationMetrics::new(&metrics).expect("metrics");
    let s =
        Arc::new(RedisState::new(cfg.compile().expect("c").redis.expect("r"), m).expect("state"));
    s.connect().await.expect("connect");
    let r = RedisReplay::new(s);
    assert_eq!(r.check_and_insert(key, n + 60, n).await, Ok(true));
    private.kill();
    assert!(
        r.check_and_insert(other, n + 60, n).await.is_err(),
        "Redis down → Err"
    );
}

/// RFC 9449 §11.1 across the fleet: a DPoP proof accepted by replica A is a replay at replica B
/// (the `ReplayStore::Shared` variant, `SET NX PX` on Redis), and nothing reaches the API twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(fapi_guard_test_redis),
    ignore = "needs Redis: set FAPI_GUARD_TEST_REDIS=redis://127.0.0.1:6379"
)]
async fn a_dpop_proof_used_at_a_is_refused_at_b() {
    let url = shared_redis();
    let key = TestKey::new("k1");
    let echo = Echo::start().await;
    let base = fixture(&key);
    let prefix = prefix();
    let a = Replica::spawn(base.path(), "a", &echo, &url, &prefix, "deny");
    let b = Replica::spawn(base.path(), "b", &echo, &url, &prefix, "deny");
    a.wait_readyz(200, Duration::from_secs(20)).await;
    b.wait_readyz(200, Duration::from_secs(20)).await;

    let client_key = DpopKey::new();
    let token = key.token(|_, c| c["cnf"] = json!({"jkt": client_key.jkt}));
    let proof = client_key.proof(
        "GET",
        "https://api.test.example/accounts",
        &token,
        |_, _| {},
    );
    let call = |port: u16, proof: String| {
        let token = token.clone();
        async move {
            get(
                &format!("http://127.0.0.1:{port}/accounts"),
                &[
                    ("authorization", &format!("DPoP {token}")),
                    ("dpop", &proof),
                ],
            )
            .await
        }
    };
    assert_eq!(
        call(a.port, proof.clone()).await.status,
        200,
        "first use at A"
    );
    let replayed = call(b.port, proof.clone()).await;
    assert_eq!(
        (replayed.status, replayed.reason()),
        (401, Some("dpop_proof_replayed")),
        "the same proof at B"
    );
    assert_eq!(echo.count(), 1, "the replay never reached the API");
    // A fresh proof from the same key is accepted at B.
    let fresh = client_key.proof(
        "GET",
        "https://api.test.example/accounts",
        &token,
        |_, _| {},
    );
    assert_eq!(call(b.port, fresh).await.status, 200, "a fresh proof at B");
}

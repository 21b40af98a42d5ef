//! A shared state backend that misbehaves: a server that answers garbage (not Redis at all, or
//! Redis-shaped nonsense), one that never answers, a wrong-type revocation key, and a Redis
//! whose eviction policy could drop replay keys and revocations. Each gives a clear log line,
//! a count in `fapi_guard_state_backend_errors_total`, no change to the revocation state, and
//! the readiness and deny behaviour `on_unavailable` asks for.

mod common;

use std::time::{Duration, Instant};

use common::fleet::*;
use common::process::metric_value;
use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A TCP server that answers each command it reads (each RESP array it sees start) with
/// `reply`, or never when `None`.
async fn fake_redis(reply: Option<&'static [u8]>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let chunk = &buf[..n];
                    let commands = chunk.windows(3).filter(|w| w == b"\r\n*").count()
                        + usize::from(chunk.first() == Some(&b'*'));
                    if let Some(r) = reply
                        && s.write_all(&r.repeat(commands.max(1))).await.is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn errors(metrics: &str, labels: &[(&str, &str)]) -> f64 {
    metric_value(metrics, "fapi_guard_state_backend_errors_total", labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answering_garbage_is_counted_and_changes_nothing() {
    let key = TestKey::new("k1");
    let base = fixture(&key);
    for (name, reply) in [
        ("Redis-shaped nonsense", &b"+garbage\r\n"[..]),
        ("not Redis at all", &b"HTTP/1.1 400 Bad Request\r\n\r\n"[..]),
    ] {
        let echo = Echo::start().await;
        let addr = fake_redis(Some(reply)).await;
        let url = format!("redis://{addr}");
        let prefix = prefix();
        let deny = Replica::spawn(
            base.path(),
            &format!("deny-{}", addr.port()),
            &echo,
            &url,
            &prefix,
            "deny",
        );
        let local = Replica::spawn(
            base.path(),
            &format!("local-{}", addr.port()),
            &echo,
            &url,
            &prefix,
            "local",
        );
        local.wait_readyz(200, Duration::from_secs(20)).await;
        // Several attempts (backoff 100 ms, 200 ms, 400 ms...) have failed by now.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let token = key.token(|_, _| {});
        let before = echo.count();
        let r = deny.call(&token).await;
        assert_eq!(
            (r.status, r.reason()),
            (503, Some("dependency_unavailable")),
            "{name}: deny fails closed"
        );
        assert_eq!(deny.readyz().await, 503, "{name}: deny is not ready");
        assert_eq!(echo.count(), before, "{name}: nothing forwarded");
        assert_eq!(local.call(&token).await.status, 200, "{name}: local serves");
        for r in [&deny, &local] {
            let m = r.metrics().await;
            assert!(
                errors(&m, &[("error", "unexpected_reply")]) >= 2.0,
                "{name}: every failed attempt is counted as an unexpected reply:\n{m}"
            );
            assert!(
                !m.contains("fapi_guard_revocations_total{"),
                "{name}: no revocation came out of the garbage:\n{m}"
            );
            assert!(m.contains("fapi_guard_state_backend_up 0"), "{name}: {m}");
            let log = r.log();
            assert_eq!(
                lines_with(&log, "shared state backend unavailable at startup"),
                1,
                "{name}: said once at startup:\n{log}"
            );
            assert!(
                lines_with(&log, "shared state backend") <= 3,
                "{name}: repeated failures are rate-limited:\n{log}"
            );
        }
        let log = deny.log();
        assert!(log.contains("on_unavailable: deny"), "{name}: {log}");
        let log = local.log();
        assert!(log.contains("on_unavailable: local"), "{name}: {log}");
        // A DPoP request at the local replica: the replay check falls back to this replica,
        // counted, and the warning is not repeated per request.
        let client_key = DpopKey::new();
        let bound = key.token(|_, c| c["cnf"] = json!({"jkt": client_key.jkt}));
        for _ in 0..10 {
            let p = client_key.proof(
                "GET",
                "https://api.test.example/accounts",
                &bound,
                |_, _| {},
            );
            assert_eq!(local.call_dpop(&bound, &p).await.status, 200, "{name}");
        }
        assert!(
            lines_with(&local.log(), "shared replay store unavailable") <= 1,
            "{name}: {}",
            local.log()
        );
        assert_every_forward_audited(&echo, &[&deny, &local]);
    }
}

/// A replica in `local` mode never answers from an empty set before its first load: until the
/// first connection attempt is over, a credentialed request gets 503, not a forward.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_does_not_serve_before_its_first_load() {
    let key = TestKey::new("k1");
    let echo = Echo::start().await;
    // Accepts connections and never answers: the first attempt lasts until its timeout.
    let addr = fake_redis(None).await;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("policy.yaml"), POLICY).expect("policy");
    std::fs::write(
        dir.path().join("jwks.json"),
        json!({"keys": [key.jwks_entry()]}).to_string(),
    )
    .expect("jwks");
    let config = format!(
        "listen:\n  address: 127.0.0.1:0\n  public_url: https://api.test.example\n\
         upstream:\n  url: http://{}\n\
         issuers:\n  - issuer: {ISSUER}\n    jwks_file: jwks.json\n    audiences: [{AUDIENCE}]\n\
         {}audit:\n  sink: file\n  path: audit.jsonl\npolicies: [policy.yaml]\n",
        echo.addr,
        state(&format!("redis://{addr}"), &prefix(), "local"),
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).expect("config");
    let config = fapi_guard::config::Config::load(&path).expect("config");
    let guard = fapi_guard::app::build(config, fapi_guard::clock::Clock::system()).expect("build");
    guard.spawn_refresh();
    let started = Instant::now();
    let running = fapi_guard::server::start(guard.clone(), Duration::from_secs(2))
        .await
        .expect("start");
    let url = format!("http://{}/accounts", running.addr);
    let token = key.token(|_, _| {});
    let r = get(&url, &[("authorization", &format!("Bearer {token}"))]).await;
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "the first request was meant to arrive during the first attempt"
    );
    assert_eq!(
        (r.status, r.reason()),
        (503, Some("dependency_unavailable")),
        "before the first load the set is empty, not merely stale"
    );
    assert!(!guard.is_ready(), "not ready either");
    assert_eq!(echo.count(), 0, "nothing forwarded");
    // Once the first attempt is over, `local` serves on this replica's own state (flagged).
    let t = Instant::now();
    while !guard.is_ready() {
        assert!(t.elapsed() < Duration::from_secs(5), "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = get(&url, &[("authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let m = guard.metrics().encode();
    assert!(m.contains("fapi_guard_state_backend_up 0"), "{m}");
    assert!(
        errors(&m, &[("operation", "connect"), ("error", "timeout")]) >= 1.0,
        "the silent server is counted: {m}"
    );
    running.shutdown(Duration::from_secs(1)).await;
    guard.audit().clone().shutdown().await;
    let audit = dir.path().join("audit.jsonl");
    let records = common::process::audit_records(&audit);
    assert_eq!(
        common::process::allowed_ids(&records).len(),
        echo.count(),
        "the one forwarded request has its record"
    );
    let (code, out) = common::process::audit_verify(&[&audit]);
    assert_eq!(code, 0, "{out}");
}

/// The revocation set's key holding another type (`WRONGTYPE` on load): counted, logged, the
/// replica stays unready under `deny`, and recovers on its own once the key is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(fapi_guard_test_redis),
    ignore = "needs Redis: set FAPI_GUARD_TEST_REDIS=redis://127.0.0.1:6379"
)]
async fn a_wrong_type_revocation_key_is_counted_and_recovered_from() {
    let url = shared_redis();
    let key = TestKey::new("k1");
    let echo = Echo::start().await;
    let base = fixture(&key);
    let prefix = prefix();
    let mut raw = sync_conn(&url);
    let set = format!("{prefix}:revocations");
    let _: () = redis::cmd("SET")
        .arg(&set)
        .arg("not a sorted set")
        .arg("EX")
        .arg(120)
        .query(&mut raw)
        .expect("set");
    let a = Replica::spawn(base.path(), "a", &echo, &url, &prefix, "deny");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(a.readyz().await, 503, "cannot load: not ready");
    let token = key.token(|_, _| {});
    assert_eq!(
        a.call(&token).await.reason(),
        Some("dependency_unavailable")
    );
    let m = a.metrics().await;
    assert!(
        errors(&m, &[("operation", "load"), ("error", "error_reply")]) >= 1.0,
        "{m}"
    );
    assert!(!m.contains("fapi_guard_revocations_total{"), "{m}");
    let log = a.log();
    assert!(
        log.contains(
            "shared state backend unavailable at startup (load: the server refused the command)"
        ),
        "{log}"
    );
    let _: () = redis::cmd("DEL").arg(&set).query(&mut raw).expect("del");
    a.wait_readyz(200, Duration::from_secs(10)).await;
    assert_eq!(
        a.call(&token).await.status,
        200,
        "recovered without a restart"
    );
    assert_every_forward_audited(&echo, &[&a]);
}

/// `maxmemory-policy allkeys-lru` could evict a replay key (a proof replayable at another
/// replica) or the revocation set: the backend is not used, with a clear log line and a count,
/// until the policy is `noeviction`, which the replica notices by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(fapi_guard_test_redis_server),
    ignore = "starts its own redis-server: set FAPI_GUARD_TEST_REDIS_SERVER=1"
)]
async fn an_evicting_redis_is_not_used_until_it_is_noeviction() {
    let redis = PrivateRedis::start_with(&["--maxmemory-policy", "allkeys-lru"]);
    let key = TestKey::new("k1");
    let echo = Echo::start().await;
    let base = fixture(&key);
    let prefix = prefix();
    let deny = Replica::spawn(base.path(), "deny", &echo, &redis.url(), &prefix, "deny");
    let local = Replica::spawn(base.path(), "local", &echo, &redis.url(), &prefix, "local");
    local.wait_readyz(200, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        deny.readyz().await,
        503,
        "deny: never ready on an evicting Redis"
    );
    let client_key = DpopKey::new();
    let bound = key.token(|_, c| c["cnf"] = json!({"jkt": client_key.jkt}));
    let proof = || {
        client_key.proof(
            "GET",
            "https://api.test.example/accounts",
            &bound,
            |_, _| {},
        )
    };
    let r = deny.call_dpop(&bound, &proof()).await;
    assert_eq!(
        (r.status, r.reason()),
        (503, Some("dependency_unavailable"))
    );
    // Local serves on its own state, and writes no replay key to the evicting Redis.
    assert_eq!(local.call_dpop(&bound, &proof()).await.status, 200);
    let mut raw = sync_conn(&redis.url());
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut raw)
        .expect("keys");
    assert!(keys.is_empty(), "nothing written: {keys:?}");
    for r in [&deny, &local] {
        let m = r.metrics().await;
        assert!(
            errors(
                &m,
                &[("operation", "config_check"), ("error", "eviction_policy")]
            ) >= 1.0,
            "{m}"
        );
        assert!(m.contains("fapi_guard_state_backend_up 0"), "{m}");
        let log = r.log();
        assert!(
            log.contains("Redis maxmemory-policy is allkeys-lru"),
            "a clear log line:\n{log}"
        );
        assert!(
            lines_with(&log, "maxmemory-policy is allkeys-lru") <= 2,
            "rate-limited:\n{log}"
        );
    }
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .query(&mut raw)
        .expect("config set");
    deny.wait_readyz(200, Duration::from_secs(10)).await;
    local
        .wait_metric("fapi_guard_state_backend_up 1", Duration::from_secs(10))
        .await;
    let p = proof();
    assert_eq!(
        deny.call_dpop(&bound, &p).await.status,
        200,
        "deny recovered"
    );
    let r = local.call_dpop(&bound, &p).await;
    assert_eq!(
        r.reason(),
        Some("dpop_proof_replayed"),
        "the fleet-wide replay store is in use again"
    );
    assert_every_forward_audited(&echo, &[&deny, &local]);
}

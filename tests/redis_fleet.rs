//! The fleet on one real Redis, with real proxy processes (the binary built by cargo):
//! revocations posted to replica A (admin API and Shared Signals) refused at replica B, lag
//! measured; a replica started later refusing them from its first request; Redis killed and
//! restarted under `deny` and `local`; garbage in the store; the fleet-wide DPoP replay store.
//!
//! Needs `FAPI_GUARD_TEST_REDIS` (a Redis URL, shared) at build time; the tests that kill their
//! own private Redis need `FAPI_GUARD_TEST_REDIS_SERVER` (`redis-server` on the PATH), the SSF
//! ones `FAPI_GUARD_TEST_PYTHON` (joserfc).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fleet::*;
use common::process::metric_value;
use common::*;
use fapi_guard::state::{RedisReplay, RedisState, StateConfig};
use serde_json::json;

const N: usize = 100;

/// Polls `b` until `token` is refused (`token_revoked`); the time since `started`.
async fn until_refused(b: &Replica, token: &str, started: Instant) -> Duration {
    loop {
        let r = b.call(token).await;
        if r.status == 401 {
            assert_eq!(r.reason(), Some("token_revoked"));
            return started.elapsed();
        }
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "not enforced at B within 1 s"
        );
    }
}

fn report(what: &str, mut lags: Vec<Duration>) {
    lags.sort();
    let (p50, p99) = (percentile(&lags, 0.5), percentile(&lags, 0.99));
    println!(
        "revocation lag {what} → refused at B over {}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lags.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        lags[lags.len() - 1].as_secs_f64() * 1e3
    );
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
    let mut raw = sync_conn(&url);
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
        lags.push(until_refused(&b, t, started).await);
    }
    report("A (admin POST)", lags);
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

    // A replica started after the revocations refuses them from its first request, in either
    // mode: `deny` is unready until loaded; `local` answers 503 (never 200) before its first
    // load, so its very first answer already refuses.
    let c = Replica::spawn(base.path(), "c", &echo, &url, &prefix, "deny");
    let d = Replica::spawn(base.path(), "d", &echo, &url, &prefix, "local");
    let first = loop {
        match common::process::try_get(
            &d.p.url("/accounts"),
            &[("authorization", &format!("Bearer {}", tokens[0]))],
            Duration::from_millis(500),
        )
        .await
        {
            Ok(r) => break r,
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    assert!(
        matches!(
            (first.status, first.reason()),
            (401, Some("token_revoked")) | (503, Some("dependency_unavailable"))
        ),
        "the local replica's first answer: {} {:?}",
        first.status,
        first.body
    );
    c.wait_readyz(200, Duration::from_secs(20)).await;
    d.wait_readyz(200, Duration::from_secs(20)).await;
    for late in [&c, &d] {
        for t in [&tokens[0], &tokens[N - 1]] {
            assert_eq!(late.call(t).await.reason(), Some("token_revoked"));
        }
        assert_eq!(late.call(&key.token(|_, _| {})).await.status, 200);
    }
    assert_every_forward_audited(&echo, &[&a, &b, &c, &d]);
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:revocations"))
        .query(&mut raw)
        .expect("cleanup");
}

/// The same through Shared Signals: 100 CAEP `session-revoked` SETs (signed by joserfc) posted
/// to A, each refused at B; the SET's `jti` is de-duplicated fleet-wide (B refuses A's SET).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(fapi_guard_test_redis, fapi_guard_test_python)),
    ignore = "needs Redis and Python with joserfc: set FAPI_GUARD_TEST_REDIS and FAPI_GUARD_TEST_PYTHON"
)]
async fn security_events_posted_to_a_are_refused_at_b() {
    use common::ssf::*;
    let url = shared_redis();
    let key = TestKey::new("k1");
    let echo = Echo::start().await;
    let base = fixture(&key);
    let prefix = prefix();
    let t = now();
    let cases: Vec<_> = (0..N)
        .map(|i| json!({"header": header(), "claims": set_claims(session_revoked(&format!("ssf-user-{i}"), t))}))
        .collect();
    let (jwks, sets) = sign(&cases);
    std::fs::write(base.path().join("tx.json"), jwks.to_string()).expect("tx jwks");
    let extra = format!(
        "{}{}",
        state(&url, &prefix, "deny"),
        ssf_config("tx.json", "RS256")
    );
    let a = Replica::spawn_with(base.path(), "a", &echo, &extra);
    let b = Replica::spawn_with(base.path(), "b", &echo, &extra);
    a.wait_readyz(200, Duration::from_secs(20)).await;
    b.wait_readyz(200, Duration::from_secs(20)).await;

    let tokens: Vec<String> = (0..N)
        .map(|i| key.token(|_, c| c["sub"] = json!(format!("ssf-user-{i}"))))
        .collect();
    let mut lags = Vec::with_capacity(N);
    for (t, set) in tokens.iter().zip(&sets) {
        assert_eq!(
            b.call(t).await.status,
            200,
            "valid before (and cached at B)"
        );
        let started = Instant::now();
        let r = a.push_set(set).await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        lags.push(until_refused(&b, t, started).await);
    }
    report("A (SSF push)", lags);
    // Fleet-wide de-duplication: B never saw these SETs itself, and still refuses them.
    let r = b.push_set(&sets[0]).await;
    assert_eq!(
        (r.status, r.body["err"].as_str()),
        (400, Some("invalid_request")),
        "a SET processed at A is a replay at B: {:?}",
        r.body
    );
    let mb = b.metrics().await;
    let line = format!(r#"fapi_guard_revocations_total{{kind="subject",source="redis"}} {N}"#);
    assert!(mb.contains(&line), "{line}\n{mb}");
    let ma = a.metrics().await;
    let line = format!(r#"fapi_guard_revocations_total{{kind="subject",source="ssf"}} {N}"#);
    assert!(ma.contains(&line), "{line}\n{ma}");
    assert_every_forward_audited(&echo, &[&a, &b]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(fapi_guard_test_redis_server),
    ignore = "starts its own redis-server: set FAPI_GUARD_TEST_REDIS_SERVER=1"
)]
async fn redis_down_deny_refuses_local_serves_and_both_recover_without_restart() {
    let mut redis = PrivateRedis::start();
    let key = TestKey::new("k1");
    let echo = Echo::start().await;
    let base = fixture(&key);
    let prefix = prefix();
    let a = Replica::spawn(base.path(), "deny", &echo, &redis.url(), &prefix, "deny");
    let b = Replica::spawn(base.path(), "local", &echo, &redis.url(), &prefix, "local");
    a.wait_readyz(200, Duration::from_secs(20)).await;
    b.wait_readyz(200, Duration::from_secs(20)).await;
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
    let token = key.token(|_, _| {});
    let gone = key.token(|_, c| c["sub"] = json!("revoked-during-outage-at-b"));
    let gone_at_a = key.token(|_, c| c["sub"] = json!("revoked-during-outage-at-a"));
    for r in [&a, &b] {
        assert_eq!(r.call(&token).await.status, 200);
        assert_eq!(r.call(&gone).await.status, 200);
        assert_eq!(r.call(&gone_at_a).await.status, 200);
        assert_eq!(r.call_dpop(&bound, &proof()).await.status, 200);
    }

    redis.kill();
    let outage = Instant::now();
    a.wait_readyz(503, Duration::from_secs(10)).await;
    let before = echo.count();
    for (name, r) in [
        ("bearer", a.call(&token).await),
        ("DPoP", a.call_dpop(&bound, &proof()).await),
    ] {
        assert_eq!(
            (r.status, r.reason()),
            (503, Some("dependency_unavailable")),
            "deny fails closed ({name})"
        );
    }
    assert_eq!(
        echo.count(),
        before,
        "nothing forwarded by the deny replica"
    );
    // At the deny replica: applied there and queued, but 503 so the caller retries.
    let r = a
        .revoke(json!({"kind": "subject", "value": "revoked-during-outage-at-a"}))
        .await;
    assert_eq!(
        r.status, 503,
        "a revocation that cannot be fanned out asks for a retry"
    );
    assert_eq!(b.call(&token).await.status, 200, "local keeps serving");
    assert_eq!(b.readyz().await, 200, "local stays ready");
    // DPoP at the local replica: served, and replays still caught by its own store.
    let p = proof();
    assert_eq!(
        b.call_dpop(&bound, &p).await.status,
        200,
        "local serves DPoP"
    );
    let r = b.call_dpop(&bound, &p).await;
    assert_eq!(
        (r.status, r.reason()),
        (401, Some("dpop_proof_replayed")),
        "replay caught locally during the outage"
    );
    for _ in 0..20 {
        assert_eq!(b.call_dpop(&bound, &proof()).await.status, 200);
    }
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
    let r = b
        .revoke(json!({"kind": "subject", "value": "revoked-during-outage-at-b"}))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(
        b.call(&token).await.reason(),
        Some("token_revoked"),
        "applied locally"
    );
    let b_revoked = Instant::now();
    let ma = a.metrics().await;
    let lag_count_a = metric_value(&ma, "fapi_guard_revocation_lag_seconds_count", &[]);
    let lag_sum_a = metric_value(&ma, "fapi_guard_revocation_lag_seconds_sum", &[]);

    let gap = b_revoked.elapsed();
    redis.restart();
    let down_for = outage.elapsed();
    a.wait_readyz(200, Duration::from_secs(15)).await;
    let t2 = key.token(|_, _| {});
    assert_eq!(a.call(&t2).await.status, 200, "deny replica recovered");
    b.wait_metric("fapi_guard_state_backend_up 1", Duration::from_secs(15))
        .await;
    // What B accepted during the outage was queued and published on reconnect: refused at A.
    let t = Instant::now();
    loop {
        let (r1, r2) = (a.call(&token).await, a.call(&gone).await);
        if r1.status == 401 && r2.status == 401 {
            assert_eq!(
                (r1.reason(), r2.reason()),
                (Some("token_revoked"), Some("token_revoked"))
            );
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "B's outage revocations never reached A: {} {}",
            r1.status,
            r2.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ... and what A queued reached B.
    let t = Instant::now();
    while b.call(&gone_at_a).await.status != 401 {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "A's outage revocation never reached B"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A saw B's revocations late: their lag (from the event time) is observed, not hidden.
    let ma = a.metrics().await;
    let lag_count = metric_value(&ma, "fapi_guard_revocation_lag_seconds_count", &[]);
    let lag_sum = metric_value(&ma, "fapi_guard_revocation_lag_seconds_sum", &[]);
    assert_eq!(lag_count, lag_count_a + 2.0, "B's two revocations: {ma}");
    assert!(
        lag_sum - lag_sum_a >= 2.0 * gap.as_secs_f64() - 0.02,
        "each lag counts from the event time, so at least the {gap:?} Redis was still down: {ma}"
    );
    println!(
        "outage of {:.1} s: A observed B's 2 outage revocations with lag {:.3} s in total",
        down_for.as_secs_f64(),
        lag_sum - lag_sum_a
    );

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
    let (log_a, log_b) = (a.log(), b.log());
    assert!(
        log_a.contains("on_unavailable: deny"),
        "deny mode says so in a log line:\n{log_a}"
    );
    assert!(
        log_b.contains("on_unavailable: local"),
        "local mode says so in a log line:\n{log_b}"
    );
    for log in [&log_a, &log_b] {
        assert!(
            !log.contains("unavailable at startup"),
            "both were connected at start; a later outage is not a startup failure:\n{log}"
        );
    }
    assert!(
        lines_with(&log_b, "shared replay store unavailable") <= 1,
        "the per-request fallback warning is rate-limited:\n{log_b}"
    );
    assert!(
        metric_value(
            &b.metrics().await,
            "fapi_guard_state_backend_errors_total",
            &[("operation", "replay"), ("error", "local_fallback")]
        ) >= 22.0,
        "each fallback is counted"
    );
    assert_every_forward_audited(&echo, &[&a, &b]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(fapi_guard_test_redis),
    ignore = "needs Redis: set FAPI_GUARD_TEST_REDIS=redis://127.0.0.1:6379"
)]
async fn a_proof_recorded_by_one_replica_is_a_replay_at_another() {
    let url = shared_redis();
    let skew = Duration::from_secs(10);
    let replica = || async {
        let cfg: StateConfig = serde_yaml::from_str(&format!(
            "backend: redis\nredis_url: {url}\nkey_prefix: {}\n",
            "fg-replay-test"
        ))
        .expect("yaml");
        let settings = cfg.compile().expect("compile").redis.expect("redis");
        let metrics = Arc::new(fapi_guard::metrics::Metrics::new());
        let m = fapi_guard::revocation::RevocationMetrics::new(&metrics).expect("metrics");
        let s = Arc::new(
            RedisState::new(settings, m, fapi_guard::clock::Clock::system()).expect("state"),
        );
        s.connect().await.expect("connect");
        RedisReplay::new(s, skew)
    };
    let (a, b) = (replica().await, replica().await);
    let key: [u8; 32] = *uuid::Uuid::new_v4()
        .as_bytes()
        .repeat(2)
        .first_chunk()
        .expect("32");
    let n = now();
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    };
    let t0 = now_ms();
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
    // The entry lives until the proof's window is over at every replica: the last second of
    // the window (inclusive, so until `n + 61` s), plus the clock skew allowed between replicas,
    // to the millisecond.
    let mut c = sync_conn(&url);
    use base64::Engine as _;
    let k = format!(
        "fg-replay-test:dpop:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
    );
    let pttl: i64 = redis::cmd("PTTL").arg(&k).query(&mut c).expect("pttl");
    let t1 = now_ms();
    let ends = (n + 61) * 1000 + skew.as_millis() as i64;
    assert!(
        t0 + pttl <= ends + 5 && t1 + pttl >= ends - 5,
        "PTTL {pttl} (set between {t0} and {t1}) does not end at {ends}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(fapi_guard_test_redis_server),
    ignore = "starts its own redis-server: set FAPI_GUARD_TEST_REDIS_SERVER=1"
)]
async fn a_dead_redis_answers_unavailable_not_first_use() {
    let mut private = PrivateRedis::start();
    let cfg: StateConfig =
        serde_yaml::from_str(&format!("backend: redis\nredis_url: {}\n", private.url()))
            .expect("yaml");
    let metrics = Arc::new(fapi_guard::metrics::Metrics::new());
    let m = fapi_guard::revocation::RevocationMetrics::new(&metrics).expect("metrics");
    let s = Arc::new(
        RedisState::new(
            cfg.compile().expect("c").redis.expect("r"),
            m,
            fapi_guard::clock::Clock::system(),
        )
        .expect("state"),
    );
    s.connect().await.expect("connect");
    let r = RedisReplay::new(s, Duration::from_secs(10));
    let n = now();
    assert_eq!(r.check_and_insert([9; 32], n + 60, n).await, Ok(true));
    private.kill();
    assert!(
        r.check_and_insert([8; 32], n + 60, n).await.is_err(),
        "Redis down → Err"
    );
    let m = metrics.encode();
    assert!(
        metric_value(
            &m,
            "fapi_guard_state_backend_errors_total",
            &[("operation", "replay")]
        ) >= 1.0,
        "counted: {m}"
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
    assert_eq!(
        a.call_dpop(&token, &proof).await.status,
        200,
        "first use at A"
    );
    let replayed = b.call_dpop(&token, &proof).await;
    assert_eq!(
        (replayed.status, replayed.reason()),
        (401, Some("dpop_proof_replayed")),
        "the same proof at B"
    );
    assert_eq!(echo.count(), 1, "the replay never reached the API");
    assert!(
        b.metrics()
            .await
            .contains("fapi_guard_dpop_replays_total 1"),
        "counted at B"
    );
    // A fresh proof from the same key is accepted at B.
    let fresh = client_key.proof(
        "GET",
        "https://api.test.example/accounts",
        &token,
        |_, _| {},
    );
    assert_eq!(
        b.call_dpop(&token, &fresh).await.status,
        200,
        "a fresh proof at B"
    );
    assert_every_forward_audited(&echo, &[&a, &b]);
}

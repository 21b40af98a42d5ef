//! Remembered token verdicts through the real proxy: a retried dead token is refused exactly as
//! the first time (status, challenge, body, audit record) without a second verification, a bad
//! signature is forgotten when the issuer's keys change, and what may still change (an unknown
//! `kid`) is never remembered. Verifications are counted by
//! `fapi_guard_token_verdicts_total{result="computed"}`, answers from memory by
//! `{result="remembered"}`.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::process::metric_value;
use common::*;
use http_body_util::Full;
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "verdict-test-admin-secret-0123456789";

/// An in-process proxy reading its keys from `jwks.json`, refreshed every second.
struct World {
    proxy: Proxy,
    _echo: Echo,
}

async fn world(keys: &[&TestKey]) -> World {
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("policy.yaml"), POLICY).expect("policy");
    write_jwks(dir.path(), keys);
    std::fs::write(dir.path().join("admin.token"), ADMIN_TOKEN).expect("token");
    let config = format!(
        "listen:\n  address: 127.0.0.1:0\n  public_url: https://api.test.example\n\
         admin:\n  address: 127.0.0.1:0\n  token_file: admin.token\n\
         upstream:\n  url: http://{}\n\
         issuers:\n  - issuer: {ISSUER}\n    jwks_file: jwks.json\n    audiences: [{AUDIENCE}]\n    \
         jwks_refresh: 1s\n    jwks_min_refetch: 1h\n\
         audit:\n  sink: file\n  path: audit.jsonl\npolicies: [policy.yaml]\n",
        echo.addr
    );
    let proxy = Proxy::from_config(dir, &config).await;
    proxy.wait_ready().await;
    World { proxy, _echo: echo }
}

fn write_jwks(dir: &std::path::Path, keys: &[&TestKey]) {
    let keys: Vec<Value> = keys.iter().map(|k| k.jwks_entry()).collect();
    // Written aside and renamed: a refresh never reads half a file.
    let tmp = dir.join("jwks.json.tmp");
    std::fs::write(&tmp, json!({ "keys": keys }).to_string()).expect("jwks");
    std::fs::rename(&tmp, dir.join("jwks.json")).expect("rename");
}

impl World {
    async fn call(&self, token: &str) -> Reply {
        get(
            &self.proxy.url("/accounts"),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await
    }

    async fn metrics(&self) -> String {
        let admin = self.proxy.admin.expect("admin");
        let resp = client()
            .request(
                http::Request::get(format!("http://{admin}/metrics"))
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

    /// `(computed, remembered)` verdict counts.
    async fn verdicts(&self) -> (f64, f64) {
        let m = self.metrics().await;
        let v = |r| metric_value(&m, "fapi_guard_token_verdicts_total", &[("result", r)]);
        (v("computed"), v("remembered"))
    }

    async fn revoke(&self, body: Value) {
        let admin = self.proxy.admin.expect("admin");
        let r = send(
            http::Request::post(format!("http://{admin}/revocations"))
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
                .body(Full::new(Bytes::from(body.to_string())))
                .expect("req"),
        )
        .await;
        assert_eq!(r.status, 202, "revocation accepted: {:?}", r.body);
    }

    /// Waits until the background refresh has read the key file at least twice more (so a
    /// file written before this call has been read).
    async fn wait_refreshed(&self) {
        let ok = |m: &str| {
            metric_value(
                m,
                "fapi_guard_jwks_refreshes_total",
                &[("issuer", ISSUER), ("result", "ok")],
            )
        };
        let start = ok(&self.metrics().await);
        let deadline = Instant::now() + Duration::from_secs(10);
        while ok(&self.metrics().await) < start + 2.0 {
            assert!(Instant::now() < deadline, "the JWKS file was never re-read");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The request decision records, without what differs from one request to the next
    /// (chain position, time, ids, timings).
    async fn decisions(&self) -> Vec<Value> {
        self.proxy
            .audit_records()
            .await
            .into_iter()
            .filter(|r| r["kind"] == "decision")
            .map(|mut r| {
                let o = r.as_object_mut().expect("record object");
                for k in [
                    "v",
                    "seq",
                    "ts",
                    "prev",
                    "interaction_id",
                    "trace_id",
                    "decide_us",
                    "duration_us",
                ] {
                    o.remove(k);
                }
                r
            })
            .collect()
    }
}

/// What a client sees of a refusal: status, challenge and body (without the interaction id,
/// generated per request).
fn seen(r: &Reply) -> (u16, Option<String>, Value) {
    let challenge = r
        .headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = r.body.clone();
    if let Some(o) = body.as_object_mut() {
        o.remove("interaction_id");
    }
    (r.status, challenge, body)
}

#[tokio::test]
async fn a_retried_expired_token_is_refused_identically_without_verifying_again() {
    let key = TestKey::new("k1");
    let w = world(&[&key]).await;
    let expired = key.token(|_, c| {
        c["iat"] = json!(now() - 600);
        c["exp"] = json!(now() - 300);
    });

    let first = w.call(&expired).await;
    assert_eq!(first.status, 401, "{:?}", first.body);
    assert_eq!(first.reason(), Some("token_expired"));
    assert_eq!(w.verdicts().await, (1.0, 0.0), "one full verification");

    for _ in 0..3 {
        let again = w.call(&expired).await;
        assert_eq!(seen(&again), seen(&first), "the same refusal");
    }
    assert_eq!(
        w.verdicts().await,
        (1.0, 3.0),
        "retries answered from memory, no verification"
    );
    let records = w.decisions().await;
    assert_eq!(records.len(), 4);
    assert_eq!(records[0]["reason"], "token_expired");
    assert_eq!(
        records[0]["subject"], "psu-9",
        "the token's identity is kept"
    );
    for r in &records[1..] {
        assert_eq!(r, &records[0], "the same audit record");
    }
    let m = w.metrics().await;
    let gauge = |name| metric_value(&m, name, &[("cache", "token_verdict")]);
    assert_eq!(gauge("fapi_guard_cache_entries"), 1.0);
    assert_eq!(gauge("fapi_guard_cache_capacity"), 10_000.0);

    // A revocation still applies to a remembered token, as it did before the first request.
    w.revoke(json!({"kind": "subject", "value": "psu-9"})).await;
    let revoked = w.call(&expired).await;
    assert_eq!(revoked.status, 401);
    assert_eq!(revoked.reason(), Some("token_revoked"));
    assert_eq!(w.verdicts().await, (1.0, 4.0));
}

#[tokio::test]
async fn a_bad_signature_is_remembered_until_the_keys_change() {
    // B signs under A's `kid`: with only A published, B's tokens do not verify.
    let a = TestKey::new("k1");
    let b = TestKey::new("k1");
    let w = world(&[&a]).await;
    let token = b.token(|_, _| {});

    let first = w.call(&token).await;
    assert_eq!(first.status, 401, "{:?}", first.body);
    assert_eq!(first.reason(), Some("token_signature_invalid"));
    let again = w.call(&token).await;
    assert_eq!(seen(&again), seen(&first), "the same refusal");
    assert_eq!(w.verdicts().await, (1.0, 1.0), "the retry came from memory");
    let records = w.decisions().await;
    assert_eq!(records[1], records[0], "the same audit record");

    // The same keys read again: the verdict holds.
    w.wait_refreshed().await;
    assert_eq!(seen(&w.call(&token).await), seen(&first));
    assert_eq!(w.verdicts().await, (1.0, 2.0), "same keys, same verdict");

    // Rotation: the issuer now publishes B under `k1`. The verdict is forgotten, and the very
    // same token is accepted.
    write_jwks(w.proxy.dir.path(), &[&b]);
    w.wait_refreshed().await;
    let after = w.call(&token).await;
    assert_eq!(after.status, 200, "{:?}", after.body);
    assert_eq!(
        w.verdicts().await,
        (2.0, 2.0),
        "verified again under the new keys"
    );
    let old = a.token(|_, _| {});
    assert_eq!(w.call(&old).await.reason(), Some("token_signature_invalid"));
}

#[tokio::test]
async fn an_unknown_kid_is_never_remembered() {
    let a = TestKey::new("k1");
    let later = TestKey::new("k-next");
    let w = world(&[&a]).await;
    let token = later.token(|_, _| {});
    for _ in 0..3 {
        let r = w.call(&token).await;
        assert_eq!(r.status, 401, "{:?}", r.body);
        assert_eq!(r.reason(), Some("token_signature_invalid"));
    }
    assert_eq!(
        w.verdicts().await,
        (3.0, 0.0),
        "each try verified: the key may still arrive"
    );
    // It arrives with the next read of the key set, and the token is accepted.
    write_jwks(w.proxy.dir.path(), &[&a, &later]);
    w.wait_refreshed().await;
    assert_eq!(w.call(&token).await.status, 200);
}

#[tokio::test]
async fn a_token_not_valid_yet_is_not_remembered_as_refused() {
    let key = TestKey::new("k1");
    let w = world(&[&key]).await;
    // Valid from now + 30 s: refused today, accepted later; kept as an accepted token.
    let early = key.token(|_, c| {
        c["nbf"] = json!(now() + 30);
    });
    for _ in 0..2 {
        assert_eq!(w.call(&early).await.reason(), Some("token_not_yet_valid"));
    }
    let m = w.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "fapi_guard_token_verdicts_total",
            &[("result", "remembered")]
        ),
        0.0
    );
    assert_eq!(
        metric_value(
            &m,
            "fapi_guard_cache_entries",
            &[("cache", "token_verdict")]
        ),
        0.0
    );
    assert_eq!(
        metric_value(&m, "fapi_guard_cache_entries", &[("cache", "token")]),
        1.0,
        "in the verified-token cache, checked again by `decide` on every request"
    );
}

/// Every dead token, verified or remembered, is refused (401) through the proxy; the test also
/// prints what a remembered refusal costs against a full verification, measured in one run (a
/// report, never asserted: `cargo test --release --test token_verdicts -- --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remembered_refusals_hold_and_report_their_cost() {
    const N: u32 = 300;
    let key = TestKey::new("k1");
    let forger = TestKey::new("k1");
    let w = world(&[&key]).await;
    let guard = &w.proxy.running.as_ref().expect("running").guard;
    let tokens = guard.tokens();
    let expired: Vec<String> = (0..N)
        .map(|_| {
            key.token(|_, c| {
                c["iat"] = json!(now() - 600);
                c["exp"] = json!(now() - 300);
            })
        })
        .collect();
    let forged: Vec<String> = (0..N).map(|_| forger.token(|_, _| {})).collect();
    for (what, set) in [("expired", &expired), ("bad signature", &forged)] {
        let mut per_pass = Vec::new();
        for _pass in 0..3 {
            let t0 = Instant::now();
            for t in set {
                let _ = tokens.verify(t, fapi_guard::token::digest(t)).await;
            }
            per_pass.push(t0.elapsed() / N);
        }
        eprintln!(
            "{what:>13}: full verification {:?}/token, remembered {:?} and {:?}/token \
             (SHA-256 of the token included)",
            per_pass[0], per_pass[1], per_pass[2]
        );
    }
    // Through the proxy, one connection after another: the same dead token N times (remembered
    // after the first) against N distinct dead tokens (each verified).
    let http = |set: Vec<String>| async {
        let t0 = Instant::now();
        for t in set {
            assert_eq!(w.call(&t).await.status, 401);
        }
        t0.elapsed() / N
    };
    let fresh: Vec<String> = (0..N).map(|_| forger.token(|_, _| {})).collect();
    let distinct = http(fresh).await;
    let same = http(vec![forged[0].clone(); N as usize]).await;
    eprintln!(
        "  HTTP round trip: distinct forged tokens {distinct:?}/request, one remembered {same:?}/request"
    );
}

//! Fault injection with real processes and sockets: the
//! real binary (`fapi-guard run`) in front of dependencies that fail on purpose — the issuer's
//! JWKS endpoint, the consent service, the upstream API (`common::fault::FaultServer`, a raw
//! socket server that can refuse, reset, hang, cut or flood), and a real size-limited audit
//! filesystem (tmpfs).
//!
//! For every fault each test checks, against the same running process:
//! - the documented fail-closed answer (503 `dependency_unavailable`; 502/504 for the
//!   upstream);
//! - that a metric moved (admin `/metrics`);
//! - that a log line says what failed (the child's stderr);
//! - recovery without a restart once the dependency is back;
//! - that nothing was forwarded without its audit record (every interaction id the upstream
//!   received has a `decision: allow` record), and `fapi-guard audit verify` passes at the end.
//!
//! Redis down (the shared state backend) is the same kind of test with several replicas:
//! `tests/redis_fleet.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::fault::{Fault, FaultServer};
use common::process::*;
use common::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn jwks_of(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

/// `upstream`, `issuers`, `audit` and `policies` sections; `extra` goes before `audit:`.
fn config(jwks_uri: &str, upstream: &str, audit: &Path, extra: &str) -> String {
    format!(
        "upstream:\n  url: {upstream}\n  connect_timeout: 500ms\n  timeout: 1s\n\
         issuers:\n  - issuer: {ISSUER}\n    jwks_uri: {jwks_uri}\n    audiences: [{AUDIENCE}]\n    \
         jwks_refresh: 1s\n    jwks_min_refetch: 1s\n\
         {extra}audit:\n  sink: file\n  path: {}\npolicies: [policy.yaml]\n",
        audit.display()
    )
}

/// Polls the metric until it exceeds `above`; returns its value.
async fn metric_above(p: &ProxyProcess, name: &str, labels: &[(&str, &str)], above: f64) -> f64 {
    let deadline = Instant::now() + T;
    loop {
        let v = p.metric(name, labels).await;
        if v > above {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{labels:?} stayed at {v} (expected > {above})\n{}",
            p.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the process logged a line containing `needle` after byte `from` of its stderr.
async fn logged_since(p: &ProxyProcess, from: usize, needle: &str) {
    let deadline = Instant::now() + T;
    loop {
        let log = p.stderr();
        if log.get(from..).is_some_and(|l| l.contains(needle)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needle:?} after byte {from}:\n{}",
            log.get(from..).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn call(p: &ProxyProcess, path: &str, auth: &str) -> Reply {
    try_get(&p.url(path), &[("authorization", auth)], T)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", p.stderr()))
}

fn assert_503(r: &Reply, what: &str) {
    assert_eq!(
        (r.status, r.reason()),
        (503, Some("dependency_unavailable")),
        "{what}: {:?}",
        r.body
    );
    assert_eq!(r.headers["retry-after"], "1", "{what}");
}

/// No request reached the upstream without its `decision: allow` record, and the chain verifies.
fn assert_every_forward_audited(upstream: &FaultServer, audit: &Path) {
    let allowed = allowed_ids(&audit_records(audit));
    let receipts = upstream.receipts();
    let unaudited: Vec<_> = receipts
        .iter()
        .filter(|id| !allowed.contains(*id))
        .collect();
    assert!(
        unaudited.is_empty(),
        "{} of {} forwarded requests have no decision record: {unaudited:?}",
        unaudited.len(),
        receipts.len()
    );
    let (code, out) = audit_verify(&[audit]);
    assert_eq!(code, 0, "audit verify: {out}");
}

struct World {
    dir: tempfile::TempDir,
    key: TestKey,
    upstream: FaultServer,
}

impl World {
    async fn new(policy: &str) -> Self {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("policy.yaml"), policy).expect("policy");
        Self {
            dir,
            key: TestKey::new("k1"),
            upstream: FaultServer::start(r#"{"ok":true}"#).await,
        }
    }

    fn audit(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }
}

// ---------------------------------------------------------------- issuer JWKS

async fn jwks_errors(p: &ProxyProcess) -> f64 {
    p.metric(
        "fapi_guard_jwks_refreshes_total",
        &[("issuer", ISSUER), ("result", "error")],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_jwks_down_slow_or_garbage_fails_closed_and_recovers() {
    let w = World::new(POLICY).await;
    let good = jwks_of(&[w.key.jwks_entry()]);
    let jwks = FaultServer::start(good.clone()).await;
    jwks.down();
    let mut p = ProxyProcess::spawn(
        w.dir.path(),
        "",
        &config(&jwks.uri("/jwks"), &w.upstream.uri(""), &w.audit(), ""),
    );
    p.wait_healthy().await;
    let auth = bearer(&w.key.token(|_, _| {}));

    // Down at start: not ready, every token request 503, a refresh error counted and logged.
    metric_above(
        &p,
        "fapi_guard_jwks_refreshes_total",
        &[("result", "error")],
        0.0,
    )
    .await;
    logged_since(&p, 0, "JWKS refresh failed").await;
    assert_eq!(p.readyz().await, 503);
    assert_503(&call(&p, "/accounts", &auth).await, "issuer down at start");
    let failed = p
        .metric(
            "fapi_guard_requests_total",
            &[("reason", "dependency_unavailable")],
        )
        .await;
    assert!(failed >= 1.0, "denial counted: {failed}");

    // Garbage at start (no key ever loaded): each answer is a failed refresh, still 503.
    let off_curve = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE";
    let garbage: Vec<(&str, Fault, String)> = vec![
        ("not JSON", Fault::Serve, "<html>oops</html>".into()),
        (
            "JSON without keys",
            Fault::Serve,
            r#"{"issuer":"x"}"#.into(),
        ),
        ("empty key set", Fault::Serve, jwks_of(&[])),
        (
            "keys with bad material",
            Fault::Serve,
            jwks_of(&[
                json!({"kty": "EC", "crv": "P-256", "x": off_curve, "y": off_curve, "kid": "k1"}),
                json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "k2"}),
                json!({"kty": "oct", "k": "c2VjcmV0", "kid": "k3"}),
            ]),
        ),
        ("a 500", Fault::Status(500), String::new()),
        ("a 50 MB body", Fault::Huge(50 * 1024 * 1024), String::new()),
    ];
    jwks.up().await;
    let peak_before = p.peak_rss_kib().expect("VmHWM");
    for (what, fault, body) in garbage {
        let before = jwks_errors(&p).await;
        let log_from = p.stderr().len();
        jwks.set(fault);
        jwks.set_body(body);
        metric_above(
            &p,
            "fapi_guard_jwks_refreshes_total",
            &[("issuer", ISSUER), ("result", "error")],
            before,
        )
        .await;
        logged_since(&p, log_from, "JWKS refresh failed").await;
        assert_eq!(p.readyz().await, 503, "{what}: not ready");
        assert_503(&call(&p, "/accounts", &auth).await, what);
    }
    // The 50 MB answer was cut at the 1 MiB limit, not buffered: the peak resident set grew by
    // far less than it.
    let peak = p.peak_rss_kib().expect("VmHWM");
    assert!(
        peak < peak_before + 16 * 1024,
        "peak RSS {peak_before} -> {peak} KiB across a 50 MB JWKS"
    );

    // Slow at start (longer than the 5 s fetch timeout): still 503, bounded by that timeout.
    let log_from = p.stderr().len();
    jwks.set_body(good.clone());
    jwks.set(Fault::Slow(Duration::from_secs(9)));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let started = Instant::now();
    assert_503(&call(&p, "/accounts", &auth).await, "slow issuer at start");
    assert!(
        started.elapsed() < Duration::from_millis(7500),
        "answered in {:?}",
        started.elapsed()
    );
    logged_since(&p, log_from, "timed out").await;
    assert_eq!(w.upstream.received(), 0, "nothing forwarded without keys");

    // Recovery without a restart.
    jwks.set(Fault::Serve);
    p.wait_ready().await;
    let ok = call(&p, "/accounts", &auth).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    metric_above(
        &p,
        "fapi_guard_jwks_refreshes_total",
        &[("result", "ok")],
        0.0,
    )
    .await;

    // Later faults: the last good keys keep working (stale-while-error) through each of them;
    // a failed refresh is counted and logged, and never replaces the good keys.
    let later: Vec<(&str, Fault, String)> = vec![
        ("down", Fault::Serve, String::new()),
        ("not JSON", Fault::Serve, "not json".into()),
        ("JSON without keys", Fault::Serve, "{}".into()),
        (
            "keys with bad material",
            Fault::Serve,
            jwks_of(&[
                json!({"kty": "EC", "crv": "P-256", "x": off_curve, "y": off_curve, "kid": "k1"}),
            ]),
        ),
        ("a 50 MB body", Fault::Huge(50 * 1024 * 1024), String::new()),
        ("slow", Fault::Slow(Duration::from_secs(7)), good.clone()),
    ];
    for (what, fault, body) in later {
        let before = jwks_errors(&p).await;
        let log_from = p.stderr().len();
        if what == "down" {
            jwks.down();
        } else {
            jwks.set(fault);
            jwks.set_body(body);
        }
        metric_above(
            &p,
            "fapi_guard_jwks_refreshes_total",
            &[("issuer", ISSUER), ("result", "error")],
            before,
        )
        .await;
        logged_since(&p, log_from, "JWKS refresh failed").await;
        let t = bearer(&w.key.token(|_, _| {}));
        let started = Instant::now();
        let r = call(&p, "/accounts", &t).await;
        assert_eq!(r.status, 200, "issuer {what} later: {:?}", r.body);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "issuer {what} later: a known key waited {:?}",
            started.elapsed()
        );
        assert_eq!(p.readyz().await, 200, "issuer {what} later: still ready");
        if what == "down" {
            jwks.up().await;
        }
    }
    // A token signed by a key the issuer never published is refused, not waved through.
    let stranger = TestKey::new("k-unknown");
    let r = call(&p, "/accounts", &bearer(&stranger.token(|_, _| {}))).await;
    assert_eq!(
        (r.status, r.reason()),
        (401, Some("token_signature_invalid"))
    );

    jwks.set(Fault::Serve);
    let status = p.terminate();
    assert!(status.success(), "clean exit: {status}");
    assert!(!p.stderr().contains("panicked"), "{}", p.stderr());
    assert!(w.upstream.received() >= 7);
    assert_every_forward_audited(&w.upstream, &w.audit());
}

// ---------------------------------------------------------------- consent service

const CONSENT_POLICY: &str = "\
api: ob
defaults:
  binding: unbound_allowed
  scopes: [accounts]
routes:
  - name: get-account
    method: GET
    path: /accounts/{account_id}
    consent:
      claim: consent_id
      permissions: [ReadAccountsDetail]
      resource: {accounts: \"{account_id}\"}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_service_down_slow_5xx_or_garbage_fails_closed_and_recovers() {
    let w = World::new(CONSENT_POLICY).await;
    let jwks = FaultServer::start(jwks_of(&[w.key.jwks_entry()])).await;
    let record = json!({"id": "c-1", "status": "Authorised", "client_id": "tpp-1",
        "subject": "psu-9", "expires_at": "2099-01-01T00:00:00Z",
        "permissions": ["ReadAccountsDetail"], "accounts": ["acc-1"]})
    .to_string();
    let consents = FaultServer::start(record.clone()).await;
    // A short cache so every phase below really calls the service.
    let extra = format!(
        "consent:\n  url: {}\n  timeout: 300ms\n  cache_ttl: 100ms\n  negative_ttl: 100ms\n",
        consents.uri("/consents/{id}")
    );
    let mut p = ProxyProcess::spawn(
        w.dir.path(),
        "",
        &config(&jwks.uri("/jwks"), &w.upstream.uri(""), &w.audit(), &extra),
    );
    p.wait_ready().await;
    let auth = bearer(&w.key.token(|_, c| c["consent_id"] = json!("c-1")));
    let read = || call(&p, "/accounts/acc-1", &auth);

    let ok = read().await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let faults: Vec<(&str, Fault, &str, &str)> = vec![
        ("down", Fault::Serve, "", "consent service call failed"),
        (
            "slow",
            Fault::Slow(Duration::from_secs(5)),
            "",
            "consent service call failed",
        ),
        ("500", Fault::Status(500), "", "consent service call failed"),
        ("503", Fault::Status(503), "", "consent service call failed"),
        (
            "reset",
            Fault::ResetBeforeHead,
            "",
            "consent service call failed",
        ),
        (
            "not JSON",
            Fault::Serve,
            "<html>",
            "consent service answer refused",
        ),
        (
            "not a record",
            Fault::Serve,
            r#"{"unexpected":[1,2,3]}"#,
            "consent service answer refused",
        ),
        (
            "a 50 MB body",
            Fault::Huge(50 * 1024 * 1024),
            "",
            "consent service call failed",
        ),
    ];
    for (what, fault, body, log) in faults {
        // Let the cached record expire: only the service can answer now.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let forwarded = w.upstream.received();
        let before = p
            .metric(
                "fapi_guard_requests_total",
                &[
                    ("route", "get-account"),
                    ("reason", "dependency_unavailable"),
                ],
            )
            .await;
        let log_from = p.stderr().len();
        if what == "down" {
            consents.down();
        } else {
            consents.set(fault);
            consents.set_body(body.to_owned());
        }
        let started = Instant::now();
        assert_503(&read().await, what);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "consent {what}: answered in {:?}",
            started.elapsed()
        );
        metric_above(
            &p,
            "fapi_guard_requests_total",
            &[
                ("route", "get-account"),
                ("reason", "dependency_unavailable"),
            ],
            before,
        )
        .await;
        logged_since(&p, log_from, log).await;
        assert_eq!(
            w.upstream.received(),
            forwarded,
            "consent {what}: nothing forwarded"
        );
        // Recovery without a restart, after each fault.
        if what == "down" {
            consents.up().await;
        }
        consents.set(Fault::Serve);
        consents.set_body(record.clone());
        tokio::time::sleep(Duration::from_millis(150)).await;
        let ok = read().await;
        assert_eq!(ok.status, 200, "after consent {what}: {:?}", ok.body);
        assert_eq!(w.upstream.received(), forwarded + 1);
    }
    let status = p.terminate();
    assert!(status.success(), "clean exit: {status}");
    assert!(!p.stderr().contains("panicked"), "{}", p.stderr());
    assert_every_forward_audited(&w.upstream, &w.audit());
}

// ---------------------------------------------------------------- upstream

/// The outcome record of `iid` (written after the answer; polled briefly).
async fn outcome_of(audit: &Path, iid: &str) -> Value {
    let deadline = Instant::now() + T;
    loop {
        if let Some(r) = audit_records(audit)
            .into_iter()
            .find(|r| r["kind"] == "outcome" && r["interaction_id"] == iid)
        {
            return r;
        }
        assert!(Instant::now() < deadline, "no outcome record for {iid}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_refusing_resetting_hanging_or_cutting_is_answered_and_recovers() {
    let w = World::new(POLICY).await;
    let jwks = FaultServer::start(jwks_of(&[w.key.jwks_entry()])).await;
    let mut p = ProxyProcess::spawn(
        w.dir.path(),
        "",
        &config(&jwks.uri("/jwks"), &w.upstream.uri(""), &w.audit(), ""),
    );
    p.wait_ready().await;
    let auth = bearer(&w.key.token(|_, _| {}));
    assert_eq!(call(&p, "/accounts", &auth).await.status, 200);

    // Faults before the response head: the proxy answers itself.
    let cases: Vec<(&str, Option<Fault>, u16, &str, &str)> = vec![
        ("refusing", None, 502, "upstream_unavailable", "connect"),
        (
            "resetting before the head",
            Some(Fault::ResetBeforeHead),
            502,
            "upstream_unavailable",
            "protocol",
        ),
        (
            "closing before the head",
            Some(Fault::CloseBeforeHead),
            502,
            "upstream_unavailable",
            "protocol",
        ),
        (
            "hanging (no head)",
            Some(Fault::Hang),
            504,
            "upstream_timeout",
            "timeout",
        ),
    ];
    for (what, fault, status, error, kind) in cases {
        let before = p
            .metric("fapi_guard_upstream_errors_total", &[("kind", kind)])
            .await;
        let log_from = p.stderr().len();
        match fault.clone() {
            None => {
                w.upstream.down();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Some(f) => w.upstream.set(f),
        }
        let started = Instant::now();
        let r = call(&p, "/accounts", &auth).await;
        assert_eq!(
            (r.status, r.body["error"].as_str()),
            (status, Some(error)),
            "upstream {what}: {:?}",
            r.body
        );
        // Bounded by `upstream.timeout` (1 s) / `connect_timeout` (500 ms).
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "upstream {what}: answered in {:?}",
            started.elapsed()
        );
        metric_above(
            &p,
            "fapi_guard_upstream_errors_total",
            &[("kind", kind)],
            before,
        )
        .await;
        logged_since(&p, log_from, "upstream error").await;
        let iid = r.headers["x-fapi-interaction-id"]
            .to_str()
            .expect("iid")
            .to_owned();
        let outcome = outcome_of(&w.audit(), &iid).await;
        assert_eq!(outcome["status"], status, "upstream {what}: {outcome}");
        assert_eq!(
            outcome["upstream_error"], kind,
            "upstream {what}: {outcome}"
        );
        // Recovery without a restart.
        if fault.is_none() {
            w.upstream.up().await;
        }
        w.upstream.set(Fault::Serve);
        let ok = call(&p, "/accounts", &auth).await;
        assert_eq!(ok.status, 200, "after upstream {what}: {:?}", ok.body);
    }

    // Faults after the head: the status is already on its way; the client must not mistake
    // the cut body for a complete one, and the failure is counted and logged.
    for (what, fault) in [
        ("closing after the head", Fault::TruncateBody),
        ("resetting mid-body", Fault::ResetMidBody),
    ] {
        let before = p
            .metric("fapi_guard_upstream_errors_total", &[("kind", "body")])
            .await;
        let log_from = p.stderr().len();
        w.upstream.set(fault);
        let got = try_get(&p.url("/accounts"), &[("authorization", &auth)], T).await;
        assert!(
            got.is_err(),
            "upstream {what}: the client saw a complete answer: {:?}",
            got.map(|r| (r.status, r.body))
        );
        metric_above(
            &p,
            "fapi_guard_upstream_errors_total",
            &[("kind", "body")],
            before,
        )
        .await;
        logged_since(&p, log_from, "upstream body failed").await;
        w.upstream.set(Fault::Serve);
        let ok = call(&p, "/accounts", &auth).await;
        assert_eq!(ok.status, 200, "after upstream {what}: {:?}", ok.body);
    }

    let status = p.terminate();
    assert!(status.success(), "clean exit: {status}");
    assert!(!p.stderr().contains("panicked"), "{}", p.stderr());
    assert_every_forward_audited(&w.upstream, &w.audit());
}

// ---------------------------------------------------------------- audit disk full

/// A tmpfs of a fixed size mounted for the test, unmounted (lazily) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).expect("mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Self(dir.to_path_buf()),
            Ok(o) => panic!(
                "FAPI_GUARD_TEST_TMPFS is set but `mount -t tmpfs` failed (it needs root or \
                 CAP_SYS_ADMIN): {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("FAPI_GUARD_TEST_TMPFS is set but `mount` cannot run: {e}"),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(fapi_guard_test_tmpfs),
    ignore = "needs a size-limited tmpfs (root): set FAPI_GUARD_TEST_TMPFS=1"
)]
async fn audit_disk_full_refuses_forwarding_then_recovers_when_space_is_freed() {
    assert!(
        std::env::var_os("FAPI_GUARD_TEST_TMPFS").is_some(),
        "run with FAPI_GUARD_TEST_TMPFS=1 (it mounts a tmpfs)"
    );
    let w = World::new(POLICY).await;
    let jwks = FaultServer::start(jwks_of(&[w.key.jwks_entry()])).await;
    let mnt = w.dir.path().join("audit-fs");
    // Declared before the process: dropped (unmounted) after it is killed.
    let _fs = Tmpfs::mount(&mnt, "1m");
    // Ballast leaves ~120 KB for the log; deleting it is the operator freeing space.
    let ballast = mnt.join("ballast");
    std::fs::write(&ballast, vec![0u8; 900 * 1024]).expect("ballast");
    let audit = mnt.join("audit.jsonl");
    let mut p = ProxyProcess::spawn(
        w.dir.path(),
        "",
        &config(&jwks.uri("/jwks"), &w.upstream.uri(""), &audit, ""),
    );
    p.wait_ready().await;
    let auth = bearer(&w.key.token(|_, _| {}));

    // Traffic flows (allowed requests and denials, 4 clients) until the disk is full.
    let url = p.url("/accounts");
    let mut workers = Vec::new();
    for n in 0..4 {
        let (url, auth) = (url.clone(), auth.clone());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut refused, mut denied) = (0usize, 0usize, 0usize);
            for i in 0..5000 {
                if (i + n) % 4 == 0 {
                    let r = try_get(&url, &[], T).await.expect("denial answered");
                    assert_eq!(r.reason(), Some("token_missing"));
                    denied += 1;
                    continue;
                }
                let r = try_get(&url, &[("authorization", &auth)], T)
                    .await
                    .expect("answered");
                match (r.status, r.reason()) {
                    (200, _) => ok += 1,
                    (503, Some("dependency_unavailable")) => {
                        refused += 1;
                        if refused >= 25 {
                            break;
                        }
                    }
                    other => panic!("unexpected answer while the disk fills: {other:?}"),
                }
            }
            (ok, refused, denied)
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for wk in workers {
        let (o, r, _) = wk.await.expect("worker");
        ok += o;
        refused += r;
    }
    assert!(
        ok > 20 && refused >= 100,
        "{ok} allowed, {refused} refused: the disk never filled"
    );
    let failures = p.metric("fapi_guard_audit_failures_total", &[]).await;
    assert!(
        failures >= refused as f64,
        "audit failures counted: {failures}"
    );
    logged_since(&p, 0, "audit batch not written").await;
    assert!(
        p.stderr().contains("No space left on device"),
        "{}",
        p.stderr()
    );
    // Nothing forwarded without its record, even while batches failed.
    let allowed = allowed_ids(&audit_records(&audit));
    assert!(
        w.upstream.receipts().iter().all(|id| allowed.contains(id)),
        "a request was forwarded without its decision record"
    );
    assert_eq!(w.upstream.received(), ok, "exactly the 200s were forwarded");

    // Space is freed: the same process records and forwards again.
    std::fs::remove_file(&ballast).expect("free space");
    let before = w.upstream.received();
    for i in 0..20 {
        let r = call(&p, "/accounts", &auth).await;
        assert_eq!(
            r.status, 200,
            "request {i} after freeing space: {:?}",
            r.body
        );
    }
    assert_eq!(w.upstream.received(), before + 20);

    let status = p.terminate();
    assert!(status.success(), "clean exit: {status}");
    assert!(!p.stderr().contains("panicked"), "{}", p.stderr());
    assert_every_forward_audited(&w.upstream, &audit);
    eprintln!(
        "disk full: {ok} allowed, {refused} refused while full, {failures} records failed; \
         audit verify: {}",
        audit_verify(&[&audit]).1.trim()
    );
}

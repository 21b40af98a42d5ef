//! The audit trail, metrics and trace context end to end (spec §8, §9).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

async fn world(extra: &str) -> (TestKey, Jwks, Echo, Proxy) {
    let key = TestKey::new("k1");
    let jwks = Jwks::start(vec![key.jwks_entry()]).await;
    let echo = Echo::start().await;
    let proxy = Proxy::start(&format!("http://{}", echo.addr), &jwks.uri(), extra, POLICY).await;
    proxy.wait_ready().await;
    (key, jwks, echo, proxy)
}

fn records_of<'a>(records: &'a [Value], iid: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["interaction_id"] == iid)
        .collect()
}

#[tokio::test]
async fn every_decision_is_recorded_without_secrets_and_the_chain_verifies() {
    let (key, _jwks, echo, proxy) = world("").await;
    let client = DpopKey::new();
    let jkt = client.jkt.clone();
    let token = key.token(|_, c| c["cnf"] = json!({"jkt": jkt}));
    let proof = client.proof("GET", "https://api.test.example/bound", &token, |_, _| {});
    let auth = format!("DPoP {token}");
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let allowed = get(
        &proxy.url("/bound"),
        &[
            ("authorization", &auth),
            ("dpop", &proof),
            ("traceparent", trace),
        ],
    )
    .await;
    assert_eq!(allowed.status, 200);
    let denied = get(
        &proxy.url("/accounts"),
        &[("authorization", "Bearer not.a.token")],
    )
    .await;
    assert_eq!(denied.reason(), Some("token_malformed"));
    let unknown = get(&proxy.url("/nowhere"), &[]).await;
    assert_eq!(unknown.status, 404);

    let records = proxy.audit_records().await;
    let iid = allowed.headers["x-fapi-interaction-id"]
        .to_str()
        .expect("id");
    let mine = records_of(&records, iid);
    assert_eq!(mine.len(), 2, "decision + outcome: {mine:?}");
    let d = mine
        .iter()
        .find(|r| r["kind"] == "decision")
        .expect("decision");
    assert_eq!(d["decision"], "allow");
    assert_eq!(d["reason"], Value::Null);
    assert_eq!(
        (d["api"].as_str(), d["route"].as_str()),
        (Some("accounts"), Some("bound-only"))
    );
    assert_eq!(
        (d["method"].as_str(), d["path"].as_str()),
        (Some("GET"), Some("/bound"))
    );
    assert_eq!(
        (d["client_id"].as_str(), d["subject"].as_str()),
        (Some("tpp-1"), Some("psu-9"))
    );
    assert_eq!(d["issuer"], ISSUER);
    assert_eq!(d["token"]["binding"], "dpop");
    assert_eq!(d["token"]["jkt"], client.jkt.as_str());
    assert_eq!(d["token"]["sha256"].as_str().map(str::len), Some(22));
    assert_eq!(d["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(
        d["policy_revision"]
            .as_str()
            .is_some_and(|r| r.starts_with("sha256:"))
    );
    let o = mine
        .iter()
        .find(|r| r["kind"] == "outcome")
        .expect("outcome");
    assert_eq!(
        (o["status"].as_u64(), o["cancelled"].as_bool()),
        (Some(200), Some(false))
    );
    // The trace continues at the upstream.
    assert_eq!(echo.last().expect("seen").headers["traceparent"], trace);

    let denied_iid = denied.headers["x-fapi-interaction-id"]
        .to_str()
        .expect("id");
    let d = records_of(&records, denied_iid);
    assert_eq!(
        (d.len(), d[0]["reason"].as_str()),
        (1, Some("token_malformed"))
    );
    let u = records_of(
        &records,
        unknown.headers["x-fapi-interaction-id"]
            .to_str()
            .expect("id"),
    );
    assert_eq!(u[0]["reason"], "route_not_found");

    let raw = std::fs::read_to_string(proxy.audit_path()).expect("audit file");
    for secret in [token.as_str(), proof.as_str(), "not.a.token"] {
        assert!(
            !raw.contains(secret),
            "a token or proof leaked into the audit trail"
        );
    }
    let summary = fapi_guard::audit::verify_files(&[proxy.audit_path()]).expect("chain verifies");
    assert_eq!(summary.records, records.len() as u64);
}

#[tokio::test]
async fn a_new_trace_is_started_when_the_client_sends_none() {
    let (key, _jwks, echo, proxy) = world("").await;
    let auth = format!("Bearer {}", key.token(|_, _| {}));
    let r = get(
        &proxy.url("/accounts"),
        &[("authorization", &auth), ("traceparent", "garbage")],
    )
    .await;
    assert_eq!(r.status, 200);
    let tp = echo.last().expect("seen").headers["traceparent"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let trace_id = tp.split('-').nth(1).expect("trace id").to_owned();
    let records = proxy.audit_records().await;
    let iid = r.headers["x-fapi-interaction-id"].to_str().expect("id");
    assert!(
        records_of(&records, iid)
            .iter()
            .all(|rec| rec["trace_id"] == trace_id.as_str())
    );
}

#[tokio::test]
async fn a_broken_sink_refuses_with_503_counts_failures_and_recovers() {
    let dir = tempfile::tempdir().expect("dir");
    // The audit file's parent is a regular file: every write fails.
    let blocker = dir.path().join("audit");
    std::fs::write(&blocker, "not a directory").expect("blocker");
    let extra = format!(
        "audit:\n  sink: file\n  path: {}\n",
        blocker.join("audit.jsonl").display()
    );
    let (key, _jwks, echo, proxy) = world(&extra).await;
    let auth = format!("Bearer {}", key.token(|_, _| {}));
    for _ in 0..3 {
        let r = get(&proxy.url("/accounts"), &[("authorization", &auth)]).await;
        assert_eq!(
            (r.status, r.reason()),
            (503, Some("dependency_unavailable"))
        );
    }
    assert_eq!(
        echo.count(),
        0,
        "a request was forwarded without its audit record"
    );
    let metrics = get_text(&format!("http://{}/metrics", proxy.admin.expect("admin"))).await;
    let failures = metric_value(&metrics, "fapi_guard_audit_failures_total", &[]);
    assert!(failures >= 3.0, "audit failures counted: {failures}");

    // The sink comes back: the next request is recorded and forwarded.
    std::fs::remove_file(&blocker).expect("remove blocker");
    std::fs::create_dir(&blocker).expect("mkdir");
    let r = get(&proxy.url("/accounts"), &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(echo.count(), 1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    fapi_guard::audit::verify_files(&[blocker.join("audit.jsonl")]).expect("chain verifies");
}

#[tokio::test]
async fn after_response_mode_writes_one_record_per_request() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("a.jsonl");
    let extra = format!(
        "audit:\n  sink: file\n  path: {}\n  durability: after_response\n",
        path.display()
    );
    let (key, _jwks, _echo, proxy) = world(&extra).await;
    let auth = format!("Bearer {}", key.token(|_, _| {}));
    let r = get(&proxy.url("/accounts"), &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lines: Vec<Value> = std::fs::read_to_string(&path)
        .expect("audit")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(
        (lines[0]["decision"].as_str(), lines[0]["status"].as_u64()),
        (Some("allow"), Some(200))
    );
}

#[tokio::test]
async fn a_cancelled_request_still_gets_its_outcome() {
    let (key, _jwks, echo, proxy) = world("").await;
    let auth = format!("Bearer {}", key.token(|_, _| {}));
    let iid = "0b8c1f7e-3a4d-4e5f-8a9b-1c2d3e4f5a6b";
    let url = proxy.url("/accounts?slow=1");
    let call = tokio::spawn(async move {
        get(
            &url,
            &[("authorization", &auth), ("x-fapi-interaction-id", iid)],
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(echo.count(), 1, "request reached the upstream");
    call.abort();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let records = proxy.audit_records().await;
    let mine = records_of(&records, iid);
    let outcome = mine
        .iter()
        .find(|r| r["kind"] == "outcome")
        .expect("outcome record");
    assert_eq!(outcome["cancelled"], true);
}

#[tokio::test]
async fn metrics_count_decisions_by_route_and_reason() {
    let (key, _jwks, _echo, proxy) = world("").await;
    let auth = format!("Bearer {}", key.token(|_, _| {}));
    for _ in 0..3 {
        assert_eq!(
            get(&proxy.url("/accounts"), &[("authorization", &auth)])
                .await
                .status,
            200
        );
    }
    let expired = key.token(|_, c| {
        c["iat"] = json!(now() - 700);
        c["exp"] = json!(now() - 100)
    });
    let expired = format!("Bearer {expired}");
    for _ in 0..2 {
        get(&proxy.url("/accounts"), &[("authorization", &expired)]).await;
    }
    get(&proxy.url("/nowhere"), &[]).await;
    get(&proxy.url("/health"), &[]).await;
    let m = get_text(&format!("http://{}/metrics", proxy.admin.expect("admin"))).await;
    let req = "fapi_guard_requests_total";
    assert_eq!(
        metric_value(
            &m,
            req,
            &[
                ("route", "list-accounts"),
                ("decision", "allow"),
                ("reason", "none")
            ]
        ),
        3.0
    );
    assert_eq!(
        metric_value(
            &m,
            req,
            &[
                ("route", "list-accounts"),
                ("decision", "deny"),
                ("reason", "token_expired")
            ]
        ),
        2.0
    );
    assert_eq!(
        metric_value(
            &m,
            req,
            &[("route", "unmatched"), ("reason", "route_not_found")]
        ),
        1.0
    );
    assert_eq!(
        metric_value(&m, req, &[("route", "health"), ("decision", "allow")]),
        1.0
    );
    assert_eq!(
        metric_value(
            &m,
            "fapi_guard_decision_duration_seconds_count",
            &[("route", "list-accounts")]
        ),
        5.0
    );
    assert_eq!(
        metric_value(
            &m,
            "fapi_guard_request_duration_seconds_count",
            &[("route", "list-accounts")]
        ),
        5.0
    );
    // One signature verification for the good token, cache hits after that; an expired token
    // is never cached, so each of its two uses is a miss.
    assert_eq!(
        metric_value(
            &m,
            "fapi_guard_cache_requests_total",
            &[("cache", "token"), ("result", "miss")]
        ),
        3.0
    );
    assert_eq!(
        metric_value(
            &m,
            "fapi_guard_cache_requests_total",
            &[("cache", "token"), ("result", "hit")]
        ),
        2.0
    );
    assert!(metric_value(&m, "fapi_guard_jwks_refreshes_total", &[("result", "ok")]) >= 1.0);
    // Two signature verifications (the good token, the expired one's first use) found their
    // key without a refetch; the expired token's second use was refused from memory.
    assert_eq!(
        metric_value(
            &m,
            "fapi_guard_cache_requests_total",
            &[("cache", "jwks"), ("result", "hit")]
        ),
        2.0
    );
    assert_eq!(
        metric_value(
            &m,
            "fapi_guard_token_verdicts_total",
            &[("result", "remembered")]
        ),
        1.0
    );
    assert!(metric_value(&m, "fapi_guard_audit_records_total", &[]) >= 7.0);
    assert_eq!(
        metric_value(&m, "fapi_guard_audit_failures_total", &[]),
        0.0
    );
    assert!(m.contains("fapi_guard_policy_info{revision=\"sha256:"));
}

async fn get_text(url: &str) -> String {
    use http_body_util::BodyExt;
    let req = http::Request::get(url)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("req");
    let resp = client().request(req).await.expect("metrics");
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec(),
    )
    .expect("utf8")
}

/// Sum of the samples of `name` whose labels include every `(label, value)` pair.
fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
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

/// The decision record names the path that was matched and forwarded (the
/// normalized one), and keeps what the client sent in `raw_path` only when it differs.
#[tokio::test]
async fn the_record_carries_the_normalized_path_the_upstream_received() {
    let (key, _jwks, echo, proxy) = world("").await;
    let auth = format!("Bearer {}", key.token(|_, _| {}));
    let cases: [(&str, u16, Option<&str>, Option<&str>); 4] = [
        ("/accounts/acc-1", 200, Some("/accounts/acc-1"), None),
        (
            "/accounts/%61cc-1",
            200,
            Some("/accounts/acc-1"),
            Some("/accounts/%61cc-1"),
        ),
        (
            "/accounts/%7ea",
            200,
            Some("/accounts/~a"),
            Some("/accounts/%7ea"),
        ),
        ("/accounts/../admin", 400, None, Some("/accounts/../admin")),
    ];
    for (raw, status, path, raw_path) in cases {
        let before = echo.count();
        let r = get(&proxy.url(raw), &[("authorization", &auth)]).await;
        assert_eq!(r.status, status, "{raw}: {:?}", r.body);
        if status == 200 {
            let seen = echo.last().expect("forwarded");
            assert_eq!(
                Some(seen.uri.as_str()),
                path,
                "{raw}: the upstream got the matched path"
            );
        } else {
            assert_eq!(echo.count(), before, "{raw}: nothing forwarded");
        }
        let iid = r.headers["x-fapi-interaction-id"].to_str().expect("id");
        let records = proxy.audit_records().await;
        let d = records_of(&records, iid)
            .into_iter()
            .find(|r| r["kind"] == "decision")
            .cloned()
            .expect("decision record");
        assert_eq!(d["path"].as_str(), path, "{raw}");
        assert_eq!(d["raw_path"].as_str(), raw_path, "{raw}");
        if status == 200 {
            assert_eq!(
                d["path"].as_str(),
                Some(echo.last().expect("seen").uri.as_str())
            );
        }
    }
    fapi_guard::audit::verify_files(&[proxy.audit_path()]).expect("chain verifies");
}

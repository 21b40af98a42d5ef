//! Rollout with `mode: audit` per route (spec §5): a would-be denial on an audit route is
//! forwarded, counted as `audit_deny` and recorded with `"enforced": false`; the enforcing
//! route beside it still refuses, and nothing reaches the API.

mod common;

use common::*;

const POLICY: &str = "\
api: legacy
audience: https://api.test.example
defaults:
  binding: dpop_or_mtls
  scopes: [accounts]
routes:
  - name: new-route
    method: GET
    path: /new
    mode: audit
  - name: old-route
    method: GET
    path: /old
";

#[tokio::test]
async fn audit_route_forwards_and_records_unenforced_denial_while_enforce_route_refuses() {
    let key = TestKey::new("k1");
    let jwks = Jwks::start(vec![key.jwks_entry()]).await;
    let echo = Echo::start().await;
    let proxy = Proxy::start(&format!("http://{}", echo.addr), &jwks.uri(), "", POLICY).await;
    proxy.wait_ready().await;

    let shadow = get(&proxy.url("/new"), &[]).await;
    assert_eq!(
        shadow.status, 200,
        "audit mode forwards the would-be denial"
    );
    assert_eq!(echo.count(), 1);

    let enforced = get(&proxy.url("/old"), &[]).await;
    assert_eq!(enforced.status, 401);
    assert_eq!(enforced.reason(), Some("token_missing"));
    assert_eq!(echo.count(), 1, "the enforcing route forwarded nothing");

    let records = proxy.audit_records().await;
    let decision = |route: &str| {
        records
            .iter()
            .find(|r| r["kind"] == "decision" && r["route"] == route)
            .cloned()
            .unwrap_or_else(|| panic!("no decision record for {route}: {records:?}"))
    };
    let d = decision("new-route");
    assert_eq!(
        (&d["decision"], &d["reason"], &d["mode"], &d["enforced"]),
        (
            &serde_json::json!("deny"),
            &serde_json::json!("token_missing"),
            &serde_json::json!("audit"),
            &serde_json::json!(false)
        ),
        "{d}"
    );
    let d = decision("old-route");
    assert_eq!(d["decision"], "deny");
    assert!(
        d.get("enforced").is_none() && d.get("mode").is_none(),
        "{d}"
    );

    let m = get_text(&format!("http://{}/metrics", proxy.admin.expect("admin"))).await;
    let line = |route: &str, decision: &str| {
        m.lines()
            .find(|l| {
                l.starts_with("fapi_guard_requests_total{")
                    && l.contains(&format!("route=\"{route}\""))
                    && l.contains(&format!("decision=\"{decision}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(line("new-route", "audit_deny"), Some(1.0), "{m}");
    assert_eq!(line("old-route", "deny"), Some(1.0), "{m}");
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

//! Revocation through the real proxy (single replica, `state.backend: memory`): the admin API
//! guarded by its bearer token, bad input refused without changing the state, and each kind
//! enforced on the next request with nothing reaching the API.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "admin-secret-0123456789";

struct Guarded {
    proxy: Proxy,
}

/// A proxy whose admin listener has `token_file` (unless `with_token` is false).
async fn start(echo: &Echo, key: &TestKey, with_token: bool) -> Guarded {
    start_with(echo, key, with_token, "", POLICY).await
}

async fn start_with(
    echo: &Echo,
    key: &TestKey,
    with_token: bool,
    extra: &str,
    policy: &str,
) -> Guarded {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("policy.yaml"), policy).expect("policy");
    std::fs::write(
        dir.path().join("jwks.json"),
        json!({"keys": [key.jwks_entry()]}).to_string(),
    )
    .expect("jwks");
    std::fs::write(dir.path().join("admin.token"), ADMIN_TOKEN).expect("token");
    let token_line = if with_token {
        "  token_file: admin.token\n"
    } else {
        ""
    };
    let config = format!(
        "listen:\n  address: 127.0.0.1:0\n  public_url: https://api.test.example\n\
         admin:\n  address: 127.0.0.1:0\n{token_line}upstream:\n  url: http://{}\n\
         issuers:\n  - issuer: {ISSUER}\n    jwks_file: jwks.json\n    audiences: [{AUDIENCE}]\n\
         {extra}audit:\n  sink: file\n  path: audit.jsonl\npolicies: [policy.yaml]\n",
        echo.addr
    );
    let proxy = Proxy::from_config(dir, &config).await;
    proxy.wait_ready().await;
    Guarded { proxy }
}

impl Guarded {
    async fn revoke(&self, auth: Option<&str>, body: impl Into<Bytes>) -> Reply {
        let admin = self.proxy.admin.expect("admin");
        let mut b = http::Request::post(format!("http://{admin}/revocations"))
            .header("content-type", "application/json");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        send(b.body(Full::new(body.into())).expect("req")).await
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

    async fn call(&self, token: &str) -> Reply {
        get(
            &self.proxy.url("/accounts"),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await
    }
}

fn bearer() -> String {
    format!("Bearer {ADMIN_TOKEN}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_writes_need_the_bearer_token_and_bad_input_changes_nothing() {
    let key = TestKey::new("k1");
    let echo = Echo::start().await;
    let g = start(&echo, &key, true).await;
    let token = key.token(|_, _| {});
    let jti = common_jti(&token);
    assert_eq!(g.call(&token).await.status, 200);

    let body = json!({"kind": "jti", "value": jti}).to_string();
    let wrong = format!("Bearer {ADMIN_TOKEN}x");
    let cases: [(&str, Option<&str>, String, u16); 7] = [
        ("no token", None, body.clone(), 401),
        ("wrong token", Some(&wrong), body.clone(), 401),
        (
            "basic scheme",
            Some("Basic YWRtaW46eA=="),
            body.clone(),
            401,
        ),
        (
            "unknown kind",
            Some(&bearer()),
            json!({"kind": "email", "value": jti}).to_string(),
            400,
        ),
        (
            "1 MB value",
            Some(&bearer()),
            json!({"kind": "jti", "value": "x".repeat(1 << 20)}).to_string(),
            413,
        ),
        (
            "2 KB value",
            Some(&bearer()),
            json!({"kind": "jti", "value": "x".repeat(2048)}).to_string(),
            400,
        ),
        ("not JSON", Some(&bearer()), "{\"kind\":".to_owned(), 400),
    ];
    for (name, auth, body, want) in cases {
        let r = g.revoke(auth, body).await;
        assert_eq!(r.status, want, "{name}: {:?}", r.body);
        assert_eq!(g.call(&token).await.status, 200, "{name}: state unchanged");
    }
    let m = g.metrics().await;
    assert!(
        m.contains(r#"fapi_guard_revocation_errors_total{error="unauthorized",source="admin"} 3"#),
        "{m}"
    );
    assert!(
        m.contains(r#"fapi_guard_revocation_errors_total{error="too_large",source="admin"} 1"#),
        "{m}"
    );

    let r = g.revoke(Some(&bearer()), body).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["fanout"], "not_shared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_token_file_the_write_endpoints_are_closed() {
    let key = TestKey::new("k1");
    let echo = Echo::start().await;
    let g = start(&echo, &key, false).await;
    let r = g
        .revoke(
            Some(&bearer()),
            json!({"kind": "jti", "value": "j"}).to_string(),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
}

fn common_jti(token: &str) -> String {
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

fn sha256_hex(token: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_is_enforced_on_the_next_request_and_nothing_reaches_the_api() {
    let key = TestKey::new("k1");
    let echo = Echo::start().await;
    let g = start(&echo, &key, true).await;
    let t = now();
    // Each case: a token, the revocation naming it, and a token it must NOT hit.
    let by_jti = key.token(|_, c| c["sub"] = json!("u-jti"));
    let by_sha = key.token(|_, c| c["sub"] = json!("u-sha"));
    let by_sub = key.token(|_, c| c["sub"] = json!("u-sub"));
    let by_client = key.token(|_, c| c["client_id"] = json!("tpp-revoked"));
    let cases = [
        (
            "jti",
            json!({"kind": "jti", "value": common_jti(&by_jti)}),
            by_jti,
        ),
        (
            "token_sha256",
            json!({"kind": "token_sha256", "value": sha256_hex(&by_sha)}),
            by_sha,
        ),
        (
            "subject",
            json!({"kind": "subject", "value": "u-sub"}),
            by_sub,
        ),
        (
            "client",
            json!({"kind": "client", "value": "tpp-revoked", "until": t + 120}),
            by_client,
        ),
    ];
    let bystander = key.token(|_, c| c["sub"] = json!("u-other"));
    for (name, body, token) in cases {
        assert_eq!(
            g.call(&token).await.status,
            200,
            "{name}: works before (and is cached)"
        );
        let r = g.revoke(Some(&bearer()), body.to_string()).await;
        assert_eq!(r.status, 202, "{name}: {:?}", r.body);
        let before = echo.count();
        let r = g.call(&token).await;
        assert_eq!(
            (r.status, r.reason()),
            (401, Some("token_revoked")),
            "{name}"
        );
        assert!(
            r.headers["www-authenticate"]
                .to_str()
                .unwrap_or("")
                .contains("invalid_token"),
            "{name}"
        );
        assert_eq!(echo.count(), before, "{name}: nothing reached the API");
        assert_eq!(
            g.call(&bystander).await.status,
            200,
            "{name}: others unaffected"
        );
    }
    // A subject revocation refuses tokens issued at or before it; a new sign-in works.
    let fresh = key.token(|_, c| {
        c["sub"] = json!("u-sub");
        c["iat"] = json!(now() + 1);
    });
    assert_eq!(
        g.call(&fresh).await.status,
        200,
        "token issued after the revocation"
    );

    let records = g.proxy.audit_records().await;
    let revs: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "revocation")
        .collect();
    assert_eq!(revs.len(), 4, "one revocation record each");
    for r in &revs {
        assert_eq!(r["revocation"]["source"], "admin");
        assert_eq!(
            r["revocation"]["value_sha256"].as_str().map(str::len),
            Some(22)
        );
    }
    let text = serde_json::to_string(&revs).expect("json");
    assert!(
        !text.contains("u-sub") && !text.contains("tpp-revoked"),
        "revocation records hold the value only as a digest: {text}"
    );
    let m = g.metrics().await;
    for kind in ["jti", "token_sha256", "subject", "client"] {
        let line = format!(r#"fapi_guard_revocations_total{{kind="{kind}",source="admin"}} 1"#);
        assert!(m.contains(&line), "{line}\n{m}");
    }
    // In-process state is always available: the gauge an alert watches is not a false 0.
    assert!(
        m.lines().any(|l| l == "fapi_guard_state_backend_up 1"),
        "backend: memory reads 1\n{m}"
    );
}

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

/// A consent service that answers every id with an authorised record and counts its calls.
async fn consent_service() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::Ordering;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = calls.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let c = c.clone();
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    c.fetch_add(1, Ordering::SeqCst);
                    let id = req
                        .uri()
                        .path()
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let r = json!({"id": id, "status": "Authorised", "client_id": "tpp-1",
                    "subject": "psu-9", "expires_at": "2099-01-01T00:00:00Z",
                    "permissions": ["ReadAccountsDetail"], "accounts": ["acc-1"]});
                    async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from(r.to_string()),
                        )))
                    }
                });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_consent_is_refused_on_the_next_request_despite_the_cached_record() {
    let key = TestKey::new("k1");
    let echo = Echo::start().await;
    let (consents, calls) = consent_service().await;
    // A long cache: without the revocation the cached "Authorised" record would keep serving.
    let extra = format!("consent:\n  url: http://{consents}/consents/{{id}}\n  cache_ttl: 5m\n");
    let g = start_with(&echo, &key, true, &extra, CONSENT_POLICY).await;
    let withdrawn = key.token(|_, c| c["consent_id"] = json!("c-withdrawn"));
    let other = key.token(|_, c| c["consent_id"] = json!("c-other"));
    let read = |t: String| {
        let url = g.proxy.url("/accounts/acc-1");
        async move { get(&url, &[("authorization", &format!("Bearer {t}"))]).await }
    };
    assert_eq!(read(withdrawn.clone()).await.status, 200);
    assert_eq!(read(other.clone()).await.status, 200);
    assert_eq!(
        read(withdrawn.clone()).await.status,
        200,
        "served from the cache"
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);

    let r = g
        .revoke(
            Some(&bearer()),
            json!({"kind": "consent", "value": "c-withdrawn"}).to_string(),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let before = echo.count();
    let r = read(withdrawn.clone()).await;
    assert_eq!((r.status, r.reason()), (403, Some("consent_revoked")));
    assert_eq!(echo.count(), before, "nothing reached the API");
    assert_eq!(read(other).await.status, 200, "other consents unaffected");
}

/// A revocation also evicts what the caches hold: the next request for a revoked token misses
/// the verified-token cache (each kind, including the lazily applied `jti`/`subject`/`client`
/// predicates), and a revoked consent is fetched again rather than served from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_evicts_the_cached_token_and_consent_record() {
    use common::process::metric_value;
    let key = TestKey::new("k1");
    let echo = Echo::start().await;
    let g = start(&echo, &key, true).await;
    let token_cache = |m: &str, result: &str| {
        metric_value(
            m,
            "fapi_guard_cache_requests_total",
            &[("cache", "token"), ("result", result)],
        )
    };
    let cases = [
        ("jti", "u-jti", "tpp-1", None),
        ("token_sha256", "u-sha", "tpp-1", None),
        (
            "subject",
            "u-sub",
            "tpp-1",
            Some(json!({"kind": "subject", "value": "u-sub"})),
        ),
        (
            "client",
            "u-cli",
            "tpp-evicted",
            Some(json!({"kind": "client", "value": "tpp-evicted"})),
        ),
    ];
    for (name, sub, client, body) in cases {
        let t = key.token(|_, c| {
            c["sub"] = json!(sub);
            c["client_id"] = json!(client);
        });
        assert_eq!(g.call(&t).await.status, 200, "{name}: verified and cached");
        assert_eq!(g.call(&t).await.status, 200, "{name}: from the cache");
        let m = g.metrics().await;
        let (hits, misses) = (token_cache(&m, "hit"), token_cache(&m, "miss"));
        let body = body.unwrap_or_else(|| match name {
            "jti" => json!({"kind": "jti", "value": common_jti(&t)}),
            _ => json!({"kind": "token_sha256", "value": sha256_hex(&t)}),
        });
        let r = g.revoke(Some(&bearer()), body.to_string()).await;
        assert_eq!(r.status, 202, "{name}: {:?}", r.body);
        assert_eq!(g.call(&t).await.reason(), Some("token_revoked"), "{name}");
        let m = g.metrics().await;
        assert_eq!(
            (token_cache(&m, "hit"), token_cache(&m, "miss")),
            (hits, misses + 1.0),
            "{name}: the cached verified token was evicted"
        );
    }

    // The consent record: cached (one call), revoked, then looked up afresh.
    let (consents, calls) = consent_service().await;
    let extra = format!("consent:\n  url: http://{consents}/consents/{{id}}\n  cache_ttl: 5m\n");
    let g = start_with(&echo, &key, true, &extra, CONSENT_POLICY).await;
    let read = |t: String| {
        let url = g.proxy.url("/accounts/acc-1");
        async move { get(&url, &[("authorization", &format!("Bearer {t}"))]).await }
    };
    let t = key.token(|_, c| c["consent_id"] = json!("c-evicted"));
    assert_eq!(read(t.clone()).await.status, 200);
    assert_eq!(read(t.clone()).await.status, 200, "served from the cache");
    let before = calls.load(std::sync::atomic::Ordering::SeqCst);
    let r = g
        .revoke(
            Some(&bearer()),
            json!({"kind": "consent", "value": "c-evicted"}).to_string(),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(read(t).await.reason(), Some("consent_revoked"));
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        before + 1,
        "the cached record was evicted: the consent service was asked again"
    );
}

//! The foundation end to end: real proxy, real echo upstream, real JWKS over HTTP, tokens minted
//! independently of the verifier.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use serde_json::json;

struct World {
    key: TestKey,
    jwks: Jwks,
    echo: Echo,
    proxy: Proxy,
}

async fn world() -> World {
    let key = TestKey::new("k1");
    let jwks = Jwks::start(vec![key.jwks_entry()]).await;
    let echo = Echo::start().await;
    let proxy = Proxy::start(&format!("http://{}", echo.addr), &jwks.uri(), "", POLICY).await;
    proxy.wait_ready().await;
    World {
        key,
        jwks,
        echo,
        proxy,
    }
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[tokio::test]
async fn allowed_request_reaches_upstream_with_normalized_path_and_interaction_id() {
    let w = world().await;
    let t = w.key.token(|_, _| {});
    let iid = "6f1c3a52-8c1e-4d3b-9a77-0e1f2d3c4b5a";
    let r = get(
        &w.proxy.url("/accounts/acc%2d1?x=%7e1"),
        &[
            ("authorization", &bearer(&t)),
            ("x-fapi-interaction-id", iid),
            ("connection", "x-hop"),
            ("x-hop", "1"),
            ("txn-token", "forged"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.headers["x-fapi-interaction-id"], iid);
    let seen = w.echo.last().expect("upstream saw the request");
    assert_eq!(
        seen.uri, "/accounts/acc-1?x=%7e1",
        "normalized path, query untouched"
    );
    assert_eq!(seen.headers["x-fapi-interaction-id"], iid);
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert!(seen.headers.contains_key("x-forwarded-host"));
    assert!(
        !seen.headers.contains_key("x-hop"),
        "hop-by-hop header forwarded"
    );
    assert!(
        !seen.headers.contains_key("txn-token"),
        "proxy-only header forwarded"
    );
}

#[tokio::test]
async fn interaction_id_is_generated_when_absent_or_invalid() {
    let w = world().await;
    for sent in [
        None,
        Some("not-a-uuid"),
        Some("{6f1c3a52-8c1e-4d3b-9a77-0e1f2d3c4b5a}"),
    ] {
        let headers: Vec<(&str, &str)> = sent
            .map(|s| vec![("x-fapi-interaction-id", s)])
            .unwrap_or_default();
        let r = get(&w.proxy.url("/health"), &headers).await;
        let got = r.headers["x-fapi-interaction-id"].to_str().expect("ascii");
        assert_eq!(got.len(), 36, "{got}");
        assert_ne!(Some(got), sent);
    }
    // denials carry it too, in the header and the body
    let r = get(&w.proxy.url("/nope"), &[]).await;
    assert_eq!(
        r.body["interaction_id"],
        r.headers["x-fapi-interaction-id"].to_str().expect("id")
    );
}

#[tokio::test]
async fn token_denials_are_never_forwarded() {
    let w = world().await;
    let other = TestKey::new("k1"); // same kid, different key: a forgery
    let t = now();
    let cases: Vec<(&str, String, &str, u16, &str)> = vec![
        (
            "garbage",
            "not.a.jwt".into(),
            "/accounts",
            401,
            "token_malformed",
        ),
        (
            "two parts",
            "abc.def".into(),
            "/accounts",
            401,
            "token_malformed",
        ),
        (
            "forged signature",
            other.token(|_, _| {}),
            "/accounts",
            401,
            "token_signature_invalid",
        ),
        (
            "expired",
            w.key.token(|_, c| {
                c["iat"] = json!(t - 400);
                c["exp"] = json!(t - 60)
            }),
            "/accounts",
            401,
            "token_expired",
        ),
        (
            "not yet valid",
            w.key.token(|_, c| c["nbf"] = json!(t + 120)),
            "/accounts",
            401,
            "token_not_yet_valid",
        ),
        (
            "lifetime over cap",
            w.key.token(|_, c| c["exp"] = json!(t + 3600)),
            "/accounts",
            401,
            "token_lifetime_exceeded",
        ),
        (
            "alg none",
            w.key.token(|h, _| h["alg"] = json!("none")),
            "/accounts",
            401,
            "token_algorithm_rejected",
        ),
        (
            "alg HS256",
            w.key.token(|h, _| h["alg"] = json!("HS256")),
            "/accounts",
            401,
            "token_algorithm_rejected",
        ),
        (
            "RS256 not allowed",
            w.key.token(|h, _| h["alg"] = json!("RS256")),
            "/accounts",
            401,
            "token_algorithm_rejected",
        ),
        (
            "unknown issuer",
            w.key.token(|_, c| c["iss"] = json!("https://evil.example")),
            "/accounts",
            401,
            "token_issuer_unknown",
        ),
        (
            "wrong audience",
            w.key
                .token(|_, c| c["aud"] = json!(["https://other.example"])),
            "/accounts",
            401,
            "token_audience_mismatch",
        ),
        (
            "typ JWT",
            w.key.token(|h, _| h["typ"] = json!("JWT")),
            "/accounts",
            401,
            "token_type_invalid",
        ),
        (
            "no typ",
            w.key.token(|h, _| {
                h.as_object_mut().map(|o| o.remove("typ"));
            }),
            "/accounts",
            401,
            "token_type_invalid",
        ),
        (
            "missing client_id",
            w.key.token(|_, c| {
                c.as_object_mut().map(|o| o.remove("client_id"));
            }),
            "/accounts",
            401,
            "token_malformed",
        ),
        (
            "missing jti",
            w.key.token(|_, c| {
                c.as_object_mut().map(|o| o.remove("jti"));
            }),
            "/accounts",
            401,
            "token_malformed",
        ),
        (
            "string exp",
            w.key.token(|_, c| c["exp"] = json!("soon")),
            "/accounts",
            401,
            "token_malformed",
        ),
        (
            "scope missing",
            w.key.token(|_, c| c["scope"] = json!("openid")),
            "/accounts",
            403,
            "scope_insufficient",
        ),
        (
            "GET on a POST-only route",
            w.key.token(|_, _| {}),
            "/payments",
            404,
            "route_not_found",
        ),
        (
            "unbound on bound route",
            w.key.token(|_, _| {}),
            "/bound",
            401,
            "binding_missing",
        ),
        (
            "crit header",
            w.key.token(|h, _| h["crit"] = json!(["exp"])),
            "/accounts",
            401,
            "token_malformed",
        ),
    ];
    for (name, token, path, status, reason) in cases {
        let r = get(&w.proxy.url(path), &[("authorization", &bearer(&token))]).await;
        assert_eq!((r.status, r.reason()), (status, Some(reason)), "{name}");
        if status == 401 {
            let www = r.headers["www-authenticate"].to_str().expect("ascii");
            assert!(
                www.starts_with("Bearer error=\"invalid_token\""),
                "{name}: {www}"
            );
        }
    }
    assert_eq!(w.echo.count(), 0, "a denied request reached the upstream");
}

#[tokio::test]
async fn request_shape_denials() {
    let w = world().await;
    let t = w.key.token(|_, _| {});
    let auth = bearer(&t);
    let r = get(&w.proxy.url("/accounts"), &[]).await;
    assert_eq!((r.status, r.reason()), (401, Some("token_missing")));
    let challenges: Vec<_> = r.headers.get_all("www-authenticate").iter().collect();
    assert_eq!(challenges.len(), 2, "Bearer and DPoP challenges");
    assert_eq!(challenges[0], "Bearer");
    assert!(
        challenges[1]
            .to_str()
            .expect("ascii")
            .starts_with("DPoP algs=")
    );

    let lower = format!("bearer {t}");
    assert_eq!(
        get(&w.proxy.url("/accounts"), &[("authorization", &lower)])
            .await
            .status,
        200
    );

    let cases: Vec<(&str, String, Vec<(&str, String)>, u16, &str)> = vec![
        (
            "token in query",
            format!("/accounts?access_token={t}"),
            vec![],
            400,
            "request_malformed",
        ),
        (
            "two authorization headers",
            "/accounts".into(),
            vec![
                ("authorization", auth.clone()),
                ("authorization", auth.clone()),
            ],
            400,
            "request_malformed",
        ),
        (
            "encoded slash",
            "/accounts%2Facc-1".into(),
            vec![("authorization", auth.clone())],
            400,
            "request_malformed",
        ),
        (
            "dot-dot",
            "/accounts/%2e%2e/health".into(),
            vec![("authorization", auth.clone())],
            400,
            "request_malformed",
        ),
        (
            "double slash",
            "//accounts".into(),
            vec![("authorization", auth.clone())],
            400,
            "request_malformed",
        ),
        (
            "backslash",
            "/accounts/a%5cb".into(),
            vec![("authorization", auth.clone())],
            400,
            "request_malformed",
        ),
        (
            "unknown route",
            "/admin".into(),
            vec![("authorization", auth.clone())],
            404,
            "route_not_found",
        ),
        (
            "trailing slash",
            "/accounts/".into(),
            vec![("authorization", auth.clone())],
            404,
            "route_not_found",
        ),
        (
            "huge header",
            "/accounts".into(),
            vec![
                ("authorization", auth.clone()),
                ("x-big", "a".repeat(10_000)),
            ],
            431,
            "headers_too_large",
        ),
    ];
    for (name, path, headers, status, reason) in cases {
        let mut b = Request::get(w.proxy.url(&path));
        for (k, v) in &headers {
            b = b.header(*k, v.as_str());
        }
        let r = send(b.body(Full::new(Bytes::new())).expect("req")).await;
        assert_eq!((r.status, r.reason()), (status, Some(reason)), "{name}");
    }

    // token in a form body (RFC 6750 §2.2), checked once the request is otherwise allowed
    // (authorize before buffering), and an oversized body
    let payments = w.key.token(|_, c| c["scope"] = json!("payments"));
    let form = Request::post(w.proxy.url("/payments"))
        .header("authorization", bearer(&payments))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(format!("a=1&access_token={t}"))))
        .expect("req");
    let r = send(form).await;
    assert_eq!((r.status, r.reason()), (400, Some("request_malformed")));
    let unrouted = Request::post(w.proxy.url("/accounts"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(format!("a=1&access_token={t}"))))
        .expect("req");
    let r = send(unrouted).await;
    assert_eq!((r.status, r.reason()), (404, Some("route_not_found")));
    let big = Request::post(w.proxy.url("/payments"))
        .header("authorization", &auth)
        .body(Full::new(Bytes::from(vec![b'x'; 10_000])))
        .expect("req");
    let r = send(big).await;
    assert_eq!((r.status, r.reason()), (413, Some("request_too_large")));
    assert_eq!(
        w.echo.count(),
        1,
        "only the lower-case scheme request was forwarded"
    );
}

#[tokio::test]
async fn invalid_utf8_and_binary_headers_fail_closed() {
    let w = world().await;
    let mut req = Request::get(w.proxy.url("/accounts"))
        .body(Full::new(Bytes::new()))
        .expect("req");
    req.headers_mut().insert(
        "authorization",
        http::HeaderValue::from_bytes(b"Bearer \xff\xfe").expect("opaque bytes"),
    );
    let r = send(req).await;
    assert_eq!((r.status, r.reason()), (400, Some("request_malformed")));
    assert_eq!(w.echo.count(), 0);
}

#[tokio::test]
async fn key_rotation_is_picked_up_and_unknown_kids_are_rate_limited() {
    let w = world().await;
    let new_key = TestKey::new("k2");
    let t2 = new_key.token(|_, _| {});
    let before = w.jwks.fetches.load(Ordering::SeqCst);
    // Unknown kid and not yet published: refetch happens (once), still refused.
    let r = get(
        &w.proxy.url("/accounts"),
        &[("authorization", &bearer(&t2))],
    )
    .await;
    assert_eq!(r.reason(), Some("token_signature_invalid"));
    // A flood of unknown kids within jwks_min_refetch makes no further fetches.
    for i in 0..20 {
        let k = TestKey::new(&format!("flood-{i}"));
        let r = get(
            &w.proxy.url("/accounts"),
            &[("authorization", &bearer(&k.token(|_, _| {})))],
        )
        .await;
        assert_eq!(r.reason(), Some("token_signature_invalid"));
    }
    let after_flood = w.jwks.fetches.load(Ordering::SeqCst);
    assert!(
        after_flood - before <= 1,
        "flood caused {} fetches",
        after_flood - before
    );
    // The issuer rotates: the new kid appears; after the rate-limit window it is fetched.
    w.jwks.keys.lock().expect("lock").push(new_key.jwks_entry());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = get(
        &w.proxy.url("/accounts"),
        &[("authorization", &bearer(&t2))],
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn issuer_down_at_startup_fails_closed_then_recovers() {
    let key = TestKey::new("k1");
    let jwks = Jwks::start(vec![key.jwks_entry()]).await;
    jwks.up.store(false, Ordering::SeqCst);
    let echo = Echo::start().await;
    let proxy = Proxy::start(&format!("http://{}", echo.addr), &jwks.uri(), "", POLICY).await;
    let admin = proxy.admin.expect("admin");
    let t = key.token(|_, _| {});
    let r = get(&proxy.url("/accounts"), &[("authorization", &bearer(&t))]).await;
    assert_eq!(
        (r.status, r.reason()),
        (503, Some("dependency_unavailable"))
    );
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(
        get(&format!("http://{admin}/readyz"), &[]).await.status,
        503
    );
    assert_eq!(
        get(&format!("http://{admin}/healthz"), &[]).await.status,
        200
    );
    assert_eq!(echo.count(), 0);
    // The issuer comes back: the background refresh (2 s retry) loads keys.
    jwks.up.store(true, Ordering::SeqCst);
    proxy.wait_ready().await;
    assert_eq!(
        get(&format!("http://{admin}/readyz"), &[]).await.status,
        200
    );
    let r = get(&proxy.url("/accounts"), &[("authorization", &bearer(&t))]).await;
    assert_eq!(r.status, 200);
    // The issuer goes down later: cached keys keep working (stale-while-error).
    jwks.up.store(false, Ordering::SeqCst);
    let t2 = key.token(|_, _| {});
    let r = get(&proxy.url("/accounts"), &[("authorization", &bearer(&t2))]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn dead_upstream_is_a_502_not_a_hang() {
    let key = TestKey::new("k1");
    let jwks = Jwks::start(vec![key.jwks_entry()]).await;
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_addr = dead.local_addr().expect("addr");
    drop(dead);
    let proxy = Proxy::start(&format!("http://{dead_addr}"), &jwks.uri(), "", POLICY).await;
    proxy.wait_ready().await;
    let t = key.token(|_, _| {});
    let r = get(&proxy.url("/accounts"), &[("authorization", &bearer(&t))]).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.body["error"], "upstream_unavailable");
    assert!(r.headers.contains_key("x-fapi-interaction-id"));
}

#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    let w = world().await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let t = w.key.token(|_, _| {});
    let req = Request::get(w.proxy.url("/accounts"))
        .header("authorization", bearer(&t))
        .body(Full::new(Bytes::new()))
        .expect("req");
    let resp = client.request(req).await.expect("h2 request");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(w.echo.count(), 1);
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let mut w = world().await;
    let t = w.key.token(|_, _| {});
    let url = w.proxy.url("/accounts?slow=1");
    // Keep a connection busy while shutting down.
    let inflight = tokio::spawn(async move { get(&url, &[("authorization", &bearer(&t))]).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(w.echo.count(), 1, "request is at the upstream");
    let running = w.proxy.running.take().expect("running");
    running.shutdown(Duration::from_secs(2)).await;
    let r = inflight.await.expect("join");
    assert_eq!(r.status, 200);
    // After shutdown nothing listens.
    assert!(tokio::net::TcpStream::connect(w.proxy.addr).await.is_err());
}

#[tokio::test]
async fn request_timeout_answers_504_and_is_recorded() {
    let key = TestKey::new("k1");
    let jwks = Jwks::start(vec![key.jwks_entry()]).await;
    let echo = Echo::start().await;
    // Lands inside `listen.limits`: the whole request may take 150 ms.
    let limits = "    request_timeout: 150ms\n";
    let proxy = Proxy::start_with(
        &format!("http://{}", echo.addr),
        &jwks.uri(),
        "",
        limits,
        POLICY,
    )
    .await;
    proxy.wait_ready().await;
    let auth = bearer(&key.token(|_, _| {}));
    let r = get(&proxy.url("/accounts?slow=1"), &[("authorization", &auth)]).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.body["error"], "request_timeout");
    let iid = r.headers["x-fapi-interaction-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let records = proxy.audit_records().await;
    let mine: Vec<_> = records
        .iter()
        .filter(|x| x["interaction_id"] == iid.as_str())
        .collect();
    assert!(
        mine.iter()
            .any(|x| x["kind"] == "decision" && x["decision"] == "allow"),
        "{mine:?}"
    );
    assert!(
        mine.iter()
            .any(|x| x["upstream_error"] == "request_timeout"),
        "{mine:?}"
    );
}

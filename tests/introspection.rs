//! Opaque access tokens through RFC 7662 introspection, end to end: the real proxy in front of
//! an echo API, and a real introspection endpoint (hyper, below) that checks the proxy's client
//! authentication (client_secret_basic, RFC 6749 §2.3.1), counts its calls and can be made to
//! refuse, stall, answer garbage or go away. The endpoint decides what each token is; the
//! tokens themselves are random strings, and DPoP proofs come from the test harness's own
//! signer, so nothing here shares code with the verifying path.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

const CLIENT_ID: &str = "fapi-guard";
const CLIENT_SECRET: &str = "introspection-secret-0123";
const ADMIN_TOKEN: &str = "admin-secret-0123456789";

// ---------------------------------------------------------------- the introspection endpoint

/// What the endpoint does with the next calls.
#[derive(Clone, Debug)]
enum Mode {
    /// Answers from its token table.
    Normal,
    /// Answers after a pause.
    Slow(Duration),
    /// Answers this status with an empty JSON object.
    Status(u16),
    /// Answers 200 with this body.
    Body(Vec<u8>),
}

struct State {
    calls: AtomicUsize,
    /// Calls refused because the client authentication was wrong.
    unauthenticated: AtomicUsize,
    /// token → its claims (without `active`); `active` is true until `exp`.
    tokens: Mutex<HashMap<String, Value>>,
    /// Tokens the issuer has revoked: answered `active: false`.
    revoked: Mutex<Vec<String>>,
    mode: Mutex<Mode>,
    /// `token_type_hint` of every authenticated call.
    hints: Mutex<Vec<String>>,
}

struct Endpoint {
    addr: SocketAddr,
    state: Arc<State>,
    server: JoinHandle<()>,
}

impl Endpoint {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State {
            calls: AtomicUsize::new(0),
            unauthenticated: AtomicUsize::new(0),
            tokens: Mutex::new(HashMap::new()),
            revoked: Mutex::new(Vec::new()),
            mode: Mutex::new(Mode::Normal),
            hints: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        // Aborting this task drops the listener and every connection: the port then refuses
        // connections, like an authorization server that went away.
        let server = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let st = st.clone();
                let svc = service_fn(move |req: Request<Incoming>| {
                    let st = st.clone();
                    async move { Ok::<_, Infallible>(answer(&st, req).await) }
                });
                conns.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            state,
            server,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/oauth2/introspect", self.addr)
    }

    /// Registers an active token with `claims` over the defaults.
    fn issue(&self, edit: impl FnOnce(&mut Value)) -> String {
        let token = opaque_token();
        let mut claims = json!({
            "iss": ISSUER, "sub": "psu-9", "client_id": "tpp-1", "aud": AUDIENCE,
            "scope": "accounts payments", "iat": now() - 10, "exp": now() + 300,
            "token_type": "Bearer",
        });
        edit(&mut claims);
        self.state
            .tokens
            .lock()
            .expect("lock")
            .insert(token.clone(), claims);
        token
    }

    fn revoke_at_issuer(&self, token: &str) {
        self.state
            .revoked
            .lock()
            .expect("lock")
            .push(token.to_owned());
    }

    fn set(&self, mode: Mode) {
        *self.state.mode.lock().expect("lock") = mode;
    }

    fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }
}

/// A random opaque token (base64url, no dots: not shaped like a JWT).
fn opaque_token() -> String {
    let mut bytes = [0u8; 24];
    aws_lc_rs::rand::fill(&mut bytes).expect("random");
    format!("at_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// `application/x-www-form-urlencoded` decoding of one name or value.
fn form_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// RFC 6749 §2.3.1: `Basic base64(urlencode(id) ":" urlencode(secret))`.
fn authenticated(req: &Request<Incoming>) -> bool {
    let Some(b64) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Some(pair) = STANDARD
        .decode(b64)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return false;
    };
    let Some((id, secret)) = pair.split_once(':') else {
        return false;
    };
    form_decode(id).as_deref() == Some(CLIENT_ID)
        && form_decode(secret).as_deref() == Some(CLIENT_SECRET)
}

fn json_response(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).expect("status");
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    r
}

async fn answer(st: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    st.calls.fetch_add(1, Ordering::SeqCst);
    let form_type = req
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "application/x-www-form-urlencoded");
    if req.method() != http::Method::POST || !form_type {
        return json_response(400, r#"{"error":"invalid_request"}"#);
    }
    // RFC 7662 §2.1: the protected resource authenticates; RFC 6749 §5.2 invalid_client.
    if !authenticated(&req) {
        st.unauthenticated.fetch_add(1, Ordering::SeqCst);
        return json_response(401, r#"{"error":"invalid_client"}"#);
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let form: HashMap<String, String> = String::from_utf8_lossy(&body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((form_decode(k)?, form_decode(v)?)))
        .collect();
    st.hints
        .lock()
        .expect("lock")
        .push(form.get("token_type_hint").cloned().unwrap_or_default());
    let mode = st.mode.lock().expect("lock").clone();
    match mode {
        Mode::Normal => {}
        Mode::Slow(d) => tokio::time::sleep(d).await,
        Mode::Status(s) => return json_response(s, "{}"),
        Mode::Body(b) => return json_response(200, b),
    }
    let Some(token) = form.get("token") else {
        return json_response(400, r#"{"error":"invalid_request"}"#);
    };
    let claims = st.tokens.lock().expect("lock").get(token).cloned();
    let revoked = st.revoked.lock().expect("lock").contains(token);
    let answer = match claims {
        Some(mut c) if !revoked && c["exp"].as_i64().is_some_and(|exp| exp > now()) => {
            c["active"] = json!(true);
            c
        }
        // RFC 7662 §2.2: nothing else about an inactive token.
        _ => json!({"active": false}),
    };
    json_response(200, answer.to_string())
}

// ---------------------------------------------------------------- the proxy

struct Setup {
    secret: &'static str,
    cache_ttl: &'static str,
    timeout: &'static str,
    listen_extra: &'static str,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            secret: CLIENT_SECRET,
            cache_ttl: "30s",
            timeout: "1s",
            listen_extra: "",
        }
    }
}

struct World {
    endpoint: Endpoint,
    echo: Echo,
    proxy: Proxy,
    jwt_key: TestKey,
}

async fn world(setup: Setup) -> World {
    let endpoint = Endpoint::start().await;
    let echo = Echo::start().await;
    let jwt_key = TestKey::new("k1");
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("policy.yaml"), POLICY).expect("policy");
    std::fs::write(
        dir.path().join("jwks.json"),
        json!({"keys": [jwt_key.jwks_entry()]}).to_string(),
    )
    .expect("jwks");
    std::fs::write(dir.path().join("admin.token"), ADMIN_TOKEN).expect("admin token");
    std::fs::write(dir.path().join("introspection.secret"), setup.secret).expect("secret");
    let config = format!(
        "\
listen:
  address: 127.0.0.1:0
  public_url: https://api.test.example
{listen_extra}admin:
  address: 127.0.0.1:0
  token_file: admin.token
upstream:
  url: http://{echo}
issuers:
  - issuer: {ISSUER}
    jwks_file: jwks.json
    audiences: [{AUDIENCE}]
    introspection:
      url: {url}
      client_id: {CLIENT_ID}
      client_secret_file: introspection.secret
      cache_ttl: {ttl}
      timeout: {timeout}
audit:
  sink: file
  path: audit.jsonl
policies: [policy.yaml]
",
        listen_extra = setup.listen_extra,
        echo = echo.addr,
        url = endpoint.url(),
        ttl = setup.cache_ttl,
        timeout = setup.timeout,
    );
    let proxy = Proxy::from_config(dir, &config).await;
    proxy.wait_ready().await;
    World {
        endpoint,
        echo,
        proxy,
        jwt_key,
    }
}

impl World {
    async fn bearer(&self, path: &str, token: &str) -> Reply {
        get(
            &self.proxy.url(path),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await
    }

    async fn admin(&self, method: http::Method, path: &str, body: Option<Value>) -> (u16, String) {
        let admin = self.proxy.admin.expect("admin");
        let mut b = Request::builder()
            .method(method)
            .uri(format!("http://{admin}{path}"))
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"));
        if body.is_some() {
            b = b.header("content-type", "application/json");
        }
        let body = body.map(|v| v.to_string()).unwrap_or_default();
        let resp = client()
            .request(b.body(Full::new(Bytes::from(body))).expect("req"))
            .await
            .expect("admin call");
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn metrics(&self) -> String {
        self.admin(http::Method::GET, "/metrics", None).await.1
    }

    async fn revoke(&self, kind: &str, value: &str) {
        let (status, body) = self
            .admin(
                http::Method::POST,
                "/revocations",
                Some(json!({"kind": kind, "value": value})),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
}

fn sha256_b64(token: &str) -> String {
    URL_SAFE_NO_PAD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref())
}

fn metric_line(text: &str, prefix: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn assert_refused(r: &Reply, status: u16, reason: &str) {
    assert_eq!(
        (r.status, r.reason()),
        (status, Some(reason)),
        "{:?}",
        r.body
    );
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opaque_token_is_introspected_once_then_served_from_the_cache() {
    let w = world(Setup::default()).await;
    let token = w.endpoint.issue(|_| {});

    let r = w.bearer("/accounts", &token).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(w.endpoint.calls(), 1);
    let r = w.bearer("/accounts", &token).await;
    assert_eq!(r.status, 200);
    assert_eq!(w.endpoint.calls(), 1, "the second request is a cache hit");
    assert_eq!(w.echo.count(), 2);
    assert_eq!(
        w.endpoint.state.unauthenticated.load(Ordering::SeqCst),
        0,
        "the proxy authenticated with client_secret_basic"
    );
    assert_eq!(
        w.endpoint.state.hints.lock().expect("lock").as_slice(),
        ["access_token"]
    );

    // The introspected claims feed the same checks as a JWT's: scope (payments is granted),
    // and a route needing a binding refuses this unbound token.
    assert_eq!(w.bearer("/accounts/acc-1", &token).await.status, 200);
    assert_refused(&w.bearer("/bound", &token).await, 401, "binding_missing");
    let no_payments = w.endpoint.issue(|c| c["scope"] = json!("accounts"));
    let req = Request::post(w.proxy.url("/payments"))
        .header("authorization", format!("Bearer {no_payments}"))
        .body(Full::new(Bytes::new()))
        .expect("req");
    assert_refused(&send(req).await, 403, "scope_insufficient");
    let other_audience = w
        .endpoint
        .issue(|c| c["aud"] = json!("https://other.example"));
    assert_refused(
        &w.bearer("/accounts", &other_audience).await,
        401,
        "token_audience_mismatch",
    );
    let other_issuer = w
        .endpoint
        .issue(|c| c["iss"] = json!("https://evil.example"));
    assert_refused(
        &w.bearer("/accounts", &other_issuer).await,
        401,
        "token_issuer_unknown",
    );
    let too_long = w.endpoint.issue(|c| c["exp"] = json!(now() + 3600));
    assert_refused(
        &w.bearer("/accounts", &too_long).await,
        401,
        "token_lifetime_exceeded",
    );
    let no_iat = w.endpoint.issue(|c| {
        c.as_object_mut().map(|m| m.remove("iat"));
    });
    assert_refused(
        &w.bearer("/accounts", &no_iat).await,
        401,
        "token_malformed",
    );

    // A JWT still goes to the issuer's keys, never to the introspection endpoint.
    let calls = w.endpoint.calls();
    let jwt = w.jwt_key.token(|_, _| {});
    assert_eq!(w.bearer("/accounts", &jwt).await.status, 200);
    let forged = format!("{}x", &jwt[..jwt.len() - 1]);
    assert_refused(
        &w.bearer("/accounts", &forged).await,
        401,
        "token_signature_invalid",
    );
    assert_eq!(
        w.endpoint.calls(),
        calls,
        "JWT-shaped tokens are not introspected"
    );

    // The audit record names who the introspection said.
    let records = w.proxy.audit_records().await;
    let first = records
        .iter()
        .find(|r| r["kind"] == "decision" && r["decision"] == "allow")
        .expect("allow record");
    assert_eq!(
        (&first["subject"], &first["client_id"], &first["issuer"]),
        (&json!("psu-9"), &json!("tpp-1"), &json!(ISSUER))
    );
    assert_eq!(first["token"]["sha256"], json!(&sha256_b64(&token)[..22]));
    assert!(
        first["token"].get("jti").is_none(),
        "no jti in the answer, none in the record: {first}"
    );

    let m = w.metrics().await;
    assert!(
        metric_line(
            &m,
            r#"fapi_guard_cache_requests_total{cache="introspection",result="hit"} "#
        ) >= 2,
        "{m}"
    );
    assert_eq!(
        metric_line(
            &m,
            r#"fapi_guard_introspection_calls_total{result="active"} "#
        ),
        4
    );
    assert_eq!(
        metric_line(
            &m,
            r#"fapi_guard_introspection_calls_total{result="unusable"} "#
        ),
        2,
        "the answers naming another issuer or without iat"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inactive_token_is_token_inactive_and_nothing_is_forwarded() {
    let w = world(Setup::default()).await;
    let token = w.endpoint.issue(|_| {});
    assert_eq!(w.bearer("/accounts", &token).await.status, 200);
    assert_eq!(w.echo.count(), 1);

    let unknown = opaque_token();
    let revoked_at_issuer = w.endpoint.issue(|_| {});
    w.endpoint.revoke_at_issuer(&revoked_at_issuer);
    for t in [&unknown, &revoked_at_issuer] {
        let r = w.bearer("/accounts", t).await;
        assert_refused(&r, 401, "token_inactive");
        assert!(
            !r.body.to_string().contains(t.as_str()),
            "the token is never echoed"
        );
        let challenge = r.headers["www-authenticate"].to_str().expect("ascii");
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    }
    assert_eq!(w.echo.count(), 1, "nothing reached the API");
    // The refusal is remembered: asking again makes no call.
    let calls = w.endpoint.calls();
    assert_refused(
        &w.bearer("/accounts", &unknown).await,
        401,
        "token_inactive",
    );
    assert_eq!(w.endpoint.calls(), calls);
    let records = w.proxy.audit_records().await;
    assert!(
        records
            .iter()
            .any(|r| r["decision"] == "deny" && r["reason"] == "token_inactive"),
        "{records:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_never_outlives_the_tokens_exp() {
    let w = world(Setup::default()).await;
    // exp in 2 s; the issuer's clock_skew (10 s by default) would still accept it from a cache
    // that ignored exp.
    let token = w.endpoint.issue(|c| c["exp"] = json!(now() + 2));
    assert_eq!(w.bearer("/accounts", &token).await.status, 200);
    assert_eq!(w.bearer("/accounts", &token).await.status, 200);
    assert_eq!(w.endpoint.calls(), 1);
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let r = w.bearer("/accounts", &token).await;
    assert_refused(&r, 401, "token_inactive");
    assert_eq!(w.endpoint.calls(), 2, "re-introspected after exp");
    assert_eq!(w.echo.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_never_outlives_cache_ttl() {
    let w = world(Setup {
        cache_ttl: "1s",
        ..Setup::default()
    })
    .await;
    let token = w.endpoint.issue(|_| {});
    assert_eq!(w.bearer("/accounts", &token).await.status, 200);
    assert_eq!(w.bearer("/accounts", &token).await.status, 200);
    assert_eq!(w.endpoint.calls(), 1);
    // The issuer revokes it; within cache_ttl the cached answer stands, after it the issuer's.
    w.endpoint.revoke_at_issuer(&token);
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_refused(&w.bearer("/accounts", &token).await, 401, "token_inactive");
    assert_eq!(w.endpoint.calls(), 2);
    assert_eq!(w.echo.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_evicts_the_cached_answer() {
    let w = world(Setup::default()).await;
    let by_digest = w.endpoint.issue(|_| {});
    let by_jti = w.endpoint.issue(|c| c["jti"] = json!("jti-77"));
    let by_subject = w.endpoint.issue(|c| c["sub"] = json!("psu-gone"));
    let by_client = w.endpoint.issue(|c| c["client_id"] = json!("tpp-gone"));
    let bystander = w.endpoint.issue(|_| {});
    let all = [&by_digest, &by_jti, &by_subject, &by_client, &bystander];
    for t in all {
        assert_eq!(w.bearer("/accounts", t).await.status, 200);
    }
    assert_eq!(w.endpoint.calls(), 5);
    let forwarded = w.echo.count();

    let cases = [
        ("token_sha256", sha256_b64(&by_digest), &by_digest),
        ("jti", "jti-77".to_owned(), &by_jti),
        ("subject", "psu-gone".to_owned(), &by_subject),
        ("client", "tpp-gone".to_owned(), &by_client),
    ];
    for (kind, value, token) in cases {
        let calls = w.endpoint.calls();
        w.revoke(kind, &value).await;
        let r = w.bearer("/accounts", token).await;
        assert_refused(&r, 401, "token_revoked");
        assert_eq!(
            w.endpoint.calls(),
            calls + 1,
            "{kind}: the cached answer was evicted and the token introspected again"
        );
        // The answer fetched after the revocation is cached again, and still refused.
        assert_refused(&w.bearer("/accounts", token).await, 401, "token_revoked");
        assert_eq!(w.endpoint.calls(), calls + 1, "{kind}");
    }
    assert_eq!(w.echo.count(), forwarded, "nothing revoked reached the API");
    let calls = w.endpoint.calls();
    assert_eq!(w.bearer("/accounts", &bystander).await.status, 200);
    assert_eq!(
        w.endpoint.calls(),
        calls,
        "a token no revocation names stays cached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_client_credentials_are_a_dependency_failure() {
    let w = world(Setup {
        secret: "not-the-registered-secret",
        ..Setup::default()
    })
    .await;
    let token = w.endpoint.issue(|_| {});
    for expected_calls in [1, 2] {
        let r = w.bearer("/accounts", &token).await;
        assert_refused(&r, 503, "dependency_unavailable");
        assert_eq!(
            w.endpoint.calls(),
            expected_calls,
            "a failure is never cached"
        );
    }
    assert_eq!(w.endpoint.state.unauthenticated.load(Ordering::SeqCst), 2);
    assert_eq!(w.echo.count(), 0);
    let m = w.metrics().await;
    assert_eq!(
        metric_line(
            &m,
            r#"fapi_guard_introspection_calls_total{result="status"} "#
        ),
        2,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dpop_bound_opaque_token_needs_its_proof() {
    let w = world(Setup::default()).await;
    // RFC 9449 §7.1's example access token (dots and `~`: not a JWS) and its `ath`.
    let token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
    assert_eq!(
        DpopKey::ath(token),
        "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    );
    let key = DpopKey::new();
    let mut claims = json!({
        "iss": ISSUER, "sub": "psu-9", "client_id": "tpp-1", "aud": AUDIENCE,
        "scope": "accounts", "iat": now() - 10, "exp": now() + 300,
        "token_type": "DPoP", "cnf": {"jkt": key.jkt},
    });
    claims["active"] = json!(true);
    w.endpoint
        .state
        .tokens
        .lock()
        .expect("lock")
        .insert(token.to_owned(), claims);
    let htu = "https://api.test.example/bound";
    let call = |auth: String, proof: Option<String>| {
        let url = w.proxy.url("/bound");
        async move {
            let mut h = vec![("authorization", auth)];
            if let Some(p) = proof {
                h.push(("dpop", p));
            }
            let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            get(&url, &h).await
        }
    };
    let dpop = format!("DPoP {token}");
    let other_key = DpopKey::new();
    let cases = [
        (
            "as Bearer",
            format!("Bearer {token}"),
            None,
            "binding_scheme_mismatch",
        ),
        ("no proof", dpop.clone(), None, "dpop_proof_missing"),
        (
            "proof for another token",
            dpop.clone(),
            Some(key.proof("GET", htu, "another-token", |_, _| {})),
            "dpop_ath_mismatch",
        ),
        (
            "proof by another key",
            dpop.clone(),
            Some(other_key.proof("GET", htu, token, |_, _| {})),
            "dpop_key_mismatch",
        ),
        (
            "proof for another URL",
            dpop.clone(),
            Some(key.proof("GET", "https://api.test.example/accounts", token, |_, _| {})),
            "dpop_htu_mismatch",
        ),
    ];
    for (name, auth, proof, reason) in cases {
        let r = call(auth, proof).await;
        assert_eq!((r.status, r.reason()), (401, Some(reason)), "{name}");
    }
    assert_eq!(
        w.echo.count(),
        0,
        "nothing reached the API without the proof"
    );
    let proof = key.proof("GET", htu, token, |_, _| {});
    let r = call(dpop.clone(), Some(proof.clone())).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(w.echo.count(), 1);
    // The same proof again is a replay.
    let r = call(dpop, Some(proof)).await;
    assert_eq!((r.status, r.reason()), (401, Some("dpop_proof_replayed")));
    assert_eq!(w.endpoint.calls(), 1, "one introspection for all of it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mtls_bound_opaque_token_needs_the_certificate() {
    let w = world(Setup {
        listen_extra: "  forwarded_client_cert:\n    header: x-forwarded-client-cert\n    format: xfcc\n    trusted_peers: [127.0.0.1/32]\n",
        ..Setup::default()
    })
    .await;
    let cert_sha256 = [0x5a_u8; 32];
    let hex: String = cert_sha256.iter().map(|b| format!("{b:02x}")).collect();
    let token = w.endpoint.issue(|c| {
        c["cnf"] = json!({"x5t#S256": URL_SAFE_NO_PAD.encode(cert_sha256)});
    });
    let auth = format!("Bearer {token}");
    let url = w.proxy.url("/bound");
    let other = format!("Hash={}", "00".repeat(32));
    let right = format!("Hash={hex}");
    let cases: [(&str, Option<&str>, u16, Option<&str>); 3] = [
        (
            "no certificate",
            None,
            401,
            Some("mtls_certificate_missing"),
        ),
        (
            "another certificate",
            Some(&other),
            401,
            Some("mtls_certificate_mismatch"),
        ),
        ("its certificate", Some(&right), 200, None),
    ];
    for (name, cert, status, reason) in cases {
        let mut h = vec![("authorization", auth.as_str())];
        if let Some(c) = cert {
            h.push(("x-forwarded-client-cert", c));
        }
        let r = get(&url, &h).await;
        assert_eq!((r.status, r.reason()), (status, reason), "{name}");
    }
    assert_eq!(w.echo.count(), 1);
    assert_eq!(w.endpoint.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_down_is_503_with_nothing_forwarded_and_an_audit_record() {
    let w = world(Setup::default()).await;
    let token = w.endpoint.issue(|_| {});
    w.endpoint.server.abort();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = w.bearer("/accounts", &token).await;
    assert_refused(&r, 503, "dependency_unavailable");
    assert_eq!(w.echo.count(), 0);
    let records = w.proxy.audit_records().await;
    let denial = records
        .iter()
        .find(|r| r["kind"] == "decision")
        .expect("a decision record");
    assert_eq!(
        (&denial["decision"], &denial["reason"], &denial["route"]),
        (
            &json!("deny"),
            &json!("dependency_unavailable"),
            &json!("list-accounts")
        )
    );
    let m = w.metrics().await;
    assert_eq!(
        metric_line(
            &m,
            r#"fapi_guard_introspection_calls_total{result="transport"} "#
        ),
        1,
        "{m}"
    );
    assert_eq!(
        metric_line(
            &m,
            r#"fapi_guard_requests_total{api="accounts",decision="deny",reason="dependency_unavailable",route="list-accounts"} "#
        ),
        1,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_is_cut_off_at_the_timeout() {
    let w = world(Setup {
        timeout: "300ms",
        ..Setup::default()
    })
    .await;
    let token = w.endpoint.issue(|_| {});
    w.endpoint.set(Mode::Slow(Duration::from_secs(3)));
    let started = Instant::now();
    let r = w.bearer("/accounts", &token).await;
    let took = started.elapsed();
    assert_refused(&r, 503, "dependency_unavailable");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1_500),
        "answered after {took:?}"
    );
    assert_eq!(w.echo.count(), 0);
    let m = w.metrics().await;
    assert_eq!(
        metric_line(
            &m,
            r#"fapi_guard_introspection_calls_total{result="timeout"} "#
        ),
        1
    );
    // Back to normal: the failure was not cached.
    w.endpoint.set(Mode::Normal);
    assert_eq!(w.bearer("/accounts", &token).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_requests_for_one_token_make_one_call() {
    let w = world(Setup::default()).await;
    let token = w.endpoint.issue(|_| {});
    // A slow answer keeps the call in flight while all the requests arrive.
    w.endpoint.set(Mode::Slow(Duration::from_millis(400)));
    let url = w.proxy.url("/accounts");
    let mut set = JoinSet::new();
    for _ in 0..100 {
        let url = url.clone();
        let auth = format!("Bearer {token}");
        set.spawn(async move { get(&url, &[("authorization", &auth)]).await.status });
    }
    let mut ok = 0;
    while let Some(status) = set.join_next().await {
        ok += usize::from(status.expect("task") == 200);
    }
    assert_eq!(ok, 100);
    assert_eq!(
        w.endpoint.calls(),
        1,
        "one introspection call for 100 requests"
    );
    assert_eq!(w.echo.count(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_or_garbage_answers_are_503_and_not_cached() {
    let w = world(Setup::default()).await;
    let token = w.endpoint.issue(|_| {});
    let huge = format!(
        r#"{{"active":true,"padding":"{}"}}"#,
        "x".repeat(100 * 1024)
    );
    let deep = format!(
        r#"{{"active":true,"act":{}1{}}}"#,
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    let cases: Vec<(&str, Mode)> = vec![
        ("over 64 KiB", Mode::Body(huge.into_bytes())),
        ("not JSON", Mode::Body(b"<html>login</html>".to_vec())),
        ("a JSON array", Mode::Body(b"[{\"active\":true}]".to_vec())),
        ("no active", Mode::Body(br#"{"sub":"psu-9"}"#.to_vec())),
        (
            "active as a string",
            Mode::Body(br#"{"active":"true"}"#.to_vec()),
        ),
        (
            "active twice",
            Mode::Body(br#"{"active":false,"active":true}"#.to_vec()),
        ),
        (
            "exp as a string",
            Mode::Body(br#"{"active":true,"exp":"soon"}"#.to_vec()),
        ),
        (
            "nested beyond the parser's limit",
            Mode::Body(deep.into_bytes()),
        ),
        ("500", Mode::Status(500)),
        ("302", Mode::Status(302)),
    ];
    for (i, (name, mode)) in cases.into_iter().enumerate() {
        w.endpoint.set(mode);
        let r = w.bearer("/accounts", &token).await;
        assert_refused(&r, 503, "dependency_unavailable");
        assert_eq!(w.endpoint.calls(), i + 1, "{name}: failures are not cached");
    }
    assert_eq!(w.echo.count(), 0);
    let m = w.metrics().await;
    for (result, n) in [("too_large", 1), ("invalid", 7), ("status", 2)] {
        assert_eq!(
            metric_line(
                &m,
                &format!(r#"fapi_guard_introspection_calls_total{{result="{result}"}} "#)
            ),
            n,
            "{result}\n{m}"
        );
    }
    w.endpoint.set(Mode::Normal);
    assert_eq!(w.bearer("/accounts", &token).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_introspection_an_opaque_token_is_malformed() {
    let echo = Echo::start().await;
    let key = TestKey::new("k1");
    let jwks = Jwks::start(vec![key.jwks_entry()]).await;
    let proxy = Proxy::start(&format!("http://{}", echo.addr), &jwks.uri(), "", POLICY).await;
    proxy.wait_ready().await;
    let r = get(
        &proxy.url("/accounts"),
        &[("authorization", &format!("Bearer {}", opaque_token()))],
    )
    .await;
    assert_refused(&r, 401, "token_malformed");
    assert_eq!(echo.count(), 0);
}

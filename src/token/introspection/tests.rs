//! Configuration, client authentication encoding, answer parsing and cache lifetime, and the
//! cache/eviction behaviour against a real HTTP endpoint on 127.0.0.1:0 that counts calls.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Map, json};
use tokio::net::TcpListener;

use super::*;
use crate::config::KeySource;
use crate::response::{Body, full};
use crate::secret::Secret;

const NOW: i64 = 1_800_000_000;

fn issuer(introspection: Option<IntrospectionSettings>) -> Arc<IssuerSettings> {
    Arc::new(IssuerSettings {
        issuer: "https://as.example".into(),
        keys: KeySource::File("x".into()),
        algorithms: vec![],
        audiences: vec!["https://api.example".into()],
        max_token_lifetime: Duration::from_secs(600),
        clock_skew: Duration::from_secs(10),
        jwks_refresh: Duration::from_secs(300),
        jwks_min_refetch: Duration::from_secs(10),
        purpose_claim: "purpose".into(),
        introspection,
    })
}

fn settings(url: &str, ttl: Duration) -> IntrospectionSettings {
    IntrospectionSettings {
        url: url.parse().expect("url"),
        client_id: "fapi-guard".into(),
        authorization: config::basic_credentials(
            "fapi-guard",
            &Secret::new("introspection-secret").expect("secret"),
        ),
        cache_ttl: ttl,
        timeout: Duration::from_millis(500),
        cache_capacity: 100,
    }
}

fn introspector(url: &str, ttl: Duration, clock: Clock) -> (Introspector, Arc<Metrics>) {
    let s = settings(url, ttl);
    let metrics = Arc::new(Metrics::new());
    let i = Introspector::new(
        issuer(Some(s.clone())),
        s,
        HttpsClient::new().expect("client"),
        clock,
        metrics.clone(),
    );
    (i, metrics)
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn active(exp: i64) -> Value {
    json!({"active": true, "iss": "https://as.example", "sub": "psu-1", "client_id": "tpp-1",
        "aud": "https://api.example", "exp": exp, "iat": exp - 300, "scope": "accounts payments",
        "cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}})
}

// ---------------------------------------------------------------- configuration

fn compile(yaml: &str, secret: &str) -> Result<IntrospectionSettings, String> {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("secret"), secret).expect("write");
    let c: IntrospectionConfig = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
    c.compile(&dir.path().join("config.yaml"), "issuers[0]", false)
}

#[test]
fn config_defaults_and_errors() {
    let ok =
        "url: https://as.example/introspect\nclient_id: fapi-guard\nclient_secret_file: secret\n";
    let s = compile(ok, "introspection-secret\n").expect("compiles");
    assert_eq!(s.cache_ttl, Duration::from_secs(30));
    assert_eq!(s.timeout, Duration::from_secs(1));
    assert_eq!(s.cache_capacity, 10_000);
    let shown = format!("{s:?}");
    assert!(
        !shown.contains("introspection-secret") && !shown.contains("aW50cm9zcGVjdGlvbi1zZWNyZXQ"),
        "{shown}"
    );
    let loopback = ok.replace("https://as.example", "http://127.0.0.1:9000");
    assert!(compile(&loopback, "introspection-secret").is_ok());
    let cases = [
        (
            "plain http off loopback",
            ok.replace("https://as.example", "http://as.example"),
            "introspection-secret",
            "issuers[0].introspection.url: plain http",
        ),
        (
            "user information",
            ok.replace("https://as.example", "https://u:p@as.example"),
            "introspection-secret",
            "issuers[0].introspection.url: must not contain user information",
        ),
        (
            "not a URL scheme we speak",
            ok.replace("https://as.example", "ftp://as.example"),
            "introspection-secret",
            "issuers[0].introspection.url: must be an https URL",
        ),
        (
            "empty client id",
            ok.replace("client_id: fapi-guard", "client_id: ''"),
            "introspection-secret",
            "issuers[0].introspection.client_id",
        ),
        (
            "short secret",
            ok.to_owned(),
            "short",
            "issuers[0].introspection.client_secret_file: secret must be at least 16",
        ),
        (
            "zero timeout",
            format!("{ok}timeout: 0s\n"),
            "introspection-secret",
            "issuers[0].introspection.timeout: must be more than 0",
        ),
        (
            "zero capacity",
            format!("{ok}cache_capacity: 0\n"),
            "introspection-secret",
            "issuers[0].introspection.cache_capacity",
        ),
        (
            "unknown key",
            format!("{ok}client_secret: inline\n"),
            "introspection-secret",
            "unknown field `client_secret`",
        ),
    ];
    for (name, yaml, secret, want) in cases {
        let e = compile(&yaml, secret).expect_err(name);
        assert!(e.contains(want), "{name}: {e}");
        assert!(!e.contains("introspection-secret"), "{name}: {e}");
    }
}

#[test]
fn client_secret_basic_is_form_encoded_then_base64() {
    // RFC 6749 §2.3.1's example credentials.
    let h = config::basic_credentials(
        "s6BhdRkqt3",
        &Secret::new("7Fjfp0ZBr1KtDRbnfVdmIw").expect("secret"),
    );
    assert_eq!(
        h.to_str().expect("ascii"),
        "Basic czZCaGRSa3F0Mzo3RmpmcDBaQnIxS3REUmJuZlZkbUl3"
    );
    assert!(h.is_sensitive());
    // Reserved characters are percent-encoded before base64, so a `:` in the id cannot move
    // the split between id and secret.
    let h = config::basic_credentials(
        "a:b c",
        &Secret::new("p%ss+w&rd=é-long-enough").expect("secret"),
    );
    let b64 = h
        .to_str()
        .expect("ascii")
        .strip_prefix("Basic ")
        .expect("scheme");
    let decoded = String::from_utf8(b64_decode(b64)).expect("utf8");
    assert_eq!(decoded, "a%3Ab%20c:p%25ss%2Bw%26rd%3D%C3%A9-long-enough");
}

fn b64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

// ---------------------------------------------------------------- answers

#[tokio::test]
async fn answers_feed_the_same_claims_as_a_jwt() {
    let (i, _) = introspector(
        "http://127.0.0.1:9/none",
        Duration::from_secs(30),
        Clock::fixed(NOW),
    );
    let mut full_answer = active(NOW + 60);
    full_answer["act"] = json!({"sub": "agent-1"});
    full_answer["acr"] = json!("urn:bank:sca");
    full_answer["auth_time"] = json!(NOW - 30);
    full_answer["token_type"] = json!("DPoP");
    full_answer["openbanking_intent_id"] = json!("c-1");
    let t = i
        .parse(full_answer.to_string().as_bytes(), [7; 32])
        .expect("usable")
        .expect("accepted");
    assert_eq!(
        (t.sub.as_str(), t.client_id.as_str(), t.jti.as_str()),
        ("psu-1", "tpp-1", "")
    );
    assert_eq!((t.exp, t.iat, t.nbf), (NOW + 60, NOW - 240, None));
    assert_eq!(t.aud, ["https://api.example"]);
    assert!(t.has_scope("accounts") && t.has_scope("payments"));
    assert_eq!(
        t.cnf.jkt.as_deref(),
        Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
    );
    assert_eq!(t.delegation.as_ref().map(|c| c.actors.len()), Ok(1));
    assert_eq!(
        crate::assurance::token_claims(&t.extra).0,
        Some("urn:bank:sca")
    );
    assert_eq!(t.extra["openbanking_intent_id"], "c-1");
    assert!(!t.extra.contains_key("active") && !t.extra.contains_key("token_type"));
    assert_eq!(t.digest, [7; 32]);

    let answer = |edit: &dyn Fn(&mut Value)| {
        let mut v = active(NOW + 60);
        edit(&mut v);
        i.parse(v.to_string().as_bytes(), [7; 32])
            .map(|o| o.map(|_| ()))
    };
    let refused: [(&str, &dyn Fn(&mut Value), DenyReason); 8] = [
        (
            "inactive",
            &|v| *v = json!({"active": false}),
            DenyReason::TokenInactive,
        ),
        (
            "inactive with claims",
            &|v| v["active"] = json!(false),
            DenyReason::TokenInactive,
        ),
        (
            "another issuer",
            &|v| v["iss"] = json!("https://evil.example"),
            DenyReason::TokenIssuerUnknown,
        ),
        (
            "no exp",
            &|v| drop(v.as_object_mut().map(|m| m.remove("exp"))),
            DenyReason::TokenMalformed,
        ),
        (
            "no iat",
            &|v| drop(v.as_object_mut().map(|m| m.remove("iat"))),
            DenyReason::TokenMalformed,
        ),
        (
            "no sub",
            &|v| drop(v.as_object_mut().map(|m| m.remove("sub"))),
            DenyReason::TokenMalformed,
        ),
        (
            "no aud",
            &|v| drop(v.as_object_mut().map(|m| m.remove("aud"))),
            DenyReason::TokenMalformed,
        ),
        (
            "DPoP type without cnf.jkt",
            &|v| {
                v["token_type"] = json!("dpop");
                v["cnf"] = json!({});
            },
            DenyReason::TokenMalformed,
        ),
    ];
    for (name, edit, want) in refused {
        assert_eq!(answer(edit), Ok(Err(want)), "{name}");
    }
    assert_eq!(
        answer(&|v| drop(v.as_object_mut().map(|m| m.remove("iss")))),
        Ok(Ok(())),
        "iss is optional"
    );
    let invalid: [(&str, &[u8]); 9] = [
        ("not JSON", b"<html>oops</html>"),
        ("a JSON array", b"[true]"),
        ("empty", b""),
        ("no active", br#"{"sub":"x"}"#),
        ("active as a string", br#"{"active":"true"}"#),
        ("repeated active", br#"{"active":false,"active":true}"#),
        ("exp as a string", br#"{"active":true,"exp":"1800000060"}"#),
        ("scope as a list", br#"{"active":true,"scope":["a"]}"#),
        (
            "token_type as a number",
            br#"{"active":true,"token_type":1}"#,
        ),
    ];
    for (name, body) in invalid {
        assert!(i.parse(body, [7; 32]).is_err(), "{name}");
    }
}

#[test]
fn answers_live_until_the_smaller_of_cache_ttl_and_exp() {
    let clock = Clock::fixed(NOW);
    let life = Lifetime {
        ttl: Duration::from_secs(30),
        clock: clock.clone(),
    };
    let token = |exp: i64| {
        let mut v = active(exp);
        v.as_object_mut().map(|m| m.remove("active"));
        VerifiedToken::from_introspection(issuer(None), [1; 32], object(v))
            .expect("types")
            .map(Arc::new)
    };
    let entry = |outcome: Outcome| Entry {
        fetched_at: Instant::now(),
        checked: AtomicU64::new(0),
        outcome,
    };
    let secs = |d: Duration| d.as_secs_f64().round() as i64;
    assert_eq!(
        secs(life.of(&entry(token(NOW + 300)))),
        30,
        "cache_ttl first"
    );
    assert_eq!(secs(life.of(&entry(token(NOW + 2)))), 2, "exp first");
    assert_eq!(
        life.of(&entry(token(NOW - 5))),
        Duration::ZERO,
        "already expired"
    );
    assert_eq!(
        secs(life.of(&entry(Err(DenyReason::TokenInactive)))),
        30,
        "refusals for cache_ttl"
    );
    // Counted from the start of the call, not from when the answer arrived.
    let late = Entry {
        fetched_at: Instant::now() - Duration::from_secs(10),
        checked: AtomicU64::new(0),
        outcome: token(NOW + 300),
    };
    assert_eq!(secs(life.of(&late)), 20);
}

// ---------------------------------------------------------------- against a real endpoint

#[derive(Default)]
struct Endpoint {
    calls: AtomicUsize,
    answer: Mutex<String>,
    delay: Mutex<Duration>,
    forms: Mutex<Vec<(String, String)>>,
}

async fn endpoint() -> (SocketAddr, Arc<Endpoint>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = Arc::new(Endpoint::default());
    let st = state.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let st = st.clone();
            let svc = service_fn(move |req: Request<Incoming>| {
                let st = st.clone();
                async move {
                    st.calls.fetch_add(1, Ordering::SeqCst);
                    let auth = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let body = http_body_util::BodyExt::collect(req.into_body())
                        .await
                        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                        .unwrap_or_default();
                    st.forms.lock().expect("lock").push((auth, body));
                    // The state is read when the call arrives, answered after the delay.
                    let answer = st.answer.lock().expect("lock").clone();
                    let delay = *st.delay.lock().expect("lock");
                    tokio::time::sleep(delay).await;
                    Ok::<Response<Body>, Infallible>(Response::new(full(answer)))
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, state)
}

impl Endpoint {
    fn answer(&self, v: Value) {
        *self.answer.lock().expect("lock") = v.to_string();
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn scope_of(t: &Result<Arc<VerifiedToken>, TokenFailure>) -> Option<String> {
    t.as_ref().ok().map(|t| t.scopes.join(" "))
}

#[tokio::test]
async fn one_call_per_token_and_form_with_client_authentication() {
    let (addr, ep) = endpoint().await;
    ep.answer(active(common_now() + 60));
    let (i, metrics) = introspector(
        &format!("http://{addr}/introspect"),
        Duration::from_secs(30),
        Clock::system(),
    );
    let token = "opaque+token/with=reserved~chars";
    let d = super::super::digest(token);
    assert!(i.introspect(token, d).await.is_ok());
    assert!(i.introspect(token, d).await.is_ok());
    assert_eq!(ep.calls(), 1, "the second lookup is a cache hit");
    let forms = ep.forms.lock().expect("lock").clone();
    assert_eq!(
        forms[0],
        (
            "Basic ZmFwaS1ndWFyZDppbnRyb3NwZWN0aW9uLXNlY3JldA==".to_owned(),
            "token=opaque%2Btoken%2Fwith%3Dreserved%7Echars&token_type_hint=access_token"
                .to_owned()
        )
    );
    let text = metrics.encode();
    for line in [
        r#"fapi_guard_cache_requests_total{cache="introspection",result="hit"} 1"#,
        r#"fapi_guard_cache_requests_total{cache="introspection",result="miss"} 1"#,
        r#"fapi_guard_introspection_calls_total{result="active"} 1"#,
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    // An oversized token costs no call.
    let huge = "x".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(
        i.introspect(&huge, super::super::digest(&huge)).await.err(),
        Some(TokenFailure::Deny(DenyReason::TokenMalformed))
    );
    assert_eq!(ep.calls(), 1);
}

fn common_now() -> i64 {
    Clock::system().now_unix()
}

#[tokio::test]
async fn an_eviction_drops_the_answer_even_with_a_call_in_flight() {
    let (addr, ep) = endpoint().await;
    let now = common_now();
    let mut before = active(now + 60);
    before["scope"] = json!("before");
    let mut after = active(now + 60);
    after["scope"] = json!("after");
    ep.answer(before.clone());
    let (i, _) = introspector(
        &format!("http://{addr}/introspect"),
        Duration::from_secs(30),
        Clock::system(),
    );
    let i = Arc::new(i);
    let token = "opaque-1";
    let d = super::super::digest(token);

    // Cached, then evicted by digest: the next lookup calls again.
    assert_eq!(
        scope_of(&i.introspect(token, d).await).as_deref(),
        Some("before")
    );
    ep.answer(after.clone());
    i.evict(Eviction::Token(d));
    assert_eq!(
        scope_of(&i.introspect(token, d).await).as_deref(),
        Some("after")
    );
    assert_eq!(ep.calls(), 2);

    // An eviction that names another token or subject leaves the entry alone.
    i.evict(Eviction::Token([0; 32]));
    i.evict(Eviction::Matching(Box::new(|t| t.sub == "someone-else")));
    assert_eq!(
        scope_of(&i.introspect(token, d).await).as_deref(),
        Some("after")
    );
    assert_eq!(ep.calls(), 2);

    // A call in flight read the token's state before a subject revocation: its answer must
    // not be served, and the lookup asks again.
    ep.answer(before.clone());
    i.evict(Eviction::Token(d));
    *ep.delay.lock().expect("lock") = Duration::from_millis(200);
    let in_flight = {
        let i = i.clone();
        tokio::spawn(async move { i.introspect(token, d).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    ep.answer(after.clone());
    i.evict(Eviction::Matching(Box::new(|t| t.sub == "psu-1")));
    let r = in_flight.await.expect("task");
    assert_eq!(
        scope_of(&r).as_deref(),
        Some("after"),
        "the pre-revocation answer was asked again"
    );
    assert_eq!(ep.calls(), 4);
    *ep.delay.lock().expect("lock") = Duration::ZERO;
    assert_eq!(
        scope_of(&i.introspect(token, d).await).as_deref(),
        Some("after")
    );
    assert_eq!(ep.calls(), 4, "the post-revocation answer is cached");
}

#[tokio::test]
async fn forgotten_evictions_make_older_entries_ask_again() {
    let (addr, ep) = endpoint().await;
    ep.answer(active(common_now() + 60));
    let (i, _) = introspector(
        &format!("http://{addr}/introspect"),
        Duration::from_secs(30),
        Clock::system(),
    );
    let d = super::super::digest("opaque-2");
    assert!(i.introspect("opaque-2", d).await.is_ok());
    // More evictions than are remembered, none naming the token: the entry cannot tell
    // whether a forgotten one named it, so it is refetched (fail safe, not fail open).
    for _ in 0..=MAX_RECENT_EVICTIONS {
        i.evict(Eviction::Token([0; 32]));
    }
    assert!(i.introspect("opaque-2", d).await.is_ok());
    assert_eq!(ep.calls(), 2);
    assert!(i.introspect("opaque-2", d).await.is_ok());
    assert_eq!(ep.calls(), 2);
}

#[tokio::test]
async fn failures_are_not_cached() {
    let (addr, ep) = endpoint().await;
    let (i, metrics) = introspector(
        &format!("http://{addr}/introspect"),
        Duration::from_secs(30),
        Clock::system(),
    );
    let d = super::super::digest("opaque-3");
    *ep.answer.lock().expect("lock") = "not json".into();
    assert_eq!(
        i.introspect("opaque-3", d).await.err(),
        Some(TokenFailure::KeysUnavailable)
    );
    ep.answer(active(common_now() + 60));
    assert!(i.introspect("opaque-3", d).await.is_ok());
    assert_eq!(ep.calls(), 2);
    assert!(
        metrics
            .encode()
            .contains(r#"fapi_guard_introspection_calls_total{result="invalid"} 1"#)
    );
}

//! The warm hot path (route match + cached token + binding + scope) and the crypto floor it
//! avoids. Ratios within one run are what to compare; absolute numbers drift on shared machines.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use http::Method;
use serde_json::json;

use fapi_guard::clock::Clock;
use fapi_guard::config::Config;
use fapi_guard::consent::{
    ConsentClient, ConsentConfig, ConsentContext, ConsentRecord, ConsentRule, check_record,
};
use fapi_guard::decide::{AuthScheme, DpopFact, Facts, TokenFact, decide};
use fapi_guard::demo::SigningKey;
use fapi_guard::http_client::HttpsClient;
use fapi_guard::metrics::Metrics;
use fapi_guard::path;
use fapi_guard::policy::PolicySet;
use fapi_guard::token::{self, TokenVerifier};

const CERT: [u8; 32] = [7u8; 32];

struct Setup {
    verifier: TokenVerifier,
    policies: PolicySet,
    token: String,
    _dir: tempfile::TempDir,
}

fn setup(rt: &tokio::runtime::Runtime) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SigningKey::generate("bench").expect("key");
    std::fs::write(
        dir.path().join("jwks.json"),
        json!({"keys": [key.jwk]}).to_string(),
    )
    .expect("jwks");
    let cfg = Config::from_yaml(
        &dir.path().join("config.yaml"),
        "listen: {public_url: 'https://api.bank.example'}\nupstream: {url: 'http://127.0.0.1:1'}\n\
         issuers: [{issuer: 'https://as', jwks_file: jwks.json, audiences: ['https://api.bank.example']}]\n\
         policies: [x]\n",
    )
    .expect("config");
    let policies = PolicySet::load(&[concat!(env!("CARGO_MANIFEST_DIR"), "/policies").into()])
        .expect("policies");
    let now = Clock::system().now_unix();
    let x5t = base64_url(&CERT);
    let claims = json!({"iss": "https://as", "sub": "psu-9", "aud": "https://api.bank.example",
        "client_id": "tpp-1", "scope": "accounts openid", "iat": now, "exp": now + 600,
        "jti": "bench-1", "cnf": {"x5t#S256": x5t}});
    let token = key.sign("at+jwt", &claims, false).expect("sign");
    let verifier = TokenVerifier::new(
        &cfg.issuers,
        10_000,
        HttpsClient::new().expect("client"),
        Clock::system(),
        Arc::new(Metrics::new()),
    );
    rt.block_on(async {
        verifier.issuers()[0]
            .keys
            .refresh_now()
            .await
            .expect("keys");
        verifier
            .verify(&token, token::digest(&token))
            .await
            .expect("valid token");
    });
    Setup {
        verifier,
        policies,
        token,
        _dir: dir,
    }
}

fn base64_url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let s = setup(&rt);
    let request_path = "/open-banking/v4.0/aisp/accounts/acc-1/balances";

    c.bench_function(
        "warm_path (normalize + route + cached token + decide)",
        |b| {
            b.iter(|| {
                let norm = path::normalize(black_box(request_path)).expect("path");
                let m = s.policies.lookup(&Method::GET, &norm).expect("route");
                let t = s
                    .verifier
                    .cached(&token::digest(black_box(&s.token)))
                    .expect("cached");
                let facts = Facts {
                    now: 1,
                    scheme: AuthScheme::Bearer,
                    token: TokenFact::Verified(&t),
                    dpop: DpopFact::Absent,
                    client_cert_sha256: Some(&CERT),
                    consent: Ok(()),
                    consent_purpose: None,
                };
                black_box(decide(&facts, m.route))
            })
        },
    );

    let m = s
        .policies
        .lookup(&Method::GET, request_path)
        .expect("route");
    let route = Arc::clone(m.route);
    let t = s.verifier.cached(&token::digest(&s.token)).expect("cached");
    c.bench_function("decide only", |b| {
        let facts = Facts {
            now: Clock::system().now_unix(),
            scheme: AuthScheme::Bearer,
            token: TokenFact::Verified(&t),
            dpop: DpopFact::Absent,
            client_cert_sha256: Some(&CERT),
            consent: Ok(()),
            consent_purpose: None,
        };
        b.iter(|| black_box(decide(black_box(&facts), &route)))
    });

    consent_benches(c, &rt, &s);

    c.bench_function("cold token verification (ES256 signature + parse)", |b| {
        b.iter(|| {
            rt.block_on(s.verifier.verify(black_box(&s.token), [0u8; 32]))
                .expect("valid")
        })
    });
}

/// The consent check on the warm path: the record comes from the client's cache (no I/O) and
/// the comparison is pure. `block_on` adds its own overhead to the cache-hit number.
fn consent_benches(c: &mut Criterion, rt: &tokio::runtime::Runtime, s: &Setup) {
    let m = s
        .policies
        .lookup(
            &Method::GET,
            "/open-banking/v4.0/aisp/accounts/acc-1/balances",
        )
        .expect("route");
    let Some(ConsentRule::Record(rule)) = m.route.consent.as_ref() else {
        panic!("get-balances checks a consent record");
    };
    let record = ConsentRecord::from_json(
        br#"{"id":"c-1","status":"Authorised","client_id":"tpp-1","subject":"psu-9",
            "expires_at":"2099-01-01T00:00:00Z","permissions":["ReadBalances"],"accounts":["acc-1","acc-2"]}"#,
    )
    .expect("record");
    let params = [("AccountId", "acc-1".to_owned())];
    let ctx = ConsentContext {
        client_id: "tpp-1",
        subject: "psu-9",
        params: &params,
        query: None,
        public_origin: "https://api.bank.example",
        now: Clock::system().now_unix(),
        body: None,
    };
    c.bench_function("consent check_record (pure)", |b| {
        b.iter(|| black_box(check_record(rule, black_box(&record), &ctx)))
    });

    // A consent service answering once; every later lookup is a cache hit.
    let addr = rt.block_on(serve_one_record());
    let settings = serde_yaml::from_str::<ConsentConfig>(&format!(
        "url: http://{addr}/consents/{{id}}\ncache_ttl: 1h\n"
    ))
    .expect("yaml")
    .compile()
    .expect("consent config");
    let client = ConsentClient::new(
        settings,
        HttpsClient::new().expect("client"),
        Arc::new(Metrics::new()),
    );
    rt.block_on(client.get("c-1")).expect("first fetch");
    c.bench_function("consent record lookup, cache hit (incl. block_on)", |b| {
        b.iter(|| rt.block_on(client.get(black_box("c-1"))).expect("cached"))
    });
}

async fn serve_one_record() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = hyper::service::service_fn(|_req| async {
                let body = r#"{"id":"c-1","status":"Authorised","client_id":"tpp-1","permissions":[],"accounts":[]}"#;
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from_static(body.as_bytes()),
                )))
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

criterion_group!(decide_benches, benches);
criterion_main!(decide_benches);

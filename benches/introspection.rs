//! The warm path of an opaque token (a cached introspection answer: no call, no crypto) beside
//! the warm path of a JWT (the verified-token cache), and the cold path (one call to a local
//! introspection endpoint) they avoid. Ratios within one run are what to compare.

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Response;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;

use fapi_guard::clock::Clock;
use fapi_guard::config::Config;
use fapi_guard::demo::SigningKey;
use fapi_guard::http_client::HttpsClient;
use fapi_guard::metrics::Metrics;
use fapi_guard::token::{self, TokenVerifier};

/// A local introspection endpoint answering every token as active.
async fn endpoint(now: i64) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let answer = json!({"active": true, "iss": "https://as", "sub": "psu-9",
        "aud": "https://api.bank.example", "client_id": "tpp-1", "scope": "accounts",
        "iat": now, "exp": now + 600})
    .to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            let svc = service_fn(move |_req| {
                let body = Bytes::from(answer.clone());
                async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let now = Clock::system().now_unix();
    let addr = rt.block_on(endpoint(now));
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SigningKey::generate("bench").expect("key");
    std::fs::write(
        dir.path().join("jwks.json"),
        json!({"keys": [key.jwk]}).to_string(),
    )
    .expect("jwks");
    std::fs::write(dir.path().join("secret"), "introspection-secret").expect("secret");
    let cfg = Config::from_yaml(
        &dir.path().join("config.yaml"),
        &format!(
            "listen: {{public_url: 'https://api.bank.example'}}\nupstream: {{url: 'http://127.0.0.1:1'}}\n\
             issuers: [{{issuer: 'https://as', jwks_file: jwks.json, audiences: ['https://api.bank.example'],\n\
             introspection: {{url: 'http://{addr}/introspect', client_id: bench, client_secret_file: secret,\n\
             cache_ttl: 10m, cache_capacity: 1000000}}}}]\npolicies: [x]\n"
        ),
    )
    .expect("config");
    let verifier = TokenVerifier::new(
        &cfg.issuers,
        10_000,
        HttpsClient::new().expect("client"),
        Clock::system(),
        Arc::new(Metrics::new()),
    );
    let claims = json!({"iss": "https://as", "sub": "psu-9", "aud": "https://api.bank.example",
        "client_id": "tpp-1", "scope": "accounts", "iat": now, "exp": now + 600, "jti": "b-1"});
    let jwt = key.sign("at+jwt", &claims, false).expect("sign");
    let opaque = "2YotnFZFEjr1zCsicMWpAA";
    let introspector = verifier.introspection().expect("introspection").clone();
    rt.block_on(async {
        verifier.issuers()[0]
            .keys
            .refresh_now()
            .await
            .expect("keys");
        verifier
            .verify(&jwt, token::digest(&jwt))
            .await
            .expect("valid jwt");
        introspector
            .introspect(opaque, token::digest(opaque))
            .await
            .expect("active");
    });

    c.bench_function("warm JWT (token cache)", |b| {
        b.iter(|| {
            rt.block_on(async {
                black_box(verifier.cached(&token::digest(black_box(&jwt))).is_some())
            })
        })
    });
    c.bench_function("warm opaque token (introspection cache, no call)", |b| {
        b.iter(|| {
            rt.block_on(async {
                black_box(
                    introspector
                        .introspect(black_box(opaque), token::digest(black_box(opaque)))
                        .await
                        .is_ok(),
                )
            })
        })
    });
    let mut n = 0u64;
    c.bench_function(
        "cold opaque token (one introspection call, loopback)",
        |b| {
            b.iter(|| {
                n += 1;
                let t = format!("opaque-{n}");
                rt.block_on(async {
                    black_box(introspector.introspect(&t, token::digest(&t)).await.is_ok())
                })
            })
        },
    );
}

criterion_group!(introspection, benches);
criterion_main!(introspection);

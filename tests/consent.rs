//! Consent enforcement through the real proxy, against a real HTTP consent service that counts
//! its calls.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

const POLICY_WITH_CONSENT: &str = "\
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
  - name: create-payment
    method: POST
    path: /payments
    scopes: [payments]
    consent:
      authorization_details:
        type: payment_initiation
        match_body:
          /Data/Initiation/InstructedAmount/Amount: /instructedAmount/amount
          /Data/Initiation/InstructedAmount/Currency: /instructedAmount/currency
          /Data/Initiation/CreditorAccount/Identification: /creditorAccount/iban
";

/// A consent service: records by id, a call counter, and failure modes.
#[derive(Clone)]
struct ConsentService {
    addr: SocketAddr,
    records: Arc<Mutex<HashMap<String, Value>>>,
    calls: Arc<AtomicUsize>,
    /// 0 normal, 1 answer 500, 2 sleep 2 s
    mode: Arc<AtomicU64>,
}

impl ConsentService {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let this = Self {
            addr: listener.local_addr().expect("addr"),
            records: Arc::default(),
            calls: Arc::default(),
            mode: Arc::default(),
        };
        let s = this.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let s = s.clone();
                    async move {
                        s.calls.fetch_add(1, Ordering::SeqCst);
                        // Give concurrent requests time to pile up behind this one call.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let id = req
                            .uri()
                            .path()
                            .rsplit('/')
                            .next()
                            .unwrap_or_default()
                            .to_owned();
                        let (status, body) = match s.mode.load(Ordering::SeqCst) {
                            1 => (500, String::new()),
                            2 => {
                                tokio::time::sleep(Duration::from_secs(2)).await;
                                (500, String::new())
                            }
                            _ => match s.records.lock().expect("lock").get(&id) {
                                Some(r) => (200, r.to_string()),
                                None => (404, String::new()),
                            },
                        };
                        let mut r = Response::new(Full::new(Bytes::from(body)));
                        *r.status_mut() = http::StatusCode::from_u16(status).expect("status");
                        Ok::<_, Infallible>(r)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        this
    }

    fn put(&self, id: &str, edit: impl FnOnce(&mut Value)) {
        let mut r = json!({"id": id, "status": "Authorised", "client_id": "tpp-1", "subject": "psu-9",
            "expires_at": "2099-01-01T00:00:00Z", "permissions": ["ReadAccountsDetail"],
            "accounts": ["acc-1", "acc-2"]});
        edit(&mut r);
        self.records.lock().expect("lock").insert(id.to_owned(), r);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

struct World {
    key: TestKey,
    consents: ConsentService,
    echo: Echo,
    proxy: Proxy,
    _jwks: Jwks,
}

async fn world() -> World {
    let key = TestKey::new("k1");
    let jwks = Jwks::start(vec![key.jwks_entry()]).await;
    let echo = Echo::start().await;
    let consents = ConsentService::start().await;
    let extra = format!(
        "consent:\n  url: http://{}/consents/{{id}}\n  timeout: 300ms\n  cache_ttl: 300ms\n",
        consents.addr
    );
    let proxy = Proxy::start(
        &format!("http://{}", echo.addr),
        &jwks.uri(),
        &extra,
        POLICY_WITH_CONSENT,
    )
    .await;
    proxy.wait_ready().await;
    World {
        key,
        consents,
        echo,
        proxy,
        _jwks: jwks,
    }
}

impl World {
    fn token(&self, consent: &str) -> String {
        let c = consent.to_owned();
        format!(
            "Bearer {}",
            self.key.token(|_, claims| claims["consent_id"] = json!(c))
        )
    }

    async fn read(&self, consent: &str, account: &str) -> Reply {
        get(
            &self.proxy.url(&format!("/accounts/{account}")),
            &[("authorization", &self.token(consent))],
        )
        .await
    }
}

#[tokio::test]
async fn every_consent_record_reason() {
    let w = world().await;
    w.consents.put("ok", |_| {});
    w.consents
        .put("waiting", |r| r["status"] = json!("AwaitingAuthorisation"));
    w.consents
        .put("revoked", |r| r["status"] = json!("Revoked"));
    w.consents.put("expired", |r| {
        r["expires_at"] = json!("2020-01-01T00:00:00Z")
    });
    w.consents
        .put("other-client", |r| r["client_id"] = json!("tpp-2"));
    w.consents
        .put("other-psu", |r| r["subject"] = json!("psu-1"));
    w.consents.put("basic-only", |r| {
        r["permissions"] = json!(["ReadAccountsBasic"])
    });
    let cases = [
        ("covered", "ok", "acc-1", 200, None),
        (
            "another account",
            "ok",
            "acc-7",
            403,
            Some("consent_resource_mismatch"),
        ),
        (
            "no such consent",
            "nope",
            "acc-1",
            403,
            Some("consent_missing"),
        ),
        (
            "not authorised",
            "waiting",
            "acc-1",
            403,
            Some("consent_not_authorised"),
        ),
        ("revoked", "revoked", "acc-1", 403, Some("consent_revoked")),
        ("expired", "expired", "acc-1", 403, Some("consent_expired")),
        (
            "another client's consent",
            "other-client",
            "acc-1",
            403,
            Some("consent_client_mismatch"),
        ),
        (
            "another customer's consent",
            "other-psu",
            "acc-1",
            403,
            Some("consent_client_mismatch"),
        ),
        (
            "permission missing",
            "basic-only",
            "acc-1",
            403,
            Some("consent_permission_missing"),
        ),
    ];
    for (name, consent, account, status, reason) in cases {
        let r = w.read(consent, account).await;
        assert_eq!((r.status, r.reason()), (status, reason), "{name}");
    }
    assert_eq!(w.echo.count(), 1);
    let records = w.proxy.audit_records().await;
    let d = records
        .iter()
        .find(|r| r["kind"] == "decision" && r["decision"] == "allow")
        .expect("allow");
    assert_eq!(
        d["consent"],
        json!({"id": "ok", "source": "record", "status": "Authorised",
               "permissions": ["ReadAccountsDetail"]})
    );
    assert_eq!(
        w.echo.last().expect("seen").headers["x-fapi-consent-id"],
        "ok"
    );
}

#[tokio::test]
async fn a_request_refused_before_the_consent_check_makes_no_consent_call() {
    let w = world().await;
    w.consents.put("c-1", |_| {});
    // A DPoP-bound token replayed as Bearer (a stolen token without its key).
    let stolen = w.key.token(|_, c| {
        c["consent_id"] = json!("c-1");
        c["cnf"] = json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"});
    });
    let r = get(
        &w.proxy.url("/accounts/acc-1"),
        &[("authorization", &format!("Bearer {stolen}"))],
    )
    .await;
    assert_eq!(r.reason(), Some("binding_scheme_mismatch"));
    let expired = w.key.token(|_, c| {
        c["consent_id"] = json!("c-1");
        c["iat"] = json!(now() - 700);
        c["exp"] = json!(now() - 100);
    });
    let r = get(
        &w.proxy.url("/accounts/acc-1"),
        &[("authorization", &format!("Bearer {expired}"))],
    )
    .await;
    assert_eq!(r.reason(), Some("token_expired"));
    assert_eq!(w.consents.calls(), 0);
}

#[tokio::test]
async fn cache_hits_make_no_call_and_a_burst_makes_one() {
    let w = world().await;
    w.consents.put("c-1", |_| {});
    w.consents.put("c-2", |_| {});
    for _ in 0..5 {
        assert_eq!(w.read("c-1", "acc-1").await.status, 200);
    }
    assert_eq!(w.consents.calls(), 1, "cache hits make no call");

    let token = Arc::new(w.token("c-2"));
    let url = Arc::new(w.proxy.url("/accounts/acc-2"));
    let burst: Vec<_> = (0..100)
        .map(|_| {
            let (token, url) = (token.clone(), url.clone());
            tokio::spawn(async move { get(&url, &[("authorization", &token)]).await.status })
        })
        .collect();
    for b in burst {
        assert_eq!(b.await.expect("join"), 200);
    }
    assert_eq!(
        w.consents.calls(),
        2,
        "100 concurrent requests for one consent make exactly one call"
    );
}

#[tokio::test]
async fn a_status_change_is_seen_after_cache_ttl() {
    let w = world().await;
    w.consents.put("c-1", |_| {});
    assert_eq!(w.read("c-1", "acc-1").await.status, 200);
    w.consents.put("c-1", |r| r["status"] = json!("Revoked"));
    assert_eq!(w.read("c-1", "acc-1").await.status, 200, "still cached");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        w.read("c-1", "acc-1").await.reason(),
        Some("consent_revoked")
    );
}

#[tokio::test]
async fn service_down_or_slow_fails_closed_quickly() {
    let w = world().await;
    w.consents.put("c-1", |_| {});
    w.consents.mode.store(1, Ordering::SeqCst);
    let r = w.read("c-1", "acc-1").await;
    assert_eq!(
        (r.status, r.reason()),
        (503, Some("dependency_unavailable"))
    );
    w.consents.mode.store(2, Ordering::SeqCst);
    let started = Instant::now();
    let r = w.read("c-1", "acc-2").await;
    assert_eq!(
        (r.status, r.reason()),
        (503, Some("dependency_unavailable"))
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "timed out in {:?}",
        started.elapsed()
    );
    assert_eq!(
        w.echo.count(),
        0,
        "nothing forwarded without a consent answer"
    );
}

fn payment(amount: &str, currency: &str, iban: &str) -> String {
    format!(
        "{{\"Data\": {{\"Initiation\": {{\"InstructedAmount\": {{\"Amount\": {amount}, \"Currency\": \"{currency}\"}},\n  \"CreditorAccount\": {{\"Identification\": \"{iban}\"}}}}}}}}"
    )
}

#[tokio::test]
async fn payment_body_must_match_the_authorization_details() {
    let w = world().await;
    let token = format!(
        "Bearer {}",
        w.key.token(|_, c| {
            c["scope"] = json!("payments");
            c["authorization_details"] = json!([{"type": "payment_initiation",
                "instructedAmount": {"amount": "10.00", "currency": "GBP"},
                "creditorAccount": {"iban": "GB29NWBK60161331926819"}}]);
        })
    );
    let iban = "GB29NWBK60161331926819";
    let post = |body: String, ct: &'static str| {
        Request::post(w.proxy.url("/payments"))
            .header("authorization", token.as_str())
            .header("content-type", ct)
            .body(Full::new(Bytes::from(body)))
            .expect("req")
    };
    let exact = payment("\"10.00\"", "GBP", iban);
    let r = send(post(exact.clone(), "application/json")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        w.echo.last().expect("seen").body,
        Bytes::from(exact),
        "identical bytes upstream"
    );

    let cases = [
        (
            "amount",
            payment("\"11.00\"", "GBP", iban),
            "application/json",
            403,
            "consent_body_mismatch",
        ),
        (
            "same number, other literal",
            payment("\"10.0\"", "GBP", iban),
            "application/json",
            403,
            "consent_body_mismatch",
        ),
        (
            "number instead of string",
            payment("10.00", "GBP", iban),
            "application/json",
            403,
            "consent_body_mismatch",
        ),
        (
            "currency",
            payment("\"10.00\"", "EUR", iban),
            "application/json",
            403,
            "consent_body_mismatch",
        ),
        (
            "creditor",
            payment("\"10.00\"", "GBP", "GB00EVIL00000000000000"),
            "application/json",
            403,
            "consent_body_mismatch",
        ),
        (
            "malformed JSON",
            "{\"Data\":".to_owned(),
            "application/json",
            400,
            "request_malformed",
        ),
        (
            "not JSON",
            "Amount=10.00".to_owned(),
            "text/plain",
            400,
            "request_malformed",
        ),
        (
            "too large",
            format!("{{\"pad\":\"{}\"}}", "x".repeat(5000)),
            "application/json",
            413,
            "request_too_large",
        ),
    ];
    for (name, body, ct, status, reason) in cases {
        let r = send(post(body, ct)).await;
        assert_eq!((r.status, r.reason()), (status, Some(reason)), "{name}");
    }
    assert_eq!(w.echo.count(), 1, "only the matching payment was forwarded");
}

//! Shared Signals receiver (RFC 8935 push, RFC 8417 SETs, CAEP/RISC events) through the real
//! proxy, with SETs signed by an independent implementation (Python joserfc). Needs
//! `FAPI_GUARD_TEST_PYTHON` at build time (see `build.rs`); `.ci/run` sets it.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::ssf::*;
use common::*;
use http_body_util::Full;
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "ssf-admin-secret-0123456789";

async fn start(echo: &Echo, key: &TestKey, tx_jwks: &Value) -> Proxy {
    start_with(echo, key, tx_jwks, "RS256").await
}

/// A single replica whose SSF receiver accepts `algs`.
async fn start_with(echo: &Echo, key: &TestKey, tx_jwks: &Value, algs: &str) -> Proxy {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("policy.yaml"), POLICY).expect("policy");
    std::fs::write(
        dir.path().join("jwks.json"),
        json!({"keys": [key.jwks_entry()]}).to_string(),
    )
    .expect("jwks");
    std::fs::write(dir.path().join("tx.json"), tx_jwks.to_string()).expect("tx jwks");
    std::fs::write(dir.path().join("admin.token"), ADMIN_TOKEN).expect("token");
    let config = format!(
        "listen:\n  address: 127.0.0.1:0\n  public_url: https://api.test.example\n\
         admin:\n  address: 127.0.0.1:0\n  token_file: admin.token\nupstream:\n  url: http://{}\n\
         issuers:\n  - issuer: {ISSUER}\n    jwks_file: jwks.json\n    audiences: [{AUDIENCE}]\n\
         {}audit:\n  sink: file\n  path: audit.jsonl\npolicies: [policy.yaml]\n",
        echo.addr,
        ssf_config("tx.json", algs),
    );
    let p = Proxy::from_config(dir, &config).await;
    p.wait_ready().await;
    // The transmitter's keys load in the background.
    tokio::time::sleep(Duration::from_millis(100)).await;
    p
}

async fn push(p: &Proxy, body: impl Into<Bytes>, content_type: &str) -> Reply {
    send(
        http::Request::post(format!("http://{}/ssf/events", p.admin.expect("admin")))
            .header("content-type", content_type)
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(Full::new(body.into()))
            .expect("req"),
    )
    .await
}

async fn call(p: &Proxy, token: &str) -> Reply {
    get(
        &p.url("/accounts"),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(fapi_guard_test_python),
    ignore = "needs Python with joserfc: set FAPI_GUARD_TEST_PYTHON=python3"
)]
async fn security_event_tokens_are_verified_and_mapped_to_revocations() {
    let key = TestKey::new("k1");
    let echo = Echo::start().await;
    let t = now();
    let valid = set_claims(session_revoked("victim", t));
    let mut deep = json!(1);
    for _ in 0..300 {
        deep = json!({"n": deep});
    }
    let mut wrong_aud = set_claims(session_revoked("victim", t));
    wrong_aud["aud"] = json!("https://someone.else");
    let mut wrong_iss = set_claims(session_revoked("victim", t));
    wrong_iss["iss"] = json!("https://evil.example");
    let mut wrong_typ = header();
    wrong_typ["typ"] = json!("JWT");
    let mut nested = set_claims(session_revoked("victim", t));
    nested["x"] = deep;
    let unknown = set_claims(
        json!({"https://example.com/event-type/unknown": {"subject": {"format": "opaque", "id": "victim"}}}),
    );
    let risc = set_claims(json!({format!("{RISC}account-disabled"): {
        "subject": {"format": "complex", "user": {"format": "email", "email": "e@bank.example"}}}}));
    let by_jti = set_claims(json!({format!("{CAEP}credential-change"): {}}));
    let mut by_jti = by_jti;
    by_jti["sub_id"] = json!({"format": "jwt_id", "iss": ISSUER, "jti": "jti-single"});
    let cases = vec![
        json!({"header": header(), "claims": valid}),
        json!({"header": header(), "claims": set_claims(session_revoked("victim", t)), "key": "other"}),
        json!({"header": header(), "claims": wrong_aud}),
        json!({"header": header(), "claims": wrong_iss}),
        json!({"header": header(), "payload_raw": "{\"iss\":"}),
        json!({"header": wrong_typ, "claims": set_claims(session_revoked("victim", t))}),
        json!({"header": header(), "claims": nested}),
        json!({"header": header(), "claims": unknown}),
        json!({"header": header(), "claims": risc}),
        json!({"header": header(), "claims": by_jti}),
    ];
    let (jwks, sets) = sign(&cases);
    let p = start(&echo, &key, &jwks).await;

    let victim_old = key.token(|_, c| c["sub"] = json!("victim"));
    assert_eq!(call(&p, &victim_old).await.status, 200);

    // Refused SETs: RFC 8935 §2.3 error codes, and no change to the state.
    let huge = format!("{}.{}.x", "a".repeat(40_000), "b".repeat(40_000));
    let refused: [(&str, Bytes, &str, u16, &str); 8] = [
        (
            "bad signature",
            sets[1].clone().into(),
            SET,
            400,
            "invalid_key",
        ),
        (
            "wrong aud",
            sets[2].clone().into(),
            SET,
            400,
            "invalid_audience",
        ),
        (
            "wrong iss",
            sets[3].clone().into(),
            SET,
            400,
            "invalid_issuer",
        ),
        (
            "malformed JSON",
            sets[4].clone().into(),
            SET,
            400,
            "invalid_request",
        ),
        (
            "wrong typ",
            sets[5].clone().into(),
            SET,
            400,
            "invalid_request",
        ),
        (
            "deeply nested",
            sets[6].clone().into(),
            SET,
            400,
            "invalid_request",
        ),
        (
            "not a JWS",
            Bytes::from_static(b"{\"events\":{}}"),
            SET,
            400,
            "invalid_request",
        ),
        (
            "wrong content type",
            sets[0].clone().into(),
            "application/json",
            400,
            "invalid_request",
        ),
    ];
    for (name, body, ct, status, err) in refused {
        let r = push(&p, body, ct).await;
        assert_eq!(
            (r.status, r.body["err"].as_str()),
            (status, Some(err)),
            "{name}: {:?}",
            r.body
        );
        assert!(r.body["description"].is_string(), "{name}");
        assert_eq!(
            call(&p, &victim_old).await.status,
            200,
            "{name}: state unchanged"
        );
    }
    let r = push(&p, huge, SET).await;
    assert_eq!(
        (r.status, r.body["err"].as_str()),
        (413, Some("invalid_request")),
        "huge SET, answered in RFC 8935 form: {:?}",
        r.body
    );
    // RFC 8935 §2.3: authentication failures in the same JSON form, beside the challenge.
    let admin = p.admin.expect("admin");
    for (name, auth) in [
        ("no admin token", None),
        ("wrong admin token", Some("Bearer not-the-token")),
    ] {
        let mut b =
            http::Request::post(format!("http://{admin}/ssf/events")).header("content-type", SET);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        let r = send(
            b.body(Full::new(Bytes::from(sets[0].clone())))
                .expect("req"),
        )
        .await;
        assert_eq!(
            (r.status, r.body["err"].as_str()),
            (401, Some("authentication_failed")),
            "{name}: {:?}",
            r.body
        );
        assert!(r.body["description"].is_string(), "{name}");
        assert!(r.headers.contains_key("www-authenticate"), "{name}");
        assert_eq!(
            r.headers["content-type"].to_str().ok(),
            Some("application/json"),
            "{name}"
        );
    }
    assert_eq!(call(&p, &victim_old).await.status, 200, "still not revoked");

    // The valid one: applied at once; a later sign-in works; its replay is refused.
    let r = push(&p, sets[0].clone(), SET).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let before = echo.count();
    let r = call(&p, &victim_old).await;
    assert_eq!((r.status, r.reason()), (401, Some("token_revoked")));
    assert_eq!(echo.count(), before, "nothing reached the API");
    let victim_new = key.token(|_, c| {
        c["sub"] = json!("victim");
        c["iat"] = json!(now() + 1);
    });
    assert_eq!(
        call(&p, &victim_new).await.status,
        200,
        "signed in again after the event"
    );
    let r = push(&p, sets[0].clone(), SET).await;
    assert_eq!(
        (r.status, r.body["err"].as_str()),
        (400, Some("invalid_request")),
        "replayed jti"
    );

    // Unknown event: acknowledged, counted, not applied.
    let r = push(&p, sets[7].clone(), SET).await;
    assert_eq!(r.status, 202);
    // RISC account-disabled with a complex subject (email), CAEP credential-change by jwt_id.
    assert_eq!(push(&p, sets[8].clone(), SET).await.status, 202);
    assert_eq!(push(&p, sets[9].clone(), SET).await.status, 202);
    let by_email = key.token(|_, c| c["sub"] = json!("e@bank.example"));
    assert_eq!(call(&p, &by_email).await.reason(), Some("token_revoked"));
    let single = key.token(|_, c| c["jti"] = json!("jti-single"));
    assert_eq!(call(&p, &single).await.reason(), Some("token_revoked"));

    let m = p
        .running
        .as_ref()
        .expect("running")
        .guard
        .metrics()
        .encode();
    for line in [
        r#"fapi_guard_revocations_total{kind="subject",source="ssf"} 2"#,
        r#"fapi_guard_revocations_total{kind="jti",source="ssf"} 1"#,
        r#"fapi_guard_revocation_errors_total{error="unknown_event",source="ssf"} 1"#,
        r#"fapi_guard_revocation_errors_total{error="invalid",source="ssf"} 9"#,
        r#"fapi_guard_revocation_errors_total{error="unauthorized",source="ssf"} 2"#,
        r#"fapi_guard_revocation_errors_total{error="too_large",source="ssf"} 1"#,
        "fapi_guard_revocation_lag_seconds_count 3",
    ] {
        assert!(m.contains(line), "{line}\n{m}");
    }
    let records = p.audit_records().await;
    let n = records
        .iter()
        .filter(|r| r["kind"] == "revocation" && r["revocation"]["source"] == "ssf")
        .count();
    assert_eq!(n, 3, "one audit record per applied revocation");
}

/// Every CAEP and RISC event the receiver maps revokes its subject (all five RFC 9493 formats
/// that name one), and only tokens issued at or before the event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(fapi_guard_test_python),
    ignore = "needs Python with joserfc: set FAPI_GUARD_TEST_PYTHON=python3"
)]
async fn each_caep_and_risc_event_revokes_its_subject() {
    let key = TestKey::new("k1");
    let echo = Echo::start().await;
    let t = now();
    let events: [(&str, &str); 6] = [
        (CAEP, "session-revoked"),
        (CAEP, "credential-change"),
        (CAEP, "token-claims-change"),
        (RISC, "credential-compromise"),
        (RISC, "account-disabled"),
        (RISC, "account-purged"),
    ];
    let mut cases: Vec<Value> = events
        .iter()
        .map(|(base, name)| {
            json!({"header": header(), "claims": set_claims(event(base, name, &format!("sub-{name}"), t))})
        })
        .collect();
    // The opaque format, through the SSF 1.0 `sub_id`.
    let mut opaque = set_claims(json!({format!("{RISC}account-disabled"): {}}));
    opaque["sub_id"] = json!({"format": "opaque", "id": "sub-opaque"});
    cases.push(json!({"header": header(), "claims": opaque}));
    let (jwks, sets) = sign(&cases);
    let p = start(&echo, &key, &jwks).await;
    let mut subjects: Vec<String> = events.iter().map(|(_, n)| format!("sub-{n}")).collect();
    subjects.push("sub-opaque".into());
    let tokens: Vec<String> = subjects
        .iter()
        .map(|s| key.token(|_, c| c["sub"] = json!(s)))
        .collect();
    let bystander = key.token(|_, c| c["sub"] = json!("someone-else"));
    for (i, set) in sets.iter().enumerate() {
        assert_eq!(
            call(&p, &tokens[i]).await.status,
            200,
            "{}: before",
            subjects[i]
        );
        let r = push(&p, set.clone(), SET).await;
        assert_eq!(r.status, 202, "{}: {:?}", subjects[i], r.body);
        let before = echo.count();
        let r = call(&p, &tokens[i]).await;
        assert_eq!(
            (r.status, r.reason()),
            (401, Some("token_revoked")),
            "{}: refused on the next request",
            subjects[i]
        );
        assert_eq!(
            echo.count(),
            before,
            "{}: nothing reached the API",
            subjects[i]
        );
        // A sign-in after the event works.
        let later = key.token(|_, c| {
            c["sub"] = json!(subjects[i]);
            c["iat"] = json!(now() + 1);
        });
        assert_eq!(
            call(&p, &later).await.status,
            200,
            "{}: signed in again",
            subjects[i]
        );
    }
    assert_eq!(call(&p, &bystander).await.status, 200, "others unaffected");
    let m = p
        .running
        .as_ref()
        .expect("running")
        .guard
        .metrics()
        .encode();
    let line = r#"fapi_guard_revocations_total{kind="subject",source="ssf"} 7"#;
    assert!(m.contains(line), "{line}\n{m}");
}

/// The receiver's own algorithm allow-list: PS256 and ES256 SETs are accepted when listed; an
/// RS256 SET with a valid signature is refused when RS256 is not listed; `none` and HS256 are
/// never accepted (even with the transmitter's key material as the HMAC secret).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(fapi_guard_test_python),
    ignore = "needs Python with joserfc: set FAPI_GUARD_TEST_PYTHON=python3"
)]
async fn set_algorithms_follow_the_receivers_allow_list() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let key = TestKey::new("k1");
    let echo = Echo::start().await;
    let t = now();
    let ps = json!({"alg": "PS256", "typ": "secevent+jwt", "kid": "ssf-1"});
    let es = json!({"alg": "ES256", "typ": "secevent+jwt", "kid": "ssf-ec"});
    let cases = vec![
        json!({"header": ps, "claims": set_claims(session_revoked("by-ps256", t))}),
        json!({"header": es, "claims": set_claims(session_revoked("by-es256", t)), "key": "ec"}),
        json!({"header": header(), "claims": set_claims(session_revoked("by-rs256", t))}),
    ];
    let (jwks, sets) = sign(&cases);
    let p = start_with(&echo, &key, &jwks, "PS256, ES256").await;
    // Hand-built: `none` (no signature) and HS256 keyed with the RSA modulus (a public value,
    // the classic key-confusion attack).
    let unsigned = |h: Value, c: Value| {
        format!(
            "{}.{}.",
            B64.encode(h.to_string()),
            B64.encode(c.to_string())
        )
    };
    let none = unsigned(
        json!({"alg": "none", "typ": "secevent+jwt"}),
        set_claims(session_revoked("by-none", t)),
    );
    let hs_input = unsigned(
        json!({"alg": "HS256", "typ": "secevent+jwt", "kid": "ssf-1"}),
        set_claims(session_revoked("by-hs256", t)),
    );
    let hs_input = hs_input.trim_end_matches('.');
    let secret = jwks["keys"][0]["n"].as_str().expect("n");
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes()),
        hs_input.as_bytes(),
    );
    let hs256 = format!("{hs_input}.{}", B64.encode(tag.as_ref()));

    let refused = [
        (
            "RS256, not on the list",
            sets[2].clone(),
            "by-rs256",
            "invalid_key",
        ),
        // An empty signature is not even a JWS; with bytes in it, the algorithm is refused.
        ("alg none", none.clone(), "by-none", "invalid_request"),
        (
            "alg none with a signature",
            format!("{none}AAAA"),
            "by-none",
            "invalid_key",
        ),
        ("HS256", hs256, "by-hs256", "invalid_key"),
    ];
    for (name, set, sub, err) in refused {
        let victim = key.token(|_, c| c["sub"] = json!(sub));
        let r = push(&p, set, SET).await;
        assert_eq!(
            (r.status, r.body["err"].as_str()),
            (400, Some(err)),
            "{name}: {:?}",
            r.body
        );
        assert_eq!(
            call(&p, &victim).await.status,
            200,
            "{name}: state unchanged"
        );
    }
    for (name, set, sub) in [
        ("PS256", &sets[0], "by-ps256"),
        ("ES256", &sets[1], "by-es256"),
    ] {
        let victim = key.token(|_, c| c["sub"] = json!(sub));
        assert_eq!(call(&p, &victim).await.status, 200, "{name}: before");
        let r = push(&p, set.clone(), SET).await;
        assert_eq!(r.status, 202, "{name}: {:?}", r.body);
        assert_eq!(
            call(&p, &victim).await.reason(),
            Some("token_revoked"),
            "{name}: applied"
        );
    }
}

//! Shared Signals receiver (RFC 8935 push, RFC 8417 SETs, CAEP/RISC events) through the real
//! proxy, with SETs signed by an independent implementation (Python joserfc). Needs
//! `FAPI_GUARD_TEST_PYTHON` at build time (see `build.rs`); `.ci/run` sets it.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use serde_json::{Value, json};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/ssf_transmitter.py"
);
const ADMIN_TOKEN: &str = "ssf-admin-secret-0123456789";
const TX: &str = "https://ssf.transmitter.example";
const RX: &str = "https://api.test.example/ssf";
const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";

fn python() -> String {
    let py = std::env::var("FAPI_GUARD_TEST_PYTHON")
        .ok()
        .filter(|v| !v.is_empty())
        .expect("FAPI_GUARD_TEST_PYTHON names the Python interpreter (see build.rs)");
    let ok = Command::new(&py)
        .args(["-c", "import joserfc"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "FAPI_GUARD_TEST_PYTHON={py} cannot import joserfc");
    py
}

/// Signs every case with joserfc; returns (transmitter JWKS, SETs).
fn sign(cases: &[Value]) -> (Value, Vec<String>) {
    use std::io::Write as _;
    let mut child = Command::new(python())
        .arg(SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(Value::Array(cases.to_vec()).to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let sets = v["sets"]
        .as_array()
        .expect("sets")
        .iter()
        .map(|s| s.as_str().expect("str").to_owned())
        .collect();
    (v["jwks"].clone(), sets)
}

fn header() -> Value {
    json!({"alg": "RS256", "typ": "secevent+jwt", "kid": "ssf-1"})
}

fn set_claims(events: Value) -> Value {
    json!({"iss": TX, "aud": RX, "iat": now(), "jti": uuid::Uuid::new_v4().to_string(), "events": events})
}

fn session_revoked(sub: &str, at: i64) -> Value {
    json!({format!("{CAEP}session-revoked"): {
        "subject": {"format": "iss_sub", "iss": ISSUER, "sub": sub},
        "event_timestamp": at,
    }})
}

async fn start(echo: &Echo, key: &TestKey, tx_jwks: &Value) -> Proxy {
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
         revocation:\n  ssf:\n    issuer: {TX}\n    jwks_file: tx.json\n    audience: {RX}\n    algorithms: [RS256]\n\
         audit:\n  sink: file\n  path: audit.jsonl\npolicies: [policy.yaml]\n",
        echo.addr
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).expect("config");
    let config = fapi_guard::config::Config::load(&path).expect("config");
    let guard = fapi_guard::app::build(config, fapi_guard::clock::Clock::system()).expect("build");
    guard.spawn_refresh();
    let running = fapi_guard::server::start(guard, Duration::from_secs(2))
        .await
        .expect("start");
    let p = Proxy {
        addr: running.addr,
        admin: running.admin_addr,
        running: Some(running),
        dir,
    };
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

const SET: &str = "application/secevent+jwt";

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
    assert_eq!(push(&p, huge, SET).await.status, 413, "huge SET");

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

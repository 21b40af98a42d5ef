//! HTTP Message Signatures (RFC 9421, FAPI 2.0 Message Signing) through the real proxy.
//!
//! Request signatures are produced by an independent implementation: the Python
//! `http-message-signatures` package (`tests/interop/http_sig_client.py`), which also verifies
//! the proxy's response signatures. Those tests need `FAPI_GUARD_TEST_PYTHON` (a Python with
//! that package and `requests`; `.ci/run` installs them); without it `cargo test` lists them as
//! ignored with the reason. The tests that need no signer run everywhere.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/http_sig_client.py"
);
const PUBLIC: &str = "https://api.test.example";

const POLICY: &str = "\
api: signed
defaults:
  binding: unbound_allowed
  scopes: [payments]
routes:
  - name: create-payment
    method: POST
    path: /payments
    signatures: {request: required, response: sign}
  - name: replace-payment
    method: PUT
    path: /payments
    signatures: {request: required}
  - name: get-payment
    method: GET
    path: /payments/{id}
    signatures: {request: required, response: sign}
  - name: notes
    method: POST
    path: /notes
    signatures: {request: optional}
  - name: public-small
    method: GET
    path: /public-small
    public: true
    signatures: {response: sign}
  - name: public-big
    method: GET
    path: /public-big
    public: true
    signatures: {response: sign}
";

// ---------------------------------------------------------------- an upstream with its own
// signature headers (which must never reach the client beside the sidecar's)

#[derive(Clone, Default)]
struct Api {
    seen: Arc<Mutex<Vec<(String, String, Bytes)>>>,
}

impl Api {
    async fn start(&self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = self.seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                let svc = service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        seen.lock().expect("lock").push((
                            parts.method.to_string(),
                            parts.uri.to_string(),
                            body.clone(),
                        ));
                        let reply = if parts.uri.path() == "/public-big" {
                            "x".repeat(3000)
                        } else {
                            json!({"ok": true, "len": body.len()}).to_string()
                        };
                        let r = Response::builder()
                            .status(if parts.method == "POST" { 201 } else { 200 })
                            .header("content-type", "application/json")
                            .header("signature", "api=:AAAA:")
                            .header("signature-input", "api=();tag=\"fapi-2-response\"")
                            .header("content-digest", "sha-256=:AAAA:")
                            .body(Full::new(Bytes::from(reply)))
                            .expect("response");
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
        addr
    }

    fn count(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }

    fn last_body(&self) -> Bytes {
        self.seen
            .lock()
            .expect("lock")
            .last()
            .map(|s| s.2.clone())
            .unwrap_or_default()
    }
}

struct Setup {
    proxy: Proxy,
    api: Api,
    issuer: TestKey,
    _jwks: Jwks,
    _client_jwks: Jwks,
    keys_dir: tempfile::TempDir,
}

/// The proxy with `tpp-1`'s keys served over HTTP (`client_keys`) and `tpp-2`'s in a file.
async fn setup(client_keys: Vec<Value>, tpp2_keys: Vec<Value>) -> Setup {
    let issuer = TestKey::new("as-1");
    let jwks = Jwks::start(vec![issuer.jwks_entry()]).await;
    let client_jwks = Jwks::start(client_keys).await;
    let keys_dir = tempfile::tempdir().expect("dir");
    let tpp2 = keys_dir.path().join("tpp-2.jwks.json");
    std::fs::write(&tpp2, json!({"keys": tpp2_keys}).to_string()).expect("write");
    let api = Api::default();
    let upstream = api.start().await;
    let extra = format!(
        "clients:\n  - client_id: tpp-1\n    jwks_uri: {}\n    jwks_min_refetch: 1s\n  - client_id: tpp-2\n    jwks_file: {}\nsignatures:\n  max_age: 60s\n  response_key_id: resp-1\n  max_response_bytes: 2048\n",
        client_jwks.uri(),
        tpp2.display()
    );
    let proxy = Proxy::start(&format!("http://{upstream}"), &jwks.uri(), &extra, POLICY).await;
    proxy.wait_ready().await;
    Setup {
        proxy,
        api,
        issuer,
        _jwks: jwks,
        _client_jwks: client_jwks,
        keys_dir,
    }
}

impl Setup {
    fn token(&self, client: &str) -> String {
        self.issuer.token(|_, c| {
            c["scope"] = json!("payments");
            c["client_id"] = json!(client);
        })
    }

    fn response_jwk(&self) -> Value {
        let guard = &self.proxy.running.as_ref().expect("running").guard;
        let jwks = guard.public_jwks().expect("response key published");
        jwks["keys"][0].clone()
    }
}

// ---------------------------------------------------------------- the Python signer

fn python() -> String {
    let py = std::env::var("FAPI_GUARD_TEST_PYTHON")
        .ok()
        .filter(|v| !v.is_empty())
        .expect("FAPI_GUARD_TEST_PYTHON names the Python interpreter (see build.rs)");
    let ok = Command::new(&py)
        .args([
            "-c",
            "import http_message_signatures, requests, cryptography",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "FAPI_GUARD_TEST_PYTHON={py} cannot import http_message_signatures and requests"
    );
    py
}

async fn py(args: Vec<String>) -> Value {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(python())
            .arg(SCRIPT)
            .args(&args)
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).expect("python prints JSON")
    })
    .await
    .expect("join")
}

/// A key pair made by the Python side: (private PEM, public JWK with `kid`).
async fn keygen(kind: &str, kid: &str) -> (String, Value) {
    let k = py(vec!["keygen".into(), kind.into()]).await;
    let mut jwk = k["jwk"].clone();
    jwk["kid"] = json!(kid);
    (k["private_pem"].as_str().expect("pem").to_owned(), jwk)
}

async fn call(spec: Value) -> Value {
    py(vec!["call".into(), spec.to_string()]).await
}

const SIGNED: &[&str] = &["@method", "@target-uri", "authorization"];

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(fapi_guard_test_python),
    ignore = "needs Python with http-message-signatures: set FAPI_GUARD_TEST_PYTHON"
)]
async fn independently_signed_requests_are_verified_and_tampering_refused() {
    let (ec_pem, ec_jwk) = keygen("ec", "ec-1").await;
    let (ed_pem, ed_jwk) = keygen("ed25519", "ed-1").await;
    let (rsa_pem, rsa_jwk) = keygen("rsa", "rsa-1").await;
    let (other_pem, other_jwk) = keygen("ec", "other-1").await;
    let s = setup(vec![ec_jwk, ed_jwk, rsa_jwk], vec![other_jwk]).await;
    let token = s.token("tpp-1");
    let body = r#"{"Data":{"Amount":"10.00","Creditor":"GB29NWBK60161331926819"}}"#;
    let response_jwk = s.response_jwk();
    let spec = |pem: &str, alg: &str, kid: &str| {
        json!({
            "url": s.proxy.url("/payments"), "target_uri": format!("{PUBLIC}/payments"),
            "method": "POST", "body": body, "key_pem": pem, "alg": alg, "keyid": kid,
            "headers": {"authorization": format!("Bearer {token}"), "content-type": "application/json"},
            "components": SIGNED, "response_jwk": response_jwk,
        })
    };
    let edit = |mut v: Value, f: &dyn Fn(&mut Value)| {
        f(&mut v);
        v
    };
    let get = |path: &str, send: &str| {
        edit(spec(&ec_pem, "ecdsa-p256-sha256", "ec-1"), &|v| {
            v["method"] = json!("GET");
            v["body"] = json!("");
            v["digest"] = json!(false);
            v["url"] = json!(s.proxy.url(send));
            v["target_uri"] = json!(format!("{PUBLIC}{path}"));
        })
    };
    let ec = spec(&ec_pem, "ecdsa-p256-sha256", "ec-1");
    let cases: Vec<(&str, Value, u16, Option<&str>)> = vec![
        ("valid ECDSA P-256", ec.clone(), 201, None),
        ("valid Ed25519", spec(&ed_pem, "ed25519", "ed-1"), 201, None),
        (
            "valid RSA-PSS SHA-512",
            spec(&rsa_pem, "rsa-pss-sha512", "rsa-1"),
            201,
            None,
        ),
        (
            "valid GET with a query",
            get("/payments/p-1?x=1", "/payments/p-1?x=1"),
            200,
            None,
        ),
        (
            "body modified",
            edit(ec.clone(), &|v| {
                v["send_body"] = json!(body.replace("10.00", "99.00"))
            }),
            401,
            Some("content_digest_mismatch"),
        ),
        (
            "covered header modified",
            edit(ec.clone(), &|v| {
                v["components"] =
                    json!(["@method", "@target-uri", "authorization", "content-type"]);
                v["send_headers"] = json!({"content-type": "text/plain"});
            }),
            401,
            Some("signature_invalid"),
        ),
        (
            "method modified",
            edit(ec.clone(), &|v| v["send_method"] = json!("PUT")),
            401,
            Some("signature_invalid"),
        ),
        (
            "path modified",
            get("/payments/p-1", "/payments/p-2"),
            401,
            Some("signature_invalid"),
        ),
        (
            "query modified",
            get("/payments/p-1?x=1", "/payments/p-1?x=2"),
            401,
            Some("signature_invalid"),
        ),
        (
            "stale created",
            edit(ec.clone(), &|v| v["created_offset"] = json!(-120)),
            401,
            Some("signature_stale"),
        ),
        (
            "future created",
            edit(ec.clone(), &|v| v["created_offset"] = json!(120)),
            401,
            Some("signature_stale"),
        ),
        (
            "another client's key",
            spec(&other_pem, "ecdsa-p256-sha256", "other-1"),
            401,
            Some("signature_invalid"),
        ),
        (
            "unknown key",
            spec(&ec_pem, "ecdsa-p256-sha256", "no-such-kid"),
            401,
            Some("signature_invalid"),
        ),
        (
            "HMAC",
            spec("a-shared-secret", "hmac-sha256", "ec-1"),
            401,
            Some("signature_invalid"),
        ),
        (
            "unknown algorithm",
            spec(&ec_pem, "ecdsa-p256-sha3-512", "ec-1"),
            401,
            Some("signature_invalid"),
        ),
        (
            "body without a covered content-digest",
            edit(ec.clone(), &|v| v["digest"] = json!(false)),
            401,
            Some("signature_invalid"),
        ),
        (
            "another tag",
            edit(ec.clone(), &|v| v["tag"] = json!("not-fapi")),
            401,
            Some("signature_missing"),
        ),
    ];
    for (name, spec, status, reason) in cases {
        let before = s.api.count();
        let r = call(spec).await;
        assert_eq!(r["status"], status, "{name}: {r}");
        assert!(r["headers"]["x-fapi-interaction-id"].is_string(), "{name}");
        match reason {
            None => {
                assert_eq!(s.api.count(), before + 1, "{name}: forwarded once");
                if status == 201 {
                    assert_eq!(
                        s.api.last_body(),
                        Bytes::from(body),
                        "{name}: identical bytes"
                    );
                }
                // The independent library verifies the sidecar's response signature.
                assert_eq!(r["response_verified"], true, "{name}: {r}");
                assert!(
                    r["headers"]["signature"]
                        .as_str()
                        .is_some_and(|v| v.starts_with("sig1=")),
                    "{name}: the API's signature replaced"
                );
            }
            Some(want) => {
                assert_eq!(r["body"]["reason"], want, "{name}: {r}");
                assert_eq!(s.api.count(), before, "{name}: nothing forwarded");
                let www = r["headers"]["www-authenticate"]
                    .as_str()
                    .unwrap_or_default();
                assert!(www.contains("error=\"invalid_request\""), "{name}: {www}");
            }
        }
    }

    // `optional`: no signature passes, a bad one does not.
    let plain = send(
        Request::post(s.proxy.url("/notes"))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::from_static(b"note")))
            .expect("req"),
    )
    .await;
    assert_eq!(plain.status, 201);
    let bad = call(edit(ec.clone(), &|v| {
        v["url"] = json!(s.proxy.url("/notes"));
        v["target_uri"] = json!(format!("{PUBLIC}/payments"));
        v.as_object_mut().expect("obj").remove("response_jwk");
    }))
    .await;
    assert_eq!(bad["body"]["reason"], "signature_invalid", "{bad}");
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(fapi_guard_test_python),
    ignore = "needs Python with http-message-signatures: set FAPI_GUARD_TEST_PYTHON"
)]
async fn signed_exchange_is_audited_and_rechecked() {
    let (ec_pem, ec_jwk) = keygen("ec", "ec-1").await;
    let s = setup(vec![ec_jwk.clone()], vec![]).await;
    let token = s.token("tpp-1");
    let response_jwk = s.response_jwk();
    assert_eq!(response_jwk["kid"], "resp-1");
    let r = call(json!({
        "url": s.proxy.url("/payments"), "target_uri": format!("{PUBLIC}/payments"),
        "method": "POST", "body": "{\"a\":1}", "key_pem": ec_pem, "alg": "ecdsa-p256-sha256",
        "keyid": "ec-1", "headers": {"authorization": format!("Bearer {token}")},
        "components": SIGNED, "response_jwk": response_jwk,
    }))
    .await;
    assert_eq!(r["status"], 201, "{r}");
    assert_eq!(r["response_verified"], true, "{r}");
    let records = s.proxy.audit_records().await;
    let decision = records
        .iter()
        .find(|r| r["kind"] == "decision")
        .expect("decision");
    let sig = &decision["signature"];
    assert_eq!(sig["keyid"], "ec-1");
    assert_eq!(sig["alg"], "ecdsa-p256-sha256");
    assert_eq!(sig["tag"], "fapi-2-request");
    assert_eq!(
        sig["components"],
        json!(["@method", "@target-uri", "authorization", "content-digest"])
    );
    assert!(sig["base_sha256"].as_str().is_some_and(|d| d.len() == 43));
    assert!(
        sig["content_digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha-"))
    );
    let outcome = records
        .iter()
        .find(|r| r["kind"] == "outcome")
        .expect("outcome");
    assert_eq!(outcome["response_signature"]["keyid"], "resp-1");
    assert_eq!(outcome["response_signature"]["tag"], "fapi-2-response");
    let line = std::fs::read_to_string(s.proxy.audit_path()).expect("audit");
    assert!(
        !line.contains(&token),
        "the access token never reaches the trail"
    );

    // `audit verify --signatures` re-checks both stored signatures with the public keys.
    let client_jwks = s.keys_dir.path().join("tpp-1.json");
    std::fs::write(&client_jwks, json!({"keys": [ec_jwk]}).to_string()).expect("write");
    let resp_jwks = s.keys_dir.path().join("resp.json");
    std::fs::write(&resp_jwks, json!({"keys": [response_jwk]}).to_string()).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_fapi-guard"))
        .args(["audit", "verify", "--signatures", "--client-jwks"])
        .arg(format!("tpp-1={}", client_jwks.display()))
        .arg("--response-jwks")
        .arg(&resp_jwks)
        .arg(s.proxy.audit_path())
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("signatures: 2 re-checked ok"), "{stdout}");

    // A stored signature value edited (chain aside): the re-check names the line.
    let tampered = s.keys_dir.path().join("tampered.jsonl");
    let value = sig["value"].as_str().expect("value");
    let flipped = if value.starts_with('A') {
        value.replacen('A', "B", 1)
    } else {
        format!("A{}", &value[1..])
    };
    std::fs::write(&tampered, line.replace(value, &flipped)).expect("write");
    let mut book = fapi_guard::signature::recheck::KeyBook::default();
    book.add_jwks("tpp-1", &json!({"keys": [ec_jwk]}))
        .expect("jwks");
    let err =
        fapi_guard::signature::recheck::recheck_files(&[tampered], &book).expect_err("tampered");
    assert!(err.message.contains("does not verify"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_required_signature_that_is_missing_or_malformed_is_refused() {
    let s = setup(vec![TestKey::new("k").jwks_entry()], vec![]).await;
    let token = s.token("tpp-1");
    let cases: &[(&str, &[(&str, &str)], &str)] = &[
        ("no signature", &[], "signature_missing"),
        (
            "duplicate labels",
            &[
                (
                    "signature-input",
                    r#"sig1=("@method");tag="fapi-2-request", sig1=("@path")"#,
                ),
                ("signature", "sig1=:AAAA:"),
            ],
            "signature_invalid",
        ),
        (
            "garbage",
            &[("signature-input", "((("), ("signature", "x")],
            "signature_invalid",
        ),
        (
            "tagged input without a value",
            &[(
                "signature-input",
                r#"sig1=("@method");tag="fapi-2-request""#,
            )],
            "signature_invalid",
        ),
    ];
    for (name, headers, reason) in cases {
        let mut b = Request::post(s.proxy.url("/payments"))
            .header("authorization", format!("Bearer {token}"));
        for (k, v) in *headers {
            b = b.header(*k, *v);
        }
        let r = send(b.body(Full::new(Bytes::from_static(b"{}"))).expect("req")).await;
        assert_eq!((r.status, r.reason()), (401, Some(*reason)), "{name}");
        assert_eq!(
            r.headers["www-authenticate"],
            format!("Bearer error=\"invalid_request\", error_description=\"{reason}\""),
            "{name}"
        );
        assert_eq!(s.api.count(), 0, "{name}: nothing forwarded");
    }
    let records = s.proxy.audit_records().await;
    let reasons: Vec<&str> = records
        .iter()
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"signature_missing") && reasons.contains(&"signature_invalid"));
    // Authorize before you buffer: an invalid token is refused for that, not for the signature.
    let r = send(
        Request::post(s.proxy.url("/payments"))
            .body(Full::new(Bytes::new()))
            .expect("req"),
    )
    .await;
    assert_eq!(r.reason(), Some("token_missing"));
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_are_signed_within_a_bound_or_refused() {
    let s = setup(vec![TestKey::new("k").jwks_entry()], vec![]).await;
    let small = get(&s.proxy.url("/public-small"), &[]).await;
    assert_eq!(small.status, 200);
    assert_eq!(small.headers.get_all("signature").iter().count(), 1);
    assert_eq!(small.headers.get_all("content-digest").iter().count(), 1);
    assert!(
        small.headers["signature"]
            .to_str()
            .expect("ascii")
            .starts_with("sig1=:")
    );
    assert!(
        small.headers["signature-input"]
            .to_str()
            .expect("ascii")
            .contains("tag=\"fapi-2-response\"")
    );
    let body = serde_json::to_vec(&small.body).expect("json");
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body);
    use base64::Engine as _;
    let want = format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(d)
    );
    assert_eq!(small.headers["content-digest"], want.as_str());

    // 3000 bytes > signatures.max_response_bytes (2048): 502, never relayed unsigned.
    let big = get(&s.proxy.url("/public-big"), &[]).await;
    assert_eq!(big.status, 502);
    assert_eq!(big.body["error"], "response_too_large");
    assert!(!big.headers.contains_key("signature"));
    let records = s.proxy.audit_records().await;
    assert!(
        records.iter().any(|r| r["kind"] == "outcome"
            && r["status"] == 502
            && r["upstream_error"] == "response_too_large"),
        "{records:?}"
    );
    // The response key is published at admin /jwks under its configured id.
    let jwk = s.response_jwk();
    assert_eq!(
        (jwk["kid"].as_str(), jwk["crv"].as_str()),
        (Some("resp-1"), Some("P-256"))
    );
    assert!(jwk.get("d").is_none());
}

#[test]
fn signed_routes_need_their_configuration() {
    let dir = tempfile::tempdir().expect("dir");
    let write = |policy: &str, extra: &str| {
        std::fs::write(dir.path().join("p.yaml"), policy).expect("policy");
        let cfg = format!(
            "listen: {{public_url: 'https://api.test.example'}}\nupstream: {{url: 'http://127.0.0.1:1'}}\nissuers: [{{issuer: x, jwks_file: j.json, audiences: [a]}}]\npolicies: [p.yaml]\n{extra}"
        );
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, cfg).expect("config");
        let config = fapi_guard::config::Config::load(&path).expect("config loads");
        fapi_guard::app::build(config, fapi_guard::clock::Clock::system()).map(|_| ())
    };
    let verify =
        "api: a\nroutes:\n  - {name: r, method: POST, path: /p, signatures: {request: required}}\n";
    let sign = "api: a\nroutes:\n  - {name: r, method: GET, path: /p, public: true, signatures: {response: sign}}\n";
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let _g = rt.enter();
    let e = write(verify, "").expect_err("no clients").to_string();
    assert!(e.contains("no `clients:`"), "{e}");
    let e = write(sign, "")
        .expect_err("no signatures section")
        .to_string();
    assert!(e.contains("no `signatures:` section"), "{e}");
    std::fs::write(dir.path().join("k.json"), r#"{"keys":[]}"#).expect("keys");
    assert!(write(verify, "clients: [{client_id: c, jwks_file: k.json}]\n").is_ok());
    assert!(write(sign, "signatures: {}\n").is_ok());
    // A public route cannot verify request signatures (no token, no client).
    std::fs::write(
        dir.path().join("p.yaml"),
        "api: a\nroutes:\n  - {name: r, method: GET, path: /p, public: true, signatures: {request: optional}}\n",
    )
    .expect("policy");
    let errs =
        fapi_guard::policy::PolicySet::load(&[dir.path().join("p.yaml")]).expect_err("refused");
    assert!(errs[0].to_string().contains("signatures"), "{}", errs[0]);
}

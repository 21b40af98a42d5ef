//! Test harness: a real echo upstream, a real HTTP JWKS endpoint, tokens minted by code that
//! shares nothing with the verifier (hand-built JWS, aws-lc-rs signatures), and the proxy
//! started on 127.0.0.1:0.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub const ISSUER: &str = "https://as.test.example";
pub const AUDIENCE: &str = "https://api.test.example";

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------- keys and tokens

/// An ES256 key; signs JWS by hand (no jsonwebtoken involved).
pub struct TestKey {
    pub kid: String,
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
}

impl TestKey {
    pub fn new(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("keygen");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("pkcs8");
        Self {
            kid: kid.to_owned(),
            pair,
            pkcs8: pkcs8.as_ref().to_vec(),
        }
    }

    /// The private key as a PKCS#8 PEM file body (for `signing_key_file`).
    pub fn pkcs8_pem(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.pkcs8);
        let lines: Vec<String> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        )
    }

    /// RFC 7638 thumbprint, computed here: EC members in lexicographic order, SHA-256, base64url.
    pub fn thumbprint(&self) -> String {
        let j = self.public_jwk();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            j["x"].as_str().expect("x"),
            j["y"].as_str().expect("y")
        );
        B64.encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref(),
        )
    }

    pub fn public_jwk(&self) -> Value {
        let p = self.pair.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..65])})
    }

    pub fn jwks_entry(&self) -> Value {
        let mut j = self.public_jwk();
        j["kid"] = json!(self.kid);
        j["use"] = json!("sig");
        j
    }

    /// Signs `header.payload` with ES256 (raw r||s, RFC 7518 §3.4).
    pub fn sign_jws(&self, header: &Value, payload: &Value) -> String {
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(payload.to_string())
        );
        let rng = SystemRandom::new();
        let sig = self.pair.sign(&rng, input.as_bytes()).expect("sign");
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }

    /// An RFC 9068 access token with the default claims, edited by `edit`.
    pub fn token(&self, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
        let mut header = json!({"alg": "ES256", "typ": "at+jwt", "kid": self.kid});
        let mut claims = default_claims();
        edit(&mut header, &mut claims);
        self.sign_jws(&header, &claims)
    }
}

pub fn default_claims() -> Value {
    let t = now();
    json!({
        "iss": ISSUER, "sub": "psu-9", "aud": AUDIENCE, "client_id": "tpp-1",
        "scope": "accounts openid", "iat": t - 5, "exp": t + 300,
        "jti": format!("jti-{}", uuid_like()),
    })
}

pub fn uuid_like() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{}-{}", now(), N.fetch_add(1, Ordering::Relaxed))
}

/// A DPoP client key with its RFC 7638 thumbprint computed here, independently of the proxy
/// (EC members in lexicographic order, SHA-256, base64url).
pub struct DpopKey {
    pub key: TestKey,
    pub jkt: String,
}

impl DpopKey {
    pub fn new() -> Self {
        let key = TestKey::new("dpop");
        let jkt = key.thumbprint();
        Self { key, jkt }
    }

    pub fn ath(token: &str) -> String {
        B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref())
    }

    /// A proof for `method` + `htu`, bound to `token`, edited by `edit`.
    pub fn proof(
        &self,
        method: &str,
        htu: &str,
        token: &str,
        edit: impl FnOnce(&mut Value, &mut Value),
    ) -> String {
        let mut header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.key.public_jwk()});
        let mut claims = json!({"jti": uuid_like(), "htm": method, "htu": htu, "iat": now(), "ath": Self::ath(token)});
        edit(&mut header, &mut claims);
        self.key.sign_jws(&header, &claims)
    }
}

// ---------------------------------------------------------------- JWKS endpoint

/// A JWKS endpoint whose keys and availability tests can change, counting fetches.
#[derive(Clone)]
pub struct Jwks {
    pub addr: SocketAddr,
    pub keys: Arc<Mutex<Vec<Value>>>,
    pub up: Arc<AtomicBool>,
    pub fetches: Arc<AtomicUsize>,
}

impl Jwks {
    pub async fn start(keys: Vec<Value>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let this = Self {
            addr: listener.local_addr().expect("addr"),
            keys: Arc::new(Mutex::new(keys)),
            up: Arc::new(AtomicBool::new(true)),
            fetches: Arc::new(AtomicUsize::new(0)),
        };
        let t = this.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let t = t.clone();
                let svc = service_fn(move |_req: Request<Incoming>| {
                    let t = t.clone();
                    async move {
                        t.fetches.fetch_add(1, Ordering::SeqCst);
                        let (status, body) = if t.up.load(Ordering::SeqCst) {
                            let keys = t.keys.lock().expect("lock").clone();
                            (StatusCode::OK, json!({"keys": keys}).to_string())
                        } else {
                            (StatusCode::SERVICE_UNAVAILABLE, String::new())
                        };
                        let mut r = Response::new(Full::new(Bytes::from(body)));
                        *r.status_mut() = status;
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

    pub fn uri(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }
}

// ---------------------------------------------------------------- echo upstream

/// What the upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Clone)]
pub struct Echo {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Echo {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let this = Self {
            addr: listener.local_addr().expect("addr"),
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        let seen = this.seen.clone();
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
                        let uri = parts.uri.to_string();
                        seen.lock().expect("lock").push(Seen {
                            method: parts.method.to_string(),
                            uri: uri.clone(),
                            headers: parts.headers.clone(),
                            body: body.clone(),
                        });
                        // `?slow=1` keeps the request in flight for a while (drain tests).
                        if parts.uri.query().is_some_and(|q| q.contains("slow=1")) {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                        let reply =
                            json!({"method": parts.method.as_str(), "uri": uri, "len": body.len()});
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                            reply.to_string(),
                        ))))
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

    pub fn count(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }

    pub fn last(&self) -> Option<Seen> {
        self.seen.lock().expect("lock").last().cloned()
    }
}

// ---------------------------------------------------------------- the proxy

pub const POLICY: &str = "\
api: accounts
defaults:
  binding: unbound_allowed
  scopes: [accounts]
routes:
  - name: list-accounts
    method: GET
    path: /accounts
  - name: get-account
    method: GET
    path: /accounts/{account_id}
  - name: create-payment
    method: POST
    path: /payments
    scopes: [payments]
  - name: bound-only
    method: GET
    path: /bound
    binding: dpop_or_mtls
  - name: health
    method: GET
    path: /health
    public: true
";

pub struct Proxy {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub running: Option<fapi_guard::server::Running>,
    pub dir: tempfile::TempDir,
}

impl Proxy {
    /// Starts the proxy with `extra` (top-level YAML sections, e.g. `dpop:`) added to the
    /// configuration and `policy` as the only policy file.
    pub async fn start(upstream: &str, jwks_uri: &str, extra: &str, policy: &str) -> Self {
        Self::start_with(upstream, jwks_uri, extra, "", policy).await
    }

    /// As `start`, with `listen_extra` lines added to the `listen:` section (a `limits:`
    /// section there replaces the default limits: 8 KiB of headers, 4 KiB of body).
    pub async fn start_with(
        upstream: &str,
        jwks_uri: &str,
        extra: &str,
        listen_extra: &str,
        policy: &str,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("policy.yaml"), policy).expect("write policy");
        // Tests that configure the audit trail themselves pass an `audit:` section in `extra`.
        let audit = if extra.contains("audit:") {
            ""
        } else {
            "audit:\n  sink: file\n  path: audit.jsonl\n"
        };
        // Likewise a `limits:` section in `listen_extra` replaces the default one.
        let limits = if listen_extra.contains("limits:") {
            ""
        } else {
            "  limits:\n    max_header_bytes: 8192\n    max_body_bytes: 4096\n"
        };
        let config = format!(
            "\
listen:
  address: 127.0.0.1:0
  public_url: https://api.test.example
{limits}{listen_extra}
admin:
  address: 127.0.0.1:0
upstream:
  url: {upstream}
  timeout: 2s
issuers:
  - issuer: {ISSUER}
    jwks_uri: {jwks_uri}
    audiences: [{AUDIENCE}]
    jwks_min_refetch: 1s
{extra}
{audit}
policies: [policy.yaml]
"
        );
        Self::from_config(dir, &config).await
    }

    /// Starts the proxy from the configuration text `config`, written as `config.yaml` into
    /// `dir` (which holds the files it names).
    pub async fn from_config(dir: tempfile::TempDir, config: &str) -> Self {
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, config).expect("write config");
        let config = fapi_guard::config::Config::load(&path).expect("config");
        let guard =
            fapi_guard::app::build(config, fapi_guard::clock::Clock::system()).expect("build");
        guard.spawn_refresh();
        let running = fapi_guard::server::start(guard, Duration::from_secs(2))
            .await
            .expect("start");
        Self {
            addr: running.addr,
            admin: running.admin_addr,
            running: Some(running),
            dir,
        }
    }

    pub fn audit_path(&self) -> std::path::PathBuf {
        self.dir.path().join("audit.jsonl")
    }

    /// The audit records written so far (waits briefly for detached records).
    pub async fn audit_records(&self) -> Vec<Value> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::read_to_string(self.audit_path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn wait_ready(&self) {
        for _ in 0..200 {
            if self.running.as_ref().is_some_and(|r| r.guard.is_ready()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("proxy never became ready");
    }
}

// ---------------------------------------------------------------- client

pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn reason(&self) -> Option<&str> {
        self.body.get("reason").and_then(Value::as_str)
    }
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub async fn send(req: Request<Full<Bytes>>) -> Reply {
    let resp = client().request(req).await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(b.body(Full::new(Bytes::new())).expect("req")).await
}

pub mod fault;
pub mod fleet;
pub mod pki;
pub mod process;
pub mod raw;
pub mod ssf;

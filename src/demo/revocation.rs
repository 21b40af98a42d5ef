//! The demo's revocation tour: a consent withdrawn through the admin API and a CAEP
//! `session-revoked` Security Event Token (signed by the issuer side's transmitter key, pushed to
//! `/ssf/events`) each refuse the very next request, with the measured lag. With `--redis`, two
//! replicas on that Redis show a DPoP proof replayed at the other replica refused, and a
//! revocation posted to one refused at the other.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::consents;
use super::issuer::{AUDIENCE, ISSUER, SigningKey};

/// The Shared Signals receiver's audience (`revocation.ssf.audience`).
pub const SSF_AUDIENCE: &str = "https://api.bank.example/ssf";
const CAEP_SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
const BALANCES: &str = "/open-banking/v4.0/aisp/accounts/acc-1/balances";
const PAYMENT: &str = "/open-banking/v4.0/pisp/domestic-payments/pay-1";

/// The `revocation:` section of the demo's configuration: the issuer side also transmits
/// Shared Signals, with its own key published in `jwks_file`.
pub fn config_section(jwks_file: &str) -> String {
    format!(
        "revocation:\n  ssf:\n    issuer: {ISSUER}\n    jwks_file: {jwks_file}\n    audience: {SSF_AUDIENCE}\n"
    )
}

/// Where the tour sends its calls.
pub struct Target<'a> {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub admin_token: &'a str,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

fn now() -> i64 {
    crate::clock::Clock::system().now_unix()
}

/// `(status, deny reason or "-")` of one call.
async fn call(
    c: &HttpClient,
    method: Method,
    uri: String,
    headers: &[(&str, String)],
    body: Option<(&str, String)>,
) -> Result<(u16, String), String> {
    let mut req = Request::builder().method(method).uri(&uri);
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let body = match body {
        Some((content_type, b)) => {
            req = req.header("content-type", content_type);
            Bytes::from(b)
        }
        None => Bytes::new(),
    };
    let resp = c
        .request(req.body(Full::new(body)).map_err(|e| e.to_string())?)
        .await
        .map_err(|e| format!("{uri}: {e}"))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let reason = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "-".into());
    Ok((status, reason))
}

/// A TPP's DPoP key and its RFC 7638 thumbprint (the token's `cnf.jkt`).
struct Tpp {
    key: SigningKey,
    jkt: String,
}

impl Tpp {
    fn new() -> Result<Self, String> {
        let key = SigningKey::generate("dpop")?;
        let mut public = key.jwk.as_object().cloned().unwrap_or_default();
        public.retain(|k, _| matches!(k.as_str(), "kty" | "crv" | "x" | "y"));
        let jkt = crate::jwk::thumbprint(&public).map_err(|e| format!("{e:?}"))?;
        Ok(Self { key, jkt })
    }

    /// `Authorization` and `DPoP` headers for `GET path` with `token`.
    fn headers(&self, token: &str, path: &str) -> Result<Vec<(&'static str, String)>, String> {
        let claims = json!({
            "jti": uuid::Uuid::new_v4().to_string(), "htm": "GET",
            "htu": format!("{AUDIENCE}{path}"), "iat": now(), "ath": crate::dpop::ath(token),
        });
        Ok(vec![
            ("authorization", format!("DPoP {token}")),
            ("dpop", self.key.sign("dpop+jwt", &claims, true)?),
        ])
    }

    /// An access token bound to this key.
    fn token(
        &self,
        as_key: &SigningKey,
        scope: &str,
        edit: impl FnOnce(&mut Value),
    ) -> Result<String, String> {
        let t = now();
        let mut c = json!({
            "iss": ISSUER, "sub": "psu-9", "aud": AUDIENCE, "client_id": "tpp-1",
            "scope": scope, "iat": t - 1, "exp": t + 300,
            "jti": uuid::Uuid::new_v4().to_string(), "cnf": {"jkt": self.jkt},
        });
        edit(&mut c);
        as_key.sign("at+jwt", &c, false)
    }
}

/// One printed row; `ok` when the answer was the expected one.
struct Rows {
    out: String,
    n: usize,
    failures: usize,
}

impl Rows {
    fn new(first: usize, title: &str) -> Self {
        let mut out = String::new();
        let _ = writeln!(out, "\n{title}");
        Self {
            out,
            n: first,
            failures: 0,
        }
    }

    fn row(&mut self, label: &str, got: (u16, String), expect: &str, note: &str) {
        let (status, reason) = got;
        let result = if reason == "-" { "allow" } else { "deny" };
        let seen = if reason == "-" {
            "allow"
        } else {
            reason.as_str()
        };
        let ok = seen == expect;
        self.failures += usize::from(!ok);
        let _ = writeln!(
            self.out,
            "{:<3} {:<34} {:<6} {:<6} {:<26} {}{}",
            self.n,
            label,
            status,
            result,
            reason,
            if ok { "ok" } else { "UNEXPECTED" },
            note
        );
        self.n += 1;
    }

    fn finish(self) -> Result<String, String> {
        if self.failures > 0 {
            return Err(format!(
                "{}\n{} revocation step(s) did not get the expected answer",
                self.out, self.failures
            ));
        }
        Ok(self.out)
    }
}

fn lag(d: Duration) -> String {
    format!(
        "  (refused {:.1} ms after the revocation was sent)",
        d.as_secs_f64() * 1e3
    )
}

/// Polls another replica until a call is refused (the fan-out takes a few milliseconds); gives
/// up after 2 s, answering the last reply.
async fn next_refused(
    c: &HttpClient,
    uri: &str,
    headers: impl Fn() -> Result<Vec<(&'static str, String)>, String>,
) -> Result<(u16, String), String> {
    let t = Instant::now();
    loop {
        let got = call(c, Method::GET, uri.to_owned(), &headers()?, None).await?;
        if got.0 != 200 || t.elapsed() > Duration::from_secs(2) {
            return Ok(got);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The single-replica tour: consent withdrawal (admin API) and CAEP session revocation (SSF).
pub async fn run(
    t: &Target<'_>,
    as_key: &SigningKey,
    transmitter: &SigningKey,
    first: usize,
) -> Result<String, String> {
    let c = client();
    let tpp = Tpp::new()?;
    let mut rows = Rows::new(first, "Revocation (each takes effect on the next request):");
    let admin_auth = ("authorization", format!("Bearer {}", t.admin_token));

    // 1. A consent the customer withdraws; the consent service calls the admin API.
    let token = tpp.token(as_key, "accounts", |c| {
        c["openbanking_intent_id"] = json!(consents::WITHDRAWN);
    })?;
    let uri = format!("http://{}{BALANCES}", t.proxy);
    let before = call(
        &c,
        Method::GET,
        uri.clone(),
        &tpp.headers(&token, BALANCES)?,
        None,
    )
    .await?;
    rows.row("read under a live consent", before, "allow", "");
    let sent = Instant::now();
    let body = json!({"kind": "consent", "value": consents::WITHDRAWN}).to_string();
    let (status, _) = call(
        &c,
        Method::POST,
        format!("http://{}/revocations", t.admin),
        std::slice::from_ref(&admin_auth),
        Some(("application/json", body)),
    )
    .await?;
    if status != 202 {
        return Err(format!("POST /revocations answered {status}"));
    }
    // Applied before the 202: the very next request is refused, no polling.
    let after = call(&c, Method::GET, uri, &tpp.headers(&token, BALANCES)?, None).await?;
    rows.row(
        "consent withdrawn (admin API)",
        after,
        "consent_revoked",
        &lag(sent.elapsed()),
    );

    // 2. The issuer side ends the customer's session and says so with a CAEP SET.
    let token = tpp.token(as_key, "payments", |c| c["sub"] = json!("psu-caep"))?;
    let uri = format!("http://{}{PAYMENT}", t.proxy);
    let before = call(
        &c,
        Method::GET,
        uri.clone(),
        &tpp.headers(&token, PAYMENT)?,
        None,
    )
    .await?;
    rows.row("payment status, live session", before, "allow", "");
    let at = now();
    let set = transmitter.sign(
        "secevent+jwt",
        &json!({
            "iss": ISSUER, "aud": SSF_AUDIENCE, "iat": at, "jti": uuid::Uuid::new_v4().to_string(),
            "events": {CAEP_SESSION_REVOKED: {
                "subject": {"format": "iss_sub", "iss": ISSUER, "sub": "psu-caep"},
                "event_timestamp": at,
            }},
        }),
        false,
    )?;
    let sent = Instant::now();
    let (status, _) = call(
        &c,
        Method::POST,
        format!("http://{}/ssf/events", t.admin),
        std::slice::from_ref(&admin_auth),
        Some(("application/secevent+jwt", set)),
    )
    .await?;
    if status != 202 {
        return Err(format!("POST /ssf/events answered {status}"));
    }
    let after = call(&c, Method::GET, uri, &tpp.headers(&token, PAYMENT)?, None).await?;
    rows.row(
        "session revoked (CAEP SET)",
        after,
        "token_revoked",
        &lag(sent.elapsed()),
    );
    rows.finish()
}

/// The configuration of one replica on `redis_url`; files resolve against the demo directory.
pub fn replica_config(
    name: &str,
    upstream: SocketAddr,
    jwks: SocketAddr,
    consents: SocketAddr,
    redis_url: &str,
    prefix: &str,
    audit: &str,
) -> String {
    format!(
        "\
listen:
  address: 127.0.0.1:0
  public_url: {AUDIENCE}
upstream:
  url: http://{upstream}
admin:
  address: 127.0.0.1:0
  token_file: admin.token
issuers:
  - issuer: {ISSUER}
    jwks_uri: http://{jwks}/jwks
    audiences: [{AUDIENCE}]
    max_token_lifetime: 10m
consent:
  url: http://{consents}/consents/{{id}}
state:
  backend: redis
  redis_url: {redis_url}
  on_unavailable: deny
  key_prefix: {prefix}
{signed}audit:
  sink: file
  path: {audit}
policies: [policies/]
# replica {name}
",
        // The replicas load the same policies, the signed-payment route's included.
        signed = super::signed::config_sections("tpp-1.jwks.json"),
    )
}

/// Two replicas on one Redis: a proof used at A is a replay at B; a revocation posted to A is
/// refused at B.
pub async fn replicas(
    a: &Target<'_>,
    b: &Target<'_>,
    as_key: &SigningKey,
    first: usize,
    redis_url_shown: &str,
) -> Result<String, String> {
    let c = client();
    let tpp = Tpp::new()?;
    let mut rows = Rows::new(
        first,
        &format!("Two replicas sharing Redis ({redis_url_shown}):"),
    );
    let token = tpp.token(as_key, "payments", |_| {})?;
    let proof = tpp.headers(&token, PAYMENT)?;
    let at_a = call(
        &c,
        Method::GET,
        format!("http://{}{PAYMENT}", a.proxy),
        &proof,
        None,
    )
    .await?;
    rows.row("proof used at replica A", at_a, "allow", "");
    let at_b = call(
        &c,
        Method::GET,
        format!("http://{}{PAYMENT}", b.proxy),
        &proof,
        None,
    )
    .await?;
    rows.row(
        "same proof replayed at replica B",
        at_b,
        "dpop_proof_replayed",
        "",
    );

    let jti = crate::token::jws::split(&token, 16 * 1024)
        .and_then(|(_, p, _)| {
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, p).ok()
        })
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
        .and_then(|v| v["jti"].as_str().map(str::to_owned))
        .ok_or("demo token without jti")?;
    let sent = Instant::now();
    let (status, _) = call(
        &c,
        Method::POST,
        format!("http://{}/revocations", a.admin),
        &[("authorization", format!("Bearer {}", a.admin_token))],
        Some((
            "application/json",
            json!({"kind": "jti", "value": jti}).to_string(),
        )),
    )
    .await?;
    if status != 202 {
        return Err(format!("POST /revocations at replica A answered {status}"));
    }
    let uri = format!("http://{}{PAYMENT}", b.proxy);
    let after = next_refused(&c, &uri, || tpp.headers(&token, PAYMENT)).await?;
    rows.row(
        "token revoked at A, used at B",
        after,
        "token_revoked",
        &lag(sent.elapsed()),
    );
    rows.finish()
}

/// The transmitter's public keys, for `revocation.ssf.jwks_file`.
pub fn write_jwks(path: &Path, transmitter: &SigningKey) -> std::io::Result<()> {
    std::fs::write(path, json!({"keys": [transmitter.jwk]}).to_string())
}

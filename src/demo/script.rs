//! The demo's scripted client: mints tokens, sends requests through the proxy, prints a table.

use std::fmt::Write as _;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::consents;
use super::issuer::{AUDIENCE, ISSUER, SigningKey};

/// The RFC 8705 Appendix A example client certificate.
const TPP_CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBBjCBrAIBAjAKBggqhkjOPQQDAjAPMQ0wCwYDVQQDDARtdGxzMB4XDTE4MTAx
ODEyMzcwOVoXDTIyMDUwMjEyMzcwOVowDzENMAsGA1UEAwwEbXRsczBZMBMGByqG
SM49AgEGCCqGSM49AwEHA0IABNcnyxwqV6hY8QnhxxzFQ03C7HKW9OylMbnQZjjJ
/Au08/coZwxS7LfA4vOLS9WuneIXhbGGWvsDSb0tH6IxLm8wCgYIKoZIzj0EAwID
SQAwRgIhAP0RC1E+vwJD/D1AGHGzuri+hlV/PpQEKTWUVeORWz83AiEA5x2eXZOV
bUlJSGQgjwD5vaUaKlLR50Q2DmFfQj1L+SY=
-----END CERTIFICATE-----
";

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

const PAYMENT_10: &str = r#"{"Data":{"Initiation":{"InstructedAmount":{"Amount":"10.00","Currency":"GBP"},"CreditorAccount":{"SchemeName":"UK.OBIE.IBAN","Identification":"GB29NWBK60161331926819"}}}}"#;
const PAYMENT_1000: &str = r#"{"Data":{"Initiation":{"InstructedAmount":{"Amount":"1000.00","Currency":"GBP"},"CreditorAccount":{"SchemeName":"UK.OBIE.IBAN","Identification":"GB29NWBK60161331926819"}}}}"#;

const ACCOUNTS: &str = "/open-banking/v4.0/aisp/accounts";
const PAYMENTS: &str = "/open-banking/v4.0/pisp/domestic-payments";

/// One scripted request and what a correct proxy must answer.
struct Step {
    label: &'static str,
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<&'static str>,
    expect: &'static str,
}

fn now() -> i64 {
    crate::clock::Clock::system().now_unix()
}

/// Claims for an access token; `edit` adjusts the defaults.
fn claims(scope: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let t = now();
    let mut c = json!({
        "iss": ISSUER, "sub": "psu-9", "aud": AUDIENCE, "client_id": "tpp-1",
        "scope": scope, "iat": t, "exp": t + 300,
        "jti": uuid::Uuid::new_v4().to_string(),
        // UK Open Banking: the consent (account-access intent) behind the token.
        "openbanking_intent_id": consents::AUTHORISED,
        // RFC 9396: the payment the customer approved.
        "authorization_details": [{
            "type": "payment_initiation",
            "instructedAmount": {"amount": "10.00", "currency": "GBP"},
            "creditorAccount": {"iban": "GB29NWBK60161331926819"},
        }],
    });
    edit(&mut c);
    c
}

fn token(key: &SigningKey, c: &Value) -> Result<String, String> {
    key.sign("at+jwt", c, false)
}

/// A TPP's DPoP key: the RFC 7638 thumbprint goes in the token's `cnf.jkt`.
struct DpopClient {
    key: SigningKey,
    jkt: String,
}

impl DpopClient {
    fn new() -> Result<Self, String> {
        let key = SigningKey::generate("dpop")?;
        let mut public = key.jwk.as_object().cloned().unwrap_or_default();
        public.retain(|k, _| matches!(k.as_str(), "kty" | "crv" | "x" | "y"));
        let jkt = crate::jwk::thumbprint(&public).map_err(|e| format!("{e:?}"))?;
        Ok(Self { key, jkt })
    }

    /// An RFC 9449 proof for `method` `path` at the public origin, bound to `token`.
    fn proof(&self, method: &str, path: &str, token: &str) -> Result<String, String> {
        let claims = json!({
            "jti": uuid::Uuid::new_v4().to_string(), "htm": method,
            "htu": format!("{AUDIENCE}{path}"), "iat": now(), "ath": crate::dpop::ath(token),
        });
        self.key.sign("dpop+jwt", &claims, true)
    }
}

fn steps(as_key: &SigningKey) -> Result<Vec<Step>, String> {
    let forger = SigningKey::generate("demo-as-1")?;
    let tpp = DpopClient::new()?;
    let thief = DpopClient::new()?;
    let bound = |scope: &str| {
        token(
            as_key,
            &claims(scope, |c| c["cnf"] = json!({"jkt": tpp.jkt})),
        )
    };
    let acc_token = bound("accounts")?;
    let pay_token = bound("payments")?;
    let with_intent = |intent: &'static str| {
        token(
            as_key,
            &claims("accounts", |c| {
                c["cnf"] = json!({"jkt": tpp.jkt});
                c["openbanking_intent_id"] = json!(intent);
            }),
        )
    };
    let revoked = with_intent(consents::REVOKED)?;
    let expired_consent = with_intent(consents::EXPIRED)?;
    let acc9 = format!("{ACCOUNTS}/acc-9/balances");
    let dpop = |t: &str,
                method: &str,
                path: &str,
                who: &DpopClient|
     -> Result<Vec<(&'static str, String)>, String> {
        Ok(vec![
            ("authorization", format!("DPoP {t}")),
            ("dpop", who.proof(method, path, t)?),
        ])
    };
    let (xfcc, cert_token) = cert_bound(as_key, 300)?;
    let with_cert = vec![
        ("authorization", format!("Bearer {cert_token}")),
        ("x-forwarded-client-cert", xfcc.clone()),
    ];
    let acc1 = format!("{ACCOUNTS}/acc-1/balances");
    let replayed = dpop(&acc_token, "GET", &acc1, &tpp)?;
    let bearer = |t: &str| vec![("authorization", format!("Bearer {t}"))];
    let unbound = token(as_key, &claims("accounts", |_| {}))?;
    let expired = token(
        as_key,
        &claims("accounts", |c| {
            c["iat"] = json!(now() - 900);
            c["exp"] = json!(now() - 600);
        }),
    )?;
    let wrong_aud = token(
        as_key,
        &claims("accounts", |c| c["aud"] = json!("https://other.example")),
    )?;
    let forged = token(&forger, &claims("accounts", |_| {}))?;
    let step = |label, method, path: &str, headers, expect| Step {
        label,
        method,
        path: path.to_owned(),
        headers,
        body: None,
        expect,
    };
    Ok(vec![
        step(
            "public health probe",
            Method::GET,
            "/health",
            vec![],
            "allow",
        ),
        step(
            "consent-covered read, DPoP",
            Method::GET,
            &acc1,
            replayed.clone(),
            "allow",
        ),
        step(
            "same proof replayed",
            Method::GET,
            &acc1,
            replayed,
            "dpop_proof_replayed",
        ),
        step(
            "stolen token, thief's key",
            Method::GET,
            ACCOUNTS,
            dpop(&acc_token, "GET", ACCOUNTS, &thief)?,
            "dpop_key_mismatch",
        ),
        step(
            "DPoP-bound token sent as Bearer",
            Method::GET,
            ACCOUNTS,
            bearer(&acc_token),
            "binding_scheme_mismatch",
        ),
        step(
            "proof for another URL",
            Method::GET,
            ACCOUNTS,
            dpop(&acc_token, "GET", "/elsewhere", &tpp)?,
            "dpop_htu_mismatch",
        ),
        step(
            "accounts token on payments",
            Method::GET,
            &format!("{PAYMENTS}/pay-1"),
            dpop(&acc_token, "GET", &format!("{PAYMENTS}/pay-1"), &tpp)?,
            "scope_insufficient",
        ),
        Step {
            body: Some(PAYMENT_10),
            ..step(
                "payment within the approved RAR",
                Method::POST,
                PAYMENTS,
                dpop(&pay_token, "POST", PAYMENTS, &tpp)?,
                "allow",
            )
        },
        Step {
            body: Some(PAYMENT_1000),
            ..step(
                "payment over the approved amount",
                Method::POST,
                PAYMENTS,
                dpop(&pay_token, "POST", PAYMENTS, &tpp)?,
                "consent_body_mismatch",
            )
        },
        step(
            "account outside the consent",
            Method::GET,
            &acc9,
            dpop(&acc_token, "GET", &acc9, &tpp)?,
            "consent_resource_mismatch",
        ),
        step(
            "revoked consent",
            Method::GET,
            &acc1,
            dpop(&revoked, "GET", &acc1, &tpp)?,
            "consent_revoked",
        ),
        step(
            "expired consent",
            Method::GET,
            &acc1,
            dpop(&expired_consent, "GET", &acc1, &tpp)?,
            "consent_expired",
        ),
        step(
            "certificate-bound token (mTLS)",
            Method::GET,
            ACCOUNTS,
            with_cert,
            "allow",
        ),
        step(
            "same token, no certificate",
            Method::GET,
            ACCOUNTS,
            bearer(&cert_token),
            "mtls_certificate_missing",
        ),
        step("no token", Method::GET, ACCOUNTS, vec![], "token_missing"),
        step(
            "unbound bearer token",
            Method::GET,
            ACCOUNTS,
            bearer(&unbound),
            "binding_missing",
        ),
        step(
            "expired token",
            Method::GET,
            ACCOUNTS,
            bearer(&expired),
            "token_expired",
        ),
        step(
            "wrong audience",
            Method::GET,
            ACCOUNTS,
            bearer(&wrong_aud),
            "token_audience_mismatch",
        ),
        step(
            "token signed by another key",
            Method::GET,
            ACCOUNTS,
            bearer(&forged),
            "token_signature_invalid",
        ),
        step(
            "unknown route",
            Method::GET,
            "/admin/users",
            bearer(&unbound),
            "route_not_found",
        ),
        step(
            "token in the query string",
            Method::GET,
            &format!("{ACCOUNTS}?access_token={unbound}"),
            vec![],
            "request_malformed",
        ),
        step(
            "encoded dot-dot path",
            Method::GET,
            &format!("{ACCOUNTS}/%2e%2e/x"),
            bearer(&unbound),
            "request_malformed",
        ),
        step(
            "two Authorization headers",
            Method::GET,
            ACCOUNTS,
            {
                let mut h = bearer(&unbound);
                h.extend(bearer(&unbound));
                h
            },
            "request_malformed",
        ),
    ])
}

/// Runs the script; the table on success, an error if any step got an unexpected answer.
pub async fn run(proxy: SocketAddr, as_key: &SigningKey) -> Result<String, String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<3} {:<34} {:<6} {:<6} {:<26} check",
        "#", "request", "status", "result", "reason"
    );
    let mut failures = 0;
    for (i, s) in steps(as_key)?.into_iter().enumerate() {
        let mut req = Request::builder()
            .method(s.method.clone())
            .uri(format!("http://{proxy}{}", s.path));
        for (k, v) in &s.headers {
            req = req.header(*k, v.as_str());
        }
        if s.body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from_static(
                s.body.unwrap_or("").as_bytes(),
            )))
            .map_err(|e| e.to_string())?;
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("{}: {e}", s.label))?;
        let status = resp.status().as_u16();
        let headers: HeaderMap = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let reason = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_owned));
        let (result, reason) = match reason {
            Some(r) => ("deny", r),
            None => ("allow", "-".to_owned()),
        };
        let got = if result == "allow" {
            "allow"
        } else {
            reason.as_str()
        };
        let ok = got == s.expect && headers.contains_key("x-fapi-interaction-id");
        if !ok {
            failures += 1;
        }
        let _ = writeln!(
            out,
            "{:<3} {:<34} {:<6} {:<6} {:<26} {}",
            i + 1,
            s.label,
            status,
            result,
            reason,
            if ok { "ok" } else { "UNEXPECTED" }
        );
    }
    if failures > 0 {
        return Err(format!(
            "{out}\n{failures} step(s) did not get the expected answer"
        ));
    }
    Ok(out)
}

/// A TPP certificate as an ingress that terminated mTLS forwards it (Envoy XFCC), and an
/// accounts token bound to it (RFC 8705 `cnf.x5t#S256`) living `ttl` seconds.
fn cert_bound(as_key: &SigningKey, ttl: i64) -> Result<(String, String), String> {
    let xfcc = format!("By=spiffe://ingress;Cert=\"{}\"", urlencode(TPP_CERT_PEM));
    let cert = crate::mtls::parse_forwarded(&xfcc, crate::mtls::ForwardedFormat::Xfcc)
        .map_err(|e| format!("{e:?}"))?;
    let x5t = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, cert);
    let t = token(
        as_key,
        &claims("accounts", |c| {
            c["cnf"] = json!({"x5t#S256": x5t});
            c["exp"] = json!(now() + ttl);
        }),
    )?;
    Ok((xfcc, t))
}

/// Writes the token and the forwarded client certificate to files in `dir` so the printed
/// `curl` lines stay short (`$(cat ...)`), and prints them with the metrics scrape.
pub fn print_serve_help(
    dir: &std::path::Path,
    proxy: SocketAddr,
    admin: Option<SocketAddr>,
    as_key: &SigningKey,
) -> Result<(), String> {
    let (xfcc, t) = cert_bound(as_key, 590)?;
    let token_file = dir.join("token");
    let cert_file = dir.join("client-cert");
    for (path, value) in [(&token_file, &t), (&cert_file, &xfcc)] {
        std::fs::write(path, value).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let (tf, cf) = (token_file.display(), cert_file.display());
    println!();
    println!("The demo keeps running (Ctrl-C to stop). Try (the token lives 10 minutes):");
    println!("  T=$(cat {tf}); C=$(cat {cf})");
    println!("  curl -i http://{proxy}/health");
    println!(
        "  curl -i -H \"Authorization: Bearer $T\" -H \"x-forwarded-client-cert: $C\" http://{proxy}{ACCOUNTS}"
    );
    println!(
        "  curl -i -H \"Authorization: Bearer $T\" http://{proxy}{ACCOUNTS}    # no certificate: denied"
    );
    if let Some(admin) = admin {
        println!("Metrics (admin listener, loopback only):");
        println!("  curl -s http://{admin}/metrics | grep '^fapi_guard_'");
    }
    Ok(())
}

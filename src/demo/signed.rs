//! The demo's signed payments (RFC 9421, FAPI 2.0 Message Signing): the TPP signs its payment
//! request, the sidecar verifies it and signs the bank's answer; a payment whose amount is
//! changed after signing is refused, and so is an unsigned one.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::issuer::{AUDIENCE, ISSUER, SigningKey};
use crate::proxy::Guard;
use crate::signature::fields::Params;
use crate::signature::sign::{SignError, produce};
use crate::signature::{
    self, Algorithm, Component, Message, REQUEST_TAG, RESPONSE_TAG, RequestParts, ResponseParts,
    digest,
};

/// The v4.1 payments API requires signed requests and signs its answers.
pub const PATH: &str = "/open-banking/v4.1/pisp/domestic-payments";
const CLIENT_KID: &str = "tpp-1-signing";
const PAYMENT: &str = r#"{"Data":{"Initiation":{"InstructedAmount":{"Amount":"10.00","Currency":"GBP"},"CreditorAccount":{"SchemeName":"UK.OBIE.IBAN","Identification":"GB29NWBK60161331926819"}}}}"#;

/// The demo-only policy for the signed route, written beside the shipped ones.
pub const POLICY: &str = "\
# Demo only: version 4.1 of the payments API requires RFC 9421 request signatures (FAPI 2.0
# Message Signing) and has its answers signed by the sidecar.
api: payments-signed
audience: https://api.bank.example
defaults:
  binding: dpop
  scopes: [payments]
routes:
  - name: create-signed-payment
    method: POST
    path: /open-banking/v4.1/pisp/domestic-payments
    signatures: {request: required, response: sign}
";

/// The TPP's request signing key (registered with the bank as `clients:` → tpp-1).
pub struct TppSigner {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl TppSigner {
    pub fn generate() -> Result<Self, String> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| "key generation failed")?;
        Ok(Self {
            pair,
            rng: SystemRandom::new(),
        })
    }

    /// The registered JWKS of tpp-1.
    pub fn jwks(&self) -> Value {
        let p = self.pair.public_key().as_ref();
        json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": CLIENT_KID, "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..65])}]})
    }

    /// Adds `Content-Digest`, `Signature-Input` and `Signature` for a request to `PATH`.
    fn sign(&self, h: &mut HeaderMap, body: &[u8]) -> Result<(), String> {
        let digest =
            HeaderValue::from_str(&digest::sha256_field(body)).map_err(|e| e.to_string())?;
        h.insert(digest::HEADER, digest);
        let names = [
            "@method",
            "@target-uri",
            "authorization",
            "dpop",
            "content-digest",
        ];
        let components: Vec<Component> = names.iter().map(|n| Component::new(n)).collect();
        let params = Params {
            created: Some(crate::clock::Clock::system().now_unix()),
            keyid: Some(CLIENT_KID.into()),
            alg: Some(Algorithm::EcdsaP256Sha256.as_str().into()),
            tag: Some(REQUEST_TAG.into()),
            ..Params::default()
        };
        let authority = AUDIENCE.trim_start_matches("https://");
        let req = RequestParts {
            method: "POST",
            scheme: "https",
            authority,
            path: PATH,
            query: None,
            headers: h,
        };
        let p = produce(
            "sig1",
            Message::Request(req),
            &components,
            &params,
            Algorithm::EcdsaP256Sha256,
            |b| {
                self.pair
                    .sign(&self.rng, b)
                    .map(|s| s.as_ref().to_vec())
                    .map_err(|_| SignError::Crypto)
            },
        )
        .map_err(|e| e.to_string())?;
        for (name, v) in [("signature-input", p.input), ("signature", p.signature)] {
            h.insert(name, HeaderValue::from_str(&v).map_err(|e| e.to_string())?);
        }
        Ok(())
    }
}

/// The `clients:` and `signatures:` configuration sections of the demo.
pub fn config_sections(jwks_file: &str) -> String {
    format!(
        "clients:                           # TPPs whose request signatures are verified\n  - client_id: tpp-1\n    jwks_file: {jwks_file}\nsignatures:\n  max_age: 60s\n  response_key_id: demo-response-1\n"
    )
}

/// Writes the signed-route policy and tpp-1's JWKS into the demo directory.
pub fn write_files(dir: &Path, tpp: &TppSigner) -> std::io::Result<()> {
    std::fs::write(dir.join("policies").join("payments-signed.yaml"), POLICY)?;
    std::fs::write(dir.join("tpp-1.jwks.json"), tpp.jwks().to_string())
}

/// Runs the three signed steps; the printed section, or an error when one step got another
/// answer than expected.
pub async fn run(
    proxy: SocketAddr,
    as_key: &SigningKey,
    tpp: &TppSigner,
    guard: &Guard,
) -> Result<String, String> {
    let dpop = SigningKey::generate("tpp-dpop")?;
    let mut public = dpop.jwk.as_object().cloned().unwrap_or_default();
    public.retain(|k, _| matches!(k.as_str(), "kty" | "crv" | "x" | "y"));
    let jkt = crate::jwk::thumbprint(&public).map_err(|e| e.to_string())?;
    let now = crate::clock::Clock::system().now_unix();
    let token = as_key.sign(
        "at+jwt",
        &json!({"iss": ISSUER, "sub": "psu-9", "aud": AUDIENCE, "client_id": "tpp-1",
            "scope": "payments", "iat": now, "exp": now + 300, "jti": uuid::Uuid::new_v4().to_string(),
            "cnf": {"jkt": jkt}}),
        false,
    )?;
    let proof = || {
        dpop.sign(
            "dpop+jwt",
            &json!({"jti": uuid::Uuid::new_v4().to_string(), "htm": "POST",
                "htu": format!("{AUDIENCE}{PATH}"), "iat": now, "ath": crate::dpop::ath(&token)}),
            true,
        )
    };
    let headers = |proof: String| -> Result<HeaderMap, String> {
        let mut h = HeaderMap::new();
        let v = |s: &str| HeaderValue::from_str(s).map_err(|e| e.to_string());
        h.insert("authorization", v(&format!("DPoP {token}"))?);
        h.insert("dpop", v(&proof)?);
        h.insert("content-type", v("application/json")?);
        Ok(h)
    };
    let mut signed = headers(proof()?)?;
    tpp.sign(&mut signed, PAYMENT.as_bytes())?;
    let mut tampered = headers(proof()?)?;
    tpp.sign(&mut tampered, PAYMENT.as_bytes())?;
    let unsigned = headers(proof()?)?;
    let changed = PAYMENT.replace("10.00", "9000.00");
    let steps: [(&str, HeaderMap, &str, &str); 3] = [
        ("signed payment", signed, PAYMENT, "allow"),
        (
            "amount changed after signing",
            tampered,
            &changed,
            "content_digest_mismatch",
        ),
        ("unsigned payment", unsigned, PAYMENT, "signature_missing"),
    ];
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nSigned payments (RFC 9421, FAPI 2.0 Message Signing) on POST {PATH}:"
    );
    let mut failures = 0;
    for (i, (label, h, body, expect)) in steps.into_iter().enumerate() {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{proxy}{PATH}"));
        if let Some(hs) = req.headers_mut() {
            hs.extend(h);
        }
        let req = req
            .body(Full::new(Bytes::from(body.to_owned())))
            .map_err(|e| e.to_string())?;
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("{label}: {e}"))?;
        let status = resp.status().as_u16();
        let rh = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let reason = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_owned));
        let got = reason.clone().unwrap_or_else(|| "allow".into());
        let ok = got == expect;
        failures += usize::from(!ok);
        let _ = writeln!(
            out,
            "{:<3} {:<34} {:<6} {:<26} {}",
            i + 1,
            label,
            status,
            got,
            if ok { "ok" } else { "UNEXPECTED" }
        );
        if reason.is_none() {
            match verify_response(guard, status, &rh, &bytes) {
                Ok(line) => {
                    let _ = writeln!(out, "    {line}");
                }
                Err(e) => {
                    failures += 1;
                    let _ = writeln!(out, "    response signature NOT verified: {e}");
                }
            }
        }
    }
    if failures > 0 {
        return Err(format!(
            "{out}\n{failures} signed step(s) did not get the expected answer"
        ));
    }
    Ok(out)
}

/// Verifies the sidecar's response signature as the TPP would: with the key from admin
/// `/jwks`, over the response and the request it answers.
fn verify_response(
    guard: &Guard,
    status: u16,
    h: &HeaderMap,
    body: &[u8],
) -> Result<String, String> {
    let kid = guard.response_key_id().ok_or("no response key")?;
    let jwks = guard.public_jwks().ok_or("no /jwks")?;
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|k| k.iter().find(|k| k["kid"] == kid))
        .and_then(Value::as_object)
        .ok_or("response key not published")?;
    let key = crate::jwk::PublicJwk::from_json(jwk).map_err(|e| e.to_string())?;
    let sel = signature::fields::select(h, RESPONSE_TAG)
        .map_err(|e| e.to_string())?
        .ok_or("no fapi-2-response signature")?;
    let empty = HeaderMap::new();
    let request = RequestParts {
        method: "POST",
        scheme: "https",
        authority: AUDIENCE.trim_start_matches("https://"),
        path: PATH,
        query: None,
        headers: &empty,
    };
    let msg = Message::Response(ResponseParts {
        status,
        headers: h,
        request: Some(request),
    });
    let base = signature::base::signature_base(msg, &sel.input.components, &sel.input.serialized)
        .map_err(|e| e.to_string())?;
    if !key.verify(
        Algorithm::EcdsaP256Sha256.jws(),
        base.as_bytes(),
        &sel.value,
    ) {
        return Err("signature does not verify".into());
    }
    digest::verify(h, body).map_err(|e| e.to_string())?;
    let covers: Vec<String> = sel
        .input
        .components
        .iter()
        .map(Component::audit_name)
        .collect();
    Ok(format!(
        "response signature verified: keyid={kid}, Content-Digest matches, covers {}",
        covers.join(" ")
    ))
}

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::*;
use crate::delegation::{self, HopScopes};
use crate::demo::SigningKey;
use crate::http_client::HttpsClient;
use crate::metrics::Metrics;
use crate::reason::DenyReason;
use crate::token::TokenFailure;

const NOW: i64 = 1_800_000_000;
const TRUST_DOMAIN: &str = "bank.internal";

fn mint_settings(issuer: &str, audience: &str) -> MintSettings {
    MintSettings {
        issuer: issuer.into(),
        audience: audience.into(),
        lifetime: MAX_LIFETIME,
        signing_key: None,
    }
}

fn chain() -> delegation::Chain {
    let act = json!({"sub": "spiffe://bank.example/ns/aggregators/sa/agg", "client_id": "agg-1",
        "scope": "accounts payments", "act": {"sub": "spiffe://bank.example/ns/fraud/sa/x"}});
    delegation::parse(Some(&act)).expect("chain")
}

fn context<'a>(chain: &'a delegation::Chain, scopes: &'a [Box<str>]) -> TxnContext<'a> {
    TxnContext {
        sub: "psu-9",
        scopes,
        req_wl: "tpp-1",
        chain,
        purpose: Some("payment-initiation"),
        consent_id: Some("c-123"),
        rctx: RequestContext {
            req_ip: "203.0.113.7".parse().expect("ip"),
            method: "POST",
            route: "create-payment",
        },
    }
}

/// A verifier trusting `issuer` with the keys in `jwks`, written to a temp file.
fn verifier(dir: &Path, issuer: &str, jwks: &Value) -> TxnTokenVerifier {
    let path = dir.join("txn.jwks.json");
    std::fs::write(&path, jwks.to_string()).expect("write jwks");
    let accept = TxnTokenConfig {
        enabled: false,
        signing_key_file: None,
        audience: None,
        lifetime: crate::duration::HumanDuration(MAX_LIFETIME),
        issuer: "unused".into(),
        accept: Some(config::AcceptConfig {
            issuer: issuer.into(),
            jwks_uri: None,
            jwks_file: Some(path),
            allow_insecure_http: false,
            audience: TRUST_DOMAIN.into(),
            clock_skew: crate::duration::HumanDuration(std::time::Duration::from_secs(10)),
        }),
    }
    .compile(dir)
    .expect("accept settings")
    .accept
    .expect("accept");
    TxnTokenVerifier::new(
        &accept,
        HttpsClient::new().expect("http client"),
        Arc::new(Metrics::new()),
    )
}

fn deny(r: DenyReason) -> Result<(), TokenFailure> {
    Err(TokenFailure::Deny(r))
}

#[tokio::test]
async fn mint_then_verify_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = TxnTokenIssuer::new(&mint_settings("fapi-guard", TRUST_DOMAIN)).expect("issuer");
    let chain = chain();
    let scopes: Vec<Box<str>> = vec!["payments".into(), "accounts".into()];
    let (jwt, txn) = issuer.mint(&context(&chain, &scopes), NOW).expect("mint");

    // The header is what the draft asks for, and the key id is the RFC 7638 thumbprint.
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').next().unwrap_or(""))
            .expect("b64"),
    )
    .expect("json");
    assert_eq!(
        header,
        json!({"alg": "ES256", "typ": "txntoken+jwt", "kid": issuer.kid()})
    );
    let jwks = issuer.jwks();
    let key = jwks["keys"][0].as_object().cloned().unwrap_or_default();
    assert_eq!(
        crate::jwk::thumbprint(&key).ok().as_deref(),
        Some(issuer.kid())
    );
    assert!(
        !key.contains_key("d"),
        "public JWKS must not hold the private key"
    );

    let v = verifier(dir.path(), "fapi-guard", &jwks);
    let t = v.verify(&jwt, NOW + 1).await.expect("verifies");
    assert_eq!(t.txn, txn);
    assert_eq!(t.iss, "fapi-guard");
    assert_eq!(t.aud, vec![TRUST_DOMAIN.to_owned()]);
    assert_eq!((t.iat, t.exp), (NOW, NOW + 60));
    assert_eq!(t.sub, "psu-9");
    assert_eq!(t.req_wl, "tpp-1");
    assert!(t.has_scope("payments") && t.has_scope("accounts") && t.scopes.len() == 2);
    assert_eq!(t.chain, chain);
    assert_eq!(t.purpose.as_deref(), Some("payment-initiation"));
    assert_eq!(t.consent_id.as_deref(), Some("c-123"));
    let rctx = t.rctx.clone().expect("rctx");
    assert_eq!(rctx.req_ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(rctx.method.as_deref(), Some("POST"));
    assert_eq!(rctx.route.as_deref(), Some("create-payment"));
    assert_eq!(t.digest, crate::token::digest(&jwt));
    // The same route policy applies at the internal hop: the chain attenuates properly.
    assert_eq!(
        delegation::check_attenuation(&t.scopes, &t.chain.scopes),
        Ok(())
    );
    // Each mint is a new transaction.
    let (_, txn2) = issuer.mint(&context(&chain, &scopes), NOW).expect("mint");
    assert_ne!(txn, txn2);
}

#[tokio::test]
async fn refusals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let edge = TxnTokenIssuer::new(&mint_settings("fapi-guard", TRUST_DOMAIN)).expect("edge");
    // An independent signer (jsonwebtoken, demo key) whose key the verifier also trusts, to
    // craft tokens our issuer would never mint.
    let other = SigningKey::generate("k2").expect("key");
    let mut jwks = edge.jwks();
    if let Some(keys) = jwks["keys"].as_array_mut() {
        keys.push(other.jwk.clone());
    }
    let v = verifier(dir.path(), "fapi-guard", &jwks);
    let chain = chain();
    let scopes: Vec<Box<str>> = vec!["payments".into()];
    let ctx = context(&chain, &scopes);
    let (good, _) = edge.mint(&ctx, NOW).expect("mint");

    let attacker = TxnTokenIssuer::new(&mint_settings("fapi-guard", TRUST_DOMAIN)).expect("k");
    let (forged, _) = attacker.mint(&ctx, NOW).expect("mint");
    let stranger = TxnTokenIssuer::new(&mint_settings("https://other", TRUST_DOMAIN)).expect("k");
    let (untrusted, _) = stranger.mint(&ctx, NOW).expect("mint");
    // Same key, payload swapped for a wider scope: the signature no longer matches.
    let tampered = {
        let mut p: Vec<&str> = good.split('.').collect();
        let (escalated, _) = edge
            .mint(&context(&chain, &["payments".into(), "admin".into()]), NOW)
            .expect("mint");
        let payload = escalated.split('.').nth(1).unwrap_or("").to_owned();
        p[1] = &payload;
        p.join(".")
    };
    let claims = |edit: &dyn Fn(&mut Value)| {
        let mut c = json!({"iss": "fapi-guard", "aud": TRUST_DOMAIN, "iat": NOW, "exp": NOW + 60,
            "txn": "t-1", "sub": "psu-9", "scope": "payments", "req_wl": "tpp-1"});
        edit(&mut c);
        c
    };
    let signed = |typ: &str, c: Value| other.sign(typ, &c, false).expect("sign");
    let access_token = signed("at+jwt", claims(&|_| {}));
    let independent_ok = signed("txntoken+jwt", claims(&|_| {}));
    let long_lived = signed("txntoken+jwt", claims(&|c| c["exp"] = json!(NOW + 3600)));
    let future = signed("txntoken+jwt", claims(&|c| c["iat"] = json!(NOW + 30)));
    let no_txn = signed("txntoken+jwt", claims(&|c| c["txn"] = Value::Null));
    let wrong_aud = signed(
        "txntoken+jwt",
        claims(&|c| c["aud"] = json!(["other.internal"])),
    );
    let bad_act = signed("txntoken+jwt", claims(&|c| c["act"] = json!("agg")));

    let cases: &[(&str, &str, i64, Result<(), TokenFailure>)] = &[
        ("good", &good, NOW + 5, Ok(())),
        ("independently signed", &independent_ok, NOW, Ok(())),
        ("within skew after exp", &good, NOW + 69, Ok(())),
        ("expired", &good, NOW + 70, deny(DenyReason::TokenExpired)),
        (
            "forged signature",
            &forged,
            NOW,
            deny(DenyReason::TokenSignatureInvalid),
        ),
        (
            "tampered payload",
            &tampered,
            NOW,
            deny(DenyReason::TokenSignatureInvalid),
        ),
        (
            "untrusted issuer",
            &untrusted,
            NOW,
            deny(DenyReason::TokenIssuerUnknown),
        ),
        (
            "wrong aud",
            &wrong_aud,
            NOW,
            deny(DenyReason::TokenAudienceMismatch),
        ),
        (
            "access token typ",
            &access_token,
            NOW,
            deny(DenyReason::TokenTypeInvalid),
        ),
        (
            "lifetime over 60 s",
            &long_lived,
            NOW,
            deny(DenyReason::TokenLifetimeExceeded),
        ),
        (
            "iat in the future",
            &future,
            NOW,
            deny(DenyReason::TokenNotYetValid),
        ),
        (
            "txn missing",
            &no_txn,
            NOW,
            deny(DenyReason::TokenMalformed),
        ),
        (
            "act malformed",
            &bad_act,
            NOW,
            deny(DenyReason::DelegationMalformed),
        ),
        (
            "not a jwt",
            "abc.def",
            NOW,
            deny(DenyReason::TokenMalformed),
        ),
        (
            "garbage parts",
            "a.b.c",
            NOW,
            deny(DenyReason::TokenMalformed),
        ),
    ];
    for (name, token, now, want) in cases {
        let got = v.verify(token, *now).await.map(|_| ());
        assert_eq!(&got, want, "{name}");
    }
    let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(
        v.verify(&huge, NOW).await.map(|_| ()),
        deny(DenyReason::TokenMalformed)
    );
}

#[tokio::test]
async fn unknown_signature_algorithms_are_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let edge = TxnTokenIssuer::new(&mint_settings("fapi-guard", TRUST_DOMAIN)).expect("edge");
    let v = verifier(dir.path(), "fapi-guard", &edge.jwks());
    let payload = URL_SAFE_NO_PAD.encode(
        json!({"iss": "fapi-guard", "aud": TRUST_DOMAIN, "iat": NOW, "exp": NOW + 60,
            "txn": "t", "sub": "s", "req_wl": "w"})
        .to_string(),
    );
    for alg in ["none", "HS256", "RS256", "ES384"] {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "typ": "txntoken+jwt"}).to_string());
        let token = format!("{header}.{payload}.c2ln");
        assert_eq!(
            v.verify(&token, NOW).await.map(|_| ()),
            deny(DenyReason::TokenAlgorithmRejected),
            "{alg}"
        );
    }
}

#[tokio::test]
async fn missing_keys_fail_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let edge = TxnTokenIssuer::new(&mint_settings("fapi-guard", TRUST_DOMAIN)).expect("edge");
    let v = verifier(dir.path(), "fapi-guard", &edge.jwks());
    std::fs::remove_file(dir.path().join("txn.jwks.json")).expect("rm");
    let chain = delegation::Chain::default();
    let (jwt, _) = edge.mint(&context(&chain, &[]), NOW).expect("mint");
    assert_eq!(
        v.verify(&jwt, NOW).await.map(|_| ()),
        Err(TokenFailure::KeysUnavailable)
    );
    assert!(!v.has_keys());
}

#[test]
fn minted_chain_keeps_per_hop_scope() {
    let issuer = TxnTokenIssuer::new(&mint_settings("fapi-guard", TRUST_DOMAIN)).expect("issuer");
    let chain = chain();
    let (jwt, _) = issuer.mint(&context(&chain, &[]), NOW).expect("mint");
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap_or(""))
            .expect("b64"),
    )
    .expect("json");
    assert_eq!(claims["act"]["scope"], "accounts payments");
    assert_eq!(claims["act"]["client_id"], "agg-1");
    assert_eq!(
        claims["act"]["act"]["sub"],
        "spiffe://bank.example/ns/fraud/sa/x"
    );
    assert_eq!(claims["scope"], "");
    assert_eq!(claims["exp"].as_i64(), Some(NOW + 60));
    assert_eq!(
        delegation::parse(claims.get("act")).map(|c| c.scopes),
        Ok(vec![
            HopScopes {
                scope: Some(vec!["accounts".into(), "payments".into()])
            },
            HopScopes { scope: None },
        ])
    );
}

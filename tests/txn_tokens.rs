//! Provenance across hops (spec §7): an edge proxy mints a Txn-Token, an internal-hop proxy
//! verifies it and applies its own route policy, the upstream sees the verified context. The
//! edge signs with a key the test generated, so the test can also forge, expire and mis-issue
//! Txn-Tokens against the internal hop.

mod common;

use common::*;
use serde_json::{Value, json};

const TXN_AUDIENCE: &str = "bank.internal";
const EDGE: &str = "https://edge.bank.example";

const INTERNAL_POLICY: &str = "\
api: ledger
defaults:
  binding: dpop_or_mtls
  scopes: [accounts]
routes:
  - name: list-accounts
    method: GET
    path: /accounts
  - name: aggregated
    method: GET
    path: /aggregated
    delegation:
      max_depth: 1
      actors: [\"spiffe://bank.example/ns/aggregators/*\"]
    purpose: [account-information]
";

struct Hops {
    txn_key: TestKey,
    as_key: TestKey,
    echo: Echo,
    edge: Proxy,
    internal: Proxy,
    _jwks: Jwks,
}

async fn hops() -> Hops {
    hops_with(INTERNAL_POLICY).await
}

async fn hops_with(internal_policy: &str) -> Hops {
    let as_key = TestKey::new("as-1");
    let jwks = Jwks::start(vec![as_key.jwks_entry()]).await;
    let echo = Echo::start().await;
    let txn_key = TestKey::new("ignored");
    let dir = tempfile::tempdir().expect("dir");
    let mut entry = txn_key.public_jwk();
    entry["kid"] = json!(txn_key.thumbprint());
    let jwks_file = dir.path().join("edge.jwks.json");
    std::fs::write(&jwks_file, json!({"keys": [entry]}).to_string()).expect("jwks");
    let key_file = dir.path().join("txn.pem");
    std::fs::write(&key_file, txn_key.pkcs8_pem()).expect("key");

    let internal_extra = format!(
        "transaction_token:\n  accept:\n    issuer: {EDGE}\n    jwks_file: {}\n    audience: {TXN_AUDIENCE}\n",
        jwks_file.display()
    );
    let internal = Proxy::start(
        &format!("http://{}", echo.addr),
        &jwks.uri(),
        &internal_extra,
        internal_policy,
    )
    .await;
    internal.wait_ready().await;
    let edge_extra = format!(
        "transaction_token:\n  enabled: true\n  issuer: {EDGE}\n  audience: {TXN_AUDIENCE}\n  signing_key_file: {}\n",
        key_file.display()
    );
    let edge_policy = POLICY.replace("    path: /accounts\n", "    path: /accounts\n  - name: aggregated\n    method: GET\n    path: /aggregated\n    delegation: {max_depth: 1, actors: [\"spiffe://bank.example/ns/aggregators/*\"]}\n");
    let edge = Proxy::start(
        &format!("http://{}", internal.addr),
        &jwks.uri(),
        &edge_extra,
        &edge_policy,
    )
    .await;
    edge.wait_ready().await;
    std::mem::forget(dir); // the proxies read the key files at start and on refresh
    Hops {
        txn_key,
        as_key,
        echo,
        edge,
        internal,
        _jwks: jwks,
    }
}

/// A Txn-Token minted by the test with `key`, edited by `edit`.
fn txn_token(key: &TestKey, edit: impl FnOnce(&mut Value)) -> String {
    let t = now();
    let mut claims = json!({
        "iss": EDGE, "aud": TXN_AUDIENCE, "iat": t, "exp": t + 30, "txn": "txn-test-1",
        "sub": "psu-9", "req_wl": "tpp-1", "scope": "accounts",
    });
    edit(&mut claims);
    key.sign_jws(
        &json!({"alg": "ES256", "typ": "txntoken+jwt", "kid": key.thumbprint()}),
        &claims,
    )
}

#[tokio::test]
async fn the_edge_mints_the_internal_hop_verifies_the_upstream_sees_verified_context() {
    let h = hops().await;
    let auth = format!("Bearer {}", h.as_key.token(|_, _| {}));
    let forged = txn_token(&TestKey::new("x"), |_| {});
    let r = get(
        &h.edge.url("/accounts"),
        &[
            ("authorization", &auth),
            ("txn-token", &forged),
            ("x-fapi-subject", "someone-else"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = h.echo.last().expect("upstream reached through both hops");
    let minted = seen.headers["txn-token"].to_str().expect("ascii");
    assert_ne!(
        minted, forged,
        "a client-supplied Txn-Token must never pass the edge"
    );
    assert_eq!(
        seen.headers["x-fapi-subject"], "psu-9",
        "identity headers set from verified claims"
    );
    assert_eq!(seen.headers["x-fapi-client-id"], "tpp-1");

    // The minted token is a real Txn-Token: typ, aud, short lifetime, txn, sub, rctx.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = minted.split('.');
    let header: Value =
        serde_json::from_slice(&b64.decode(parts.next().expect("h")).expect("b64")).expect("json");
    let claims: Value =
        serde_json::from_slice(&b64.decode(parts.next().expect("p")).expect("b64")).expect("json");
    assert_eq!(header["typ"], "txntoken+jwt");
    assert_eq!(claims["aud"], TXN_AUDIENCE);
    assert!(claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat") <= 60);
    assert_eq!(
        (claims["sub"].as_str(), claims["req_wl"].as_str()),
        (Some("psu-9"), Some("tpp-1"))
    );
    assert_eq!(claims["rctx"]["method"], "GET");
    assert_eq!(claims["rctx"]["route"], "list-accounts");

    // Both hops' audit trails carry the same transaction id.
    let txn = claims["txn"].as_str().expect("txn").to_owned();
    let edge_records = h.edge.audit_records().await;
    let internal_records = h.internal.audit_records().await;
    let has_txn = |recs: &[Value]| {
        recs.iter()
            .any(|r| r["kind"] == "decision" && r["txn"] == txn.as_str())
    };
    assert!(has_txn(&edge_records), "edge decision carries txn");
    assert!(
        has_txn(&internal_records),
        "internal-hop decision carries txn"
    );
    assert!(
        edge_records
            .iter()
            .any(|r| r["kind"] == "txn_token_issued" && r["txn"] == txn.as_str())
    );
    let d = internal_records
        .iter()
        .find(|r| r["kind"] == "decision")
        .expect("decision");
    assert_eq!(d["token"]["binding"], "txn_token");

    // The edge publishes its Txn-Token key at admin /jwks.
    let jwks = get(
        &format!("http://{}/jwks", h.edge.admin.expect("admin")),
        &[],
    )
    .await;
    assert_eq!(jwks.body["keys"][0]["kid"], h.txn_key.thumbprint().as_str());
}

#[tokio::test]
async fn delegation_is_enforced_at_both_hops() {
    let h = hops().await;
    let agg = json!({"sub": "spiffe://bank.example/ns/aggregators/sa/agg", "client_id": "agg-1"});
    let delegated = |purpose: &str, act: Value| {
        let p = purpose.to_owned();
        h.as_key.token(move |_, c| {
            c["act"] = act;
            c["purpose"] = json!(p);
        })
    };
    let ok = format!("Bearer {}", delegated("account-information", agg.clone()));
    let r = get(&h.edge.url("/aggregated"), &[("authorization", &ok)]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = h.echo.last().expect("forwarded");
    let claims: Value = {
        use base64::Engine;
        let t = seen.headers["txn-token"].to_str().expect("ascii");
        let p = t.split('.').nth(1).expect("payload");
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .expect("b64"),
        )
        .expect("json")
    };
    assert_eq!(
        claims["act"]["sub"],
        "spiffe://bank.example/ns/aggregators/sa/agg"
    );
    assert_eq!(claims["purpose"], "account-information");
    let internal = h.internal.audit_records().await;
    let d = internal
        .iter()
        .rev()
        .find(|r| r["kind"] == "decision")
        .expect("decision");
    assert_eq!(
        d["delegation"][0]["sub"],
        "spiffe://bank.example/ns/aggregators/sa/agg"
    );
    assert_eq!(d["purpose"], "account-information");

    // The edge allows a depth-1 chain without purpose; the internal hop's purpose rule refuses it.
    let no_purpose = format!("Bearer {}", h.as_key.token(|_, c| c["act"] = agg.clone()));
    let r = get(
        &h.edge.url("/aggregated"),
        &[("authorization", &no_purpose)],
    )
    .await;
    assert_eq!((r.status, r.reason()), (403, Some("purpose_not_allowed")));

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "actor not allowed",
            json!({"sub": "spiffe://evil.example/x"}),
            "delegation_actor_not_allowed",
        ),
        (
            "too deep",
            json!({"sub": "spiffe://bank.example/ns/aggregators/a", "act": {"sub": "spiffe://bank.example/b"}}),
            "delegation_depth_exceeded",
        ),
        (
            "act as a string",
            json!("spiffe://bank.example/ns/aggregators/a"),
            "delegation_malformed",
        ),
    ];
    for (name, act, reason) in cases {
        let t = format!("Bearer {}", delegated("account-information", act));
        let r = get(&h.edge.url("/aggregated"), &[("authorization", &t)]).await;
        assert_eq!((r.status, r.reason()), (403, Some(reason)), "{name}");
    }
    // A route without a delegation section refuses any chain.
    let r = get(&h.edge.url("/accounts"), &[("authorization", &ok)]).await;
    assert_eq!(r.reason(), Some("delegation_not_allowed"));
}

#[tokio::test]
async fn the_internal_hop_refuses_forged_expired_and_untrusted_txn_tokens() {
    let h = hops().await;
    let t = now();
    let cases: Vec<(&str, String, &str)> = vec![
        ("valid", txn_token(&h.txn_key, |_| {}), "allow"),
        (
            "forged signature",
            txn_token(&TestKey::new("x"), |_| {}),
            "token_signature_invalid",
        ),
        (
            "expired",
            txn_token(&h.txn_key, |c| {
                c["iat"] = json!(t - 120);
                c["exp"] = json!(t - 90)
            }),
            "token_expired",
        ),
        (
            "untrusted issuer",
            txn_token(&h.txn_key, |c| {
                c["iss"] = json!("https://other-edge.example")
            }),
            "token_issuer_unknown",
        ),
        (
            "wrong audience",
            txn_token(&h.txn_key, |c| c["aud"] = json!("other.domain")),
            "token_audience_mismatch",
        ),
        (
            "lifetime over 60 s",
            txn_token(&h.txn_key, |c| c["exp"] = json!(t + 3600)),
            "token_lifetime_exceeded",
        ),
    ];
    let before = h.echo.count();
    for (name, token, want) in cases {
        let r = get(&h.internal.url("/accounts"), &[("txn-token", &token)]).await;
        let got = if r.status == 200 {
            "allow"
        } else {
            r.reason().unwrap_or("?")
        };
        assert_eq!(got, want, "{name}: {:?}", r.body);
    }
    assert_eq!(
        h.echo.count(),
        before + 1,
        "only the valid Txn-Token was forwarded"
    );
    // Without any credential the internal hop challenges as usual.
    assert_eq!(
        get(&h.internal.url("/accounts"), &[]).await.reason(),
        Some("token_missing")
    );
}

/// Policies name the API's audience; at the internal hop that audience
/// must not be applied to the Txn-Token (whose `aud` is the trust domain, checked against
/// `transaction_token.accept.audience`). Before the fix every Txn-Token was refused here with
/// `token_audience_mismatch`.
#[tokio::test]
async fn a_policy_audience_at_the_internal_hop_does_not_refuse_txn_tokens() {
    let policy = INTERNAL_POLICY.replace(
        "api: ledger\n",
        &format!("api: ledger\naudience: {AUDIENCE}\n"),
    );
    assert!(
        policy.contains("audience: https://"),
        "policy has a route audience"
    );
    let h = hops_with(&policy).await;
    let before = h.echo.count();

    // End to end: access token at the edge, Txn-Token at the internal hop.
    let auth = format!("Bearer {}", h.as_key.token(|_, _| {}));
    let r = get(&h.edge.url("/accounts"), &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // Directly at the internal hop: the trust domain is still enforced, and a Txn-Token that
    // carries the API's audience instead is not a Txn-Token for this domain.
    let ok = txn_token(&h.txn_key, |_| {});
    let r = get(&h.internal.url("/accounts"), &[("txn-token", &ok)]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    for (name, aud) in [
        ("other domain", "other.internal"),
        ("API audience", AUDIENCE),
    ] {
        let t = txn_token(&h.txn_key, |c| c["aud"] = json!(aud));
        let r = get(&h.internal.url("/accounts"), &[("txn-token", &t)]).await;
        assert_eq!(r.reason(), Some("token_audience_mismatch"), "{name}");
    }
    assert_eq!(
        h.echo.count(),
        before + 2,
        "only the two valid requests reached the API"
    );
    let records = h.internal.audit_records().await;
    let denied = records
        .iter()
        .filter(|r| r["kind"] == "decision" && r["reason"] == "token_audience_mismatch")
        .count();
    assert_eq!(denied, 2, "each refusal audited");
}

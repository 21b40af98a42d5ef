//! RFC 9449 through the real proxy: one test per §4.3 check, proofs minted by test code that
//! shares nothing with the verifier.

mod common;

use common::*;
use serde_json::{Value, json};

const PUBLIC: &str = "https://api.test.example";

struct World {
    key: TestKey,
    client: DpopKey,
    _jwks: Jwks,
    echo: Echo,
    proxy: Proxy,
}

async fn world(extra: &str) -> World {
    let key = TestKey::new("k1");
    let jwks = Jwks::start(vec![key.jwks_entry()]).await;
    let echo = Echo::start().await;
    let proxy = Proxy::start(&format!("http://{}", echo.addr), &jwks.uri(), extra, POLICY).await;
    proxy.wait_ready().await;
    World {
        key,
        client: DpopKey::new(),
        _jwks: jwks,
        echo,
        proxy,
    }
}

impl World {
    fn bound_token(&self) -> String {
        let jkt = self.client.jkt.clone();
        self.key.token(|_, c| c["cnf"] = json!({"jkt": jkt}))
    }

    async fn call(&self, token: &str, proofs: &[String]) -> Reply {
        let auth = format!("DPoP {token}");
        let mut h: Vec<(&str, &str)> = vec![("authorization", &auth)];
        for p in proofs {
            h.push(("dpop", p));
        }
        get(&self.proxy.url("/bound"), &h).await
    }
}

fn remove(v: &mut Value, k: &str) {
    v.as_object_mut().map(|o| o.remove(k));
}

#[tokio::test]
async fn every_proof_check_through_the_proxy() {
    let w = world("").await;
    let t = w.bound_token();
    let htu = format!("{PUBLIC}/bound");
    let n = now();
    type Edit = Box<dyn FnOnce(&mut Value, &mut Value)>;
    let cases: Vec<(&str, Edit, u16, Option<&str>)> = vec![
        ("valid", Box::new(|_, _| {}), 200, None),
        (
            "missing jti",
            Box::new(|_, c| remove(c, "jti")),
            401,
            Some("dpop_proof_invalid"),
        ),
        (
            "missing htm",
            Box::new(|_, c| remove(c, "htm")),
            401,
            Some("dpop_proof_invalid"),
        ),
        (
            "missing htu",
            Box::new(|_, c| remove(c, "htu")),
            401,
            Some("dpop_proof_invalid"),
        ),
        (
            "missing iat",
            Box::new(|_, c| remove(c, "iat")),
            401,
            Some("dpop_proof_invalid"),
        ),
        (
            "missing ath",
            Box::new(|_, c| remove(c, "ath")),
            401,
            Some("dpop_ath_mismatch"),
        ),
        (
            "wrong typ",
            Box::new(|h, _| h["typ"] = json!("jwt")),
            401,
            Some("dpop_proof_invalid"),
        ),
        (
            "alg none",
            Box::new(|h, _| h["alg"] = json!("none")),
            401,
            Some("dpop_proof_invalid"),
        ),
        (
            "RS256 not in the FAPI list",
            Box::new(|h, _| h["alg"] = json!("RS256")),
            401,
            Some("dpop_proof_invalid"),
        ),
        (
            "private key in jwk",
            Box::new(|h, _| h["jwk"]["d"] = json!("AAAA")),
            401,
            Some("dpop_proof_invalid"),
        ),
        (
            "symmetric jwk",
            Box::new(|h, _| h["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0"})),
            401,
            Some("dpop_proof_invalid"),
        ),
        (
            "no jwk",
            Box::new(|h, _| remove(h, "jwk")),
            401,
            Some("dpop_proof_invalid"),
        ),
        (
            "wrong htm",
            Box::new(|_, c| c["htm"] = json!("POST")),
            401,
            Some("dpop_htm_mismatch"),
        ),
        (
            "wrong htu",
            Box::new(|_, c| c["htu"] = json!("https://api.test.example/other")),
            401,
            Some("dpop_htu_mismatch"),
        ),
        (
            "wrong origin",
            Box::new(|_, c| c["htu"] = json!("https://evil.example/bound")),
            401,
            Some("dpop_htu_mismatch"),
        ),
        (
            "htu with query accepted",
            Box::new(|_, c| c["htu"] = json!("https://api.test.example/bound?x=1")),
            200,
            None,
        ),
        (
            "htu upper-case host accepted",
            Box::new(|_, c| c["htu"] = json!("https://API.Test.Example/bound")),
            200,
            None,
        ),
        (
            "htu with :443 accepted",
            Box::new(|_, c| c["htu"] = json!("https://api.test.example:443/bound")),
            200,
            None,
        ),
        (
            "iat 10 s in the future accepted",
            Box::new(move |_, c| c["iat"] = json!(n + 10)),
            200,
            None,
        ),
        (
            "iat 10 s in the past accepted",
            Box::new(move |_, c| c["iat"] = json!(n - 10)),
            200,
            None,
        ),
        (
            "iat an hour ago",
            Box::new(move |_, c| c["iat"] = json!(n - 3600)),
            401,
            Some("dpop_proof_stale"),
        ),
        (
            "iat an hour ahead",
            Box::new(move |_, c| c["iat"] = json!(n + 3600)),
            401,
            Some("dpop_proof_stale"),
        ),
        (
            "wrong ath",
            Box::new(|_, c| c["ath"] = json!(DpopKey::ath("another-token"))),
            401,
            Some("dpop_ath_mismatch"),
        ),
        (
            "extra claims and header params tolerated",
            Box::new(|h, c| {
                h["x-vendor"] = json!(1);
                c["extra"] = json!({"a": [1]});
            }),
            200,
            None,
        ),
    ];
    for (name, edit, status, reason) in cases {
        let p = w.client.proof("GET", &htu, &t, edit);
        let r = w.call(&t, &[p]).await;
        assert_eq!(
            (r.status, r.reason()),
            (status, reason),
            "{name}: {:?}",
            r.body
        );
        if status == 401 {
            let www = r.headers["www-authenticate"].to_str().expect("ascii");
            assert!(
                www.starts_with("DPoP error=\"invalid_dpop_proof\""),
                "{name}: {www}"
            );
            assert!(www.contains("algs=\"PS256 ES256 EdDSA\""), "{name}: {www}");
        }
    }

    // A bad signature: flip a byte of the signature.
    let mut p = w.client.proof("GET", &htu, &t, |_, _| {});
    let last = p
        .pop()
        .map(|c| if c == 'A' { 'B' } else { 'A' })
        .expect("char");
    p.push(last);
    let r = w.call(&t, &[p]).await;
    assert_eq!(r.reason(), Some("dpop_proof_invalid"), "bad signature");
}

#[tokio::test]
async fn replay_other_key_missing_and_duplicate_proofs() {
    let w = world("").await;
    let t = w.bound_token();
    let htu = format!("{PUBLIC}/bound");
    let p = w.client.proof("GET", &htu, &t, |_, _| {});
    assert_eq!(w.call(&t, std::slice::from_ref(&p)).await.status, 200);
    let r = w.call(&t, std::slice::from_ref(&p)).await;
    assert_eq!(r.reason(), Some("dpop_proof_replayed"), "replay");

    let thief = DpopKey::new();
    let r = w.call(&t, &[thief.proof("GET", &htu, &t, |_, _| {})]).await;
    assert_eq!(
        r.reason(),
        Some("dpop_key_mismatch"),
        "stolen token with another key"
    );

    let r = w.call(&t, &[]).await;
    assert_eq!(r.reason(), Some("dpop_proof_missing"), "no DPoP header");

    let two = [
        w.client.proof("GET", &htu, &t, |_, _| {}),
        w.client.proof("GET", &htu, &t, |_, _| {}),
    ];
    let r = w.call(&t, &two).await;
    assert_eq!(
        (r.status, r.reason()),
        (400, Some("request_malformed")),
        "two DPoP headers"
    );

    let bearer = format!("Bearer {t}");
    let r = get(&w.proxy.url("/bound"), &[("authorization", &bearer)]).await;
    assert_eq!(
        r.reason(),
        Some("binding_scheme_mismatch"),
        "DPoP-bound token as Bearer"
    );
    assert_eq!(w.echo.count(), 1, "only the first valid call was forwarded");
}

#[tokio::test]
async fn nonce_flow() {
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("nonce");
    std::fs::write(
        &secret,
        "0123456789abcdef0123456789abcdef-shared-by-replicas",
    )
    .expect("secret");
    let w = world(&format!(
        "dpop:\n  nonce: required\n  nonce_secret_file: {}\n",
        secret.display()
    ))
    .await;
    let t = w.bound_token();
    let htu = format!("{PUBLIC}/bound");
    let r = w
        .call(&t, &[w.client.proof("GET", &htu, &t, |_, _| {})])
        .await;
    assert_eq!((r.status, r.reason()), (401, Some("dpop_nonce_required")));
    let www = r.headers["www-authenticate"].to_str().expect("ascii");
    assert!(www.starts_with("DPoP error=\"use_dpop_nonce\""), "{www}");
    let nonce = r.headers["dpop-nonce"].to_str().expect("nonce").to_owned();

    let forged = w
        .client
        .proof("GET", &htu, &t, |_, c| c["nonce"] = json!("forged-nonce"));
    assert_eq!(
        w.call(&t, &[forged]).await.reason(),
        Some("dpop_nonce_required")
    );

    let n2 = nonce.clone();
    let r = w
        .call(
            &t,
            &[w.client
                .proof("GET", &htu, &t, move |_, c| c["nonce"] = json!(n2))],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(
        r.headers.contains_key("dpop-nonce"),
        "a fresh nonce is offered on success"
    );
    assert_eq!(w.echo.count(), 1);
}

#[tokio::test]
async fn forwarded_certificate_from_trusted_peer_binds_and_forgery_is_ignored() {
    let cert_hash = [9u8; 32];
    let hex: String = cert_hash.iter().map(|b| format!("{b:02x}")).collect();
    let x5t = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(cert_hash)
    };
    let xfcc = format!("By=spiffe://ingress;Hash={hex};Subject=\"CN=tpp\"");
    for (trusted, want) in [
        ("127.0.0.1/32", (200, None)),
        ("10.0.0.0/8", (401, Some("mtls_certificate_missing"))),
    ] {
        let extra = format!(
            "  forwarded_client_cert:\n    header: x-forwarded-client-cert\n    format: xfcc\n    trusted_peers: [{trusted}]\n"
        );
        let w = world_listen(&extra).await;
        let x5t = x5t.clone();
        let t = w.key.token(|_, c| c["cnf"] = json!({"x5t#S256": x5t}));
        let auth = format!("Bearer {t}");
        let r = get(
            &w.proxy.url("/bound"),
            &[("authorization", &auth), ("x-forwarded-client-cert", &xfcc)],
        )
        .await;
        assert_eq!((r.status, r.reason()), want, "trusted_peers {trusted}");
        match want.0 {
            // From the trusted hop, the certificate it forwarded is what the API sees.
            200 => {
                let seen = w.echo.last().expect("forwarded");
                assert_eq!(seen.headers["x-forwarded-client-cert"], xfcc.as_str());
            }
            _ => assert_eq!(w.echo.count(), 0, "trusted_peers {trusted}: denied"),
        }
        // An allowed request (unbound route) carrying the header: from an untrusted peer the
        // forgery is removed before the upstream; from the trusted hop it passes.
        let t = w.key.token(|_, _| {});
        let auth = format!("Bearer {t}");
        let r = get(
            &w.proxy.url("/accounts"),
            &[("authorization", &auth), ("x-forwarded-client-cert", &xfcc)],
        )
        .await;
        assert_eq!(r.status, 200, "trusted_peers {trusted}");
        let seen = w.echo.last().expect("forwarded");
        let got = seen
            .headers
            .get("x-forwarded-client-cert")
            .map(|v| v.to_str().expect("ascii"));
        let expected = (want.0 == 200).then_some(xfcc.as_str());
        assert_eq!(got, expected, "trusted_peers {trusted}");
    }
}

/// A world whose `listen:` section gets `extra` lines (forwarded certificates).
async fn world_listen(extra: &str) -> World {
    let key = TestKey::new("k1");
    let jwks = Jwks::start(vec![key.jwks_entry()]).await;
    let echo = Echo::start().await;
    let proxy = Proxy::start_with(
        &format!("http://{}", echo.addr),
        &jwks.uri(),
        "",
        extra,
        POLICY,
    )
    .await;
    proxy.wait_ready().await;
    World {
        key,
        client: DpopKey::new(),
        _jwks: jwks,
        echo,
        proxy,
    }
}

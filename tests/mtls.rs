//! RFC 8705 certificate-bound tokens over real TLS (certificates generated per run).

mod common;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use common::pki::{Identity, Pki, self_signed_client};
use common::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use serde_json::{Value, json};

fn x5t(id: &Identity) -> String {
    B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id.cert.as_ref()).as_ref())
}

async fn tls_get(
    pki: &Pki,
    client: Option<&Identity>,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, Value), String> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der()).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match client {
        Some(id) => builder
            .with_client_auth_cert(id.chain(), id.key.clone_key())
            .map_err(|e| e.to_string())?,
        None => builder.with_no_client_auth(),
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let mut req = Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(
            req.body(Full::new(Bytes::new()))
                .map_err(|e| e.to_string())?,
        )
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

async fn start(pki: &Pki, client_auth: &str, forwarded: &str) -> (TestKey, Echo, Proxy, Jwks) {
    let key = TestKey::new("k1");
    let jwks = Jwks::start(vec![key.jwks_entry()]).await;
    let echo = Echo::start().await;
    let listen = format!(
        "  tls:\n    cert_file: {}\n    key_file: {}\n    client_ca_file: {}\n    client_auth: {client_auth}\n{forwarded}",
        pki.path("server.crt").display(),
        pki.path("server.key").display(),
        pki.path("ca.pem").display(),
    );
    let proxy = Proxy::start_with(
        &format!("http://{}", echo.addr),
        &jwks.uri(),
        "",
        &listen,
        POLICY,
    )
    .await;
    proxy.wait_ready().await;
    (key, echo, proxy, jwks)
}

#[tokio::test]
async fn certificate_bound_tokens_over_real_tls() {
    let pki = Pki::new();
    let alice = pki.client("tpp-alice");
    let mallory = pki.client("tpp-mallory");
    let (key, echo, proxy, _jwks) = start(&pki, "optional", "").await;
    let url = format!("https://localhost:{}/bound", proxy.addr.port());
    let cnf = x5t(&alice);
    let t = key.token(|_, c| c["cnf"] = json!({"x5t#S256": cnf}));
    let auth = format!("Bearer {t}");
    let h = [("authorization", auth.as_str())];

    // Alice also sends forged certificate headers: the API must see only the certificate the
    // proxy verified, in RFC 9440 `Client-Cert` form (no `forwarded_client_cert` configured).
    let mallory_b64 = base64::engine::general_purpose::STANDARD.encode(mallory.cert.as_ref());
    let forged_client_cert = format!(":{mallory_b64}:");
    let forged = [
        ("authorization", auth.as_str()),
        ("client-cert", forged_client_cert.as_str()),
        (
            "x-forwarded-client-cert",
            "Hash=00;Subject=\"CN=bank-admin\"",
        ),
        ("client-cert-chain", forged_client_cert.as_str()),
    ];
    let ok = tls_get(&pki, Some(&alice), &url, &forged)
        .await
        .expect("request");
    assert_eq!(ok.0, 200, "matching certificate: {:?}", ok.1);
    let seen = echo.last().expect("forwarded");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    let alice_b64 = base64::engine::general_purpose::STANDARD.encode(alice.cert.as_ref());
    let certs: Vec<&str> = seen
        .headers
        .get_all("client-cert")
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .collect();
    assert_eq!(certs, [format!(":{alice_b64}:")]);
    assert!(!seen.headers.contains_key("x-forwarded-client-cert"));
    assert!(!seen.headers.contains_key("client-cert-chain"));

    let none = tls_get(&pki, None, &url, &h).await.expect("request");
    assert_eq!(
        (none.0, none.1["reason"].as_str()),
        (401, Some("mtls_certificate_missing"))
    );

    let other = tls_get(&pki, Some(&mallory), &url, &h)
        .await
        .expect("request");
    assert_eq!(
        (other.0, other.1["reason"].as_str()),
        (401, Some("mtls_certificate_mismatch"))
    );

    // A certificate from an issuer the server does not trust never completes the handshake.
    let stranger = self_signed_client("stranger");
    assert!(
        tls_get(&pki, Some(&stranger), &url, &h).await.is_err(),
        "untrusted client cert"
    );
    assert_eq!(echo.count(), 1);
}

#[tokio::test]
async fn forged_forwarded_certificate_from_an_untrusted_peer_is_ignored() {
    let pki = Pki::new();
    let alice = pki.client("tpp-alice");
    let mallory = pki.client("tpp-mallory");
    // Only 10.0.0.0/8 may forward certificates; the test client is 127.0.0.1.
    let fwd = "  forwarded_client_cert:\n    header: x-forwarded-client-cert\n    format: xfcc\n    trusted_peers: [10.0.0.0/8]\n";
    let (key, echo, proxy, _jwks) = start(&pki, "optional", fwd).await;
    let url = format!("https://localhost:{}/bound", proxy.addr.port());
    let cnf = x5t(&alice);
    let t = key.token(|_, c| c["cnf"] = json!({"x5t#S256": cnf}));
    let auth = format!("Bearer {t}");
    let alice_hash: String =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, alice.cert.as_ref())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    let forged = format!("Hash={alice_hash}");
    let h = [
        ("authorization", auth.as_str()),
        ("x-forwarded-client-cert", forged.as_str()),
    ];
    // Mallory connects with her own certificate and claims Alice's through the header.
    let r = tls_get(&pki, Some(&mallory), &url, &h)
        .await
        .expect("request");
    assert_eq!(
        (r.0, r.1["reason"].as_str()),
        (401, Some("mtls_certificate_mismatch"))
    );
    let r = tls_get(&pki, None, &url, &h).await.expect("request");
    assert_eq!(
        (r.0, r.1["reason"].as_str()),
        (401, Some("mtls_certificate_missing"))
    );
    assert_eq!(echo.count(), 0);

    // Allowed: Alice with her own certificate, claiming Mallory's through the header. The API
    // gets Alice's certificate (the one the proxy verified) in the configured XFCC format.
    let mallory_hash: String =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, mallory.cert.as_ref())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    let claim = format!("Hash={mallory_hash}");
    let h = [
        ("authorization", auth.as_str()),
        ("x-forwarded-client-cert", claim.as_str()),
    ];
    let r = tls_get(&pki, Some(&alice), &url, &h)
        .await
        .expect("request");
    assert_eq!(r.0, 200, "{:?}", r.1);
    let seen = echo.last().expect("forwarded");
    let xfcc: Vec<&str> = seen
        .headers
        .get_all("x-forwarded-client-cert")
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .collect();
    assert_eq!(xfcc.len(), 1);
    assert!(
        xfcc[0].starts_with(&format!("Hash={alice_hash};Cert=\"")),
        "{}",
        xfcc[0]
    );
    assert_eq!(
        fapi_guard::mtls::parse_forwarded(xfcc[0], fapi_guard::mtls::ForwardedFormat::Xfcc)
            .map(|h| h.to_vec()),
        Ok(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, alice.cert.as_ref())
                .as_ref()
                .to_vec()
        )
    );
}

#[tokio::test]
async fn required_client_auth_refuses_connections_without_a_certificate() {
    let pki = Pki::new();
    let alice = pki.client("tpp-alice");
    let (_key, _echo, proxy, _jwks) = start(&pki, "required", "").await;
    let url = format!("https://localhost:{}/health", proxy.addr.port());
    assert!(tls_get(&pki, None, &url, &[]).await.is_err());
    assert_eq!(
        tls_get(&pki, Some(&alice), &url, &[])
            .await
            .expect("request")
            .0,
        200
    );
}

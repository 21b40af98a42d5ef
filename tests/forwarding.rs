//! What the API receives about the client: verified identity headers that no `Connection`
//! option can delete, forwarding headers rebuilt from the real peer, forwarded certificates only
//! from trusted hops (one field line), and no method-override or URL-rewrite headers.

mod common;

use common::*;

struct World {
    key: TestKey,
    echo: Echo,
    proxy: Proxy,
    _jwks: Jwks,
}

/// `upstream_extra` lines go into the `upstream:` section, `listen_extra` into `listen:`.
async fn world(upstream_extra: &str, listen_extra: &str) -> World {
    let key = TestKey::new("k1");
    let jwks = Jwks::start(vec![key.jwks_entry()]).await;
    let echo = Echo::start().await;
    // The harness writes `url: {upstream}` as the section's first line: more keys follow it.
    let upstream = format!("http://{}\n{upstream_extra}", echo.addr);
    let proxy = Proxy::start_with(&upstream, &jwks.uri(), "", listen_extra, POLICY).await;
    proxy.wait_ready().await;
    World {
        key,
        echo,
        proxy,
        _jwks: jwks,
    }
}

fn values(seen: &Seen, name: &str) -> Vec<String> {
    seen.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect()
}

#[tokio::test]
async fn connection_options_cannot_remove_verified_headers() {
    let w = world("", "").await;
    let t = w.key.token(|_, _| {});
    let auth = format!("Bearer {t}");
    let r = get(
        &w.proxy.url("/accounts/acc-1"),
        &[
            ("authorization", &auth),
            (
                "connection",
                "x-fapi-subject, x-fapi-client-id, x-fapi-interaction-id, x-forwarded-for, forwarded, authorization, x-hop",
            ),
            ("x-fapi-subject", "admin"),
            ("x_fapi_subject", "admin"),
            ("x-hop", "1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = w.echo.last().expect("forwarded");
    assert_eq!(values(&seen, "x-fapi-subject"), ["psu-9"]);
    assert_eq!(values(&seen, "x-fapi-client-id"), ["tpp-1"]);
    assert!(!seen.headers.contains_key("x_fapi_subject"));
    assert_eq!(values(&seen, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(values(&seen, "authorization"), [auth.as_str()]);
    assert_eq!(
        values(&seen, "x-fapi-interaction-id"),
        [r.headers["x-fapi-interaction-id"].to_str().expect("ascii")]
    );
    assert!(seen.headers.contains_key("forwarded"));
    // A harmless option still removes its field (RFC 9110 §7.6.1).
    assert!(!seen.headers.contains_key("x-hop"));
    assert!(!seen.headers.contains_key("connection"));
}

const FORGED: &[(&str, &str)] = &[
    (
        "x-forwarded-client-cert",
        "Hash=0000;Subject=\"CN=bank-admin\"",
    ),
    ("client-cert", ":MIIBforged=:"),
    ("client-cert-chain", ":MIIBforged=:"),
    (
        "forwarded",
        "for=10.1.1.1;proto=https;host=internal.example",
    ),
    ("x-real-ip", "10.1.1.1"),
    ("x-forwarded-for", "10.1.1.1"),
    ("x-forwarded-host", "internal.example"),
    ("x-forwarded-proto", "gopher"),
    ("x_forwarded_for", "10.1.1.1"),
];

#[tokio::test]
async fn forged_forwarding_headers_from_clients_never_reach_the_api() {
    let w = world("", "").await;
    // An allowed request (public route): what reaches the API is rebuilt from the real peer.
    let r = get(&w.proxy.url("/health"), FORGED).await;
    assert_eq!(r.status, 200);
    let seen = w.echo.last().expect("forwarded");
    for gone in [
        "x-forwarded-client-cert",
        "client-cert",
        "client-cert-chain",
        "x-real-ip",
        "x_forwarded_for",
    ] {
        assert!(!seen.headers.contains_key(gone), "{gone} reached the API");
    }
    assert_eq!(values(&seen, "x-forwarded-for"), ["127.0.0.1"]);
    let host = w.proxy.addr.to_string();
    assert_eq!(
        values(&seen, "forwarded"),
        [format!("for=127.0.0.1;host=\"{host}\";proto=https")]
    );
    assert_eq!(values(&seen, "x-forwarded-host"), [host.as_str()]);
    // Plain HTTP listener: the scheme clients use is `listen.public_url`'s.
    assert_eq!(values(&seen, "x-forwarded-proto"), ["https"]);
}

#[tokio::test]
async fn trusted_hops_are_appended_to_and_must_send_one_certificate_line() {
    let cert_hash = [9u8; 32];
    let hex: String = cert_hash.iter().map(|b| format!("{b:02x}")).collect();
    let xfcc = format!("By=spiffe://ingress;Hash={hex}");
    let listen = "  forwarded_client_cert:\n    header: x-forwarded-client-cert\n    format: xfcc\n    trusted_peers: [127.0.0.1/32]\n";
    let w = world("", listen).await;
    let r = get(
        &w.proxy.url("/health"),
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=203.0.113.9"),
            ("x-forwarded-client-cert", &xfcc),
            ("client-cert", ":MIIBforged=:"),
            ("x-real-ip", "10.1.1.1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = w.echo.last().expect("forwarded");
    assert_eq!(values(&seen, "x-forwarded-for"), ["203.0.113.9, 127.0.0.1"]);
    let host = w.proxy.addr.to_string();
    assert_eq!(
        values(&seen, "forwarded"),
        [format!(
            "for=203.0.113.9, for=127.0.0.1;host=\"{host}\";proto=https"
        )]
    );
    // The certificate the proxy read is passed on; other certificate headers are not.
    assert_eq!(values(&seen, "x-forwarded-client-cert"), [xfcc.as_str()]);
    assert!(!seen.headers.contains_key("client-cert"));
    assert!(!seen.headers.contains_key("x-real-ip"));

    // Two field lines: which one would the API read? Refused, audited, nothing forwarded.
    let before = w.echo.count();
    let other =
        "By=spiffe://ingress;Hash=0000000000000000000000000000000000000000000000000000000000000000";
    let r = get(
        &w.proxy.url("/health"),
        &[
            ("x-forwarded-client-cert", &xfcc),
            ("x-forwarded-client-cert", other),
        ],
    )
    .await;
    assert_eq!((r.status, r.reason()), (400, Some("request_malformed")));
    assert_eq!(w.echo.count(), before);
    let records = w.proxy.audit_records().await;
    assert!(
        records
            .iter()
            .any(|rec| rec["reason"] == "request_malformed" && rec["decision"] == "deny"),
        "audited"
    );
}

const OVERRIDES: &[(&str, &str)] = &[
    ("x-http-method-override", "DELETE"),
    ("x-http-method", "DELETE"),
    ("x-method-override", "DELETE"),
    ("x-original-url", "/admin/transfer"),
    ("x-rewrite-url", "/admin/transfer"),
    ("x-original-method", "DELETE"),
    ("x_http_method_override", "DELETE"),
];

#[tokio::test]
async fn method_override_and_rewrite_headers_are_stripped() {
    let w = world("", "").await;
    let r = get(&w.proxy.url("/health"), OVERRIDES).await;
    assert_eq!(r.status, 200);
    let seen = w.echo.last().expect("forwarded");
    for (name, _) in OVERRIDES {
        assert!(!seen.headers.contains_key(*name), "{name} reached the API");
    }
}

#[tokio::test]
async fn strip_headers_is_configurable() {
    let w = world("  strip_headers: [x-debug, X-Original-URL]\n", "").await;
    let r = get(
        &w.proxy.url("/health"),
        &[
            ("x-debug", "1"),
            ("x-original-url", "/admin"),
            ("x-keep", "1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = w.echo.last().expect("forwarded");
    assert!(!seen.headers.contains_key("x-debug"));
    assert!(!seen.headers.contains_key("x-original-url"));
    assert_eq!(values(&seen, "x-keep"), ["1"]);
}

#[test]
fn strip_headers_names_are_checked_at_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("config.yaml");
    let yaml = "\
listen:
  public_url: https://api.test.example
upstream:
  url: http://127.0.0.1:8080
  strip_headers: [x-debug, \"bad name\"]
issuers:
  - issuer: https://as.test.example
    jwks_file: jwks.json
    audiences: [https://api.test.example]
policies: [policy.yaml]
";
    let err = fapi_guard::config::Config::from_yaml(&file, yaml)
        .expect_err("an invalid header name is refused")
        .to_string();
    assert!(err.contains("upstream.strip_headers[1]"), "{err}");
}

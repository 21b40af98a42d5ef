//! RFC 9470 step-up through the proxy: a route that needs strong, recent authentication.

mod common;

use common::*;
use serde_json::json;

const POLICY_SCA: &str = "\
api: payments
defaults:
  binding: unbound_allowed
  scopes: [payments]
routes:
  - name: create-payment
    method: GET
    path: /payments
    assurance: {acr: [\"urn:bank:sca\"], max_auth_age: 5m}
";

#[tokio::test]
async fn step_up_challenge_names_acr_values_and_max_age() {
    let key = TestKey::new("k1");
    let jwks = Jwks::start(vec![key.jwks_entry()]).await;
    let echo = Echo::start().await;
    let proxy = Proxy::start(
        &format!("http://{}", echo.addr),
        &jwks.uri(),
        "",
        POLICY_SCA,
    )
    .await;
    proxy.wait_ready().await;
    let t = now();
    let cases = [
        (
            "strong and recent",
            json!({"acr": "urn:bank:sca", "auth_time": t - 60}),
            200,
        ),
        ("no acr", json!({"auth_time": t - 60}), 401),
        (
            "weak acr",
            json!({"acr": "urn:bank:password", "auth_time": t - 60}),
            401,
        ),
        (
            "authentication too old",
            json!({"acr": "urn:bank:sca", "auth_time": t - 3600}),
            401,
        ),
        ("no auth_time", json!({"acr": "urn:bank:sca"}), 401),
    ];
    for (name, extra, status) in cases {
        let token = key.token(|_, c| {
            c["scope"] = json!("payments");
            for (k, v) in extra.as_object().expect("object") {
                c[k] = v.clone();
            }
        });
        let r = get(
            &proxy.url("/payments"),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
        assert_eq!(r.status, status, "{name}: {:?}", r.body);
        if status == 401 {
            assert_eq!(r.reason(), Some("assurance_insufficient"), "{name}");
            let www = r.headers["www-authenticate"].to_str().expect("ascii");
            assert!(
                www.starts_with("Bearer error=\"insufficient_user_authentication\""),
                "{name}: {www}"
            );
            assert!(www.contains("acr_values=\"urn:bank:sca\""), "{name}: {www}");
            assert!(www.contains("max_age=\"300\""), "{name}: {www}");
        }
    }
    assert_eq!(echo.count(), 1);
}

//! Path confusion: against a policy where `/accounts/{id}` is protected and `/public`
//! is public, every encoding trick either is refused (nothing reaches the API) or reaches the
//! API as exactly the path that was matched. Sent on raw sockets so no client library
//! normalizes the target first.

mod common;

use std::time::Duration;

use common::raw;
use common::*;

const POLICY: &str = "\
api: paths
defaults:
  binding: unbound_allowed
  scopes: [accounts]
routes:
  - name: get-account
    method: GET
    path: /accounts/{account_id}
  - name: public
    method: GET
    path: /public
    public: true
";

#[tokio::test]
async fn every_encoding_trick_is_refused_or_forwarded_as_matched() {
    let key = TestKey::new("k1");
    let jwks = Jwks::start(vec![key.jwks_entry()]).await;
    let echo = Echo::start().await;
    let proxy = Proxy::start(&format!("http://{}", echo.addr), &jwks.uri(), "", POLICY).await;
    proxy.wait_ready().await;

    // (target, what the API may receive if it is forwarded). `None`: must not be forwarded
    // (no token is sent, so only the public route can ever be allowed).
    let cases: &[(&str, Option<&str>)] = &[
        ("/public", Some("/public")),
        ("/%70ublic", Some("/public")),
        (
            "/public?x=%2F..%2Faccounts%2F1",
            Some("/public?x=%2F..%2Faccounts%2F1"),
        ),
        ("/accounts/1", None),
        ("/public/../accounts/1", None),
        ("/public/%2e%2e/accounts/1", None),
        ("/public/%2E%2E/accounts/1", None),
        ("/public/.%2e/accounts/1", None),
        ("/public%2f..%2faccounts%2f1", None),
        ("/public%2F..%2Faccounts%2F1", None),
        ("/public%5c..%5caccounts%5c1", None),
        ("/public\\..\\accounts\\1", None),
        ("/public;/../accounts/1", None),
        ("/public;x", None),
        ("/accounts;/1", None),
        ("//public", None),
        ("/public//", None),
        ("/./public", None),
        ("/public/.", None),
        ("/public/", None),
        ("/public.", None),
        ("/PUBLIC", None),
        ("/Public", None),
        ("/public%00", None),
        ("/public%00/../accounts/1", None),
        ("/public%c0%af..%c0%afaccounts%c0%af1", None),
        ("/public%ef%bc%8f..%ef%bc%8faccounts", None),
        ("/public%252f..%252faccounts%252f1", None),
        ("/public%25%32%66", None),
        ("/public%2", None),
        ("/public%zz", None),
        // The `http` parser drops a fragment from the target: the API gets what was matched.
        ("/public#/../accounts/1", Some("/public")),
        ("/public%23/../accounts/1", None),
        ("/public%3f/../accounts/1", None),
        ("/public%20", None),
        ("/public/%2e%2e%2faccounts%2f1", None),
        ("/%2e%2e/public", None),
        ("/..;/accounts/1", None),
        ("http://a/public/../accounts/1", None),
        ("*", None),
    ];
    let mut failures = Vec::new();
    for (target, forwarded_as) in cases {
        echo.seen.lock().expect("lock").clear();
        let req = format!("GET {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let got = raw::exchange(proxy.addr, req.as_bytes(), Duration::from_millis(1500)).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        let seen: Vec<String> = echo
            .seen
            .lock()
            .expect("lock")
            .iter()
            .map(|s| s.uri.clone())
            .collect();
        let status = got.statuses();
        let ok = match forwarded_as {
            Some(path) => status == [200] && seen == [path.to_string()],
            None => {
                seen.is_empty()
                    && status.len() == 1
                    && (400..500).contains(&status[0])
                    && status[0] != 405
            }
        };
        if !ok {
            failures.push(format!(
                "{target}: status {status:?}, upstream saw {seen:?}, expected {forwarded_as:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));

    // With a valid token the protected route is reachable, and only as matched.
    let t = key.token(|_, _| {});
    for (target, want) in [
        ("/accounts/acc-1", Some("/accounts/acc-1")),
        ("/accounts/acc%2D1", Some("/accounts/acc-1")),
        ("/accounts/acc%2f1", None),
        ("/accounts/acc-1/", None),
        ("/accounts/acc-1/../acc-2", None),
    ] {
        echo.seen.lock().expect("lock").clear();
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\nConnection: close\r\n\r\n"
        );
        let got = raw::exchange(proxy.addr, req.as_bytes(), Duration::from_millis(1500)).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        let seen: Vec<String> = echo
            .seen
            .lock()
            .expect("lock")
            .iter()
            .map(|s| s.uri.clone())
            .collect();
        match want {
            Some(p) => assert_eq!(
                (got.statuses(), seen),
                (vec![200], vec![p.to_owned()]),
                "{target}"
            ),
            None => {
                assert!(seen.is_empty(), "{target}: upstream saw {seen:?}");
                assert!(
                    got.statuses()
                        .first()
                        .is_some_and(|s| (400..500).contains(s)),
                    "{target}: {:?}",
                    got.statuses()
                );
            }
        }
    }
}

//! The admin surfaces: every write method on the full admin listener needs
//! `Authorization: Bearer <admin.token_file>`; the read-only metrics listener serves the four
//! read endpoints and nothing else; an admin listener off loopback without a token refuses to
//! start (exit 2).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;

const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";

struct Admin {
    admin: SocketAddr,
    metrics: SocketAddr,
    _running: fapi_guard::server::Running,
    _dir: tempfile::TempDir,
    _jwks: Jwks,
}

async fn start(token: bool) -> Admin {
    let jwks = Jwks::start(vec![TestKey::new("k").jwks_entry()]).await;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("policy.yaml"), POLICY).expect("policy");
    std::fs::write(dir.path().join("admin.token"), format!("{ADMIN_TOKEN}\n")).expect("token");
    let token_line = if token {
        "  token_file: admin.token\n"
    } else {
        ""
    };
    let config = format!(
        "listen:\n  address: 127.0.0.1:0\n  public_url: https://api.test.example\n\
         upstream:\n  url: http://127.0.0.1:9\n\
         admin:\n  address: 127.0.0.1:0\n  metrics_address: 127.0.0.2:0\n{token_line}\
         issuers:\n  - issuer: {ISSUER}\n    jwks_uri: {}\n    audiences: [{AUDIENCE}]\n\
         audit:\n  sink: file\n  path: audit.jsonl\n\
         policies: [policy.yaml]\n",
        jwks.uri()
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).expect("config");
    let config = fapi_guard::config::Config::load(&path).expect("config");
    let guard = fapi_guard::app::build(config, fapi_guard::clock::Clock::system()).expect("build");
    let running = fapi_guard::server::start(guard, Duration::from_secs(1))
        .await
        .expect("start");
    Admin {
        admin: running.admin_addr.expect("admin listener"),
        metrics: running.metrics_addr.expect("metrics listener"),
        _running: running,
        _dir: dir,
        _jwks: jwks,
    }
}

async fn call(method: &str, addr: SocketAddr, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    let r = send(b.body(Full::new(Bytes::from_static(b"{}"))).expect("req")).await;
    let challenge = r
        .headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap_or("?").to_owned())
        .unwrap_or_default();
    (r.status, challenge)
}

#[tokio::test]
async fn admin_writes_need_the_bearer_token() {
    let a = start(true).await;
    let good = format!("Bearer {ADMIN_TOKEN}");
    let wrong = format!("Bearer {ADMIN_TOKEN}x");
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        for path in ["/revocations", "/ssf/events", "/metrics", "/nowhere"] {
            let (status, challenge) = call(method, a.admin, path, None).await;
            assert_eq!(status, 401, "{method} {path} without token");
            assert!(
                challenge.starts_with("Bearer"),
                "{method} {path}: {challenge}"
            );
            let (status, challenge) = call(method, a.admin, path, Some(&wrong)).await;
            assert_eq!(status, 401, "{method} {path} with a wrong token");
            assert!(challenge.contains("invalid_token"), "{challenge}");
            let (status, _) = call(method, a.admin, path, Some("Basic YTpi")).await;
            assert_eq!(status, 401, "{method} {path} with another scheme");
        }
        // With the right token: the read endpoints are not writable (405), the rest unknown.
        let (status, _) = call(method, a.admin, "/metrics", Some(&good)).await;
        assert_eq!(status, 405, "{method} /metrics with the token");
        let (status, _) = call(method, a.admin, "/nowhere", Some(&good)).await;
        assert_eq!(status, 404, "{method} /nowhere with the token");
    }
    // Reads stay open on the admin listener.
    assert_eq!(call("GET", a.admin, "/healthz", None).await.0, 200);
    assert_eq!(call("GET", a.admin, "/metrics", None).await.0, 200);
}

#[tokio::test]
async fn without_a_token_file_no_admin_write_is_possible() {
    let a = start(false).await;
    for auth in [None, Some("Bearer "), Some("Bearer anything-at-all-here")] {
        let (status, _) = call("POST", a.admin, "/revocations", auth).await;
        assert_eq!(status, 403, "{auth:?}");
    }
}

#[tokio::test]
async fn the_metrics_listener_serves_reads_only() {
    let a = start(true).await;
    assert_ne!(a.metrics, a.admin);
    let good = format!("Bearer {ADMIN_TOKEN}");
    for path in ["/healthz", "/metrics"] {
        assert_eq!(
            call("GET", a.metrics, path, None).await.0,
            200,
            "GET {path}"
        );
    }
    // Readiness answers (200 or 503 while keys load), never 404.
    let (ready, _) = call("GET", a.metrics, "/readyz", None).await;
    assert!(ready == 200 || ready == 503, "{ready}");
    // /jwks: 404 "not enabled" without Txn-Tokens, the same answer as the admin listener.
    assert_eq!(
        call("GET", a.metrics, "/jwks", None).await.0,
        call("GET", a.admin, "/jwks", None).await.0
    );
    for method in ["POST", "PUT", "DELETE"] {
        for auth in [None, Some(good.as_str())] {
            // Not even the admin token opens a write here.
            let (status, _) = call(method, a.metrics, "/metrics", auth).await;
            assert_eq!(status, 405, "{method} /metrics {auth:?}");
            let (status, _) = call(method, a.metrics, "/revocations", auth).await;
            assert_eq!(status, 404, "{method} /revocations {auth:?}");
        }
    }
    let body = send(
        Request::get(format!("http://{}/metrics", a.metrics))
            .body(Full::new(Bytes::new()))
            .expect("req"),
    )
    .await;
    assert!(
        body.headers["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
}

/// Spec §3: a configuration error exits 2 with one line naming the field.
#[test]
fn admin_off_loopback_without_token_refuses_to_start() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("policy.yaml"), POLICY).expect("policy");
    std::fs::write(dir.path().join("as.jwks.json"), r#"{"keys":[]}"#).expect("jwks");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "listen:\n  address: 127.0.0.1:0\n  public_url: https://api.test.example\n\
             upstream:\n  url: http://127.0.0.1:9\n\
             admin:\n  address: 0.0.0.0:0\n\
             issuers:\n  - issuer: {ISSUER}\n    jwks_file: as.jwks.json\n    audiences: [{AUDIENCE}]\n\
             policies: [policy.yaml]\n"
        ),
    )
    .expect("config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fapi-guard"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .expect("run the binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("admin.token_file"), "{stderr}");
}

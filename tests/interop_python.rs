//! Interop: a DPoP client written with Python's joserfc (another ecosystem's JOSE library)
//! calls the proxy. Needs `FAPI_GUARD_TEST_PYTHON` (a Python with joserfc and requests) at build
//! time; without it `cargo test` lists the test as ignored with the reason (see `build.rs`).
//! `.ci/run` sets it, so CI always runs it.

mod common;

use std::process::Command;

use common::*;
use serde_json::{Value, json};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/dpop_client.py");

/// The interpreter named by `FAPI_GUARD_TEST_PYTHON`; it must import joserfc and requests.
fn python() -> String {
    let py = std::env::var("FAPI_GUARD_TEST_PYTHON")
        .ok()
        .filter(|v| !v.is_empty())
        .expect("FAPI_GUARD_TEST_PYTHON names the Python interpreter (see build.rs)");
    let ok = Command::new(&py)
        .args(["-c", "import joserfc, requests"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "FAPI_GUARD_TEST_PYTHON={py} cannot import joserfc and requests"
    );
    py
}

fn run(py: &str, args: &[&str]) -> Value {
    let out = Command::new(py)
        .arg(SCRIPT)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python prints JSON")
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(fapi_guard_test_python),
    ignore = "needs Python with joserfc and requests: set FAPI_GUARD_TEST_PYTHON=python3"
)]
async fn joserfc_dpop_client_is_accepted_and_a_wrong_htu_refused() {
    let py = python();
    let key = TestKey::new("k1");
    let jwks = Jwks::start(vec![key.jwks_entry()]).await;
    let echo = Echo::start().await;
    let proxy = Proxy::start(&format!("http://{}", echo.addr), &jwks.uri(), "", POLICY).await;
    proxy.wait_ready().await;

    let generated = run(&py, &["keygen"]);
    let jkt = generated["jkt"].as_str().expect("jkt").to_owned();
    let jwk = generated["jwk"].to_string();
    let token = key.token(|_, c| c["cnf"] = json!({"jkt": jkt}));
    let url = proxy.url("/bound");
    let htu = "https://api.test.example/bound";
    let py2 = py.clone();
    let (token2, jwk2, url2) = (token.clone(), jwk.clone(), url.clone());
    let ok = tokio::task::spawn_blocking(move || run(&py2, &["call", &url2, htu, &token2, &jwk2]))
        .await
        .expect("join");
    assert_eq!(ok["status"], 200, "{ok}");
    assert_eq!(echo.count(), 1);

    // A proof for another URI, minted by the same library, is refused with a DPoP challenge.
    let bad = tokio::task::spawn_blocking(move || {
        run(
            &py,
            &[
                "call",
                &url,
                "https://api.test.example/elsewhere",
                &token,
                &jwk,
            ],
        )
    })
    .await
    .expect("join");
    assert_eq!(bad["status"], 401, "{bad}");
    assert_eq!(bad["body"]["reason"], "dpop_htu_mismatch");
    assert!(
        bad["www"]
            .as_str()
            .is_some_and(|w| w.starts_with("DPoP error=\"invalid_dpop_proof\""))
    );
}

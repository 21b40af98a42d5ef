//! Security Event Tokens signed by an independent implementation (Python joserfc, through
//! `tests/interop/ssf_transmitter.py`), for the Shared Signals tests. Needs
//! `FAPI_GUARD_TEST_PYTHON` (see `build.rs`).

use std::process::{Command, Stdio};

use serde_json::{Value, json};

use super::{ISSUER, now};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/ssf_transmitter.py"
);
/// The transmitter (SET `iss`) and this receiver (SET `aud`).
pub const TX: &str = "https://ssf.transmitter.example";
pub const RX: &str = "https://api.test.example/ssf";
pub const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
pub const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";
pub const SET: &str = "application/secevent+jwt";

pub fn python() -> String {
    let py = std::env::var("FAPI_GUARD_TEST_PYTHON")
        .ok()
        .filter(|v| !v.is_empty())
        .expect("FAPI_GUARD_TEST_PYTHON names the Python interpreter (see build.rs)");
    let ok = Command::new(&py)
        .args(["-c", "import joserfc"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "FAPI_GUARD_TEST_PYTHON={py} cannot import joserfc");
    py
}

/// Signs every case with joserfc; returns (transmitter JWKS, SETs).
pub fn sign(cases: &[Value]) -> (Value, Vec<String>) {
    use std::io::Write as _;
    let mut child = Command::new(python())
        .arg(SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(Value::Array(cases.to_vec()).to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let sets = v["sets"]
        .as_array()
        .expect("sets")
        .iter()
        .map(|s| s.as_str().expect("str").to_owned())
        .collect();
    (v["jwks"].clone(), sets)
}

/// The JOSE header of a SET signed with the transmitter's RSA key.
pub fn header() -> Value {
    json!({"alg": "RS256", "typ": "secevent+jwt", "kid": "ssf-1"})
}

pub fn set_claims(events: Value) -> Value {
    json!({"iss": TX, "aud": RX, "iat": now(), "jti": uuid::Uuid::new_v4().to_string(), "events": events})
}

/// A CAEP event of type `name` about subject `sub` (`iss_sub`) at `at`.
pub fn event(base: &str, name: &str, sub: &str, at: i64) -> Value {
    json!({format!("{base}{name}"): {
        "subject": {"format": "iss_sub", "iss": ISSUER, "sub": sub},
        "event_timestamp": at,
    }})
}

pub fn session_revoked(sub: &str, at: i64) -> Value {
    event(CAEP, "session-revoked", sub, at)
}

/// The `revocation.ssf` section naming the transmitter, its keys in `jwks_file` and `algs`.
pub fn ssf_config(jwks_file: &str, algs: &str) -> String {
    format!(
        "revocation:\n  ssf:\n    issuer: {TX}\n    jwks_file: {jwks_file}\n    audience: {RX}\n    algorithms: [{algs}]\n"
    )
}

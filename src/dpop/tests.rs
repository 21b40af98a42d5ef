use super::*;
use crate::dpop::testkit::{TestKey, header, mint};
use crate::reason::DenyReason;
use serde_json::json;

fn config(yaml: &str) -> Result<DpopConfig, String> {
    serde_yaml::from_str(yaml).map_err(|e| e.to_string())
}

#[test]
fn defaults() {
    let settings = config("{}")
        .expect("empty section")
        .compile(Path::new("."))
        .expect("compile");
    assert_eq!(settings.proof_max_age, Duration::from_secs(60));
    assert_eq!(settings.clock_skew, Duration::from_secs(10));
    assert_eq!(
        settings.algorithms,
        vec![JwsAlg::PS256, JwsAlg::ES256, JwsAlg::EdDSA]
    );
    assert!(settings.nonce.is_none());
    let from_default = DpopConfig::default()
        .compile(Path::new("."))
        .expect("compile");
    assert_eq!(from_default.algorithms, settings.algorithms);
}

#[test]
fn spec_example_parses() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("secrets")).expect("mkdir");
    std::fs::write(
        dir.path().join("secrets/dpop-nonce"),
        format!("{}\n", "s".repeat(32)),
    )
    .expect("write secret");
    let yaml = "proof_max_age: 30s\nalgorithms: [ES256, EdDSA, ES256]\nnonce: required\n\
                nonce_secret_file: secrets/dpop-nonce\n";
    let settings = config(yaml)
        .expect("parse")
        .compile(dir.path())
        .expect("compile");
    assert_eq!(settings.proof_max_age, Duration::from_secs(30));
    assert_eq!(
        settings.algorithms,
        vec![JwsAlg::ES256, JwsAlg::EdDSA],
        "deduplicated"
    );
    let issuer = settings.nonce.expect("nonce issuer");
    // The trailing newline is not part of the secret.
    let expected = NonceIssuer::new("s".repeat(32).as_bytes()).expect("issuer");
    assert_eq!(issuer.issue(1_000), expected.issue(1_000));
    assert!(config("nonce: off\n").expect("off").nonce == NonceMode::Off);
}

#[test]
fn refusals_name_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("short"), "too-short").expect("write");
    // (name, yaml, expected fragment of the error)
    let cases = [
        (
            "unknown key",
            "proof_max_age: 60s\nnonce_secret: x\n",
            "unknown field",
        ),
        ("bad duration", "proof_max_age: 60\n", "needs a unit"),
        ("zero max age", "proof_max_age: 0s\n", "dpop.proof_max_age"),
        ("huge max age", "proof_max_age: 1h\n", "dpop.proof_max_age"),
        ("empty algorithms", "algorithms: []\n", "at least one"),
        (
            "alg none",
            "algorithms: [ES256, none]\n",
            "dpop.algorithms[1]: \"none\" is never accepted",
        ),
        (
            "alg HS256",
            "algorithms: [HS256]\n",
            "dpop.algorithms[0]: \"HS256\" is a symmetric",
        ),
        (
            "unknown alg",
            "algorithms: [ES512]\n",
            "unknown algorithm \"ES512\"",
        ),
        ("bad nonce mode", "nonce: sometimes\n", "unknown variant"),
        (
            "nonce without secret",
            "nonce: required\n",
            "dpop.nonce_secret_file: required",
        ),
        (
            "missing secret file",
            "nonce: required\nnonce_secret_file: nope\n",
            "cannot read",
        ),
        (
            "short secret",
            "nonce: required\nnonce_secret_file: short\n",
            "at least 32",
        ),
    ];
    for (name, yaml, fragment) in cases {
        let err = config(yaml).and_then(|c| c.compile(dir.path()).map(|_| ()));
        let err = err.expect_err(name);
        assert!(err.contains(fragment), "{name}: {err}");
        assert!(!err.contains("too-short"), "{name}: secret leaked in {err}");
    }
}

#[test]
fn replayed_proof_is_refused() {
    let key = TestKey::p256();
    let now = 1_700_000_000;
    let htu = "https://api.bank.example/accounts";
    let claims = json!({"jti": "j-1", "htm": "GET", "htu": htu, "iat": now});
    let proof = mint(&header(&key), &claims, &key);
    let req = ProofRequest {
        proof: &proof,
        method: "GET",
        htu,
        access_token: None,
        now,
    };
    let settings = DpopSettings::default();
    let store = MemoryReplayStore::new(1_000);
    let verified = verify_proof(&req, &settings).expect("valid");
    let record =
        |p: &VerifiedProof, now| store.check_and_insert(p.replay_key, p.replay_expires_at, now);
    assert_eq!(record(&verified, now), Ok(true));
    let again = verify_proof(
        &ProofRequest {
            now: now + 5,
            ..req
        },
        &settings,
    )
    .expect("valid");
    assert_eq!(again.replay_key, verified.replay_key);
    assert_eq!(record(&again, now + 5), Ok(false));
    // Once the proof's window has passed, verify_proof itself refuses it as stale.
    let late = ProofRequest {
        now: verified.replay_expires_at + 1,
        ..req
    };
    assert_eq!(
        verify_proof(&late, &settings),
        Err(DenyReason::DpopProofStale)
    );
}

#[test]
fn debug_redacts_credentials() {
    let req = ProofRequest {
        proof: "secret-proof",
        method: "GET",
        htu: "https://x/",
        access_token: Some("secret-token"),
        now: 0,
    };
    let shown = format!("{req:?}");
    assert!(!shown.contains("secret"), "{shown}");
}

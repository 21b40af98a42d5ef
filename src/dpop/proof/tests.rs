use super::*;
use crate::dpop::NonceIssuer;
use crate::dpop::testkit::{TestKey, b64, b64_json, header, mint};
use crate::jwk::thumbprint;
use serde_json::json;

const VECTORS: &str = include_str!("../../../tests/vectors/rfc-vectors.json");
const NOW: i64 = 1_700_000_000;
const HTU: &str = "https://api.bank.example/accounts";
const TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
/// RFC 9449 §7.1 example: base64url(SHA-256(TOKEN)), a fixed vector rather than our `ath()`.
const TOKEN_ATH: &str = "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo";

fn claims() -> Value {
    json!({"jti": "e1j3V_bKic8-LAEB", "htm": "GET", "htu": HTU, "iat": NOW, "ath": TOKEN_ATH})
}

fn request(proof: &str) -> ProofRequest<'_> {
    ProofRequest {
        proof,
        method: "GET",
        htu: HTU,
        access_token: Some(TOKEN),
        now: NOW,
    }
}

fn remove(v: &mut Value, name: &str) {
    v.as_object_mut().expect("object").remove(name);
}

type Edit = fn(&mut Value);
type ReqEdit = fn(&mut ProofRequest<'_>);
/// (name, header edit, claims edit, request edit, expected)
type Case = (&'static str, Edit, Edit, ReqEdit, Result<(), DenyReason>);

const NONE: Edit = |_| {};
const SAME: ReqEdit = |_| {};

#[rustfmt::skip] // one case per line reads as a table
fn cases() -> Vec<Case> {
    use DenyReason::*;
    vec![
        ("baseline", NONE, NONE, SAME, Ok(())),
        // RFC 9449 §4.3 step 3: required header parameters and claims.
        ("typ missing", |h| remove(h, "typ"), NONE, SAME, Err(DpopProofInvalid)),
        ("typ JWT", |h| h["typ"] = json!("JWT"), NONE, SAME, Err(DpopProofInvalid)),
        ("typ at+jwt", |h| h["typ"] = json!("at+jwt"), NONE, SAME, Err(DpopProofInvalid)),
        ("typ not a string", |h| h["typ"] = json!(1), NONE, SAME, Err(DpopProofInvalid)),
        ("typ case-insensitive", |h| h["typ"] = json!("DPoP+JWT"), NONE, SAME, Ok(())),
        ("typ with application/", |h| h["typ"] = json!("application/dpop+jwt"), NONE, SAME, Ok(())),
        ("jwk missing", |h| remove(h, "jwk"), NONE, SAME, Err(DpopProofInvalid)),
        ("jwk not an object", |h| h["jwk"] = json!("x"), NONE, SAME, Err(DpopProofInvalid)),
        ("jwk with private d", |h| h["jwk"]["d"] = json!("AAAA"), NONE, SAME, Err(DpopProofInvalid)),
        ("jwk kty oct", |h| h["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0"}), NONE, SAME, Err(DpopProofInvalid)),
        ("jwk bad curve", |h| h["jwk"]["crv"] = json!("P-521"), NONE, SAME, Err(DpopProofInvalid)),
        ("crit header", |h| h["crit"] = json!(["exp"]), NONE, SAME, Err(DpopProofInvalid)),
        ("jti missing", NONE, |c| remove(c, "jti"), SAME, Err(DpopProofInvalid)),
        ("jti empty", NONE, |c| c["jti"] = json!(""), SAME, Err(DpopProofInvalid)),
        ("jti too long", NONE, |c| c["jti"] = json!("j".repeat(257)), SAME, Err(DpopProofInvalid)),
        ("jti number", NONE, |c| c["jti"] = json!(7), SAME, Err(DpopProofInvalid)),
        ("htm missing", NONE, |c| remove(c, "htm"), SAME, Err(DpopProofInvalid)),
        ("htu missing", NONE, |c| remove(c, "htu"), SAME, Err(DpopProofInvalid)),
        ("htu not a string", NONE, |c| c["htu"] = json!(["x"]), SAME, Err(DpopProofInvalid)),
        ("iat missing", NONE, |c| remove(c, "iat"), SAME, Err(DpopProofInvalid)),
        ("iat string", NONE, |c| c["iat"] = json!(NOW.to_string()), SAME, Err(DpopProofInvalid)),
        // Step 4: alg.
        ("alg none", |h| h["alg"] = json!("none"), NONE, SAME, Err(DpopProofInvalid)),
        ("alg HS256", |h| h["alg"] = json!("HS256"), NONE, SAME, Err(DpopProofInvalid)),
        ("alg missing", |h| remove(h, "alg"), NONE, SAME, Err(DpopProofInvalid)),
        ("alg wrong case", |h| h["alg"] = json!("es256"), NONE, SAME, Err(DpopProofInvalid)),
        ("alg does not fit key", |h| {
            let other = if h["alg"] == "EdDSA" { "ES256" } else { "EdDSA" };
            h["alg"] = json!(other);
        }, NONE, SAME, Err(DpopProofInvalid)),
        // Step 7: htm.
        ("htm POST", NONE, |c| c["htm"] = json!("POST"), SAME, Err(DpopHtmMismatch)),
        ("htm lower-case", NONE, |c| c["htm"] = json!("get"), SAME, Err(DpopHtmMismatch)),
        ("request method differs", NONE, NONE, |r| r.method = "DELETE", Err(DpopHtmMismatch)),
        // Step 8: htu.
        ("htu other path", NONE, |c| c["htu"] = json!("https://api.bank.example/payments"), SAME, Err(DpopHtuMismatch)),
        ("htu other host", NONE, |c| c["htu"] = json!("https://evil.example/accounts"), SAME, Err(DpopHtuMismatch)),
        ("htu http", NONE, |c| c["htu"] = json!("http://api.bank.example/accounts"), SAME, Err(DpopHtuMismatch)),
        ("htu other port", NONE, |c| c["htu"] = json!("https://api.bank.example:8443/accounts"), SAME, Err(DpopHtuMismatch)),
        ("htu relative", NONE, |c| c["htu"] = json!("/accounts"), SAME, Err(DpopHtuMismatch)),
        ("htu trailing slash", NONE, |c| c["htu"] = json!("https://api.bank.example/accounts/"), SAME, Err(DpopHtuMismatch)),
        ("htu with query", NONE, |c| c["htu"] = json!("https://api.bank.example/accounts?page=2"), SAME, Ok(())),
        ("htu with fragment", NONE, |c| c["htu"] = json!("https://api.bank.example/accounts#x"), SAME, Ok(())),
        ("htu upper-case host", NONE, |c| c["htu"] = json!("https://API.Bank.Example/accounts"), SAME, Ok(())),
        ("htu :443", NONE, |c| c["htu"] = json!("https://api.bank.example:443/accounts"), SAME, Ok(())),
        ("expected has query", NONE, NONE, |r| r.htu = "https://api.bank.example/accounts?x=1", Ok(())),
        ("expected unparsable", NONE, NONE, |r| r.htu = "not a uri", Err(DpopHtuMismatch)),
        // Step 10: iat window = [now - 60 - 10, now + 10].
        ("iat 10 s ago", NONE, |c| c["iat"] = json!(NOW - 10), SAME, Ok(())),
        ("iat 10 s ahead", NONE, |c| c["iat"] = json!(NOW + 10), SAME, Ok(())),
        ("iat 70 s ago", NONE, |c| c["iat"] = json!(NOW - 70), SAME, Ok(())),
        ("iat 71 s ago", NONE, |c| c["iat"] = json!(NOW - 71), SAME, Err(DpopProofStale)),
        ("iat 11 s ahead", NONE, |c| c["iat"] = json!(NOW + 11), SAME, Err(DpopProofStale)),
        ("iat 1 h ago", NONE, |c| c["iat"] = json!(NOW - 3600), SAME, Err(DpopProofStale)),
        ("iat 1 h ahead", NONE, |c| c["iat"] = json!(NOW + 3600), SAME, Err(DpopProofStale)),
        ("iat fractional", NONE, |c| c["iat"] = json!(NOW as f64 + 0.5), SAME, Ok(())),
        ("iat huge", NONE, |c| c["iat"] = json!(u64::MAX), SAME, Err(DpopProofStale)),
        ("iat negative", NONE, |c| c["iat"] = json!(-1), SAME, Err(DpopProofStale)),
        // Step 11 / §7.1: ath.
        ("ath wrong", NONE, |c| c["ath"] = json!(b64(&[0; 32])), SAME, Err(DpopAthMismatch)),
        ("ath missing", NONE, |c| remove(c, "ath"), SAME, Err(DpopAthMismatch)),
        ("ath not a string", NONE, |c| c["ath"] = json!(1), SAME, Err(DpopProofInvalid)),
        ("other token", NONE, NONE, |r| r.access_token = Some("another-token"), Err(DpopAthMismatch)),
        ("no token, no ath", NONE, |c| remove(c, "ath"), |r| r.access_token = None, Ok(())),
        ("no token, ath tolerated", NONE, NONE, |r| r.access_token = None, Ok(())),
        // Extensions are tolerated (RFC 9449 §4.2 allows more claims; RFC 7515 §4 more headers).
        ("extra header params", |h| { h["kid"] = json!("k1"); h["x-ext"] = json!({"a": [1]}); }, NONE, SAME, Ok(())),
        ("extra claims", NONE, |c| { c["foo"] = json!("bar"); c["nonce"] = json!("n"); c["exp"] = json!(NOW); }, SAME, Ok(())),
    ]
}

#[test]
fn each_rfc9449_check() {
    for key in [TestKey::p256(), TestKey::ed25519()] {
        for (name, edit_header, edit_claims, edit_request, expected) in cases() {
            let (mut h, mut c) = (header(&key), claims());
            edit_header(&mut h);
            edit_claims(&mut c);
            let proof = mint(&h, &c, &key);
            let mut req = request(&proof);
            edit_request(&mut req);
            let got = verify_proof(&req, &DpopSettings::default());
            assert_eq!(got.map(|_| ()), expected, "{} / {name}", key.alg());
        }
    }
}

#[test]
fn rfc9449_figure_13_proof_verifies() {
    let v: Value = serde_json::from_str(VECTORS).expect("vectors");
    let fig = &v["rfc9449"]["figure_13_resource_proof"];
    let s = |k: &str| fig[k].as_str().expect(k);
    let iat = fig["iat"].as_i64().expect("iat");
    let req = ProofRequest {
        proof: s("proof"),
        method: s("htm"),
        htu: s("htu"),
        access_token: Some(s("access_token")),
        now: iat,
    };
    let ok = verify_proof(&req, &DpopSettings::default()).expect("figure 13 verifies");
    assert_eq!(ok.jkt, "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
    assert_eq!(ok.jti, "e1j3V_bKic8-LAEB");
    assert_eq!(ok.iat, iat);
    assert_eq!(ok.replay_expires_at, iat + 70);
    assert_eq!(ok.jkt, v["rfc9449"]["example_jkt"].as_str().expect("jkt"));
    // An hour later the same proof is stale; with another token its ath no longer matches.
    let later = ProofRequest {
        now: iat + 3600,
        ..req
    };
    assert_eq!(
        verify_proof(&later, &DpopSettings::default()),
        Err(DenyReason::DpopProofStale)
    );
    let other = ProofRequest {
        access_token: Some("other"),
        now: iat,
        ..later
    };
    assert_eq!(
        verify_proof(&other, &DpopSettings::default()),
        Err(DenyReason::DpopAthMismatch)
    );

    let fig2 = &v["rfc9449"]["figure_2_token_request_proof"];
    let req = ProofRequest {
        proof: fig2["proof"].as_str().expect("proof"),
        method: "POST",
        htu: "https://server.example.com/token",
        access_token: None,
        now: fig2["iat"].as_i64().expect("iat"),
    };
    assert!(
        verify_proof(&req, &DpopSettings::default()).is_ok(),
        "figure 2 verifies"
    );
}

#[test]
fn ath_vector() {
    assert_eq!(ath(TOKEN), TOKEN_ATH);
}

#[test]
fn rsa_algorithms_follow_settings() {
    let key = TestKey::rsa();
    let fapi = DpopSettings::default();
    let with_rs256 = DpopSettings {
        algorithms: vec![JwsAlg::RS256],
        ..DpopSettings::default()
    };
    // (name, alg, settings, expected)
    let cases = [
        ("PS256 allowed by FAPI list", "PS256", &fapi, Ok(())),
        (
            "RS256 refused by FAPI list",
            "RS256",
            &fapi,
            Err(DenyReason::DpopProofInvalid),
        ),
        (
            "PS512 not in FAPI list",
            "PS512",
            &fapi,
            Err(DenyReason::DpopProofInvalid),
        ),
        ("RS256 when configured", "RS256", &with_rs256, Ok(())),
        (
            "PS256 when only RS256",
            "PS256",
            &with_rs256,
            Err(DenyReason::DpopProofInvalid),
        ),
    ];
    for (name, alg, settings, expected) in cases {
        let mut h = header(&key);
        h["alg"] = json!(alg);
        let proof = mint(&h, &claims(), &key);
        assert_eq!(
            verify_proof(&request(&proof), settings).map(|_| ()),
            expected,
            "{name}"
        );
    }
}

#[test]
fn signature_must_match_embedded_key() {
    let (key, other) = (TestKey::p256(), TestKey::p256());
    let good = mint(&header(&key), &claims(), &key);
    assert!(verify_proof(&request(&good), &DpopSettings::default()).is_ok());
    let (signing_input, sig) = good.rsplit_once('.').expect("dot");
    let mut sig_bytes = URL_SAFE_NO_PAD.decode(sig).expect("b64");
    sig_bytes[10] ^= 0x40;
    let cases = [
        (
            "flipped signature bit",
            format!("{signing_input}.{}", b64(&sig_bytes)),
        ),
        ("other key's jwk", mint(&header(&other), &claims(), &key)),
        ("empty signature", format!("{signing_input}.")),
        ("claims swapped after signing", {
            let mut c = claims();
            c["htm"] = json!("POST");
            let head = signing_input.split('.').next().expect("header");
            format!("{head}.{}.{sig}", b64_json(&c))
        }),
        ("alg none, no signature", {
            let mut h = header(&key);
            h["alg"] = json!("none");
            format!("{}.{}.", b64_json(&h), b64_json(&claims()))
        }),
    ];
    for (name, proof) in cases {
        let got = verify_proof(&request(&proof), &DpopSettings::default());
        assert_eq!(got, Err(DenyReason::DpopProofInvalid), "{name}");
    }
}

#[test]
fn verified_proof_fields() {
    let key = TestKey::p256();
    let settings = DpopSettings::default();
    let verify = |c: &Value, htu: &'static str| {
        let proof = mint(&header(&key), c, &key);
        let req = ProofRequest {
            htu,
            ..request(&proof)
        };
        verify_proof(&req, &settings).expect("valid")
    };
    let mut c = claims();
    c["iat"] = json!(NOW - 5);
    let a = verify(&c, HTU);
    assert_eq!(
        a.jkt,
        thumbprint(key.public_jwk().as_object().expect("jwk")).expect("jkt")
    );
    assert_eq!(
        (a.jti.as_str(), a.iat, a.replay_expires_at),
        ("e1j3V_bKic8-LAEB", NOW - 5, NOW + 65)
    );
    // Same target URI in another spelling → same replay key; other URI or jti → other key.
    c["htu"] = json!("https://API.bank.example:443/accounts?x");
    assert_eq!(
        verify(&c, "https://api.bank.example/accounts?y").replay_key,
        a.replay_key
    );
    c["htu"] = json!("https://api.bank.example/payments");
    assert_ne!(
        verify(&c, "https://api.bank.example/payments").replay_key,
        a.replay_key
    );
    c["htu"] = json!(HTU);
    c["jti"] = json!("other");
    assert_ne!(verify(&c, HTU).replay_key, a.replay_key);
}

#[test]
fn nonce_when_required() {
    let key = TestKey::ed25519();
    let issuer = NonceIssuer::new(&[42u8; 32]).expect("issuer");
    let settings = DpopSettings {
        nonce: Some(issuer.clone()),
        ..DpopSettings::default()
    };
    let stranger = NonceIssuer::new(&[43u8; 32]).expect("stranger");
    let cases = [
        ("missing", None, Err(DenyReason::DpopNonceRequired)),
        ("current", Some(json!(issuer.issue(NOW))), Ok(())),
        ("previous step", Some(json!(issuer.issue(NOW - 60))), Ok(())),
        (
            "stale",
            Some(json!(issuer.issue(NOW - 180))),
            Err(DenyReason::DpopNonceRequired),
        ),
        (
            "other secret",
            Some(json!(stranger.issue(NOW))),
            Err(DenyReason::DpopNonceRequired),
        ),
        (
            "not a string",
            Some(json!(12)),
            Err(DenyReason::DpopNonceRequired),
        ),
        (
            "huge",
            Some(json!("n".repeat(4000))),
            Err(DenyReason::DpopNonceRequired),
        ),
    ];
    for (name, nonce, expected) in cases {
        let mut c = claims();
        if let Some(n) = nonce {
            c["nonce"] = n;
        }
        let proof = mint(&header(&key), &c, &key);
        assert_eq!(
            verify_proof(&request(&proof), &settings).map(|_| ()),
            expected,
            "{name}"
        );
    }
}

#[test]
fn garbage_is_invalid_without_panic() {
    let key = TestKey::p256();
    let good = mint(&header(&key), &claims(), &key);
    let (h, rest) = good.split_once('.').expect("dot");
    let (c, sig) = rest.split_once('.').expect("dot");
    let huge_claims = {
        let mut c = claims();
        c["pad"] = json!("x".repeat(MAX_PROOF_LEN));
        mint(&header(&key), &c, &key)
    };
    let cases: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("one dot", ".".into()),
        ("two dots", "..".into()),
        ("two parts", format!("{h}.{c}")),
        ("four parts", format!("{good}.{sig}")),
        ("JWE-like five parts", format!("{h}.{c}.{sig}.{sig}.{sig}")),
        ("padding", format!("{h}=.{c}.{sig}")),
        // Standard-alphabet base64 (`+`, `/`) is not base64url; always put one in, so the case
        // does not depend on whether the random signature happened to contain `-` or `_`.
        ("standard alphabet", format!("{h}.{c}.+/{}", &sig[2..])),
        (
            "header not JSON",
            format!("{}.{c}.{sig}", b64(b"{not json")),
        ),
        ("header JSON array", format!("{}.{c}.{sig}", b64(b"[1,2]"))),
        (
            "claims JSON string",
            format!("{h}.{}.{sig}", b64(b"\"claims\"")),
        ),
        (
            "invalid UTF-8 header",
            format!("{}.{c}.{sig}", b64(&[0xff, 0xfe, 0x7b])),
        ),
        ("signature not base64", format!("{h}.{c}.***")),
        ("whitespace", format!(" {good}")),
        ("oversized", huge_claims),
        ("oversized junk", "a.".repeat(MAX_PROOF_LEN)),
        ("deep nesting", format!("{}.{c}.{sig}", b64(&[b'['; 4000]))),
        ("unicode", "é.é.é".into()),
    ];
    for (name, proof) in cases {
        assert_ne!(proof, good, "{name}: must differ from the valid proof");
        let got = verify_proof(&request(&proof), &DpopSettings::default());
        assert_eq!(got, Err(DenyReason::DpopProofInvalid), "{name}");
    }
}

#[test]
fn mutated_proofs_never_panic_or_pass() {
    let key = TestKey::p256();
    let good = mint(&header(&key), &claims(), &key);
    let settings = DpopSettings::default();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        // xorshift64: deterministic pseudo-random bytes for a repeatable test.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..good.len() {
        assert!(
            verify_proof(&request(&good[..i]), &settings).is_err(),
            "truncated at {i}"
        );
    }
    for _ in 0..300 {
        let mut bytes = good.clone().into_bytes();
        let at = (next() % bytes.len() as u64) as usize;
        let b = b"AZaz09-_.=+/{}\"\0\xc3"[(next() % 17) as usize];
        if bytes[at] == b {
            continue;
        }
        bytes[at] = b;
        let mutated = String::from_utf8_lossy(&bytes).into_owned();
        assert!(
            verify_proof(&request(&mutated), &settings).is_err(),
            "byte {at} := {b}"
        );
    }
    for len in [1, 17, 300, 2000, 9000] {
        let junk: Vec<u8> = (0..len).map(|_| (next() & 0xff) as u8).collect();
        let junk = String::from_utf8_lossy(&junk).into_owned();
        assert_eq!(
            verify_proof(&request(&junk), &settings),
            Err(DenyReason::DpopProofInvalid),
            "{len} random bytes"
        );
    }
}

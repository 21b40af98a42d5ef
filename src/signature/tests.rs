//! RFC 9421 Appendix B vectors through the real parser, base builder and crypto.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::*;
use crate::signature::base::signature_base;
use crate::signature::fields::{parse_inputs, parse_signatures};

pub(crate) fn vectors() -> Value {
    serde_json::from_str(include_str!("../../tests/vectors/rfc9421.json")).expect("vector JSON")
}

pub(crate) fn headers(v: &Value) -> HeaderMap {
    let mut h = HeaderMap::new();
    for pair in v["headers"].as_array().expect("headers") {
        let name = HeaderName::from_bytes(pair[0].as_str().expect("name").as_bytes()).expect("n");
        let value = HeaderValue::from_str(pair[1].as_str().expect("value")).expect("v");
        h.append(name, value);
    }
    h
}

pub(crate) fn public(v: &Value, key: &str) -> PublicJwk {
    let jwk = v[key]["jwk"].as_object().expect("jwk");
    PublicJwk::from_json(jwk).expect("RFC test key is a valid public JWK")
}

fn request<'a>(v: &'a Value, h: &'a HeaderMap) -> RequestParts<'a> {
    let r = &v["test-request"];
    RequestParts {
        method: r["method"].as_str().expect("method"),
        scheme: r["scheme"].as_str().expect("scheme"),
        authority: r["authority"].as_str().expect("authority"),
        path: r["path"].as_str().expect("path"),
        query: r["query"].as_str(),
        headers: h,
    }
}

/// (the example's Signature-Input member, its signature bytes)
fn example(v: &Value, name: &str) -> (fields::SignatureInput, Vec<u8>) {
    let e = &v[name];
    let input = parse_inputs(e["signature_input"].as_str().expect("input"))
        .expect("RFC input parses")
        .remove(0);
    let (_, sig) = parse_signatures(e["signature"].as_str().expect("sig"))
        .expect("RFC signature parses")
        .remove(0);
    (input, sig)
}

#[test]
fn rfc9421_b26_ed25519_is_reproduced_byte_for_byte() {
    let v = vectors();
    let h = headers(&v["test-request"]);
    let (input, sig) = example(&v, "B.2.6");
    let base = signature_base(
        Message::Request(request(&v, &h)),
        &input.components,
        &input.serialized,
    )
    .expect("base");
    assert_eq!(base, v["B.2.6"]["base"].as_str().expect("base"));

    // B.1.4: the private key; Ed25519 is deterministic, so our signature is the RFC's.
    let seed = URL_SAFE_NO_PAD
        .decode(
            v["test-key-ed25519"]["private_seed"]
                .as_str()
                .expect("seed"),
        )
        .expect("seed");
    let pair = Ed25519KeyPair::from_seed_unchecked(&seed).expect("seed");
    let jwk = public(&v, "test-key-ed25519");
    assert_eq!(
        URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
        v["test-key-ed25519"]["jwk"]["x"].as_str().expect("x"),
        "B.1.4 public key derives from the private key"
    );
    let ours = pair.sign(base.as_bytes());
    assert_eq!(ours.as_ref(), sig.as_slice(), "B.2.6 signature reproduced");
    assert_eq!(Algorithm::for_key(&jwk), Some(Algorithm::Ed25519));
    assert!(jwk.verify(Algorithm::Ed25519.jws(), base.as_bytes(), &sig));
}

#[test]
fn rfc9421_b24_ecdsa_verifies_and_fails_once_a_component_changes() {
    let v = vectors();
    let resp = &v["test-response"];
    let (input, sig) = example(&v, "B.2.4");
    let jwk = public(&v, "test-key-ecc-p256");
    assert_eq!(Algorithm::for_key(&jwk), Some(Algorithm::EcdsaP256Sha256));
    let base_of = |status: u16, h: &HeaderMap| {
        signature_base(
            Message::Response(ResponseParts {
                status,
                headers: h,
                request: None,
            }),
            &input.components,
            &input.serialized,
        )
        .expect("base")
    };
    let h = headers(resp);
    let base = base_of(200, &h);
    assert_eq!(base, v["B.2.4"]["base"].as_str().expect("base"));
    assert!(
        jwk.verify(JwsAlg::ES256, base.as_bytes(), &sig),
        "B.2.4 verifies"
    );
    // The body is covered through its digest (RFC 9530): the RFC's own digest matches it.
    let body = resp["body"].as_str().expect("body").as_bytes();
    assert_eq!(digest::verify(&h, body), Ok(()));

    let edits: [(&str, u16, &str, &str); 4] = [
        ("status", 201, "content-type", "application/json"),
        ("content-type", 200, "content-type", "text/plain"),
        ("content-length", 200, "content-length", "24"),
        ("content-digest", 200, "content-digest", "sha-512=:AAAA:"),
    ];
    for (name, status, field, value) in edits {
        let mut changed = h.clone();
        changed.insert(
            HeaderName::from_bytes(field.as_bytes()).expect("name"),
            HeaderValue::from_static(value),
        );
        let b = base_of(status, &changed);
        assert!(
            !jwk.verify(JwsAlg::ES256, b.as_bytes(), &sig),
            "{name} changed: must not verify"
        );
    }
}

#[test]
fn the_key_decides_the_algorithm() {
    let v = vectors();
    let ec = public(&v, "test-key-ecc-p256");
    let ed = public(&v, "test-key-ed25519");
    assert_eq!(Algorithm::for_key(&ec), Some(Algorithm::EcdsaP256Sha256));
    assert_eq!(Algorithm::for_key(&ed), Some(Algorithm::Ed25519));
    // A JWK that pins another algorithm is not usable here.
    let mut pinned = v["test-key-ecc-p256"]["jwk"].clone();
    pinned["alg"] = "ES384".into();
    let pinned = PublicJwk::from_json(pinned.as_object().expect("obj")).expect("jwk");
    assert_eq!(Algorithm::for_key(&pinned), None);
    for (name, want) in [
        ("ecdsa-p256-sha256", Some(Algorithm::EcdsaP256Sha256)),
        ("ed25519", Some(Algorithm::Ed25519)),
        ("rsa-pss-sha512", Some(Algorithm::RsaPssSha512)),
        ("hmac-sha256", None),
        ("rsa-v1_5-sha256", None),
        ("ecdsa-p384-sha384", None),
        ("ED25519", None),
    ] {
        assert_eq!(Algorithm::parse(name), want, "{name}");
    }
    let _ = STANDARD;
}

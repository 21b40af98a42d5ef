use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PSS_SHA512,
};
use http::HeaderMap;
use serde_json::json;

use super::*;
use crate::signature::fields::{Component, Params};
use crate::signature::sign::{SignError, produce};
use crate::signature::{Message, RequestParts};

fn b64u(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// A signed request's audit info, made with `sign` (the signer's algorithm `alg`).
fn info(alg: Algorithm, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> SignatureInfo {
    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        http::HeaderValue::from_static("DPoP secret-token"),
    );
    let req = RequestParts {
        method: "GET",
        scheme: "https",
        authority: "api.bank.example",
        path: "/a",
        query: None,
        headers: &h,
    };
    let comps = [Component::new("@method"), Component::new("authorization")];
    let params = Params {
        created: Some(1),
        keyid: Some("k1".into()),
        ..Params::default()
    };
    produce("sig1", Message::Request(req), &comps, &params, alg, |b| {
        Ok::<_, SignError>(sign(b))
    })
    .expect("signed")
    .info
}

fn write(dir: &Path, lines: &[Value]) -> PathBuf {
    let p = dir.join("audit.jsonl");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&p, text).expect("write");
    p
}

fn decision(client: &str, info: &SignatureInfo) -> Value {
    json!({"kind": "decision", "client_id": client, "signature": info})
}

#[test]
fn stored_signatures_are_rechecked_and_tampering_fails() {
    let rng = SystemRandom::new();
    let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("ec");
    let p = ec.public_key().as_ref();
    let ec_jwk = json!({"kty": "EC", "crv": "P-256", "x": b64u(&p[1..33]), "y": b64u(&p[33..65]), "kid": "k1"});
    let rsa = RsaKeyPair::generate(KeySize::Rsa2048).expect("rsa");
    let rsa_jwk = json!({"kty": "RSA", "kid": "k1",
        "n": b64u(rsa.public_key().modulus().big_endian_without_leading_zero()),
        "e": b64u(rsa.public_key().exponent().big_endian_without_leading_zero())});
    let ec_info = info(Algorithm::EcdsaP256Sha256, |b| {
        ec.sign(&rng, b).expect("sign").as_ref().to_vec()
    });
    let rsa_info = info(Algorithm::RsaPssSha512, |b| {
        let mut sig = vec![0; rsa.public_modulus_len()];
        rsa.sign(&RSA_PSS_SHA512, &rng, b, &mut sig).expect("sign");
        sig
    });
    assert!(rsa_info.base_sha512.is_some());
    let ed_info = SignatureInfo {
        alg: "ed25519".into(),
        ..ec_info.clone()
    };
    let mut book = KeyBook::default();
    book.add_jwks("tpp-1", &json!({"keys": [ec_jwk]}))
        .expect("jwks");
    book.add_jwks("tpp-rsa", &json!({"keys": [rsa_jwk]}))
        .expect("jwks");
    let dir = tempfile::tempdir().expect("dir");

    let good = write(
        dir.path(),
        &[
            decision("tpp-1", &ec_info),
            decision("tpp-rsa", &rsa_info),
            decision("tpp-1", &ed_info),
            decision("tpp-unknown", &ec_info),
            json!({"kind": "outcome", "status": 200}),
        ],
    );
    let s = recheck_files(&[good], &book).expect("all verify");
    assert_eq!(
        s,
        RecheckSummary {
            verified: 2,
            not_recheckable: 1,
            without_key: 1
        }
    );
    assert!(s.to_string().contains("2 re-checked ok"));

    let mut flipped = ec_info.clone();
    let mut raw = STANDARD.decode(&flipped.value).expect("b64");
    raw[10] ^= 1;
    flipped.value = STANDARD.encode(raw);
    let mut other_base = rsa_info.clone();
    other_base.base_sha512 = Some(b64u(&[7; 64]));
    let cases = [
        ("signature value edited", decision("tpp-1", &flipped)),
        ("base digest edited", decision("tpp-rsa", &other_base)),
        (
            "signed by another client's key",
            decision("tpp-rsa", &ec_info),
        ),
        (
            "no client_id",
            json!({"kind": "decision", "signature": ec_info}),
        ),
        (
            "malformed object",
            json!({"kind": "decision", "client_id": "tpp-1", "signature": {"alg": 1}}),
        ),
    ];
    for (name, line) in cases {
        let p = write(dir.path(), &[decision("tpp-1", &ec_info), line]);
        let f = recheck_files(std::slice::from_ref(&p), &book).expect_err(name);
        assert_eq!(f.line, 2, "{name}: {f}");
    }
}

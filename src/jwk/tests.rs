use super::*;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair, RsaKeyPair,
};
use serde_json::json;

const VECTORS: &str = include_str!("../../tests/vectors/rfc-vectors.json");

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("vectors parse")
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn ec_jwk(kp: &EcdsaKeyPair, crv: &str) -> Map<String, Value> {
    let point = kp.public_key().as_ref();
    let half = (point.len() - 1) / 2;
    obj(json!({"kty": "EC", "crv": crv, "x": b64(&point[1..=half]), "y": b64(&point[1 + half..])}))
}

fn rsa_jwk(kp: &RsaKeyPair) -> Map<String, Value> {
    let pk = kp.public_key();
    obj(json!({
        "kty": "RSA",
        "n": b64(pk.modulus().big_endian_without_leading_zero()),
        "e": b64(pk.exponent().big_endian_without_leading_zero()),
    }))
}

#[test]
fn rfc_thumbprint_vectors() {
    let v = vectors();
    let cases = [
        (
            "RFC 7638 §3.1 RSA",
            &v["rfc7638"]["section_3_1_jwk"],
            &v["rfc7638"]["thumbprint_sha256"],
        ),
        (
            "RFC 9449 example EC key",
            &v["rfc9449"]["example_jwk"],
            &v["rfc9449"]["example_jkt"],
        ),
        (
            "RFC 8037 A.3 Ed25519",
            &v["rfc8037"]["appendix_a_public_jwk"],
            &v["rfc8037"]["appendix_a_3_ed25519_thumbprint"],
        ),
    ];
    for (name, jwk, expected) in cases {
        let jwk = obj(jwk.clone());
        let expected = expected.as_str().expect("string");
        assert_eq!(thumbprint(&jwk).as_deref(), Ok(expected), "{name}");
        let parsed = PublicJwk::from_json(&jwk).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(parsed.thumbprint(), expected, "{name}");
    }
    // Literal values from spec §10, independent of the vectors file.
    let rsa = obj(v["rfc7638"]["section_3_1_jwk"].clone());
    assert_eq!(
        thumbprint(&rsa).as_deref(),
        Ok("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
    );
    let ec = obj(v["rfc9449"]["example_jwk"].clone());
    assert_eq!(
        thumbprint(&ec).as_deref(),
        Ok("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
    );
}

#[test]
fn thumbprint_ignores_optional_members_and_order() {
    let v = vectors();
    let mut jwk = obj(v["rfc9449"]["example_jwk"].clone());
    jwk.insert("kid".into(), json!("k1"));
    jwk.insert("use".into(), json!("sig"));
    jwk.insert("alg".into(), json!("ES256"));
    assert_eq!(
        thumbprint(&jwk).as_deref(),
        Ok("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
    );
}

#[test]
fn thumbprint_refusals() {
    let cases = [
        (
            "symmetric",
            json!({"kty": "oct", "k": "AAAA"}),
            JwkError::Symmetric,
        ),
        (
            "unknown kty",
            json!({"kty": "XYZ"}),
            JwkError::UnsupportedKty("XYZ".into()),
        ),
        (
            "no kty",
            json!({"x": "AAAA"}),
            JwkError::MissingMember("kty"),
        ),
        (
            "EC without y",
            json!({"kty": "EC", "crv": "P-256", "x": "AA"}),
            JwkError::MissingMember("y"),
        ),
        (
            "RSA e not string",
            json!({"kty": "RSA", "n": "AA", "e": 3}),
            JwkError::MissingMember("e"),
        ),
    ];
    for (name, jwk, err) in cases {
        assert_eq!(thumbprint(&obj(jwk)), Err(err), "{name}");
    }
}

#[test]
fn public_jwk_refusals() {
    let v = vectors();
    let ec = v["rfc9449"]["example_jwk"].clone();
    let with = |base: &Value, k: &str, val: Value| {
        let mut m = obj(base.clone());
        m.insert(k.into(), val);
        Value::Object(m)
    };
    let rsa = v["rfc7638"]["section_3_1_jwk"].clone();
    let n1024 = b64(&[0xC5; 128]);
    let n_leading_zero = {
        let mut n = URL_SAFE_NO_PAD
            .decode(rsa["n"].as_str().expect("n"))
            .expect("b64");
        n.insert(0, 0);
        b64(&n)
    };
    let cases: Vec<(&str, Value, JwkError)> = vec![
        (
            "EC private d",
            with(&ec, "d", json!("AAAA")),
            JwkError::PrivateMember("d"),
        ),
        (
            "RSA private p",
            with(&rsa, "p", json!("AAAA")),
            JwkError::PrivateMember("p"),
        ),
        (
            "RSA private qi",
            with(&rsa, "qi", json!("AAAA")),
            JwkError::PrivateMember("qi"),
        ),
        (
            "oct with k",
            json!({"kty": "oct", "k": "c2VjcmV0"}),
            JwkError::PrivateMember("k"),
        ),
        ("oct without k", json!({"kty": "oct"}), JwkError::Symmetric),
        (
            "unknown kty",
            json!({"kty": "EC2"}),
            JwkError::UnsupportedKty("EC2".into()),
        ),
        (
            "P-521",
            with(&ec, "crv", json!("P-521")),
            JwkError::UnsupportedCurve("P-521".into()),
        ),
        (
            "secp256k1",
            with(&ec, "crv", json!("secp256k1")),
            JwkError::UnsupportedCurve("secp256k1".into()),
        ),
        (
            "short x",
            with(&ec, "x", json!(b64(&[1; 31]))),
            JwkError::BadEncoding("x"),
        ),
        (
            "padded x",
            with(
                &ec,
                "x",
                json!(format!("{}=", ec["x"].as_str().expect("x"))),
            ),
            JwkError::BadEncoding("x"),
        ),
        (
            "std alphabet y",
            with(
                &ec,
                "y",
                json!("9VE4jf/Ok/o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"),
            ),
            JwkError::BadEncoding("y"),
        ),
        (
            "point off curve",
            with(&ec, "y", json!(b64(&[2; 32]))),
            JwkError::InvalidKey,
        ),
        (
            "P-384 with P-256 coords",
            with(&ec, "crv", json!("P-384")),
            JwkError::BadEncoding("x"),
        ),
        (
            "RSA 1024 bits",
            with(&rsa, "n", json!(n1024)),
            JwkError::RsaModulusSize(1024),
        ),
        (
            "RSA n leading zero",
            with(&rsa, "n", json!(n_leading_zero)),
            JwkError::BadEncoding("n"),
        ),
        (
            "RSA e = 1",
            with(&rsa, "e", json!("AQ")),
            JwkError::RsaExponent,
        ),
        (
            "RSA even e",
            with(&rsa, "e", json!("AQAA")),
            JwkError::RsaExponent,
        ),
        (
            "RSA huge e",
            with(&rsa, "e", json!(b64(&[1, 0, 0, 0, 1]))),
            JwkError::RsaExponent,
        ),
        (
            "X25519",
            json!({"kty": "OKP", "crv": "X25519", "x": b64(&[9; 32])}),
            JwkError::UnsupportedCurve("X25519".into()),
        ),
        (
            "Ed25519 short x",
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&[9; 31])}),
            JwkError::BadEncoding("x"),
        ),
        (
            "alg not a string",
            with(&ec, "alg", json!(7)),
            JwkError::MissingMember("alg"),
        ),
    ];
    for (name, jwk, err) in cases {
        assert_eq!(
            PublicJwk::from_json(&obj(jwk)).map(|_| ()),
            Err(err),
            "{name}"
        );
    }
}

#[test]
fn verify_with_generated_keys() {
    let rng = SystemRandom::new();
    let msg = b"header.payload";
    let p256 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("p256");
    let p384 = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).expect("p384");
    let ed = Ed25519KeyPair::generate().expect("ed25519");
    let rsa = RsaKeyPair::generate(KeySize::Rsa2048).expect("rsa");
    let rsa_sig = |enc: &'static dyn signature::RsaEncoding| {
        let mut sig = vec![0; rsa.public_modulus_len()];
        rsa.sign(enc, &rng, msg, &mut sig).expect("rsa sign");
        sig
    };
    let ed_jwk = obj(json!({"kty": "OKP", "crv": "Ed25519", "x": b64(ed.public_key().as_ref())}));
    let keys = [
        (
            "P-256",
            ec_jwk(&p256, "P-256"),
            JwsAlg::ES256,
            p256.sign(&rng, msg).expect("sig").as_ref().to_vec(),
        ),
        (
            "P-384",
            ec_jwk(&p384, "P-384"),
            JwsAlg::ES384,
            p384.sign(&rng, msg).expect("sig").as_ref().to_vec(),
        ),
        (
            "Ed25519",
            ed_jwk,
            JwsAlg::EdDSA,
            ed.sign(msg).as_ref().to_vec(),
        ),
        (
            "RSA PS256",
            rsa_jwk(&rsa),
            JwsAlg::PS256,
            rsa_sig(&signature::RSA_PSS_SHA256),
        ),
        (
            "RSA PS512",
            rsa_jwk(&rsa),
            JwsAlg::PS512,
            rsa_sig(&signature::RSA_PSS_SHA512),
        ),
        (
            "RSA RS256",
            rsa_jwk(&rsa),
            JwsAlg::RS256,
            rsa_sig(&signature::RSA_PKCS1_SHA256),
        ),
    ];
    for (name, jwk, alg, sig) in keys {
        let key = PublicJwk::from_json(&jwk).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(key.verify(alg, msg, &sig), "{name}: good signature");
        assert!(
            !key.verify(alg, b"header.payloaD", &sig),
            "{name}: other message"
        );
        let mut bad = sig.clone();
        bad[4] ^= 1;
        assert!(!key.verify(alg, msg, &bad), "{name}: flipped bit");
        assert!(
            !key.verify(alg, msg, &sig[..sig.len() - 1]),
            "{name}: truncated"
        );
        assert!(!key.verify(alg, msg, &[]), "{name}: empty");
        let wrong = if alg == JwsAlg::ES256 {
            JwsAlg::ES384
        } else {
            JwsAlg::ES256
        };
        assert!(
            !key.verify(wrong, msg, &sig),
            "{name}: alg does not fit key"
        );
    }
    // PSS vs PKCS#1 v1.5 are not interchangeable.
    let key = PublicJwk::from_json(&rsa_jwk(&rsa)).expect("rsa jwk");
    assert!(!key.verify(JwsAlg::RS256, msg, &rsa_sig(&signature::RSA_PSS_SHA256)));
}

#[test]
fn jwk_alg_member_restricts_use() {
    let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("p256");
    let sig = kp.sign(&SystemRandom::new(), b"m").expect("sig");
    let mut jwk = ec_jwk(&kp, "P-256");
    jwk.insert("alg".into(), json!("ES256"));
    assert!(
        PublicJwk::from_json(&jwk)
            .expect("jwk")
            .verify(JwsAlg::ES256, b"m", sig.as_ref())
    );
    jwk.insert("alg".into(), json!("ES384"));
    assert!(
        !PublicJwk::from_json(&jwk)
            .expect("jwk")
            .verify(JwsAlg::ES256, b"m", sig.as_ref())
    );
}

#[test]
fn alg_names() {
    for alg in JwsAlg::ALL {
        assert_eq!(JwsAlg::parse(alg.as_str()), Some(alg), "{alg}");
    }
    for bad in [
        "none", "None", "HS256", "HS384", "HS512", "es256", "ES512", "", "ES256 ",
    ] {
        assert_eq!(JwsAlg::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn thumbprint_comparison() {
    let cases = [
        ("equal", "abc", "abc", true),
        ("differs last", "abc", "abd", false),
        ("prefix", "abc", "ab", false),
        ("empty", "", "", true),
    ];
    for (name, a, b, eq) in cases {
        assert_eq!(thumbprints_equal(a, b), eq, "{name}");
    }
}

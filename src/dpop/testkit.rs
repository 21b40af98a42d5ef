//! Test-only DPoP proof minting, independent of the verifier: JWS built by hand with base64 and
//! serde_json, signed with aws-lc-rs key pairs. Nothing here calls `crate::jwk` or `verify_proof`.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

pub(crate) enum TestKey {
    P256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn b64_json(v: &Value) -> String {
    b64(v.to_string().as_bytes())
}

impl TestKey {
    pub(crate) fn p256() -> Self {
        Self::P256(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("p256"))
    }

    pub(crate) fn ed25519() -> Self {
        Self::Ed25519(Ed25519KeyPair::generate().expect("ed25519"))
    }

    pub(crate) fn rsa() -> Self {
        Self::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).expect("rsa"))
    }

    /// The algorithm this key signs with by default.
    pub(crate) fn alg(&self) -> &'static str {
        match self {
            Self::P256(_) => "ES256",
            Self::Ed25519(_) => "EdDSA",
            Self::Rsa(_) => "PS256",
        }
    }

    pub(crate) fn public_jwk(&self) -> Value {
        match self {
            Self::P256(kp) => {
                let p = kp.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..65])})
            }
            Self::Ed25519(kp) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(kp.public_key().as_ref())})
            }
            Self::Rsa(kp) => {
                let pk = kp.public_key();
                json!({
                    "kty": "RSA",
                    "n": b64(pk.modulus().big_endian_without_leading_zero()),
                    "e": b64(pk.exponent().big_endian_without_leading_zero()),
                })
            }
        }
    }

    /// Signs `input` as `alg` would; for algorithms the key cannot do, signs with its default.
    pub(crate) fn sign(&self, alg: &str, input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Self::P256(kp) => kp.sign(&rng, input).expect("sign").as_ref().to_vec(),
            Self::Ed25519(kp) => kp.sign(input).as_ref().to_vec(),
            Self::Rsa(kp) => {
                let enc: &'static dyn signature::RsaEncoding = match alg {
                    "RS256" => &signature::RSA_PKCS1_SHA256,
                    "PS384" => &signature::RSA_PSS_SHA384,
                    "PS512" => &signature::RSA_PSS_SHA512,
                    _ => &signature::RSA_PSS_SHA256,
                };
                let mut sig = vec![0; kp.public_modulus_len()];
                kp.sign(enc, &rng, input, &mut sig).expect("rsa sign");
                sig
            }
        }
    }
}

/// A compact JWS over `header` and `claims`, signed by `key` with the header's `alg`.
pub(crate) fn mint(header: &Value, claims: &Value, key: &TestKey) -> String {
    let input = format!("{}.{}", b64_json(header), b64_json(claims));
    let alg = header["alg"].as_str().unwrap_or(key.alg());
    let sig = key.sign(alg, input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

/// The usual DPoP header for `key`.
pub(crate) fn header(key: &TestKey) -> Value {
    json!({"typ": "dpop+jwt", "alg": key.alg(), "jwk": key.public_jwk()})
}

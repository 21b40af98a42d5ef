//! The demo's sample authorization server: an ES256 signing key generated at start, its JWKS
//! served over HTTP, and a token minting function. Demo only; never used by the proxy itself.

use std::net::SocketAddr;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::http::json_response;

pub const ISSUER: &str = "https://as.demo-bank.example";
pub const AUDIENCE: &str = "https://api.bank.example";

/// An ES256 key pair with its public JWK.
pub struct SigningKey {
    pub kid: String,
    pub jwk: Value,
    encoding: EncodingKey,
    pub pair: EcdsaKeyPair,
}

impl SigningKey {
    pub fn generate(kid: &str) -> Result<Self, String> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "key generation failed")?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| "key parse failed")?;
        // Uncompressed SEC1 point: 0x04 || x (32) || y (32).
        let point = pair.public_key().as_ref();
        if point.len() != 65 {
            return Err("unexpected public key size".into());
        }
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Ok(Self {
            kid: kid.to_owned(),
            jwk,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            pair,
        })
    }

    /// Signs `claims` as a JWT with the given `typ` and extra header fields.
    pub fn sign(&self, typ: &str, claims: &Value, jwk_in_header: bool) -> Result<String, String> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(typ.to_owned());
        if jwk_in_header {
            let public: jsonwebtoken::jwk::Jwk = serde_json::from_value(json!({
                "kty": "EC", "crv": "P-256", "x": self.jwk["x"], "y": self.jwk["y"],
            }))
            .map_err(|e| e.to_string())?;
            header.jwk = Some(public);
        } else {
            header.kid = Some(self.kid.clone());
        }
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| e.to_string())
    }
}

/// Serves `{"keys":[…]}` at any path until the process ends.
pub async fn serve_jwks(keys: Vec<Value>) -> Result<SocketAddr, String> {
    let body = json!({ "keys": keys }).to_string();
    super::http::serve(move |_req| json_response(http::StatusCode::OK, body.clone())).await
}

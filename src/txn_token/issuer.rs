//! Minting Txn-Tokens at the edge.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use super::config::MintSettings;
use super::{TYP, TxnContext, TxnTokenError};

/// Signs Txn-Tokens with one ES256 key. Cheap to share behind an `Arc`.
pub struct TxnTokenIssuer {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
    /// RFC 7638 thumbprint of the public key: stable across restarts for a file key, so a
    /// verifier's cached JWKS keeps working.
    kid: String,
    /// The public JWK (no private members).
    jwk: Value,
    issuer: String,
    audience: String,
    lifetime: i64,
}

impl std::fmt::Debug for TxnTokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxnTokenIssuer")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl TxnTokenIssuer {
    /// Loads the configured key, or generates an ephemeral one (its public half is published
    /// at admin `/jwks`, so internal hops can still verify; tokens die with the process).
    pub fn new(settings: &MintSettings) -> Result<Self, TxnTokenError> {
        let key_err = |m: &str| TxnTokenError::Key(m.to_owned());
        let pair = match &settings.signing_key {
            Some(der) => {
                EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &der.0)
                    .map_err(|_| key_err("not an EC P-256 key"))?
            }
            None => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(|_| key_err("key generation failed"))?,
        };
        // Uncompressed SEC1 point: 0x04 || x (32) || y (32).
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 4 {
            return Err(key_err("unexpected public key encoding"));
        }
        let mut jwk = Map::new();
        jwk.insert("kty".into(), "EC".into());
        jwk.insert("crv".into(), "P-256".into());
        jwk.insert("x".into(), URL_SAFE_NO_PAD.encode(&point[1..33]).into());
        jwk.insert("y".into(), URL_SAFE_NO_PAD.encode(&point[33..65]).into());
        let kid = crate::jwk::thumbprint(&jwk).map_err(|e| TxnTokenError::Key(e.to_string()))?;
        jwk.insert("kid".into(), kid.clone().into());
        jwk.insert("use".into(), "sig".into());
        jwk.insert("alg".into(), "ES256".into());
        Ok(Self {
            pair,
            rng: SystemRandom::new(),
            kid,
            jwk: Value::Object(jwk),
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            lifetime: i64::try_from(settings.lifetime.as_secs())
                .unwrap_or(60)
                .min(60),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// `{"keys":[…]}` with the public key, for admin `/jwks`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk.clone()] })
    }

    /// Mints a Txn-Token for one allowed request. Returns the compact JWT and its new `txn`
    /// id (also written to the audit record). Claims per the Txn-Token draft: `iss`, `aud`
    /// (trust domain), `iat`, `exp` (≤ 60 s later), `txn`, `sub`, `scope`, `req_wl`, `rctx`;
    /// plus `act` (RFC 8693 §4.1 shape, with per-hop `scope`), `purpose` and `consent_id`.
    pub fn mint(&self, ctx: &TxnContext<'_>, now: i64) -> Result<(String, String), TxnTokenError> {
        let txn = crate::ids::uuid_v4();
        let mut claims = Map::new();
        claims.insert("iss".into(), self.issuer.as_str().into());
        claims.insert("aud".into(), self.audience.as_str().into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), now.saturating_add(self.lifetime).into());
        claims.insert("txn".into(), txn.as_str().into());
        claims.insert("sub".into(), ctx.sub.into());
        claims.insert("scope".into(), ctx.scopes.join(" ").into());
        claims.insert("req_wl".into(), ctx.req_wl.into());
        if let Some(act) = ctx.chain.to_act_claim() {
            claims.insert("act".into(), act);
        }
        if let Some(p) = ctx.purpose {
            claims.insert("purpose".into(), p.into());
        }
        if let Some(c) = ctx.consent_id {
            claims.insert("consent_id".into(), c.into());
        }
        claims.insert(
            "rctx".into(),
            json!({
                "req_ip": ctx.rctx.req_ip.to_string(),
                "method": ctx.rctx.method,
                "route": ctx.rctx.route,
            }),
        );
        let header = json!({"alg": "ES256", "typ": TYP, "kid": self.kid});
        let jwt = self.sign(&header, &Value::Object(claims))?;
        Ok((jwt, txn))
    }

    /// RFC 7515 compact serialization; ES256 signatures are the fixed `r || s` form
    /// (RFC 7518 §3.4), which is what `ECDSA_P256_SHA256_FIXED_SIGNING` produces.
    fn sign(&self, header: &Value, claims: &Value) -> Result<String, TxnTokenError> {
        let mut out = URL_SAFE_NO_PAD.encode(header.to_string());
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = self
            .pair
            .sign(&self.rng, out.as_bytes())
            .map_err(|_| TxnTokenError::Signing)?;
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(sig.as_ref()));
        Ok(out)
    }
}

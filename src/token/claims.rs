//! The claims of a verified access token, in the shape the decision needs.

use std::sync::Arc;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::TokenDigest;
use crate::config::IssuerSettings;
use crate::delegation::{self, Chain};
use crate::reason::DenyReason;

/// A token whose signature, algorithm, type and issuer were verified. Time, audience, binding
/// and scope are checked per request by `decide`.
#[derive(Debug)]
pub struct VerifiedToken {
    pub issuer: Arc<IssuerSettings>,
    pub digest: TokenDigest,
    pub sub: String,
    pub client_id: String,
    pub jti: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: Option<i64>,
    /// Space-delimited `scope` split once (RFC 9068 §2.2.3, RFC 6749 §3.3).
    pub scopes: Box<[Box<str>]>,
    pub cnf: Cnf,
    /// The RFC 8693 `act` chain, parsed once when the token is verified. A malformed chain is
    /// kept as its deny reason (`decide` refuses the token), so the audit record still gets the
    /// token's identity.
    pub delegation: Result<Chain, DenyReason>,
    /// `Some(txn)` when the credential is a verified Txn-Token (internal-hop mode), not an
    /// access token.
    pub txn: Option<String>,
    /// Every other claim, for later checks (consent id, `acr`, `authorization_details`, …).
    pub extra: Map<String, Value>,
}

impl VerifiedToken {
    pub fn has_scope(&self, s: &str) -> bool {
        self.scopes.iter().any(|x| &**x == s)
    }

    /// A token from claims that were verified elsewhere (`policy test` fixtures): the same
    /// parsing and required-claim rules as a signed token.
    pub fn from_claims(
        issuer: Arc<IssuerSettings>,
        digest: TokenDigest,
        claims: Map<String, Value>,
    ) -> Result<Self, DenyReason> {
        let raw: RawClaims = serde_json::from_value(Value::Object(claims))
            .map_err(|_| DenyReason::TokenMalformed)?;
        raw.into_verified(issuer, digest)
    }

    /// The members of an RFC 7662 `active: true` introspection answer (§2.2), `active` and
    /// `token_type` already taken out. They go through the same parsing and required-claim rules
    /// as a JWT's claims (RFC 9068 §2.2), except `jti`: introspection answers often omit it, and
    /// an empty `jti` matches no `jti` revocation (revocation values are never empty), so such a
    /// token is revoked by its SHA-256, subject or client instead.
    ///
    /// `Err` (outer): a member has the wrong JSON type (a misbehaving endpoint, not the token's
    /// fault). `Ok(Err)`: the answer is well-formed but the token cannot be accepted (a
    /// required claim missing, `iss` naming another issuer).
    pub fn from_introspection(
        issuer: Arc<IssuerSettings>,
        digest: TokenDigest,
        members: Map<String, Value>,
    ) -> Result<Result<Self, DenyReason>, serde_json::Error> {
        let mut raw: RawClaims = serde_json::from_value(Value::Object(members))?;
        // RFC 7662 §2.2: `iss` is optional; when present it must be the configured issuer.
        if raw.iss.as_deref().is_some_and(|i| i != issuer.issuer) {
            return Ok(Err(DenyReason::TokenIssuerUnknown));
        }
        raw.jti.get_or_insert_with(String::new);
        Ok(raw.into_verified(issuer, digest))
    }

    /// The token's purpose, from the issuer's purpose claim.
    pub fn purpose(&self) -> Option<&str> {
        crate::purpose::token_purpose(&self.extra, &self.issuer.purpose_claim)
    }
}

/// RFC 7800 confirmation: the key the token is bound to.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub struct Cnf {
    /// RFC 9449 §6.1: JWK SHA-256 thumbprint of the DPoP key.
    #[serde(default)]
    pub jkt: Option<String>,
    /// RFC 8705 §3.1: SHA-256 thumbprint of the client certificate.
    #[serde(default, rename = "x5t#S256")]
    pub x5t_s256: Option<String>,
}

/// Raw claims as they arrive; required ones checked in `into_verified`.
#[derive(Debug, Deserialize)]
pub(super) struct RawClaims {
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default, deserialize_with = "numeric_date")]
    exp: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    iat: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    nbf: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default, deserialize_with = "cnf_object")]
    cnf: Option<Cnf>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// RFC 7800 §3.1: `cnf` is a JSON object. serde alone would also read a positional array into
/// `Cnf` (`["<jkt>"]` as a DPoP binding), which no other reader of the token would see.
fn cnf_object<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cnf>, D::Error> {
    match Option::<Map<String, Value>>::deserialize(d)? {
        None => Ok(None),
        Some(m) => serde_json::from_value(Value::Object(m))
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// RFC 7519 §2 NumericDate: a JSON number, possibly fractional. Anything else is malformed.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let n = Option::<serde_json::Number>::deserialize(d)?;
    match n {
        None => Ok(None),
        Some(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Some(i)),
            (None, Some(f)) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.floor() as i64)),
            _ => Err(serde::de::Error::custom("NumericDate out of range")),
        },
    }
}

impl RawClaims {
    /// RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat and jti are required.
    pub(super) fn into_verified(
        self,
        issuer: Arc<IssuerSettings>,
        digest: TokenDigest,
    ) -> Result<VerifiedToken, DenyReason> {
        let m = DenyReason::TokenMalformed;
        let aud = match self.aud.ok_or(m)? {
            Audience::One(a) => vec![a],
            Audience::Many(v) if !v.is_empty() => v,
            Audience::Many(_) => return Err(m),
        };
        let scopes = self
            .scope
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(Box::from)
            .collect();
        Ok(VerifiedToken {
            issuer,
            digest,
            sub: self.sub.ok_or(m)?,
            client_id: self.client_id.ok_or(m)?,
            jti: self.jti.ok_or(m)?,
            aud,
            exp: self.exp.ok_or(m)?,
            iat: self.iat.ok_or(m)?,
            nbf: self.nbf,
            scopes,
            cnf: self.cnf.unwrap_or_default(),
            delegation: delegation::parse(self.extra.get("act")),
            txn: None,
            extra: self.extra,
        })
    }
}

//! Internal-hop mode: verifying inbound Txn-Tokens from the trusted issuer (normally the edge
//! sidecar, whose admin `/jwks` is the key source).

use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::config::AcceptSettings;
use super::{MAX_TOKEN_BYTES, RequestContextClaims, TYP, VerifiedTxnToken};
use crate::config::{IssuerSettings, raw_alg};
use crate::delegation;
use crate::http_client::HttpsClient;
use crate::metrics::Metrics;
use crate::reason::DenyReason;
use crate::token::TokenFailure;
use crate::token::jwks::{self, JwksStore};
use crate::token::jws;

/// Verifies Txn-Tokens against one trusted issuer's JWKS (fetched, cached and rotated by the
/// same [`JwksStore`] access tokens use: stale-while-error, rate-limited refetch on unknown
/// `kid`). No verified-token cache: a Txn-Token is minted per request and never seen twice.
pub struct TxnTokenVerifier {
    settings: Arc<IssuerSettings>,
    keys: Arc<JwksStore>,
}

impl TxnTokenVerifier {
    pub fn new(accept: &AcceptSettings, http: HttpsClient, metrics: Arc<Metrics>) -> Self {
        let settings = Arc::new(accept.issuer.clone());
        Self {
            keys: Arc::new(JwksStore::new(settings.clone(), http, metrics)),
            settings,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// The trusted issuer's settings (skew, 60 s lifetime cap, audience), for the verified
    /// credential handed to `decide`.
    pub fn settings(&self) -> &Arc<IssuerSettings> {
        &self.settings
    }

    /// Readiness: the trusted issuer's keys are loaded.
    pub fn has_keys(&self) -> bool {
        self.keys.has_keys()
    }

    /// Starts the background JWKS refresh (call once, inside the runtime).
    pub fn spawn_refresh(&self) {
        jwks::spawn_refresh(self.keys.clone());
    }

    /// Verifies a `Txn-Token` header value at `now` (Unix seconds). Refusals are deny reasons;
    /// keys that were never loaded are `KeysUnavailable` (fail closed, 503).
    ///
    /// Order: cheap structural checks, `typ` (draft: `txntoken+jwt`), issuer, algorithm,
    /// signature, then the claims — nothing from the payload is trusted before the signature.
    pub async fn verify(&self, token: &str, now: i64) -> Result<VerifiedTxnToken, TokenFailure> {
        let deny = TokenFailure::Deny;
        let malformed = deny(DenyReason::TokenMalformed);
        let (h64, p64, s64) = jws::split(token, MAX_TOKEN_BYTES).ok_or(malformed)?;
        let header: Map<String, Value> = jws::decode_json(h64).ok_or(malformed)?;
        // RFC 7515 §4.1.11: we understand no critical extensions.
        if header.contains_key("crit") {
            return Err(malformed);
        }
        // Draft: Txn-Tokens are typed `txntoken+jwt`; an access token or ID token replayed in
        // the Txn-Token header is refused here (media types are case-insensitive, the
        // `application/` prefix may be present, RFC 7515 §4.1.9).
        if !jws::typ_is(header.get("typ").and_then(Value::as_str), TYP) {
            return Err(deny(DenyReason::TokenTypeInvalid));
        }
        let claims: Map<String, Value> = jws::decode_json(p64).ok_or(malformed)?;
        let iss = claims.get("iss").and_then(Value::as_str).ok_or(malformed)?;
        if iss != self.settings.issuer {
            return Err(deny(DenyReason::TokenIssuerUnknown));
        }
        let alg: Algorithm = header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(raw_alg)
            .filter(|a| self.settings.algorithms.contains(a))
            .ok_or(deny(DenyReason::TokenAlgorithmRejected))?;
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err(malformed),
        };
        let signing_input = &token.as_bytes()[..h64.len() + 1 + p64.len()];
        self.keys
            .verify_signature(kid, alg, signing_input, s64)
            .await?;
        self.check_claims(claims, token, now).map_err(deny)
    }

    fn check_claims(
        &self,
        mut c: Map<String, Value>,
        token: &str,
        now: i64,
    ) -> Result<VerifiedTxnToken, DenyReason> {
        let m = DenyReason::TokenMalformed;
        let skew = i64::try_from(self.settings.clock_skew.as_secs()).unwrap_or(0);
        let max_lifetime = i64::try_from(self.settings.max_token_lifetime.as_secs()).unwrap_or(60);
        // Draft: `aud` identifies the trust domain; it must be ours.
        let aud = match c.remove("aud") {
            Some(Value::String(a)) => vec![a],
            Some(Value::Array(v)) if !v.is_empty() => v
                .into_iter()
                .map(|x| match x {
                    Value::String(s) => Ok(s),
                    _ => Err(m),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(m),
        };
        if !aud.iter().any(|a| self.settings.audiences.contains(a)) {
            return Err(DenyReason::TokenAudienceMismatch);
        }
        let exp = numeric_date(c.get("exp")).ok_or(m)?;
        let iat = numeric_date(c.get("iat")).ok_or(m)?;
        if now >= exp.saturating_add(skew) {
            return Err(DenyReason::TokenExpired);
        }
        if iat > now.saturating_add(skew) {
            return Err(DenyReason::TokenNotYetValid);
        }
        // Txn-Tokens live for one call chain: at most 60 s (spec §4), with the skew.
        let lifetime = exp.saturating_sub(iat);
        if !(0..=max_lifetime.saturating_add(skew)).contains(&lifetime) {
            return Err(DenyReason::TokenLifetimeExceeded);
        }
        let chain = delegation::parse(c.get("act"))?;
        let scopes = optional_string(&c, "scope")?
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(Box::from)
            .collect();
        let rctx = match c.get("rctx") {
            None => None,
            Some(Value::Object(r)) => Some(RequestContextClaims {
                req_ip: optional_string(r, "req_ip")?.map(str::to_owned),
                method: optional_string(r, "method")?.map(str::to_owned),
                route: optional_string(r, "route")?.map(str::to_owned),
            }),
            Some(_) => return Err(m),
        };
        let required = |name: &str| optional_string(&c, name)?.map(str::to_owned).ok_or(m);
        Ok(VerifiedTxnToken {
            digest: crate::token::digest(token),
            iss: required("iss")?,
            txn: required("txn")?,
            sub: required("sub")?,
            req_wl: required("req_wl")?,
            purpose: optional_string(&c, "purpose")?.map(str::to_owned),
            consent_id: optional_string(&c, "consent_id")?.map(str::to_owned),
            aud,
            iat,
            exp,
            scopes,
            chain,
            rctx,
        })
    }
}

/// `Ok(None)` when absent; a present member of another type is malformed.
fn optional_string<'a>(
    m: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, DenyReason> {
    match m.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(DenyReason::TokenMalformed),
    }
}

/// RFC 7519 §2 NumericDate: a JSON number, possibly fractional.
fn numeric_date(v: Option<&Value>) -> Option<i64> {
    let n = v?.as_number()?;
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.is_finite() && f.abs() < 1e15)
            .map(|f| f.floor() as i64)
    })
}

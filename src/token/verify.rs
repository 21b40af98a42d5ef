//! The cold path: parse and verify a JWT access token once; the result is cached by digest.

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use super::claims::RawClaims;
use super::jwks::SignatureError;
use super::{TokenDigest, TokenFailure, TokenVerifier, VerifiedToken, jws};
use crate::config::raw_alg;
use crate::reason::DenyReason;

/// Larger tokens are refused before any decoding work.
pub const MAX_TOKEN_BYTES: usize = 12 * 1024;

#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
    // `jku`, `x5u`, `jwk` are deliberately ignored: keys come only from the configured issuer.
}

/// A token that could not be accepted, and whether the refusal came from the signature check or
/// after it (settled under the key set in place: see `verdicts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Refused {
    pub failure: TokenFailure,
    pub after_signature: bool,
}

impl From<TokenFailure> for Refused {
    fn from(failure: TokenFailure) -> Self {
        Self {
            failure,
            after_signature: false,
        }
    }
}

pub(super) async fn verify(
    v: &TokenVerifier,
    token: &str,
    digest: TokenDigest,
) -> Result<VerifiedToken, Refused> {
    let deny = TokenFailure::Deny;
    let malformed = deny(DenyReason::TokenMalformed);
    let (h64, p64, s64) = jws::split(token, MAX_TOKEN_BYTES).ok_or(malformed)?;
    let header: JoseHeader = jws::decode_json(h64).ok_or(malformed)?;
    // RFC 7515 §4.1.11: we understand no critical extensions, so any `crit` is a refusal.
    if header.crit.is_some() {
        return Err(malformed.into());
    }
    // RFC 9068 §4: resource servers MUST verify `typ` is `at+jwt` (media types are
    // case-insensitive, and the `application/` prefix may be present, RFC 7515 §4.1.9).
    if !jws::typ_is(header.typ.as_deref(), "at+jwt") {
        return Err(deny(DenyReason::TokenTypeInvalid).into());
    }
    let claims: RawClaims = jws::decode_json(p64).ok_or(malformed)?;
    let iss = claims.iss.as_deref().ok_or(malformed)?;
    let issuer = v.issuer(iss).ok_or(deny(DenyReason::TokenIssuerUnknown))?;
    let alg: Algorithm = raw_alg(&header.alg)
        .filter(|a| issuer.settings.algorithms.contains(a))
        .ok_or(deny(DenyReason::TokenAlgorithmRejected))?;

    let signing_input = &token.as_bytes()[..h64.len() + 1 + p64.len()];
    let settled = |reason| Refused {
        failure: deny(reason),
        after_signature: true,
    };
    match issuer
        .keys
        .check_signature(header.kid.as_deref(), alg, signing_input, s64)
        .await
    {
        Ok(()) => {}
        Err(SignatureError::Unavailable) => return Err(TokenFailure::KeysUnavailable.into()),
        Err(SignatureError::NoMatchingKey) => {
            return Err(deny(DenyReason::TokenSignatureInvalid).into());
        }
        Err(SignatureError::Invalid) => return Err(settled(DenyReason::TokenSignatureInvalid)),
    }
    claims
        .into_verified(issuer.settings.clone(), digest)
        .map_err(settled)
}

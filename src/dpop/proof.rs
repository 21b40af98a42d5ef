//! DPoP proof verification: RFC 9449 §4.3 steps 2–11 (step 1, one header, is
//! `proxy::credentials::dpop_proof`; the `cnf.jkt` comparison is in `decide`).
//!
//! Order: structure and header first (cheap), then the signature, then claims, so that a claim
//! mismatch is only reported for a proof its key really signed. Deny reasons:
//! - malformed JWS, `typ`, `alg`, `crit`, `jwk`, signature, missing or mistyped claim
//!   → `dpop_proof_invalid`
//! - `htm` → `dpop_htm_mismatch`; `htu` → `dpop_htu_mismatch`; `iat` → `dpop_proof_stale`
//! - nonce missing, not a string, forged or expired (when required) → `dpop_nonce_required`
//! - `ath` wrong, or missing while a token is presented → `dpop_ath_mismatch` (the proof is
//!   well-formed but not bound to this token); `ath` not a string → `dpop_proof_invalid`.
//!
//! Duplicate JSON member names resolve to the last one, as RFC 7515 §4 permits.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::{DpopSettings, MAX_PROOF_LEN, ProofRequest, VerifiedProof, htu};
use crate::jwk::{JwsAlg, PublicJwk};
use crate::reason::DenyReason;

/// Longest `jti` accepted. RFC 9449 §4.2 asks for 96 bits of randomness; 256 bytes is ample.
pub const MAX_JTI_LEN: usize = 256;
/// Longest `nonce` claim looked at; server nonces are far shorter.
const MAX_NONCE_LEN: usize = 512;

/// `ath` for an access token: base64url(SHA-256(ASCII(token))), RFC 9449 §4.2.
pub fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, access_token.as_bytes()))
}

/// Verifies a DPoP proof for one request. See the module docs for the deny-reason mapping.
pub fn verify_proof(req: &ProofRequest<'_>, s: &DpopSettings) -> Result<VerifiedProof, DenyReason> {
    use DenyReason::{
        DpopAthMismatch, DpopHtmMismatch, DpopHtuMismatch, DpopNonceRequired, DpopProofInvalid,
        DpopProofStale,
    };

    // Step 2: a well-formed JWS compact serialization (RFC 7515 §7.1), bounded first.
    if req.proof.is_empty() || req.proof.len() > MAX_PROOF_LEN {
        return Err(DpopProofInvalid);
    }
    let mut parts = req.proof.split('.');
    let (Some(header_b64), Some(claims_b64), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DpopProofInvalid);
    };
    let header = decode_object(header_b64)?;
    let claims = decode_object(claims_b64)?;
    let signature = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| DpopProofInvalid)?;

    // Step 3 (header part) and RFC 8725 §3.11 explicit typing.
    if !header
        .get("typ")
        .and_then(Value::as_str)
        .is_some_and(is_dpop_typ)
    {
        return Err(DpopProofInvalid);
    }
    // RFC 7515 §4.1.11: we understand no extension, so any `crit` must be refused.
    if header.contains_key("crit") {
        return Err(DpopProofInvalid);
    }
    // Step 4: asymmetric, not none, allowed here. `JwsAlg` cannot represent none/HS*.
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(JwsAlg::parse)
        .filter(|a| s.algorithms.contains(a))
        .ok_or(DpopProofInvalid)?;
    // Step 6 (no private key) is part of PublicJwk parsing, as are curve and size checks.
    let jwk = match header.get("jwk") {
        Some(Value::Object(m)) => PublicJwk::from_json(m).map_err(|_| DpopProofInvalid)?,
        _ => return Err(DpopProofInvalid),
    };
    // Step 5: RFC 7515 §5.2 step 8, the signing input is the two encoded parts as sent.
    // In bounds: both parts and the dot between them are a prefix of `req.proof`.
    let signing_input = &req.proof.as_bytes()[..header_b64.len() + 1 + claims_b64.len()];
    if !jwk.verify(alg, signing_input, &signature) {
        return Err(DpopProofInvalid);
    }

    // Step 3 (claims part): jti, htm, htu, iat present and typed.
    let jti = claim_str(&claims, "jti")?;
    if jti.is_empty() || jti.len() > MAX_JTI_LEN {
        return Err(DpopProofInvalid);
    }
    let htm = claim_str(&claims, "htm")?;
    let claimed_htu = claim_str(&claims, "htu")?;
    let iat = match claims.get("iat") {
        Some(Value::Number(n)) => numeric_date(n).ok_or(DpopProofInvalid)?,
        _ => return Err(DpopProofInvalid),
    };

    // Step 7: RFC 9110 §9.1, methods are case-sensitive.
    if htm != req.method {
        return Err(DpopHtmMismatch);
    }
    // Step 8: compare normalized forms; a URI we cannot normalize never matches.
    let expected_htu = htu::normalize(req.htu).ok_or(DpopHtuMismatch)?;
    if htu::normalize(claimed_htu).as_deref() != Some(expected_htu.as_str()) {
        return Err(DpopHtuMismatch);
    }
    // Step 9: the server asked for nonces (RFC 9449 §9) → use_dpop_nonce otherwise.
    if let Some(issuer) = &s.nonce {
        let nonce = claims
            .get("nonce")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if nonce.len() > MAX_NONCE_LEN || !issuer.check(nonce, req.now) {
            return Err(DpopNonceRequired);
        }
    }
    // Step 10 (§11.1): iat within [now - max_age - skew, now + skew].
    let max_age = secs(s.proof_max_age);
    let skew = secs(s.clock_skew);
    let earliest = req.now.saturating_sub(max_age).saturating_sub(skew);
    if iat < earliest || iat > req.now.saturating_add(skew) {
        return Err(DpopProofStale);
    }
    // Step 11 (§7.1): the proof is bound to the presented access token.
    if let Some(token) = req.access_token {
        match claims.get("ath") {
            Some(Value::String(claimed)) => {
                verify_slices_are_equal(claimed.as_bytes(), ath(token).as_bytes())
                    .map_err(|_| DpopAthMismatch)?;
            }
            Some(_) => return Err(DpopProofInvalid),
            None => return Err(DpopAthMismatch),
        }
    }

    // The normalized htu is visible ASCII, so the NUL separator makes the key unambiguous.
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(expected_htu.as_bytes());
    ctx.update(&[0]);
    ctx.update(jti.as_bytes());
    let mut replay_key = [0u8; 32];
    replay_key.copy_from_slice(ctx.finish().as_ref());

    Ok(VerifiedProof {
        jkt: jwk.thumbprint().to_owned(),
        jti: jti.to_owned(),
        iat,
        replay_key,
        replay_expires_at: iat.saturating_add(max_age).saturating_add(skew),
    })
}

/// RFC 9449 §4.2 `typ: dpop+jwt`. RFC 7515 §4.1.9: media types are case-insensitive and the
/// `application/` prefix may be present.
fn is_dpop_typ(typ: &str) -> bool {
    let typ = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    typ.eq_ignore_ascii_case("dpop+jwt")
}

fn decode_object(part: &str) -> Result<Map<String, Value>, DenyReason> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| DenyReason::DpopProofInvalid)?;
    serde_json::from_slice(&bytes).map_err(|_| DenyReason::DpopProofInvalid)
}

fn claim_str<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<&'a str, DenyReason> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .ok_or(DenyReason::DpopProofInvalid)
}

/// RFC 7519 §2 NumericDate: seconds, possibly fractional. Fractions are truncated; absurd
/// values saturate and then fail the window check.
fn numeric_date(n: &serde_json::Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    // `as` saturates for out-of-range floats, which is what we want here.
    n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;

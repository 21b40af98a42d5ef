//! Verifying a client's request signature (RFC 9421 §3.2, FAPI 2.0 Message Signing):
//! select the `tag="fapi-2-request"` signature, check its time window and what it covers,
//! rebuild the base from the request as received, verify it with the client's key, and
//! finally check `Content-Digest` against the exact body bytes.
//!
//! The steps that need no key and no body ([`candidate`]) are pure; the key lookup happens
//! in between (`keys.rs`), the body check last, after the request is otherwise authorized.

use std::time::Duration;

use http::HeaderMap;
use http::header::AUTHORIZATION;

use super::base::{self, Message, RequestParts};
use super::digest::{self, DigestError};
use super::fields::{self, Component, Selected};
use super::{Algorithm, REQUEST_TAG, audit_info};
use crate::audit::SignatureInfo;
use crate::jwk::PublicJwk;
use crate::reason::DenyReason;

/// Why a request signature was not accepted. `detail` goes to the log (never to the client,
/// never request data beyond fixed words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigFailure {
    /// The route requires a signature and there is no `fapi-2-request` one.
    Missing,
    Invalid(&'static str),
    Stale(&'static str),
    Digest(DigestError),
    /// The client's keys could never be loaded: fail closed (503).
    KeysUnavailable,
    /// The body could not be read to check its digest (too large, buffer budget spent, the
    /// client failed): that reason is the answer.
    Body(DenyReason),
}

impl SigFailure {
    /// The deny reason (`reason.rs` maps it to status and body).
    pub const fn reason(&self) -> DenyReason {
        match self {
            Self::Missing => DenyReason::SignatureMissing,
            Self::Invalid(_) => DenyReason::SignatureInvalid,
            Self::Stale(_) => DenyReason::SignatureStale,
            Self::Digest(_) => DenyReason::ContentDigestMismatch,
            Self::KeysUnavailable => DenyReason::DependencyUnavailable,
            Self::Body(r) => *r,
        }
    }

    pub fn detail(&self) -> String {
        match self {
            Self::Missing => "no fapi-2-request signature".into(),
            Self::Invalid(d) | Self::Stale(d) => (*d).into(),
            Self::Digest(e) => e.to_string(),
            Self::KeysUnavailable => "client keys unavailable".into(),
            Self::Body(r) => r.as_str().into(),
        }
    }
}

/// A request signature that passed every check that needs neither the key nor the body.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub selected: Selected,
    pub keyid: String,
    pub alg_param: Option<Algorithm>,
    /// The signature base; holds the access token, so it is never logged or stored.
    pub base: String,
    pub covers_digest: bool,
}

/// The time window and clock of one check.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub now: i64,
    pub max_age: Duration,
    pub clock_skew: Duration,
}

/// Selects and pre-checks the `fapi-2-request` signature of `req`. `Ok(None)`: the request
/// carries no such signature (the caller decides whether that is `signature_missing`).
pub fn candidate(req: &RequestParts<'_>, w: Window) -> Result<Option<Candidate>, SigFailure> {
    let selected = match fields::select(req.headers, REQUEST_TAG) {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(None),
        Err(_) => {
            return Err(SigFailure::Invalid(
                "malformed Signature-Input or Signature",
            ));
        }
    };
    let p = &selected.input.params;
    // FAPI 2.0 Message Signing: `created` and `keyid` are required.
    let created = p
        .created
        .ok_or(SigFailure::Invalid("no created parameter"))?;
    let keyid = p
        .keyid
        .clone()
        .ok_or(SigFailure::Invalid("no keyid parameter"))?;
    let skew = secs(w.clock_skew);
    if created > w.now.saturating_add(skew) {
        return Err(SigFailure::Stale("created is in the future"));
    }
    if w.now.saturating_sub(created) > secs(w.max_age) {
        return Err(SigFailure::Stale(
            "created is older than signatures.max_age",
        ));
    }
    // RFC 9421 §3.2 step 4: an expired signature is refused.
    if p.expires.is_some_and(|e| e.saturating_add(skew) < w.now) {
        return Err(SigFailure::Stale("expires has passed"));
    }
    let alg_param = match p.alg.as_deref() {
        None => None,
        Some(a) => Some(Algorithm::parse(a).ok_or(SigFailure::Invalid(
            "alg is not ecdsa-p256-sha256, ed25519 or rsa-pss-sha512",
        ))?),
    };
    check_coverage(&selected.input.components, req.headers)?;
    let base = base::signature_base(
        Message::Request(*req),
        &selected.input.components,
        &selected.input.serialized,
    )
    .map_err(|e| match e {
        base::BaseError::Missing(_) => SigFailure::Invalid("a covered field is absent"),
        base::BaseError::Unsupported(_) => SigFailure::Invalid("unsupported component"),
        base::BaseError::WrongMessage(_) => SigFailure::Invalid("component not of a request"),
        base::BaseError::NotAscii(_) => SigFailure::Invalid("covered field is not ASCII"),
    })?;
    let covers_digest = covers(&selected.input.components, digest::HEADER);
    Ok(Some(Candidate {
        selected,
        keyid,
        alg_param,
        base,
        covers_digest,
    }))
}

/// FAPI 2.0 Message Signing: the request signature covers the method, the target URI, the
/// credentials (`authorization`, and `dpop` when sent); `content-digest` is checked with the
/// body ([`VerifiedRequest::check_body`]).
fn check_coverage(components: &[Component], headers: &HeaderMap) -> Result<(), SigFailure> {
    if !covers(components, "@method") {
        return Err(SigFailure::Invalid("@method is not covered"));
    }
    if !covers(components, "@target-uri") {
        return Err(SigFailure::Invalid("@target-uri is not covered"));
    }
    if headers.contains_key(AUTHORIZATION) && !covers(components, "authorization") {
        return Err(SigFailure::Invalid("authorization is not covered"));
    }
    if headers.contains_key("dpop") && !covers(components, "dpop") {
        return Err(SigFailure::Invalid("dpop is not covered"));
    }
    Ok(())
}

/// Covered as a plain component (not `;req`, not `;bs`: the value must be the field as sent).
fn covers(components: &[Component], name: &str) -> bool {
    components.iter().any(|c| c.name == name && !c.req && !c.bs)
}

/// Verifies `c` with `key` (RFC 9421 §3.2 steps 5-8). The key type picks the algorithm.
pub fn with_key(c: &Candidate, key: &PublicJwk) -> Result<VerifiedRequest, SigFailure> {
    let alg = Algorithm::for_key(key).ok_or(SigFailure::Invalid(
        "the key is not usable for ecdsa-p256-sha256, ed25519 or rsa-pss-sha512",
    ))?;
    if c.alg_param.is_some_and(|a| a != alg) {
        return Err(SigFailure::Invalid("alg does not match the key"));
    }
    if !key.verify(alg.jws(), c.base.as_bytes(), &c.selected.value) {
        return Err(SigFailure::Invalid("signature does not verify"));
    }
    // The digest value is recorded once it has been checked against the body.
    let content_digest = None;
    Ok(VerifiedRequest {
        info: audit_info(
            &c.selected.input.label,
            &c.selected.input,
            alg,
            &c.selected.value,
            &c.base,
            content_digest,
        ),
        covers_digest: c.covers_digest,
    })
}

/// A request signature that verified. The body is checked separately.
#[derive(Debug, Clone)]
pub struct VerifiedRequest {
    pub info: SignatureInfo,
    pub covers_digest: bool,
}

impl VerifiedRequest {
    /// RFC 9530 / FAPI 2.0 Message Signing: a request with content must cover
    /// `content-digest`, and the digest must match the exact bytes that will be forwarded.
    pub fn check_body(&mut self, headers: &HeaderMap, body: &[u8]) -> Result<(), SigFailure> {
        if !self.covers_digest {
            return match body.is_empty() {
                true => Ok(()),
                false => Err(SigFailure::Invalid(
                    "the request has content and content-digest is not covered",
                )),
            };
        }
        digest::verify(headers, body).map_err(SigFailure::Digest)?;
        self.info.content_digest = fields::combined(headers, digest::HEADER).ok().flatten();
        Ok(())
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;

//! The decision: a pure, synchronous function of the gathered facts and the matched route.
//! All I/O (keys, proof replay store, consent) happens before; nothing here blocks or allocates,
//! so it is benchmarkable in nanoseconds and testable without sockets.
//!
//! Check order follows spec §1: token validity, sender constraint, scope.

use crate::jwk::thumbprints_equal;
use crate::mtls;
use crate::{assurance, delegation, purpose};

use crate::policy::{Binding, Route};
use crate::reason::DenyReason;
use crate::token::VerifiedToken;

/// The `Authorization` scheme the client used (RFC 9110 §11.1: case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    Bearer,
    Dpop,
}

/// What we know about the access token.
#[derive(Debug, Clone, Copy)]
pub enum TokenFact<'a> {
    Missing,
    Rejected(DenyReason),
    Verified(&'a VerifiedToken),
}

/// What we know about the DPoP proof (verified before `decide`, since it needs crypto and the
/// replay store).
#[derive(Debug, Clone, Copy)]
pub enum DpopFact<'a> {
    Absent,
    Rejected(DenyReason),
    /// A valid, fresh proof whose key has this RFC 7638 thumbprint.
    Verified {
        jkt: &'a str,
    },
}

/// Everything `decide` looks at.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub now: i64,
    pub scheme: AuthScheme,
    pub token: TokenFact<'a>,
    pub dpop: DpopFact<'a>,
    /// SHA-256 of the client certificate of this connection (or forwarded by a trusted peer).
    pub client_cert_sha256: Option<&'a [u8; 32]>,
    /// The consent check's result (`Ok` when the route asks for no consent), computed before
    /// `decide` by the pure functions of `crate::consent` once the record was fetched.
    pub consent: Result<(), DenyReason>,
    /// The purpose recorded in the consent behind the token, when there is one.
    pub consent_purpose: Option<&'a str>,
}

/// How the token was bound to the caller, for the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundBy {
    Dpop,
    Mtls,
    Unbound,
    /// A Txn-Token from the trusted edge (internal hop): the caller was bound at the edge.
    TxnToken,
    /// Public route: no token looked at.
    Public,
}

impl BoundBy {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Dpop => "dpop",
            Self::Mtls => "mtls",
            Self::Unbound => "none",
            Self::TxnToken => "txn_token",
            Self::Public => "public",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow(BoundBy),
    Deny(DenyReason),
}

/// Decides one request against one route.
pub fn decide(f: &Facts<'_>, route: &Route) -> Decision {
    if route.public {
        return Decision::Allow(BoundBy::Public);
    }
    match check(f, route, &mut ()) {
        Ok(b) => Decision::Allow(b),
        Err(r) => Decision::Deny(r),
    }
}

/// Whether `d` is final whatever the consent says: a refusal by a check that runs before the
/// consent check (token, binding, scope). The proxy then skips the consent lookup, so a doomed
/// request (a stolen token without its key, say) costs no consent-service I/O.
pub fn settled_before_consent(d: Decision) -> bool {
    match d {
        Decision::Allow(_) => false,
        Decision::Deny(r) => !matches!(
            r,
            DenyReason::DelegationNotAllowed
                | DenyReason::DelegationDepthExceeded
                | DenyReason::DelegationActorNotAllowed
                | DenyReason::DelegationChainNotAllowed
                | DenyReason::DelegationMalformed
                | DenyReason::DelegationScopeEscalation
                | DenyReason::PurposeNotAllowed
                | DenyReason::AssuranceInsufficient
        ),
    }
}

/// Whether the token is valid for this route (time, audience) and bound, by the presented DPoP
/// proof's key, to the caller: everything up to the binding check passed. Only then is the proof
/// recorded in the replay store (RFC 9449 §11.1), so a proof riding on an expired, foreign or
/// unbound token costs no replay-store memory.
pub fn dpop_bound(f: &Facts<'_>, route: &Route) -> bool {
    let TokenFact::Verified(t) = f.token else {
        return false;
    };
    !route.public
        && check_time(f.now, t).is_ok()
        && check_audience(t, route).is_ok()
        && check_binding(f, t, route.binding) == Ok(BoundBy::Dpop)
}

/// The checks `decide` runs, in order (spec §1), as `policy explain` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Present, valid now (RFC 7519 §4.1.4/§4.1.5), lifetime cap, audience (RFC 9068 §4).
    Token,
    Binding,
    Scope,
    Consent,
    Delegation,
    Purpose,
    Assurance,
}

impl Check {
    pub const ALL: [Check; 7] = [
        Self::Token,
        Self::Binding,
        Self::Scope,
        Self::Consent,
        Self::Delegation,
        Self::Purpose,
        Self::Assurance,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Binding => "binding",
            Self::Scope => "scope",
            Self::Consent => "consent",
            Self::Delegation => "delegation",
            Self::Purpose => "purpose",
            Self::Assurance => "assurance",
        }
    }
}

/// Observes each check's result as `decide` runs it. The proxy passes `()`, whose empty,
/// inlined `step` compiles away: the hot path is the same code as without tracing.
pub trait Trace {
    fn step(&mut self, check: Check, result: Result<(), DenyReason>);
}

impl Trace for () {
    #[inline(always)]
    fn step(&mut self, _: Check, _: Result<(), DenyReason>) {}
}

/// `decide`, reporting every check it ran to `trace` (for `policy explain`).
pub fn decide_traced(f: &Facts<'_>, route: &Route, trace: &mut impl Trace) -> Decision {
    if route.public {
        return Decision::Allow(BoundBy::Public);
    }
    match check(f, route, trace) {
        Ok(b) => Decision::Allow(b),
        Err(r) => Decision::Deny(r),
    }
}

#[inline(always)]
fn traced(t: &mut impl Trace, c: Check, r: Result<(), DenyReason>) -> Result<(), DenyReason> {
    t.step(c, r);
    r
}

fn check(f: &Facts<'_>, route: &Route, t: &mut impl Trace) -> Result<BoundBy, DenyReason> {
    let token = match f.token {
        TokenFact::Missing => {
            return traced(t, Check::Token, Err(DenyReason::TokenMissing))
                .map(|()| BoundBy::Public);
        }
        TokenFact::Rejected(r) => return traced(t, Check::Token, Err(r)).map(|()| BoundBy::Public),
        TokenFact::Verified(t) => t,
    };
    traced(
        t,
        Check::Token,
        check_time(f.now, token).and_then(|()| check_audience(token, route)),
    )?;
    let bound = check_binding(f, token, route.binding);
    t.step(Check::Binding, bound.map(|_| ()));
    let bound = bound?;
    traced(t, Check::Scope, check_scopes(token, route))?;
    traced(t, Check::Consent, f.consent)?;
    traced(t, Check::Delegation, check_delegation(token, route))?;
    traced(t, Check::Purpose, check_purpose(f, token, route))?;
    let (acr, auth_time) = assurance::token_claims(&token.extra);
    traced(
        t,
        Check::Assurance,
        assurance::check(route.assurance.as_ref(), acr, auth_time, f.now),
    )?;
    Ok(bound)
}

/// RFC 8693 §4.1: the current actor (outermost `act`) is what authorization looks at; the
/// bank's `chain` rule and the per-hop scope attenuation come on top.
fn check_delegation(t: &VerifiedToken, route: &Route) -> Result<(), DenyReason> {
    let chain = t.delegation.as_ref().map_err(|r| *r)?;
    delegation::check(route.delegation.as_ref(), &chain.actors)?;
    delegation::check_attenuation(&t.scopes, &chain.scopes)
}

/// Spec §1.5: the consent's purpose when the consent record has one, else the token's claim.
fn check_purpose(f: &Facts<'_>, t: &VerifiedToken, route: &Route) -> Result<(), DenyReason> {
    match &route.purpose {
        None => Ok(()),
        Some(allowed) => purpose::check(allowed, t.purpose(), f.consent_purpose),
    }
}

/// RFC 7519 §4.1.4/§4.1.5 with the issuer's skew; RFC 9068 §4 lifetime cap (FAPI: short-lived).
fn check_time(now: i64, t: &VerifiedToken) -> Result<(), DenyReason> {
    let skew = t.issuer.clock_skew.as_secs() as i64;
    if now >= t.exp.saturating_add(skew) {
        return Err(DenyReason::TokenExpired);
    }
    if t.nbf.is_some_and(|nbf| now.saturating_add(skew) < nbf) || t.iat > now.saturating_add(skew) {
        return Err(DenyReason::TokenNotYetValid);
    }
    let lifetime = t.exp.saturating_sub(t.iat);
    if lifetime < 0 || lifetime as u64 > t.issuer.max_token_lifetime.as_secs() {
        return Err(DenyReason::TokenLifetimeExceeded);
    }
    Ok(())
}

/// RFC 9068 §4: the token's `aud` must contain an audience this resource server accepts (the
/// policy's `audience`, or else the issuer's configured audiences).
///
/// A Txn-Token is not an access token: its `aud` is the trust domain (draft-ietf-oauth-
/// transaction-tokens §4), never the API's public audience, so the policy's `audience` does not
/// apply to it. Its settings carry exactly the `transaction_token.accept.audience`, which is
/// checked again here so that `decide` alone still refuses a Txn-Token for another domain.
fn check_audience(t: &VerifiedToken, route: &Route) -> Result<(), DenyReason> {
    let accepted: &[String] = if t.txn.is_some() {
        &t.issuer.audiences
    } else {
        route.audiences.as_deref().unwrap_or(&t.issuer.audiences)
    };
    if t.aud.iter().any(|a| accepted.iter().any(|x| x == a)) {
        Ok(())
    } else {
        Err(DenyReason::TokenAudienceMismatch)
    }
}

/// Sender constraint (RFC 9449 §7, RFC 8705 §3, FAPI 2.0 §5.3.4).
fn check_binding(
    f: &Facts<'_>,
    t: &VerifiedToken,
    binding: Binding,
) -> Result<BoundBy, DenyReason> {
    // Internal hop: the Txn-Token is audience-restricted to this trust domain and lives at most
    // 60 s; the sender constraint was enforced by the edge that minted it.
    if t.txn.is_some() {
        return Ok(BoundBy::TxnToken);
    }
    match (&t.cnf.jkt, &t.cnf.x5t_s256) {
        // A token bound two ways is a confused issuer; refuse rather than pick one.
        (Some(_), Some(_)) => Err(DenyReason::BindingSchemeMismatch),
        (Some(jkt), None) => {
            // RFC 9449 §7.2: a DPoP-bound token presented as Bearer must be refused.
            if f.scheme != AuthScheme::Dpop {
                return Err(DenyReason::BindingSchemeMismatch);
            }
            if !binding.allows_dpop() {
                return Err(DenyReason::BindingMissing);
            }
            match f.dpop {
                DpopFact::Absent => Err(DenyReason::DpopProofMissing),
                DpopFact::Rejected(r) => Err(r),
                // RFC 9449 §7.1: the proof key's thumbprint must equal cnf.jkt.
                DpopFact::Verified { jkt: proof_jkt } => {
                    if thumbprints_equal(proof_jkt, jkt) {
                        Ok(BoundBy::Dpop)
                    } else {
                        Err(DenyReason::DpopKeyMismatch)
                    }
                }
            }
        }
        (None, Some(x5t)) => {
            // RFC 8705 §3: certificate-bound tokens are presented with the Bearer scheme.
            if f.scheme != AuthScheme::Bearer {
                return Err(DenyReason::BindingSchemeMismatch);
            }
            if !binding.allows_mtls() {
                return Err(DenyReason::BindingMissing);
            }
            mtls::check_binding(f.client_cert_sha256, x5t).map(|()| BoundBy::Mtls)
        }
        (None, None) => {
            if binding != Binding::UnboundAllowed {
                return Err(DenyReason::BindingMissing);
            }
            // RFC 9449 §7.1: the DPoP scheme with a token that is not DPoP-bound is an error.
            if f.scheme == AuthScheme::Dpop {
                return Err(DenyReason::BindingSchemeMismatch);
            }
            Ok(BoundBy::Unbound)
        }
    }
}

fn check_scopes(t: &VerifiedToken, route: &Route) -> Result<(), DenyReason> {
    if route.scopes.iter().all(|s| t.has_scope(s)) {
        Ok(())
    } else {
        Err(DenyReason::ScopeInsufficient)
    }
}

#[cfg(test)]
mod tests;

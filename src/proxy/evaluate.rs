//! Gathering the facts (all I/O happens here) and calling the pure `decide`.

use std::sync::Arc;
use std::time::Instant;

use super::body_limit::BodySlot;
use super::{Evaluation, Guard, credentials};
use crate::decide::{self, AuthScheme, DpopFact, Facts, TokenFact};
use crate::dpop::{self, ProofRequest, ReplayUnavailable, VerifiedProof};
use crate::path;
use crate::policy::PolicySet;
use crate::reason::DenyReason;
use crate::token::{self, TokenDigest, TokenFailure, VerifiedToken};
use crate::txn_token;

impl Guard {
    /// Every check up to the decision. No response is written here.
    pub async fn evaluate(
        &self,
        parts: &http::request::Parts,
        policies: &PolicySet,
        client_cert: Option<&[u8; 32]>,
        body: &mut BodySlot,
    ) -> Evaluation {
        // Spec §5: ambiguous paths are refused before any matching.
        let Ok(norm) = path::normalize(parts.uri.path()) else {
            return Evaluation::early(DenyReason::RequestMalformed, None);
        };
        // RFC 6750 §2.3 / FAPI 2.0: never accept a token in the query.
        if parts.uri.query().is_some_and(path::query_has_access_token) {
            return Evaluation::early(DenyReason::RequestMalformed, None);
        }
        let presented = match credentials::authorization(&parts.headers) {
            Ok(p) => p,
            Err(r) => return Evaluation::early(r, None),
        };
        let scheme = presented.map(|p| p.scheme);
        let proof = match credentials::dpop_proof(&parts.headers) {
            Ok(p) => p,
            Err(r) => return Evaluation::early(r, scheme),
        };
        let Some(m) = policies.lookup(&parts.method, &norm) else {
            return Evaluation::early(DenyReason::RouteNotFound, scheme);
        };
        let route = m.route.clone();
        let mut eval = Evaluation {
            route: Some(route.clone()),
            scheme,
            ..Evaluation::early(DenyReason::TokenMissing, scheme)
        };
        let now = self.clock.now_unix();

        let mut rejected = None;
        let inbound_txn = parts
            .headers
            .get(txn_token::HEADER)
            .and_then(|v| v.to_str().ok());
        if route.public {
            // No credential looked at.
        } else if let (Some(verifier), Some(raw)) = (&self.txn_verifier, inbound_txn) {
            // Internal hop: a Txn-Token from the trusted edge is the credential.
            eval.digest = Some(token::digest(raw));
            match verifier.verify(raw, now).await {
                Ok(v) => {
                    eval.token = Some(Arc::new(v.into_verified_token(verifier.settings().clone())))
                }
                Err(TokenFailure::Deny(r)) => rejected = Some(r),
                Err(TokenFailure::KeysUnavailable) => {
                    eval.decision = decide::Decision::Deny(DenyReason::DependencyUnavailable);
                    return eval;
                }
            }
        } else if let Some(p) = presented {
            let digest = token::digest(p.token);
            eval.digest = Some(digest);
            match self.verified_token(p.token, digest).await {
                Ok(t) => eval.token = Some(t),
                Err(TokenFailure::Deny(r)) => rejected = Some(r),
                Err(TokenFailure::KeysUnavailable) => {
                    eval.decision = decide::Decision::Deny(DenyReason::DependencyUnavailable);
                    return eval;
                }
            }
        }

        // Revocations (spec §6): in-memory, after the token is otherwise verified.
        if let Some(t) = &eval.token
            && let Err(r) = self.check_revoked(t, now)
        {
            if r == DenyReason::DependencyUnavailable {
                eval.decision = decide::Decision::Deny(r);
                return eval;
            }
            eval.token = None;
            rejected = Some(r);
        }

        // RFC 9449 §7.1: with the DPoP scheme the proof is checked on every request. Skipped
        // when the token is already refused (the answer cannot change, the crypto is wasted).
        let nonce = self.config.dpop.nonce.as_ref();
        let verified_proof: Option<Result<VerifiedProof, DenyReason>> =
            match (scheme, proof, &eval.token, presented) {
                (Some(AuthScheme::Dpop), Some(proof), Some(_), Some(p)) => {
                    Some(self.verify_proof(parts, proof, p.token, now))
                }
                _ => None,
            };
        if let (Some(n), Some(AuthScheme::Dpop)) = (nonce, scheme) {
            eval.dpop_nonce = Some(n.issue(now));
        }
        let dpop_fact = match &verified_proof {
            None => DpopFact::Absent,
            Some(Ok(p)) => DpopFact::Verified { jkt: &p.jkt },
            Some(Err(r)) => DpopFact::Rejected(*r),
        };
        let token_fact = match (&eval.token, rejected) {
            (Some(t), _) => TokenFact::Verified(t),
            (None, Some(r)) => TokenFact::Rejected(r),
            (None, None) => TokenFact::Missing,
        };
        let mut facts = Facts {
            now,
            scheme: scheme.unwrap_or(AuthScheme::Bearer),
            token: token_fact,
            dpop: dpop_fact,
            client_cert_sha256: client_cert,
            consent: Ok(()),
            consent_purpose: None,
        };
        let t0 = Instant::now();
        eval.decision = decide::decide(&facts, &route);
        eval.decide_ns = t0.elapsed().as_nanos() as u64;
        // RFC 9449 §11.1, recorded only once the proof binds an otherwise acceptable token.
        if let Some(Ok(p)) = &verified_proof
            && decide::dpop_bound(&facts, &route)
            && let Err(r) = self.record_proof(p, now).await
        {
            eval.decision = decide::Decision::Deny(r);
            return eval;
        }
        let (Some(rule), Some(t)) = (&route.consent, &eval.token) else {
            return eval;
        };
        if decide::settled_before_consent(eval.decision) {
            return eval;
        }
        // The consent (and the body, where a rule compares it) is fetched only for requests
        // that passed everything before it; then `decide` runs again with it.
        let mut consent = self
            .check_consent(rule, t, parts, &m.params, body, now)
            .await;
        self.check_consent_revoked(&mut consent, now);
        if consent.result == Err(DenyReason::DependencyUnavailable) {
            eval.decision = decide::Decision::Deny(DenyReason::DependencyUnavailable);
            return eval;
        }
        facts.consent = consent.result;
        facts.consent_purpose = consent.purpose.as_deref();
        let t1 = Instant::now();
        eval.decision = decide::decide(&facts, &route);
        eval.decide_ns += t1.elapsed().as_nanos() as u64;
        eval.consent_purpose = consent.purpose.clone();
        eval.consent = consent.info;
        eval
    }

    /// Warm path: the cache (no crypto, no I/O); cold path: full verification. A token that is
    /// not JWS-shaped goes to RFC 7662 introspection when an issuer has it (its own cache).
    async fn verified_token(
        &self,
        raw: &str,
        digest: TokenDigest,
    ) -> Result<Arc<VerifiedToken>, TokenFailure> {
        if let Some(i) = self.tokens.introspection()
            && !token::jws::is_jws_shaped(raw)
        {
            return i.introspect(raw, digest).await;
        }
        if let Some(t) = self.tokens.cached(&digest) {
            self.metrics.cache_lookup("token", true);
            return Ok(t);
        }
        self.metrics.cache_lookup("token", false);
        self.tokens.verify(raw, digest).await
    }

    /// RFC 9449 §4.3 against `listen.public_url` + the request path (signature and claims; the
    /// replay check comes after `decide`, see [`Self::record_proof`]).
    fn verify_proof(
        &self,
        parts: &http::request::Parts,
        proof: &str,
        access_token: &str,
        now: i64,
    ) -> Result<VerifiedProof, DenyReason> {
        let htu = format!("{}{}", self.config.listen.public_url, parts.uri.path());
        let req = ProofRequest {
            proof,
            method: parts.method.as_str(),
            htu: &htu,
            access_token: Some(access_token),
            now,
        };
        dpop::verify_proof(&req, &self.config.dpop)
    }

    /// RFC 9449 §11.1: a proof is accepted once per target URI within its window. A store that
    /// cannot answer (full, or a shared backend down) refuses the proof: fail closed.
    async fn record_proof(&self, p: &VerifiedProof, now: i64) -> Result<(), DenyReason> {
        let answer = self
            .replay
            .check_and_insert(p.replay_key, p.replay_expires_at, now)
            .await;
        self.metrics.set_replay_entries(self.replay.entries());
        match answer {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.metrics.dpop_replay();
                Err(DenyReason::DpopProofReplayed)
            }
            Err(e) => {
                if e == ReplayUnavailable::Full {
                    self.metrics.replay_full();
                }
                tracing::warn!(error = %e, "DPoP replay check unavailable; refusing the proof");
                Err(DenyReason::DependencyUnavailable)
            }
        }
    }
}

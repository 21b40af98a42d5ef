//! Audit records for a request (spec §8): the decision, and its outcome linked by
//! `interaction_id`. A request cancelled by the client still gets its outcome (drop guard).

use std::time::Instant;

use super::Evaluation;
use crate::audit::{AuditLog, AuditRecord, Durability, TokenInfo, digest_prefix};
use crate::decide::{BoundBy, Decision};
use crate::policy::Mode;

/// The request facts every record of this request carries.
pub struct RequestInfo<'a> {
    pub interaction_id: &'a str,
    pub trace_id: &'a str,
    pub method: &'a str,
    /// The path as received; the record carries its normalized form (see
    /// `AuditRecord::request_raw`).
    pub path: &'a str,
    pub revision: &'a str,
}

/// The decision record. Never holds the token itself: its digest prefix, `jti`, `exp`, `jkt`.
pub fn decision(eval: &Evaluation, req: &RequestInfo<'_>) -> AuditRecord {
    let (deny, bound) = match eval.decision {
        Decision::Allow(b) => (None, Some(b)),
        Decision::Deny(r) => (Some(r), None),
    };
    let mut rec = AuditRecord::decision(deny)
        .interaction_id(req.interaction_id)
        .trace_id(req.trace_id)
        .request_raw(req.method, req.path)
        .policy_revision(req.revision)
        .decide_us(eval.decide_ns / 1_000);
    if let Some(route) = &eval.route {
        rec = rec.route(&*route.api, &*route.name);
        if deny.is_some() && route.mode == Mode::Audit {
            rec = rec.audit_mode();
        }
    }
    if let Some(txn) = &eval.txn {
        rec = rec.txn(txn);
    }
    if let Some(c) = &eval.consent {
        rec = rec.consent(c.clone());
    }
    rec.signature.clone_from(&eval.signature);
    if let Some(t) = &eval.token {
        rec = rec
            .client_id(&t.client_id)
            .subject(&t.sub)
            .issuer(&t.issuer.issuer)
            .scopes(t.scopes.iter().map(|s| s.to_string()).collect());
        // Spec §7: the audit record carries the whole `act` chain, current actor first.
        if let Ok(chain) = &t.delegation
            && !chain.actors.is_empty()
        {
            rec = rec.delegation(chain.actors.clone());
        }
        if let Some(p) = eval.consent_purpose.as_deref().or(t.purpose()) {
            rec = rec.purpose(p);
        }
    }
    if let Some(d) = &eval.digest {
        let binding = match (bound, &eval.token) {
            (Some(b), _) => b.as_str(),
            (None, Some(t)) if t.cnf.jkt.is_some() => BoundBy::Dpop.as_str(),
            (None, Some(t)) if t.cnf.x5t_s256.is_some() => BoundBy::Mtls.as_str(),
            _ => BoundBy::Unbound.as_str(),
        };
        rec = rec.token(TokenInfo {
            // An introspected token may have no `jti` (kept as ""): leave the field out.
            jti: eval
                .token
                .as_ref()
                .filter(|t| !t.jti.is_empty())
                .map(|t| t.jti.clone()),
            sha256: digest_prefix(d),
            exp: eval.token.as_ref().map(|t| t.exp),
            iat: eval.token.as_ref().map(|t| t.iat),
            binding,
            jkt: eval.token.as_ref().and_then(|t| t.cnf.jkt.clone()),
        });
    }
    rec
}

/// The pending outcome of a forwarded request. `finish` writes it; dropping it unfinished (the
/// client went away, the request was cancelled) writes it with `cancelled: true`.
pub struct Outcome<'a> {
    audit: &'a AuditLog,
    /// With `after_response`, the single record is the decision plus the outcome fields.
    record: Option<AuditRecord>,
    started: Instant,
}

impl<'a> Outcome<'a> {
    pub fn new(
        audit: &'a AuditLog,
        eval: &Evaluation,
        req: &RequestInfo<'_>,
        started: Instant,
    ) -> Self {
        let record = match audit.durability() {
            Durability::AfterResponse => decision(eval, req),
            Durability::BeforeForward => AuditRecord::outcome(0, 0)
                .interaction_id(req.interaction_id)
                .trace_id(req.trace_id),
        };
        Self {
            audit,
            record: Some(record),
            started,
        }
    }

    /// No outcome will follow (the request was refused after all).
    pub fn disarm(&mut self) {
        self.record = None;
    }

    /// The signature the sidecar put on the response (RFC 9421), for the outcome record.
    pub fn response_signature(&mut self, info: crate::audit::SignatureInfo) {
        if let Some(rec) = &mut self.record {
            rec.response_signature = Some(info);
        }
    }

    pub fn finish(&mut self, status: u16, upstream_error: Option<&str>) {
        if let Some(mut rec) = self.record.take() {
            rec.status = Some(status);
            rec.duration_us = Some(self.started.elapsed().as_micros() as u64);
            rec.upstream_error = upstream_error.map(str::to_owned);
            rec.cancelled = Some(false);
            self.audit.record_detached(rec);
        }
    }
}

impl Drop for Outcome<'_> {
    fn drop(&mut self) {
        if let Some(mut rec) = self.record.take() {
            rec.status = None;
            rec.duration_us = Some(self.started.elapsed().as_micros() as u64);
            rec.cancelled = Some(true);
            self.audit.record_detached(rec);
        }
    }
}

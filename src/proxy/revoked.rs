//! Revocation on the hot path (spec §6 `token_revoked`, `consent_revoked`): building the
//! process's revocation state, and the checks `evaluate` calls (in-memory, no I/O).

use std::sync::Arc;
use std::time::Duration;

use super::Guard;
use crate::audit::AuditLog;
use crate::clock::Clock;
use crate::config::Config;
use crate::consent::{ConsentClient, ConsentOutcome};
use crate::http_client::HttpsClient;
use crate::metrics::Metrics;
use crate::reason::DenyReason;
use crate::revocation::ssf::SsfReceiver;
use crate::revocation::{Evictor, Kind, Revocation, RevocationMetrics, Revocations};
use crate::state::{RedisReplay, RedisState};
use crate::token::introspection::Eviction;
use crate::token::{TokenVerifier, VerifiedToken};

/// The revocation state, its Redis fan-out (with `state.backend: redis`) and the fleet-wide
/// replay store sharing that connection.
pub(super) fn build(
    config: &Config,
    metrics: &Arc<Metrics>,
    audit: &AuditLog,
    clock: &Clock,
    tokens: &TokenVerifier,
    consent: Option<&Arc<ConsentClient>>,
    http: HttpsClient,
) -> Result<(Arc<Revocations>, Option<RedisReplay>), String> {
    let rmetrics = RevocationMetrics::new(metrics)?;
    let shared = match &config.state.redis {
        None => None,
        Some(s) => Some(Arc::new(RedisState::new(
            s.clone(),
            rmetrics.clone(),
            clock.clone(),
        )?)),
    };
    let mut evictors: Vec<Evictor> = Vec::new();
    let cache = tokens.cache();
    evictors.push(Box::new(move |r: &Revocation| match (r.kind, r.digest()) {
        (Kind::TokenSha256, Some(d)) => cache.invalidate(&d),
        (Kind::Consent, _) => {}
        _ => {
            let r = r.clone();
            // Registered closures run in moka's maintenance; the hot-path check does not
            // depend on them (it consults the sets on every request).
            let _ = cache.invalidate_entries_if(move |_, t| matches_token(&r, t));
        }
    }));
    if let Some(i) = tokens.introspection() {
        let i = i.clone();
        evictors.push(Box::new(move |r: &Revocation| match (r.kind, r.digest()) {
            (Kind::TokenSha256, Some(d)) => i.evict(Eviction::Token(d)),
            (Kind::Consent, _) => {}
            _ => {
                let r = r.clone();
                i.evict(Eviction::Matching(Box::new(move |t| matches_token(&r, t))));
            }
        }));
    }
    if let Some(c) = consent {
        let c = c.clone();
        evictors.push(Box::new(move |r: &Revocation| {
            if r.kind == Kind::Consent {
                c.invalidate(&r.value);
            }
        }));
    }
    let mut revs = Revocations::new(
        config.revocation.max_entries,
        default_ttl(config),
        rmetrics,
        audit.clone(),
        clock.clone(),
        shared.clone(),
        evictors,
    );
    if let Some(s) = &config.revocation.ssf {
        revs = revs.with_ssf(SsfReceiver::new(s.clone(), http, metrics.clone()));
    }
    let replay = shared.map(|s| RedisReplay::new(s, config.dpop.clock_skew));
    Ok((Arc::new(revs), replay))
}

/// How long a revocation that names no `until` is kept: the longest any token (lifetime plus
/// skew on both sides) or cached consent record could still be accepted after it.
fn default_ttl(config: &Config) -> Duration {
    let tokens = config
        .issuers
        .iter()
        .map(|i| i.max_token_lifetime + i.clock_skew * 2)
        .max()
        .unwrap_or_default();
    let consent = config
        .consent
        .as_ref()
        .map(|c| c.cache_ttl + c.max_stale + c.timeout)
        .unwrap_or_default();
    tokens.max(consent) + Duration::from_secs(1)
}

/// Whether `r` names `t` (cache eviction; the same rule as the hot-path set check).
fn matches_token(r: &Revocation, t: &VerifiedToken) -> bool {
    let at = r.at_ms.div_euclid(1000);
    match r.kind {
        Kind::Jti => t.jti == r.value,
        Kind::TokenSha256 => r.digest() == Some(t.digest),
        Kind::Subject => t.sub == r.value && t.iat <= at,
        Kind::Client => t.client_id == r.value && t.iat <= at,
        Kind::Consent => false,
    }
}

impl Guard {
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    /// A verified token that has been revoked → `token_revoked`; while the required shared
    /// backend is down → `dependency_unavailable`.
    pub(super) fn check_revoked(&self, t: &VerifiedToken, now: i64) -> Result<(), DenyReason> {
        self.revocations.check_token(t, now)
    }

    /// A consent that has been revoked → `consent_revoked`, whatever a cached record said.
    pub(super) fn check_consent_revoked(&self, c: &mut ConsentOutcome, now: i64) {
        if c.info
            .as_ref()
            .is_some_and(|i| self.revocations.consent_revoked(&i.id, now))
        {
            c.result = Err(DenyReason::ConsentRevoked);
        }
    }
}

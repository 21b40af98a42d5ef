//! Revocation (spec §4 `/revocations`, `revocation:`; §6 `token_revoked`, `consent_revoked`):
//! what has been revoked, applied to in-memory sets that every request is checked against with
//! no I/O, and fanned out to the other replicas through the shared state backend.
//!
//! Sources: the admin API (`POST /revocations`), Shared Signals events (`POST /ssf/events`),
//! and the other replicas (Redis pub/sub). Each applied revocation is counted
//! (`fapi_guard_revocations_total{source,kind}`), timed (`fapi_guard_revocation_lag_seconds`,
//! event time → applied here), audited (a `revocation` record, value as a digest only) and
//! evicts what caches could still serve (verified tokens, consent records).

pub mod config;
pub mod metrics;
mod set;
pub mod ssf;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::audit::{AuditLog, AuditRecord, RevocationInfo, token_digest};
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::reason::DenyReason;
use crate::state::RedisState;
use crate::token::{TokenDigest, VerifiedToken};

pub use metrics::RevocationMetrics;
pub use set::{Hit, RevocationSet, SetFull};

/// Longer values are refused: no identifier an issuer or consent service hands out is this long.
pub const MAX_VALUE_BYTES: usize = 1024;
/// An explicit `until` further away than this is refused (a typo, or an attempt to pin memory).
pub const MAX_LIFETIME: Duration = Duration::from_secs(400 * 24 * 3600);

/// What a revocation names (spec §4 `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Jti,
    TokenSha256,
    Subject,
    Client,
    Consent,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Jti => "jti",
            Self::TokenSha256 => "token_sha256",
            Self::Subject => "subject",
            Self::Client => "client",
            Self::Consent => "consent",
        }
    }
}

/// Where a revocation came from (the `source` metric label and audit field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Admin,
    Ssf,
    /// Another replica, through the shared state backend.
    Redis,
}

impl Source {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Ssf => "ssf",
            Self::Redis => "redis",
        }
    }
}

/// One revocation, as applied and as exchanged between replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    pub kind: Kind,
    /// The revoked identifier; for `token_sha256`, base64url (no padding) of the 32 bytes.
    pub value: String,
    /// Unix seconds after which the entry is dropped: never later than anything it can match.
    pub until: i64,
    /// When it was revoked (unix milliseconds): the event time, or when the admin call arrived.
    /// Subject and client revocations refuse tokens issued at or before it.
    pub at_ms: i64,
}

impl Revocation {
    /// Checks a revocation from any source: value size and form, expiry in the future and
    /// bounded. Returns the canonical form (SHA-256 values as base64url).
    pub fn validated(mut self, now: i64) -> Result<Self, String> {
        if self.value.is_empty() || self.value.len() > MAX_VALUE_BYTES {
            return Err(format!("value must be 1 to {MAX_VALUE_BYTES} bytes"));
        }
        if self.value.chars().any(char::is_control) {
            return Err("value must not contain control characters".into());
        }
        if self.kind == Kind::TokenSha256 {
            let d = parse_sha256(&self.value)
                .ok_or("token_sha256: 64 hex digits or 43 base64url characters")?;
            self.value = URL_SAFE_NO_PAD.encode(d);
        }
        if self.until < now {
            return Err("until is in the past".into());
        }
        if self.until > now.saturating_add(MAX_LIFETIME.as_secs() as i64) {
            return Err("until is more than 400 days away".into());
        }
        Ok(self)
    }

    pub(crate) fn digest(&self) -> Option<TokenDigest> {
        parse_sha256(&self.value)
    }
}

/// SHA-256 as 64 hex digits or 43 base64url characters.
fn parse_sha256(s: &str) -> Option<TokenDigest> {
    let bytes = match s.len() {
        64 => (0..32)
            .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?,
        43 => URL_SAFE_NO_PAD.decode(s).ok()?,
        _ => return None,
    };
    bytes.try_into().ok()
}

/// Whether the revocation reached the other replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fanout {
    /// Single replica (`state.backend: memory`): nothing to fan out.
    NotShared,
    Published,
    /// Applied here; the shared backend could not be written. `queued`: kept for publication
    /// once the backend is back; otherwise the queue was full and the caller must retry.
    LocalOnly {
        queued: bool,
    },
}

/// Hooks that evict cached state a revocation makes stale.
pub type Evictor = Box<dyn Fn(&Revocation) + Send + Sync>;

/// The process's revocation state and its fan-out.
pub struct Revocations {
    set: RevocationSet,
    metrics: Arc<Metrics>,
    errors: RevocationMetrics,
    audit: AuditLog,
    clock: Clock,
    evictors: Vec<Evictor>,
    shared: Option<Arc<RedisState>>,
    /// Default `until` for revocations that name none: the longest any token or cached consent
    /// could still be accepted.
    default_ttl: Duration,
    ssf: Option<ssf::SsfReceiver>,
}

impl Revocations {
    pub fn new(
        max_entries: usize,
        default_ttl: Duration,
        errors: RevocationMetrics,
        audit: AuditLog,
        clock: Clock,
        shared: Option<Arc<RedisState>>,
        evictors: Vec<Evictor>,
    ) -> Self {
        Self {
            set: RevocationSet::new(max_entries),
            metrics: errors.base.clone(),
            errors,
            audit,
            clock,
            evictors,
            shared,
            default_ttl,
            ssf: None,
        }
    }

    /// With a Shared Signals transmitter configured (`revocation.ssf`).
    pub fn with_ssf(mut self, r: ssf::SsfReceiver) -> Self {
        self.ssf = Some(r);
        self
    }

    pub fn ssf(&self) -> Option<&ssf::SsfReceiver> {
        self.ssf.as_ref()
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Counts a refused revocation input (`error` is one of the `metrics::*` words).
    pub fn refused(&self, source: Source, error: &'static str) {
        self.errors.count(source, error);
    }

    pub fn shared(&self) -> Option<&Arc<RedisState>> {
        self.shared.as_ref()
    }

    /// `until` for a revocation received now that names none.
    pub fn default_until(&self, now: i64) -> i64 {
        now.saturating_add(self.default_ttl.as_secs() as i64)
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// The hot-path check for a verified token (no I/O). While the shared backend is required
    /// (`on_unavailable: deny`) and unreachable, a revocation published meanwhile could be
    /// missing here: fail closed.
    pub fn check_token(&self, t: &VerifiedToken, now: i64) -> Result<(), DenyReason> {
        if self.shared.as_ref().is_some_and(|s| !s.enforceable()) {
            return Err(DenyReason::DependencyUnavailable);
        }
        match self.set.token(t, now) {
            Some(_) => Err(DenyReason::TokenRevoked),
            None => Ok(()),
        }
    }

    pub fn consent_revoked(&self, id: &str, now: i64) -> bool {
        self.set.consent(id, now)
    }

    /// Applies on this replica, then publishes to the others.
    pub async fn revoke(&self, r: Revocation, source: Source) -> Result<Fanout, SetFull> {
        self.apply(&r, source, true)?;
        let Some(shared) = &self.shared else {
            return Ok(Fanout::NotShared);
        };
        match shared.publish(&r, self.clock.now_unix()).await {
            Ok(()) => Ok(Fanout::Published),
            Err(e) => {
                // Published as soon as the backend is back; never silently dropped.
                let queued = shared.enqueue(&r);
                if queued {
                    tracing::warn!(
                        error = %e,
                        kind = r.kind.as_str(),
                        "revocation applied on this replica and queued: the shared state backend is unavailable"
                    );
                } else {
                    self.errors.count(source, metrics::QUEUE_FULL);
                    tracing::error!(
                        error = %e,
                        kind = r.kind.as_str(),
                        pending = shared.pending(),
                        "revocation applied on this replica only: the shared state backend is \
                         unavailable and the pending queue is full; the caller must retry"
                    );
                }
                Ok(Fanout::LocalOnly { queued })
            }
        }
    }

    /// Applies one revocation here: the set, the caches, a metric and an audit record. `live`
    /// is false for entries re-loaded from the shared store (not a new event: no lag sample).
    pub fn apply(&self, r: &Revocation, source: Source, live: bool) -> Result<(), SetFull> {
        let now_us = self.clock.now_micros();
        let now = now_us.div_euclid(1_000_000);
        match self.set.insert(r, now) {
            Ok(true) => {}
            // Already in force (a repeated event, or a reload after reconnecting): nothing new
            // to count or audit.
            Ok(false) => return Ok(()),
            Err(e) => {
                tracing::error!(kind = r.kind.as_str(), "revocation refused: {e}");
                self.errors.count(source, metrics::SET_FULL);
                return Err(e);
            }
        }
        for evict in &self.evictors {
            evict(r);
        }
        let lag = live.then(|| (now_us / 1000 - r.at_ms) as f64 / 1000.0);
        self.metrics
            .revocation(source.as_str(), r.kind.as_str(), lag);
        self.audit
            .record_detached(AuditRecord::revocation(RevocationInfo {
                kind: r.kind.as_str(),
                value_sha256: token_digest(&r.value),
                source: source.as_str(),
                until: Some(r.until),
            }));
        Ok(())
    }

    /// Drops expired entries (called periodically).
    pub fn prune(&self) {
        self.set.prune(self.clock.now_unix());
    }
}

#[cfg(test)]
mod tests;

//! RFC 7662 token introspection for opaque (non-JWT) access tokens.
//!
//! - **Which tokens**: a token that is not shaped like a compact JWS ([`jws::is_jws_shaped`])
//!   goes to the introspection endpoint of the one issuer that has `introspection:`; JWT-shaped
//!   tokens are always verified against the issuer's keys.
//! - **The call**: `POST token=…&token_type_hint=access_token` with client_secret_basic
//!   (RFC 7662 §2.1, RFC 6749 §2.3.1), one per cache miss, never retried, bounded in time
//!   (`timeout`) and size ([`MAX_RESPONSE_BYTES`]). A failed call (refused, timeout, non-200,
//!   not JSON, a member of the wrong type) fails closed: 503 `dependency_unavailable`, counted
//!   and logged, and never cached.
//! - **The answer** feeds the same [`VerifiedToken`] a JWT does, so time, audience, binding
//!   (`cnf.jkt`, `cnf.x5t#S256`), scope, consent, delegation (`act`), purpose and assurance
//!   (`acr`, `auth_time`) are checked identically. `active: false` is `token_inactive`.
//! - **Cache**: keyed by the token's SHA-256, an answer is reused until
//!   min(`cache_ttl`, the token's `exp`), counted from when the call started; refusals
//!   (`active: false`, unusable answers) are cached for `cache_ttl`. Misses for one token are
//!   coalesced (moka `try_get_with`): a burst of requests makes one call.
//! - **Revocation**: [`Introspector::evict`] (by token digest, or by a predicate on the token
//!   for `jti`/subject/client revocations) takes effect at once. Every eviction bumps a
//!   generation; an entry whose call started before an eviction is checked against the
//!   evictions since, on its next read, and dropped when one names it. So an answer that was in
//!   flight when the revocation arrived is never served from the cache. The revocation set
//!   itself is still checked on every request; eviction makes the next request ask the issuer
//!   again.

mod config;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::Expiry;
use percent_encoding::percent_encode;
use serde_json::Value;

use super::verify::MAX_TOKEN_BYTES;
use super::{TokenDigest, TokenFailure, VerifiedToken, jws};
use crate::clock::Clock;
use crate::config::IssuerSettings;
use crate::http_client::{FetchError, HttpsClient};
use crate::metrics::Metrics;
use crate::reason::DenyReason;

pub use config::{IntrospectionConfig, IntrospectionSettings};

/// Introspection answers are a few claims; anything larger is a misbehaving endpoint.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Evictions remembered for in-flight and cached answers. Beyond it the oldest are forgotten,
/// and every entry that has not been checked against them is treated as evicted (refetched).
const MAX_RECENT_EVICTIONS: usize = 10_000;

/// What a revocation evicts.
pub enum Eviction {
    /// The answer for one token (`token_sha256` revocations).
    Token(TokenDigest),
    /// Every answer whose token matches (`jti`, subject, client revocations).
    Matching(Box<dyn Fn(&VerifiedToken) -> bool + Send + Sync>),
}

impl Eviction {
    fn names(&self, digest: &TokenDigest, outcome: &Outcome) -> bool {
        match self {
            Self::Token(d) => d == digest,
            Self::Matching(f) => outcome.as_ref().is_ok_and(|t| f(t)),
        }
    }
}

/// The issuer's verdict on a token: accepted claims, or a refusal worth remembering.
type Outcome = Result<Arc<VerifiedToken>, DenyReason>;

/// One cached answer.
struct Entry {
    /// When the call started: the cache lifetime counts from here.
    fetched_at: Instant,
    /// The eviction generation this entry is known to be unaffected by.
    checked: AtomicU64,
    outcome: Outcome,
}

struct Evicted {
    generation: u64,
    at: Instant,
    what: Eviction,
}

#[derive(Default)]
struct Evictions {
    generation: u64,
    /// The newest generation dropped from `recent`.
    forgotten_through: u64,
    recent: VecDeque<Evicted>,
}

/// The call failed; nothing is cached.
#[derive(Debug)]
struct Unavailable;

/// The introspection client of the one issuer that has `introspection:`, and its cache.
pub struct Introspector {
    issuer: Arc<IssuerSettings>,
    settings: IntrospectionSettings,
    http: HttpsClient,
    metrics: Arc<Metrics>,
    cache: moka::future::Cache<TokenDigest, Arc<Entry>>,
    /// Mirrors `evictions.generation`, read without the lock on the warm path.
    generation: AtomicU64,
    evictions: Mutex<Evictions>,
}

impl Introspector {
    pub fn new(
        issuer: Arc<IssuerSettings>,
        settings: IntrospectionSettings,
        http: HttpsClient,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Self {
        let cache = moka::future::Cache::builder()
            .max_capacity(settings.cache_capacity)
            .expire_after(Lifetime {
                ttl: settings.cache_ttl,
                clock,
            })
            .build();
        Self {
            issuer,
            settings,
            http,
            metrics,
            cache,
            generation: AtomicU64::new(0),
            evictions: Mutex::new(Evictions::default()),
        }
    }

    /// The verified claims of an opaque token: from the cache (no I/O), else from one
    /// coalesced call. `KeysUnavailable` when the endpoint cannot give a usable answer.
    pub async fn introspect(
        &self,
        token: &str,
        digest: TokenDigest,
    ) -> Result<Arc<VerifiedToken>, TokenFailure> {
        // The same bound as a JWT; an oversized token costs no call.
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenFailure::Deny(DenyReason::TokenMalformed));
        }
        if let Some(e) = self.cache.get(&digest).await {
            if self.unaffected(&digest, &e) {
                self.metrics.cache_lookup("introspection", true);
                return answer(&e);
            }
            self.cache.invalidate(&digest).await;
        }
        self.metrics.cache_lookup("introspection", false);
        // Two rounds at most: the second only when the first joined a call that started
        // before an eviction naming this token.
        for _ in 0..2 {
            match self
                .cache
                .try_get_with(digest, self.fetch(token, digest))
                .await
            {
                Ok(e) if self.unaffected(&digest, &e) => return answer(&e),
                Ok(_) => self.cache.invalidate(&digest).await,
                Err(_) => return Err(TokenFailure::KeysUnavailable),
            }
        }
        Err(TokenFailure::KeysUnavailable)
    }

    /// Cached answers (moka's count: evictions still pending may be included).
    pub fn cache_entries(&self) -> u64 {
        self.cache.entry_count()
    }

    pub fn cache_capacity(&self) -> u64 {
        self.settings.cache_capacity
    }

    /// Drops cached answers a revocation makes stale, including one still in flight.
    pub fn evict(&self, what: Eviction) {
        let mut ev = self
            .evictions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // An eviction older than an entry's whole lifetime cannot concern a live entry (its
        // call started later), so it is forgotten; so are the oldest beyond the bound.
        let horizon = self.settings.cache_ttl + Duration::from_secs(1);
        while let Some(front) = ev.recent.front() {
            if front.at.elapsed() <= horizon && ev.recent.len() < MAX_RECENT_EVICTIONS {
                break;
            }
            ev.forgotten_through = front.generation;
            ev.recent.pop_front();
        }
        ev.generation += 1;
        let generation = ev.generation;
        ev.recent.push_back(Evicted {
            generation,
            at: Instant::now(),
            what,
        });
        self.generation.store(generation, Ordering::Release);
    }

    /// Whether no eviction since `e`'s call started names it. Warm path: one atomic load;
    /// the evictions are looked at only once per entry and eviction.
    fn unaffected(&self, digest: &TokenDigest, e: &Entry) -> bool {
        let seen = e.checked.load(Ordering::Acquire);
        if seen >= self.generation.load(Ordering::Acquire) {
            return true;
        }
        let ev = self
            .evictions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if seen < ev.forgotten_through {
            return false;
        }
        let start = ev.recent.partition_point(|x| x.generation <= seen);
        if ev
            .recent
            .range(start..)
            .any(|x| x.what.names(digest, &e.outcome))
        {
            return false;
        }
        e.checked.fetch_max(ev.generation, Ordering::AcqRel);
        true
    }

    /// One call to the endpoint. Never retried: a struggling endpoint gets no storm.
    async fn fetch(&self, token: &str, digest: TokenDigest) -> Result<Arc<Entry>, Unavailable> {
        // Read before the call starts: an eviction after this point is checked against it.
        let generation = self.generation.load(Ordering::Acquire);
        let fetched_at = Instant::now();
        let form = format!(
            "token={}&token_type_hint=access_token",
            percent_encode(token.as_bytes(), config::FORM)
        );
        let body = match self
            .http
            .post_form(
                &self.settings.url,
                Bytes::from(form),
                &self.settings.authorization,
                self.settings.timeout,
                MAX_RESPONSE_BYTES,
            )
            .await
        {
            Ok(b) => b,
            Err(e) => {
                self.metrics.introspection_call(failure_label(&e));
                tracing::warn!(
                    issuer = %self.issuer.issuer,
                    error = %e,
                    "token introspection failed; refusing the request"
                );
                return Err(Unavailable);
            }
        };
        let outcome = match self.parse(&body, digest) {
            Ok(o) => o,
            Err(why) => {
                self.metrics.introspection_call("invalid");
                tracing::warn!(
                    issuer = %self.issuer.issuer,
                    error = why,
                    "token introspection answer refused; refusing the request"
                );
                return Err(Unavailable);
            }
        };
        self.metrics.introspection_call(match &outcome {
            Ok(_) => "active",
            Err(DenyReason::TokenInactive) => "inactive",
            Err(_) => "unusable",
        });
        if let Err(r) = &outcome
            && *r != DenyReason::TokenInactive
        {
            tracing::warn!(
                issuer = %self.issuer.issuer,
                reason = r.as_str(),
                "an active token's introspection answer cannot be used"
            );
        }
        Ok(Arc::new(Entry {
            fetched_at,
            checked: AtomicU64::new(generation),
            outcome,
        }))
    }

    /// RFC 7662 §2.2. `Err`: the answer is not a usable introspection response (the request
    /// fails closed, nothing is cached).
    fn parse(&self, body: &[u8], digest: TokenDigest) -> Result<Outcome, &'static str> {
        // A repeated member (`"active":false,"active":true`) would let parsers disagree.
        if !jws::unique_member_names(body) {
            return Err("not one JSON text, or a repeated member name");
        }
        let Ok(Value::Object(mut members)) = serde_json::from_slice::<Value>(body) else {
            return Err("not a JSON object");
        };
        match members.remove("active") {
            Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => return Ok(Err(DenyReason::TokenInactive)),
            _ => return Err("no boolean `active` member"),
        }
        let dpop_type = match members.remove("token_type") {
            None => false,
            Some(Value::String(t)) => t.eq_ignore_ascii_case("DPoP"),
            Some(_) => return Err("`token_type` is not a string"),
        };
        let token = match VerifiedToken::from_introspection(self.issuer.clone(), digest, members) {
            Err(_) => return Err("a member has the wrong type"),
            Ok(Err(r)) => return Ok(Err(r)),
            Ok(Ok(t)) => t,
        };
        // RFC 9449 §6.2: a DPoP token's answer carries `cnf.jkt`; without it the token would
        // be taken for an unbound one.
        if dpop_type && token.cnf.jkt.is_none() {
            return Ok(Err(DenyReason::TokenMalformed));
        }
        Ok(Ok(Arc::new(token)))
    }
}

fn answer(e: &Entry) -> Result<Arc<VerifiedToken>, TokenFailure> {
    e.outcome.clone().map_err(TokenFailure::Deny)
}

/// The `result` label of a failed call.
fn failure_label(e: &FetchError) -> &'static str {
    match e {
        FetchError::Transport(_) | FetchError::Io(_) => "transport",
        FetchError::Timeout => "timeout",
        FetchError::Status(_) => "status",
        FetchError::TooLarge(_) => "too_large",
        FetchError::Invalid(_) => "invalid",
    }
}

/// Answers live `cache_ttl` from the start of their call, accepted ones never beyond `exp`.
struct Lifetime {
    ttl: Duration,
    clock: Clock,
}

impl Lifetime {
    fn of(&self, e: &Entry) -> Duration {
        let left = self.ttl.saturating_sub(e.fetched_at.elapsed());
        match &e.outcome {
            Ok(t) => {
                let to_exp = t
                    .exp
                    .saturating_mul(1_000_000)
                    .saturating_sub(self.clock.now_micros());
                left.min(Duration::from_micros(u64::try_from(to_exp).unwrap_or(0)))
            }
            Err(_) => left,
        }
    }
}

impl Expiry<TokenDigest, Arc<Entry>> for Lifetime {
    fn expire_after_create(&self, _: &TokenDigest, e: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(self.of(e))
    }
}

#[cfg(test)]
mod tests;

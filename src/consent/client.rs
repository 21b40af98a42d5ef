//! The consent service client (spec §4 `consent:`, §5 contract): one per process, pooled, with a
//! per-call timeout, no retries, and caches so the warm path does no I/O.
//!
//! - **Fresh cache** (`cache_ttl`): a hit makes no call. Misses for one id are coalesced (moka
//!   `try_get_with`): a burst of requests for one consent makes exactly one call.
//! - **Negative cache** (`negative_ttl`): a 404 is remembered briefly, so a flood of requests
//!   naming a non-existent consent cannot become a flood on the consent service.
//! - **Last good** (`cache_ttl + max_stale`): when the service fails (timeout, 5xx, refused,
//!   malformed answer) a record fetched within that bound is used; otherwise the lookup is
//!   `Unavailable` and the request fails closed (503 `dependency_unavailable`). `max_stale: 0s`
//!   (the default) gives the strict spec §5 bound ("a cached record younger than `cache_ttl`").
//! - **Revocation**: [`ConsentClient::invalidate`] drops the id from every cache and leaves a
//!   tombstone, so a fetch that was already in flight when the revocation arrived cannot
//!   re-insert the pre-revocation answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Uri;
use moka::Expiry;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::record::ConsentRecord;
use crate::duration::HumanDuration;
use crate::http_client::{FetchError, HttpsClient};
use crate::metrics::Metrics;
use crate::reason::DenyReason;

/// Consent records are small; anything larger is a misbehaving service.
const MAX_RECORD_BYTES: usize = 64 * 1024;
/// Longer ids are refused without a call: no consent service issues them, and they would only
/// bloat the cache keys.
const MAX_ID_BYTES: usize = 256;
/// RFC 3986 §2.3 unreserved characters stay; everything else in the id is percent-encoded, so
/// an id can never add a path segment, a query or a fragment to the consent URL.
const ID_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `consent:` section of the configuration file (spec §4), before compilation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentConfig {
    /// `http(s)://…/{id}…`: GET returns the consent record JSON.
    pub url: String,
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl: HumanDuration,
    #[serde(default = "default_max_stale")]
    pub max_stale: HumanDuration,
    #[serde(default = "default_negative_ttl")]
    pub negative_ttl: HumanDuration,
    /// Bound on cached consents (each cache), so memory stays bounded.
    #[serde(default = "default_capacity")]
    pub cache_capacity: u64,
}

fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_millis(300))
}
fn default_cache_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(15))
}
/// Spec §5: without the service, only a record younger than `cache_ttl` may be used. Operators
/// who prefer availability over revocation freshness raise this explicitly.
fn default_max_stale() -> HumanDuration {
    HumanDuration(Duration::ZERO)
}
fn default_negative_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn default_capacity() -> u64 {
    10_000
}

/// The compiled `consent:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentSettings {
    /// The URL up to `{id}` and after it.
    url_prefix: String,
    url_suffix: String,
    pub timeout: Duration,
    pub cache_ttl: Duration,
    pub max_stale: Duration,
    pub negative_ttl: Duration,
    pub cache_capacity: u64,
}

impl ConsentConfig {
    /// Errors read `consent.<field>: message` (the config loader splits the field off).
    pub fn compile(self) -> Result<ConsentSettings, String> {
        let url = &self.url;
        let (prefix, suffix) = url
            .split_once("{id}")
            .ok_or_else(|| format!("consent.url: {url:?} needs an {{id}} placeholder"))?;
        if suffix.contains("{id}") {
            return Err(format!("consent.url: {url:?} has more than one {{id}}"));
        }
        let probe: Uri = format!("{prefix}x{suffix}")
            .parse()
            .map_err(|e| format!("consent.url: {url:?} is not a URL: {e}"))?;
        if !matches!(probe.scheme_str(), Some("http" | "https")) {
            return Err(format!("consent.url: {url:?} must be an http(s) URL"));
        }
        // `{id}` must sit in the path or query, never in the authority.
        let after_authority = prefix
            .split_once("://")
            .is_some_and(|(_, rest)| rest.contains(['/', '?']));
        if !after_authority || url.contains('#') {
            return Err(format!(
                "consent.url: {url:?}: {{id}} must be in the path or query, and no fragment"
            ));
        }
        if self.timeout.0.is_zero() {
            return Err("consent.timeout: must be more than 0".into());
        }
        if self.cache_capacity == 0 {
            return Err("consent.cache_capacity: must be at least 1".into());
        }
        Ok(ConsentSettings {
            url_prefix: prefix.to_owned(),
            url_suffix: suffix.to_owned(),
            timeout: self.timeout.0,
            cache_ttl: self.cache_ttl.0,
            max_stale: self.max_stale.0,
            negative_ttl: self.negative_ttl.0,
            cache_capacity: self.cache_capacity,
        })
    }
}

impl ConsentSettings {
    /// The consent service URL for `id`, the id percent-encoded.
    pub fn url_for(&self, id: &str) -> Option<Uri> {
        let enc = utf8_percent_encode(id, ID_SEGMENT);
        format!("{}{enc}{}", self.url_prefix, self.url_suffix)
            .parse()
            .ok()
    }
}

/// Why no record is available. Both end the request (fail closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConsentLookupError {
    /// The service answered 404 (or the id cannot name a consent).
    #[error("no such consent")]
    Missing,
    /// Timeout, refused, 5xx, unexpected status or a malformed record, with no usable last-good
    /// record.
    #[error("consent service unavailable")]
    Unavailable,
}

impl ConsentLookupError {
    pub const fn deny_reason(self) -> DenyReason {
        match self {
            Self::Missing => DenyReason::ConsentMissing,
            Self::Unavailable => DenyReason::DependencyUnavailable,
        }
    }
}

/// One answer of the consent service, with the time its request started.
#[derive(Debug, Clone)]
struct Fetched {
    at: Instant,
    /// `None`: 404.
    record: Option<Arc<ConsentRecord>>,
}

/// Found records live `cache_ttl`, 404s `negative_ttl`.
struct FreshExpiry {
    found: Duration,
    missing: Duration,
}

impl Expiry<String, Fetched> for FreshExpiry {
    fn expire_after_create(&self, _: &String, v: &Fetched, _: Instant) -> Option<Duration> {
        Some(if v.record.is_some() {
            self.found
        } else {
            self.missing
        })
    }
}

/// The process-wide consent service client and its caches.
pub struct ConsentClient {
    settings: ConsentSettings,
    http: HttpsClient,
    metrics: Arc<Metrics>,
    fresh: moka::future::Cache<String, Fetched>,
    last_good: moka::sync::Cache<String, Fetched>,
    /// id → when it was invalidated.
    tombstones: moka::sync::Cache<String, Instant>,
}

impl ConsentClient {
    pub fn new(settings: ConsentSettings, http: HttpsClient, metrics: Arc<Metrics>) -> Self {
        let cap = settings.cache_capacity;
        let fresh = moka::future::Cache::builder()
            .max_capacity(cap)
            .expire_after(FreshExpiry {
                found: settings.cache_ttl,
                missing: settings.negative_ttl,
            })
            .build();
        let stale_bound = settings.cache_ttl.saturating_add(settings.max_stale);
        let last_good = moka::sync::Cache::builder()
            .max_capacity(cap)
            .time_to_live(stale_bound)
            .build();
        // A tombstone must outlive every entry fetched before it (fetch ≤ timeout, then
        // stale_bound in the caches).
        let tombstones = moka::sync::Cache::builder()
            .max_capacity(cap)
            .time_to_live(
                stale_bound
                    .saturating_add(settings.timeout)
                    .saturating_add(Duration::from_secs(1)),
            )
            .build();
        Self {
            settings,
            http,
            metrics,
            fresh,
            last_good,
            tombstones,
        }
    }

    /// `(cache, entries, bound)` of the fresh and last-good caches (the
    /// `fapi_guard_cache_entries` gauge; the fresh count may include pending evictions).
    pub fn cache_sizes(&self) -> [(&'static str, u64, u64); 2] {
        self.last_good.run_pending_tasks();
        let cap = self.settings.cache_capacity;
        [
            ("consent", self.fresh.entry_count(), cap),
            ("consent_last_good", self.last_good.entry_count(), cap),
        ]
    }

    /// The record for `id`: from the fresh cache (no call), else one coalesced call, else the
    /// last good record within `cache_ttl + max_stale`.
    pub async fn get(&self, id: &str) -> Result<Arc<ConsentRecord>, ConsentLookupError> {
        if !plausible_id(id) {
            return Err(ConsentLookupError::Missing);
        }
        if let Some(f) = self.fresh.get(id).await {
            if !self.revoked_since(id, f.at) {
                self.metrics.cache_lookup("consent", true);
                return f.record.ok_or(ConsentLookupError::Missing);
            }
            self.fresh.invalidate(id).await;
        }
        self.metrics.cache_lookup("consent", false);
        // Two rounds at most: the second only when the first joined a call that started before
        // a revocation of this id.
        for _ in 0..2 {
            match self.fresh.try_get_with(id.to_owned(), self.fetch(id)).await {
                Ok(f) if self.revoked_since(id, f.at) => self.fresh.invalidate(id).await,
                Ok(f) => return f.record.ok_or(ConsentLookupError::Missing),
                Err(_) => return self.stale(id),
            }
        }
        Err(ConsentLookupError::Unavailable)
    }

    /// Forgets `id` at once (a revocation event): later lookups call the consent service.
    pub fn invalidate(&self, id: &str) {
        self.tombstones.insert(id.to_owned(), Instant::now());
        self.last_good.invalidate(id);
        // The fresh entry (if any) is ignored from now on because of the tombstone, and
        // dropped by the next `get`.
    }

    /// One call to the consent service. Never retried: a struggling service gets no storm.
    async fn fetch(&self, id: &str) -> Result<Fetched, ConsentLookupError> {
        let at = Instant::now();
        let uri = self
            .settings
            .url_for(id)
            .ok_or(ConsentLookupError::Unavailable)?;
        let body = match self
            .http
            .get(&uri, self.settings.timeout, MAX_RECORD_BYTES)
            .await
        {
            Ok(b) => b,
            Err(FetchError::Status(404)) => {
                // A deleted consent must not come back from the last-good cache later.
                self.last_good.invalidate(id);
                return Ok(Fetched { at, record: None });
            }
            Err(e) => {
                tracing::warn!(consent_id = id, error = %e, "consent service call failed");
                return Err(ConsentLookupError::Unavailable);
            }
        };
        let record = match ConsentRecord::from_json(&body) {
            Ok(r) if r.id.as_deref().is_none_or(|r| r == id) => Arc::new(r),
            Ok(_) => {
                tracing::warn!(consent_id = id, "consent service answered for another id");
                return Err(ConsentLookupError::Unavailable);
            }
            Err(e) => {
                tracing::warn!(consent_id = id, error = %e, "consent service answer refused");
                return Err(ConsentLookupError::Unavailable);
            }
        };
        let fetched = Fetched {
            at,
            record: Some(record),
        };
        if !self.revoked_since(id, at) {
            self.last_good.insert(id.to_owned(), fetched.clone());
        }
        Ok(fetched)
    }

    /// The fallback when the service failed: a last-good record within the staleness bound.
    fn stale(&self, id: &str) -> Result<Arc<ConsentRecord>, ConsentLookupError> {
        let bound = self
            .settings
            .cache_ttl
            .saturating_add(self.settings.max_stale);
        match self.last_good.get(id) {
            Some(Fetched {
                at,
                record: Some(r),
            }) if at.elapsed() < bound && !self.revoked_since(id, at) => {
                tracing::warn!(
                    consent_id = id,
                    age_ms = at.elapsed().as_millis() as u64,
                    "consent service unavailable; using the last good record"
                );
                Ok(r)
            }
            _ => Err(ConsentLookupError::Unavailable),
        }
    }

    /// Whether `id` was invalidated after a call that started at `at`.
    fn revoked_since(&self, id: &str, at: Instant) -> bool {
        self.tombstones.get(id).is_some_and(|t| t >= at)
    }
}

/// Ids a consent service could have issued: non-empty, bounded, no control characters, and not
/// a dot segment (`.`/`..` would be resolved away by URL normalisation on the way).
fn plausible_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && !id.chars().any(char::is_control)
        && id != "."
        && id != ".."
}

#[cfg(test)]
mod tests;

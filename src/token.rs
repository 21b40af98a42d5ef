//! Access-token validation (RFC 9068 JWT profile): signature against the issuer's JWKS, the
//! algorithm allow-list, `typ`, required claims; opaque tokens through RFC 7662 introspection
//! (`introspection`). Time and audience checks are route-dependent and clock-dependent, so they
//! live in the pure `decide` step and run on every request, cached or not. Refusals that cannot
//! change (an expired token, a bad signature under the current keys) are remembered by digest
//! (`verdicts`), so retrying a dead token costs no signature verification.

mod claims;
pub mod introspection;
pub mod jwks;
pub mod jws;
pub mod verdicts;
mod verify;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use moka::sync::Cache;

use crate::clock::Clock;
use crate::config::IssuerSettings;
use crate::http_client::HttpsClient;
use crate::metrics::Metrics;
use crate::reason::DenyReason;

pub use claims::{Cnf, VerifiedToken};
pub use introspection::{IntrospectionConfig, IntrospectionSettings, Introspector};
pub use jwks::JwksStore;
use verdicts::Verdicts;

/// SHA-256 of the raw token: the cache key and the audit digest source. The token itself is
/// never stored or logged.
pub type TokenDigest = [u8; 32];

pub fn digest(token: &str) -> TokenDigest {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Why a token could not be accepted: a client error (deny reason) or an infrastructure one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFailure {
    Deny(DenyReason),
    /// What verification needs cannot be obtained: no key for the issuer (JWKS never loaded /
    /// unreachable), or no usable answer from the introspection endpoint. Fail closed (503).
    KeysUnavailable,
}

/// A configured issuer and its keys.
pub struct Issuer {
    pub settings: Arc<IssuerSettings>,
    pub keys: Arc<JwksStore>,
}

/// Verifies access tokens and caches the verified ones by digest until `exp`.
pub struct TokenVerifier {
    issuers: Vec<Issuer>,
    by_name: HashMap<String, usize>,
    cache: Cache<TokenDigest, Arc<VerifiedToken>>,
    cache_capacity: u64,
    /// Settled refusals by digest (`verdicts`).
    verdicts: Verdicts,
    /// RFC 7662 for opaque tokens, when an issuer has `introspection:` (at most one does).
    introspection: Option<Arc<Introspector>>,
    clock: Clock,
    metrics: Arc<Metrics>,
}

impl TokenVerifier {
    pub fn new(
        issuers: &[IssuerSettings],
        cache_capacity: u64,
        http: HttpsClient,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Self {
        let issuers: Vec<Issuer> = issuers
            .iter()
            .map(|s| {
                let settings = Arc::new(s.clone());
                Issuer {
                    keys: Arc::new(JwksStore::new(
                        settings.clone(),
                        http.clone(),
                        metrics.clone(),
                    )),
                    settings,
                }
            })
            .collect();
        let by_name = issuers
            .iter()
            .enumerate()
            .map(|(i, x)| (x.settings.issuer.clone(), i))
            .collect();
        let introspection = issuers.iter().find_map(|i| {
            i.settings.introspection.as_ref().map(|s| {
                Arc::new(Introspector::new(
                    i.settings.clone(),
                    s.clone(),
                    http.clone(),
                    clock.clone(),
                    metrics.clone(),
                ))
            })
        });
        let cache = Cache::builder()
            .max_capacity(cache_capacity)
            .expire_after(UntilExp {
                clock: clock.clone(),
            })
            .support_invalidation_closures()
            .build();
        Self {
            issuers,
            by_name,
            cache,
            cache_capacity,
            verdicts: Verdicts::new(verdicts::CAPACITY, verdicts::TTL),
            introspection,
            clock,
            metrics,
        }
    }

    /// The introspection client, when an issuer has `introspection:` (revocations evict from
    /// its cache too).
    pub fn introspection(&self) -> Option<&Arc<Introspector>> {
        self.introspection.as_ref()
    }

    /// A handle on the verified-token cache (revocations evict from it).
    pub fn cache(&self) -> Cache<TokenDigest, Arc<VerifiedToken>> {
        self.cache.clone()
    }

    pub fn issuers(&self) -> &[Issuer] {
        &self.issuers
    }

    /// Warm path: a token verified before, still cached (no crypto, no I/O).
    pub fn cached(&self, digest: &TokenDigest) -> Option<Arc<VerifiedToken>> {
        self.cache.get(digest)
    }

    /// Cold path: a remembered verdict, else full verification, then caching. May fetch keys
    /// (rate-limited). An expired token comes back `Ok` (from memory or not): `decide` refuses
    /// it, after the revocation check, exactly as on its first request.
    pub async fn verify(
        &self,
        token: &str,
        digest: TokenDigest,
    ) -> Result<Arc<VerifiedToken>, TokenFailure> {
        // Read before any key is looked at: a verdict is never filed under a newer generation
        // than the keys it was reached with.
        let generation = self.key_generation();
        if let Some(v) = self.verdicts.get(&digest, generation) {
            self.metrics.token_verdict("remembered");
            return v.map_err(TokenFailure::Deny);
        }
        self.metrics.token_verdict("computed");
        match verify::verify(self, token, digest).await {
            Ok(t) => {
                let t = Arc::new(t);
                if self.expired(&t) {
                    self.verdicts.remember_expired(t.clone());
                } else {
                    self.cache.insert(digest, t.clone());
                }
                Ok(t)
            }
            Err(r) => {
                if let (true, TokenFailure::Deny(reason)) = (r.after_signature, r.failure) {
                    self.verdicts.remember_refused(digest, reason, generation);
                }
                Err(r.failure)
            }
        }
    }

    /// `exp` plus the issuer's skew has passed: `decide` refuses the token (`token_expired`)
    /// now and at any later time.
    fn expired(&self, t: &VerifiedToken) -> bool {
        let skew = i64::try_from(t.issuer.clock_skew.as_secs()).unwrap_or(i64::MAX);
        self.clock.now_unix() >= t.exp.saturating_add(skew)
    }

    /// Sum of the issuers' key-set generations: grows whenever any issuer's keys change.
    pub fn key_generation(&self) -> u64 {
        self.issuers
            .iter()
            .fold(0u64, |g, i| g.wrapping_add(i.keys.generation()))
    }

    /// `(cache, entries, bound)` of the verified-token, verdict and introspection caches, after
    /// their pending evictions (the `fapi_guard_cache_entries` gauge).
    pub fn cache_sizes(&self) -> Vec<(&'static str, u64, u64)> {
        self.cache.run_pending_tasks();
        let mut sizes = vec![
            ("token", self.cache.entry_count(), self.cache_capacity),
            (
                "token_verdict",
                self.verdicts.entries(),
                self.verdicts.capacity(),
            ),
        ];
        if let Some(i) = &self.introspection {
            sizes.push(("introspection", i.cache_entries(), i.cache_capacity()));
        }
        sizes
    }

    fn issuer(&self, iss: &str) -> Option<&Issuer> {
        self.by_name.get(iss).map(|i| &self.issuers[*i])
    }

    /// Whether every issuer has keys (readiness).
    pub fn all_keys_loaded(&self) -> bool {
        self.issuers.iter().all(|i| i.keys.has_keys())
    }

    /// Starts the background JWKS refresh of every issuer.
    pub fn spawn_refresh(&self) {
        for i in &self.issuers {
            jwks::spawn_refresh(i.keys.clone());
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }
}

/// Cache entries live until the token's `exp` plus the issuer's skew, never longer.
struct UntilExp {
    clock: Clock,
}

impl moka::Expiry<TokenDigest, Arc<VerifiedToken>> for UntilExp {
    fn expire_after_create(
        &self,
        _key: &TokenDigest,
        value: &Arc<VerifiedToken>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        let until = value
            .exp
            .saturating_add(value.issuer.clock_skew.as_secs() as i64);
        let left = until.saturating_sub(self.clock.now_unix()).max(0);
        Some(Duration::from_secs(u64::try_from(left).unwrap_or(0)))
    }
}

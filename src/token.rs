//! Access-token validation (RFC 9068 JWT profile): signature against the issuer's JWKS, the
//! algorithm allow-list, `typ`, required claims; opaque tokens through RFC 7662 introspection
//! (`introspection`). Time and audience checks are route-dependent and clock-dependent, so they
//! live in the pure `decide` step and run on every request, cached or not.

mod claims;
pub mod introspection;
pub mod jwks;
pub mod jws;
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
    /// RFC 7662 for opaque tokens, when an issuer has `introspection:` (at most one does).
    introspection: Option<Arc<Introspector>>,
    clock: Clock,
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
            introspection,
            clock,
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

    /// Cold path: full verification, then caching. May fetch keys (rate-limited).
    pub async fn verify(
        &self,
        token: &str,
        digest: TokenDigest,
    ) -> Result<Arc<VerifiedToken>, TokenFailure> {
        let verified = Arc::new(verify::verify(self, token, digest).await?);
        self.cache.insert(digest, verified.clone());
        Ok(verified)
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

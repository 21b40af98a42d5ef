//! Remembered verdicts: refusals that cannot change, so a client retrying a dead token costs a
//! cache lookup instead of a signature verification.
//!
//! Only what full verification settled is remembered, by the token's SHA-256:
//!
//! - **expired**: the signature verified and `exp` + the issuer's skew has passed. Time only
//!   moves forward, so the token stays expired whatever happens to the keys. The verified token
//!   itself is kept, and every request goes through the same revocation, `decide` and audit steps
//!   as the first one (same reason, status, challenge and record).
//! - **refused under a key set**: the signature did not verify under the keys the issuer had, or
//!   the claims of a token whose signature verified are malformed. Each such verdict carries the
//!   key-set generation it was reached under ([`super::TokenVerifier::key_generation`]); a
//!   verdict from an older generation is forgotten (a rotation may make the token valid).
//!
//! Never remembered: refusals reached before any signature check (they cost microseconds
//! already, and remembering them would let garbage tokens churn this cache), an unknown `kid`
//! (the key may arrive on the next refetch), keys unavailable (transient), a token not valid
//! yet (it becomes valid; it is an accepted token, cached as one), and introspection answers
//! (their own cache).
//!
//! Bounded in entries ([`CAPACITY`]) and in time ([`TTL`]); this is a plain cache, so it may
//! evict freely: a forgotten verdict only costs one verification.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use super::{TokenDigest, VerifiedToken};
use crate::reason::DenyReason;

/// Most verdicts remembered. An expired entry holds a verified token (as the token cache does),
/// a refusal only a reason and a generation.
pub const CAPACITY: u64 = 10_000;
/// Longest a verdict is remembered: a client still retrying after that pays one verification.
pub const TTL: Duration = Duration::from_secs(10 * 60);

#[derive(Clone)]
enum Verdict {
    Expired(Arc<VerifiedToken>),
    Refused { reason: DenyReason, generation: u64 },
}

/// What a remembered verdict answers: the verified (expired) token, or the refusal.
pub type Remembered = Result<Arc<VerifiedToken>, DenyReason>;

/// The bounded verdict cache.
pub struct Verdicts {
    cache: Cache<TokenDigest, Verdict>,
    capacity: u64,
}

impl Verdicts {
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            capacity,
        }
    }

    /// The verdict for `digest`, if one holds under key-set `generation`. A refusal reached
    /// under another generation is dropped.
    pub fn get(&self, digest: &TokenDigest, generation: u64) -> Option<Remembered> {
        match self.cache.get(digest)? {
            Verdict::Expired(t) => Some(Ok(t)),
            Verdict::Refused {
                reason,
                generation: g,
            } if g == generation => Some(Err(reason)),
            Verdict::Refused { .. } => {
                self.cache.invalidate(digest);
                None
            }
        }
    }

    /// A verified token whose `exp` (plus skew) has passed.
    pub fn remember_expired(&self, token: Arc<VerifiedToken>) {
        self.cache.insert(token.digest, Verdict::Expired(token));
    }

    /// A refusal reached by (or after) a signature check under key-set `generation`.
    pub fn remember_refused(&self, digest: TokenDigest, reason: DenyReason, generation: u64) {
        self.cache
            .insert(digest, Verdict::Refused { reason, generation });
    }

    /// Entries after pending evictions have run (for the `fapi_guard_cache_entries` gauge).
    pub fn entries(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{IssuerSettings, KeySource};

    fn issuer() -> Arc<IssuerSettings> {
        Arc::new(IssuerSettings {
            issuer: "https://as.example".into(),
            keys: KeySource::File("x".into()),
            algorithms: vec![],
            audiences: vec!["a".into()],
            max_token_lifetime: Duration::from_secs(600),
            clock_skew: Duration::from_secs(10),
            jwks_refresh: Duration::from_secs(300),
            jwks_min_refetch: Duration::from_secs(10),
            purpose_claim: "purpose".into(),
            introspection: None,
        })
    }

    fn digest(i: u64) -> TokenDigest {
        let mut d = [0u8; 32];
        d[..8].copy_from_slice(&i.to_be_bytes());
        d
    }

    fn expired_token(d: TokenDigest) -> Arc<VerifiedToken> {
        let claims = serde_json::json!({
            "iss": "https://as.example", "sub": "s", "aud": "a", "client_id": "c",
            "jti": "j", "iat": 1, "exp": 2,
        });
        let serde_json::Value::Object(m) = claims else {
            unreachable!("a JSON object literal")
        };
        Arc::new(VerifiedToken::from_claims(issuer(), d, m).expect("claims"))
    }

    #[test]
    fn the_cache_stays_within_its_bound() {
        let v = Verdicts::new(100, TTL);
        for i in 0..5_000 {
            v.remember_refused(digest(i), DenyReason::TokenSignatureInvalid, 1);
            if i % 3 == 0 {
                v.remember_expired(expired_token(digest(1_000_000 + i)));
            }
        }
        let n = v.entries();
        assert!(n <= 100, "{n} entries over a bound of 100");
        assert!(n > 0, "the cache keeps recent verdicts");
        assert_eq!(v.capacity(), 100);
    }

    #[test]
    fn refusals_hold_for_their_generation_only_and_expiry_for_any() {
        let v = Verdicts::new(100, TTL);
        let cases: [(&str, u64, bool); 3] = [
            ("same generation", 7, true),
            ("keys changed", 8, false),
            ("forgotten once seen stale", 7, false),
        ];
        v.remember_refused(digest(1), DenyReason::TokenSignatureInvalid, 7);
        for (name, generation, held) in cases {
            let got = v.get(&digest(1), generation);
            assert_eq!(
                got.map(|r| r.err()),
                held.then_some(Some(DenyReason::TokenSignatureInvalid)),
                "{name}"
            );
        }
        v.remember_expired(expired_token(digest(2)));
        for generation in [0, 7, 8, u64::MAX] {
            let got = v.get(&digest(2), generation).expect("expired stays");
            assert_eq!(got.expect("the token").digest, digest(2));
        }
        assert!(v.get(&digest(3), 7).is_none(), "unknown digest");
    }

    #[test]
    fn verdicts_expire_by_time() {
        let v = Verdicts::new(100, Duration::from_millis(30));
        v.remember_refused(digest(1), DenyReason::TokenSignatureInvalid, 1);
        assert!(v.get(&digest(1), 1).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(v.get(&digest(1), 1).is_none());
    }
}

//! Single-replica DPoP replay detection (RFC 9449 §11.1): remember each proof's replay key until
//! the proof could no longer pass the `iat` window, and refuse a second use meanwhile.
//!
//! Sizing: an entry lives for at most `proof_max_age + 2 × clock_skew`, so `capacity` must be at
//! least the peak proof rate times that window. When full, the least recently used entry (the
//! one closest to expiry) is evicted and its proof becomes replayable: size generously and watch
//! `entry_count`. LRU is used instead of moka's default TinyLFU because TinyLFU may refuse to
//! admit a new key under pressure, which would forget a proof the moment it was accepted.

use std::time::{Duration, Instant};

use moka::policy::{EvictionPolicy, Expiry};
use moka::sync::Cache;

/// Default capacity: 60 s × ~16k proofs/s with 10 s skew each side, within ~10 MiB.
pub const DEFAULT_CAPACITY: u64 = 100_000;

/// In-memory replay cache keyed by [`super::VerifiedProof::replay_key`].
#[derive(Clone)]
pub struct MemoryReplayCache {
    cache: Cache<[u8; 32], Seen>,
}

#[derive(Clone, Copy)]
struct Seen {
    /// Unix seconds after which the proof is stale anyway (`iat + max_age + skew`).
    expires_at: i64,
    /// How long moka keeps the entry, computed at insertion from the caller's clock.
    ttl: Duration,
}

/// Per-entry time-to-live (moka measures it on its own monotonic clock).
struct UntilStale;

impl Expiry<[u8; 32], Seen> for UntilStale {
    fn expire_after_create(&self, _: &[u8; 32], seen: &Seen, _: Instant) -> Option<Duration> {
        Some(seen.ttl)
    }

    fn expire_after_update(
        &self,
        _: &[u8; 32],
        seen: &Seen,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(seen.ttl)
    }
}

impl MemoryReplayCache {
    pub fn new(capacity: u64) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(capacity.max(1))
                .eviction_policy(EvictionPolicy::lru())
                .expire_after(UntilStale)
                .build(),
        }
    }

    /// Records `key` and returns true on its first use; false when it was already seen and has
    /// not yet expired (a replay). Atomic: of concurrent calls with one key, exactly one wins.
    ///
    /// `now` is the caller's clock. An entry whose `expires_at` has passed by that clock counts as
    /// gone even if moka has not evicted it yet, so the answer never depends on moka's timer.
    pub fn check_and_insert(&self, key: [u8; 32], expires_at: i64, now: i64) -> bool {
        // One second of slack covers the truncation of `now` to whole seconds.
        let secs = expires_at.saturating_sub(now).saturating_add(1).max(1);
        let seen = Seen {
            expires_at,
            ttl: Duration::from_secs(secs.unsigned_abs()),
        };
        self.cache
            .entry(key)
            .or_insert_with_if(|| seen, |old| old.expires_at < now)
            .is_fresh()
    }

    /// Approximate number of live entries (moka updates it lazily), for a saturation gauge.
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }
}

impl Default for MemoryReplayCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl std::fmt::Debug for MemoryReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryReplayCache")
            .field("entry_count", &self.cache.entry_count())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn fresh_then_replayed_then_expired() {
        let cache = MemoryReplayCache::new(100);
        let key = [1u8; 32];
        // (name, expires_at, now, fresh)
        let steps = [
            ("first use", 1_070, 1_000, true),
            ("replay", 1_070, 1_001, false),
            ("replay at expiry", 1_070, 1_070, false),
            ("after expiry", 1_141, 1_071, true),
            ("replay of the re-recorded key", 1_141, 1_072, false),
        ];
        for (name, expires_at, now, fresh) in steps {
            assert_eq!(
                cache.check_and_insert(key, expires_at, now),
                fresh,
                "{name}"
            );
        }
    }

    #[test]
    fn keys_are_independent() {
        let cache = MemoryReplayCache::new(100);
        assert!(cache.check_and_insert([1; 32], 100, 10));
        assert!(cache.check_and_insert([2; 32], 100, 10));
        assert!(!cache.check_and_insert([1; 32], 100, 11));
        assert!(!cache.check_and_insert([2; 32], 100, 11));
    }

    #[test]
    fn concurrent_uses_have_one_winner() {
        let cache = MemoryReplayCache::new(1_000);
        for round in 0u8..20 {
            let wins = Arc::new(AtomicUsize::new(0));
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let (cache, wins) = (cache.clone(), Arc::clone(&wins));
                    std::thread::spawn(move || {
                        if cache.check_and_insert([round; 32], 100, 10) {
                            wins.fetch_add(1, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().expect("thread");
            }
            assert_eq!(wins.load(Ordering::SeqCst), 1, "round {round}");
        }
    }

    #[test]
    fn capacity_is_bounded() {
        let cache = MemoryReplayCache::new(50);
        for i in 0..500u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            assert!(cache.check_and_insert(key, 1_000, 10));
        }
        cache.cache.run_pending_tasks();
        assert!(cache.entry_count() <= 50, "{}", cache.entry_count());
        // The most recent key is still remembered (LRU evicts the oldest).
        let mut last = [0u8; 32];
        last[..4].copy_from_slice(&499u32.to_be_bytes());
        assert!(!cache.check_and_insert(last, 1_000, 11));
    }
}

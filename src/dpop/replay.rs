//! DPoP replay detection (RFC 9449 §11.1): remember each proof's replay key until the proof could
//! no longer pass the `iat` window, and refuse a second use meanwhile.
//!
//! **Security state expires by time, never by capacity.** An entry is forgotten only once its
//! `expires_at` has passed; nothing pressure-driven (LRU, TinyLFU) may drop it earlier, because a
//! forgotten unexpired proof is a replayable one. Memory is bounded by expiry: entries sit in
//! per-second buckets that are dropped whole when their second is over. At the hard limit
//! (`dpop.replay_cache_max_entries`) new proofs are refused (503 `dependency_unavailable`,
//! counted in `fapi_guard_replay_cache_full_total`) rather than old ones forgotten.
//!
//! [`ReplayStore`] is the one interface the proxy calls (asynchronously), so a shared backend
//! (Redis `SET NX PX`) is one more variant with the same guarantee.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Default hard limit: 500,000 live proofs, i.e. ~6,000 proofs/s sustained over the default
/// 80 s window (`proof_max_age` 60 s + 2 × 10 s skew), ~50 MiB at the limit (~100 bytes/entry).
pub const DEFAULT_MAX_ENTRIES: usize = 500_000;
/// Upper bound accepted in the configuration (~5 GiB at the limit): a typo guard.
pub const MAX_MAX_ENTRIES: usize = 50_000_000;
/// Independent locks; replay keys are SHA-256 outputs, so the first byte spreads them evenly.
const SHARDS: usize = 16;

/// Why the replay check could not be made. Either way the proof is refused (fail closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayUnavailable {
    /// The hard memory limit is reached: new proofs are refused until entries expire.
    #[error("replay store full")]
    Full,
    /// A shared backend could not be reached.
    #[error("replay store backend unavailable")]
    Backend,
}

/// Where replay keys are recorded.
pub enum ReplayStore {
    /// This process only (`state.backend: memory`).
    Memory(MemoryReplayStore),
    /// Every replica (`state.backend: redis`): `SET NX PX` on the shared store, so a proof
    /// accepted by one replica is refused by all. `local` also records each proof here, so that
    /// with `on_unavailable: local` an outage still catches replays on this replica.
    Shared {
        shared: crate::state::RedisReplay,
        local: MemoryReplayStore,
        /// `on_unavailable: local`: decide with `local` while the shared store is down.
        fallback: bool,
    },
}

impl ReplayStore {
    /// Records `key` until `expires_at` (unix seconds, inclusive) and answers `Ok(true)` on its
    /// first use, `Ok(false)` for a replay. Atomic: of concurrent calls with one key, exactly one
    /// gets `Ok(true)`.
    pub async fn check_and_insert(
        &self,
        key: [u8; 32],
        expires_at: i64,
        now: i64,
    ) -> Result<bool, ReplayUnavailable> {
        match self {
            Self::Memory(m) => m.check_and_insert(key, expires_at, now),
            Self::Shared {
                shared,
                local,
                fallback,
            } => match shared.check_and_insert(key, expires_at, now).await {
                Ok(first) => {
                    if *fallback {
                        // Best effort: the shared answer decides; the local copy only serves
                        // during a later outage.
                        let _ = local.check_and_insert(key, expires_at, now);
                    }
                    Ok(first)
                }
                Err(_) if *fallback => {
                    // Counted and logged at most once per period by the shared state.
                    shared.state().note_local_fallback();
                    local.check_and_insert(key, expires_at, now)
                }
                Err(_) => Err(ReplayUnavailable::Backend),
            },
        }
    }

    /// Drops the proofs of this process whose window is over (a scrape calls it, so the size
    /// gauge does not wait for the next proof).
    pub fn purge_expired(&self, now: i64) {
        match self {
            Self::Memory(m) | Self::Shared { local: m, .. } => m.purge_all(now),
        }
    }

    /// Live entries held by this process (`fapi_guard_replay_cache_entries`).
    pub fn entries(&self) -> usize {
        match self {
            Self::Memory(m) | Self::Shared { local: m, .. } => m.len(),
        }
    }
}

/// In-process store: sharded, expiry-bucketed, hard-capped.
pub struct MemoryReplayStore {
    shards: Box<[Mutex<Shard>]>,
    /// Entries over all shards; reserved before an insert so the cap is exact under concurrency.
    len: AtomicUsize,
    max_entries: usize,
}

#[derive(Default)]
struct Shard {
    /// Replay key → the second it expires at (inclusive).
    seen: HashMap<[u8; 32], i64>,
    /// Expiry second → the keys expiring then. Dropped whole once the second has passed.
    buckets: BTreeMap<i64, Vec<[u8; 32]>>,
}

impl Shard {
    /// Drops every bucket whose second is before `now`; returns how many entries went.
    fn purge(&mut self, now: i64) -> usize {
        let mut removed = 0;
        while let Some(bucket) = self.buckets.first_entry() {
            if *bucket.key() >= now {
                break;
            }
            let at = *bucket.key();
            for key in bucket.remove() {
                // A key is re-recorded only after its old bucket went, so this always matches;
                // checked anyway so a purge can never drop a newer entry.
                if self.seen.get(&key) == Some(&at) {
                    self.seen.remove(&key);
                    removed += 1;
                }
            }
        }
        removed
    }
}

impl MemoryReplayStore {
    /// `max_entries`: the hard limit (at least 1).
    pub fn new(max_entries: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            len: AtomicUsize::new(0),
            max_entries: max_entries.max(1),
        }
    }

    /// See [`ReplayStore::check_and_insert`]. `now` is the caller's clock, so expiry never depends
    /// on a background timer; an entry is live while `now <= expires_at`.
    pub fn check_and_insert(
        &self,
        key: [u8; 32],
        expires_at: i64,
        now: i64,
    ) -> Result<bool, ReplayUnavailable> {
        let shard = &self.shards[usize::from(key[0]) % SHARDS];
        for attempt in 0..2 {
            {
                let mut s = lock(shard);
                let purged = s.purge(now);
                self.len.fetch_sub(purged, Ordering::Relaxed);
                if s.seen.contains_key(&key) {
                    return Ok(false);
                }
                if self.reserve() {
                    s.seen.insert(key, expires_at);
                    s.buckets.entry(expires_at).or_default().push(key);
                    return Ok(true);
                }
            }
            // At the limit: other shards may still hold expired buckets nobody touched yet.
            if attempt == 0 {
                self.purge_all(now);
            }
        }
        Err(ReplayUnavailable::Full)
    }

    /// Live entries (including expired ones not purged yet, at most a few seconds' worth).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops expired buckets in every shard.
    pub fn purge_all(&self, now: i64) {
        for shard in &self.shards {
            let purged = lock(shard).purge(now);
            self.len.fetch_sub(purged, Ordering::Relaxed);
        }
    }

    /// Takes one slot under the hard limit, or none.
    fn reserve(&self) -> bool {
        self.len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_entries).then_some(n + 1)
            })
            .is_ok()
    }
}

impl Default for MemoryReplayStore {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_ENTRIES)
    }
}

impl std::fmt::Debug for MemoryReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryReplayStore")
            .field("entries", &self.len())
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

/// A poisoned lock only means another thread panicked mid-call; every shard mutation keeps the
/// maps consistent at each step, so the data is still valid.
fn lock(m: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    fn key(i: u32) -> [u8; 32] {
        // Spread over shards like SHA-256 output would.
        let mut k = [0u8; 32];
        k[0] = (i % 251) as u8;
        k[1..5].copy_from_slice(&i.to_be_bytes());
        k
    }

    #[test]
    fn fresh_then_replayed_then_expired() {
        let store = MemoryReplayStore::new(100);
        let k = [1u8; 32];
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
                store.check_and_insert(k, expires_at, now),
                Ok(fresh),
                "{name}"
            );
        }
    }

    #[test]
    fn keys_are_independent() {
        let store = MemoryReplayStore::new(100);
        assert_eq!(store.check_and_insert([1; 32], 100, 10), Ok(true));
        assert_eq!(store.check_and_insert([2; 32], 100, 10), Ok(true));
        assert_eq!(store.check_and_insert([1; 32], 100, 11), Ok(false));
        assert_eq!(store.check_and_insert([2; 32], 100, 11), Ok(false));
    }

    /// The defect of the LRU it replaces: 150,000 fresh proofs after a victim's used to evict it.
    /// Ten times the old capacity later, below the hard limit, the victim is still refused.
    #[test]
    fn never_forgets_before_expiry_under_pressure() {
        let store = MemoryReplayStore::new(2_000_000);
        let victim = [0xAB; 32];
        assert_eq!(store.check_and_insert(victim, 1_080, 1_000), Ok(true));
        for i in 0..1_000_000u32 {
            let now = 1_000 + i64::from(i / 20_000); // 50 seconds of 20k proofs/s
            assert_eq!(store.check_and_insert(key(i), now + 80, now), Ok(true));
        }
        assert_eq!(store.check_and_insert(victim, 1_080, 1_050), Ok(false));
        assert_eq!(store.check_and_insert(victim, 1_080, 1_080), Ok(false));
        assert_eq!(store.len(), 1_000_001);
    }

    #[test]
    fn forgets_after_expiry_and_memory_follows() {
        let store = MemoryReplayStore::new(10_000);
        for i in 0..5_000u32 {
            let now = 1_000 + i64::from(i / 1_000);
            assert_eq!(store.check_and_insert(key(i), now + 10, now), Ok(true));
        }
        assert_eq!(store.len(), 5_000);
        // At 1_012 the buckets of 1_010 and 1_011 are over (and only they).
        store.purge_all(1_012);
        assert_eq!(store.len(), 3_000);
        assert_eq!(store.check_and_insert(key(0), 1_100, 1_012), Ok(true));
        assert_eq!(store.check_and_insert(key(2_500), 1_100, 1_012), Ok(false));
        store.purge_all(2_000);
        assert!(store.is_empty(), "{}", store.len());
    }

    #[test]
    fn refuses_new_proofs_at_the_hard_limit_and_keeps_old_ones() {
        let store = MemoryReplayStore::new(50);
        for i in 0..50u32 {
            assert_eq!(store.check_and_insert(key(i), 1_080, 1_000), Ok(true));
        }
        assert_eq!(
            store.check_and_insert(key(50), 1_080, 1_001),
            Err(ReplayUnavailable::Full)
        );
        // Every recorded proof is still a replay; none was evicted to make room.
        for i in 0..50u32 {
            assert_eq!(
                store.check_and_insert(key(i), 1_080, 1_002),
                Ok(false),
                "{i}"
            );
        }
        assert_eq!(store.len(), 50);
        // Once they expired there is room again, whichever shard the new key falls in.
        assert_eq!(store.check_and_insert(key(50), 1_200, 1_081), Ok(true));
        store.purge_all(1_081);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn concurrent_uses_have_one_winner_and_the_cap_is_exact() {
        let store = Arc::new(MemoryReplayStore::new(1_000));
        for round in 0u8..20 {
            let wins = Arc::new(AtomicUsize::new(0));
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let (store, wins) = (Arc::clone(&store), Arc::clone(&wins));
                    std::thread::spawn(move || {
                        if store.check_and_insert([round; 32], 100, 10) == Ok(true) {
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
        // 8 threads × 200 distinct keys against 980 free slots: exactly 980 are admitted.
        let admitted = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8u32)
            .map(|t| {
                let (store, admitted) = (Arc::clone(&store), Arc::clone(&admitted));
                std::thread::spawn(move || {
                    for i in 0..200 {
                        if store.check_and_insert(key(10_000 + t * 1_000 + i), 100, 10) == Ok(true)
                        {
                            admitted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(admitted.load(Ordering::SeqCst), 980);
        assert_eq!(store.len(), 1_000);
    }

    #[tokio::test]
    async fn the_store_interface_answers_like_the_memory_store() {
        let store = ReplayStore::Memory(MemoryReplayStore::new(1));
        assert_eq!(store.check_and_insert([7; 32], 100, 10).await, Ok(true));
        assert_eq!(store.check_and_insert([7; 32], 100, 11).await, Ok(false));
        assert_eq!(
            store.check_and_insert([8; 32], 100, 11).await,
            Err(ReplayUnavailable::Full)
        );
        assert_eq!(store.entries(), 1);
    }
}

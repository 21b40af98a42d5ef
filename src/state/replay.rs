//! The fleet-wide DPoP replay check (RFC 9449 §11.1): `SET key 1 NX PX <ms>` on Redis, so a
//! proof accepted by one replica is refused by every other for its whole window.
//!
//! The key is the proof's 32-byte replay key (already a hash of `htu` and `jti`), prefixed, with
//! no hash tag: in a Redis Cluster the keys spread over every slot. The expiry is computed to
//! the millisecond: a proof passes at a replica while that replica's clock reads a second at or
//! before `expires_at`, i.e. until `expires_at + 1 s`, and a replica whose clock is behind by up
//! to `dpop.clock_skew` accepts it that much later; the key lives until then.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::RedisState;

/// The replay check could not be made (Redis down, slow, or answering garbage). With
/// `on_unavailable: deny` the request gets 503 `dependency_unavailable`; with `local` the
/// caller falls back to this replica's memory check (`dpop::ReplayStore::Shared`).
pub use crate::dpop::replay::ReplayUnavailable;

#[derive(Clone)]
pub struct RedisReplay {
    state: Arc<RedisState>,
    /// Allowance for replicas whose clocks disagree (`dpop.clock_skew`), in milliseconds.
    skew_ms: i64,
}

impl RedisReplay {
    pub fn new(state: Arc<RedisState>, clock_skew: Duration) -> Self {
        Self {
            state,
            skew_ms: i64::try_from(clock_skew.as_millis()).unwrap_or(i64::MAX),
        }
    }

    pub fn state(&self) -> &Arc<RedisState> {
        &self.state
    }

    /// How long the key of a proof whose window ends at `expires_at` (unix seconds, inclusive)
    /// must live from `now_ms`.
    pub fn ttl_ms(&self, expires_at: i64, now_ms: i64) -> i64 {
        expires_at
            .saturating_add(1)
            .saturating_mul(1000)
            .saturating_add(self.skew_ms)
            .saturating_sub(now_ms)
            .max(1)
    }

    /// `Ok(true)`: first use, now recorded until the end of its window. `Ok(false)`: seen
    /// before (a replay). `Err`: could not be decided.
    pub async fn check_and_insert(
        &self,
        key: [u8; 32],
        expires_at: i64,
        _now: i64,
    ) -> Result<bool, ReplayUnavailable> {
        let now_ms = self.state.clock().now_micros().div_euclid(1000);
        let suffix = format!("dpop:{}", URL_SAFE_NO_PAD.encode(key));
        self.state
            .claim("replay", &suffix, self.ttl_ms(expires_at, now_ms))
            .await
            .map_err(|_| ReplayUnavailable::Backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateConfig;

    #[test]
    fn the_key_outlives_the_window_at_every_replica() {
        let cfg: StateConfig =
            serde_yaml::from_str("backend: redis\nredis_url: redis://127.0.0.1:1\n").expect("y");
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let m = crate::revocation::RevocationMetrics::new(&metrics).expect("metrics");
        let s = RedisState::new(
            cfg.compile().expect("c").redis.expect("r"),
            m,
            crate::clock::Clock::fixed(1_000),
        )
        .expect("state");
        let r = RedisReplay::new(Arc::new(s), Duration::from_secs(10));
        // (name, expires_at, now_ms, ttl_ms)
        let cases = [
            // Window ends at second 1_080 (inclusive): passes until 1_081.000, plus 10 s skew.
            ("at the start of a second", 1_080, 1_000_000, 91_000),
            ("late in a second", 1_080, 1_000_999, 90_001),
            ("in the last accepted second", 1_080, 1_080_500, 10_500),
            ("already over (clock skew)", 1_080, 1_095_000, 1),
        ];
        for (name, expires_at, now_ms, want) in cases {
            assert_eq!(r.ttl_ms(expires_at, now_ms), want, "{name}");
        }
    }
}

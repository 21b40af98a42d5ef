//! Injectable time source, so expiry, skew and window checks are deterministic in tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time in Unix seconds/microseconds. Cheap to clone; pass it in, never read a global.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    fixed_micros: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { fixed_micros: None }
    }

    /// A clock frozen at `unix_secs` until `set` or `advance` moves it.
    pub fn fixed(unix_secs: i64) -> Self {
        Self {
            fixed_micros: Some(Arc::new(AtomicI64::new(
                unix_secs.saturating_mul(1_000_000),
            ))),
        }
    }

    pub fn now_micros(&self) -> i64 {
        match &self.fixed_micros {
            Some(m) => m.load(Ordering::Relaxed),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
                .unwrap_or(0),
        }
    }

    pub fn now_unix(&self) -> i64 {
        self.now_micros().div_euclid(1_000_000)
    }

    /// Moves a fixed clock; no effect on the system clock.
    pub fn set(&self, unix_secs: i64) {
        if let Some(m) = &self.fixed_micros {
            m.store(unix_secs.saturating_mul(1_000_000), Ordering::Relaxed);
        }
    }

    pub fn advance(&self, secs: i64) {
        if let Some(m) = &self.fixed_micros {
            m.fetch_add(secs.saturating_mul(1_000_000), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_clock_moves_only_when_told() {
        let c = Clock::fixed(1_000);
        assert_eq!(c.now_unix(), 1_000);
        c.advance(5);
        assert_eq!(c.now_unix(), 1_005);
        c.set(7);
        assert_eq!(c.now_micros(), 7_000_000);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(Clock::system().now_unix() > 1_577_836_800);
    }
}

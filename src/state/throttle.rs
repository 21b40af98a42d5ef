//! Rate limit for log lines that a failing dependency would otherwise repeat on every request
//! or every reconnect attempt: at most one line per period, carrying how many were held back.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub(crate) struct Throttle {
    start: Instant,
    every_ms: i64,
    /// Milliseconds since `start` of the last line logged; negative before the first.
    last: AtomicI64,
    suppressed: AtomicU64,
}

impl Throttle {
    pub(crate) fn new(every: Duration) -> Self {
        Self {
            start: Instant::now(),
            every_ms: i64::try_from(every.as_millis()).unwrap_or(i64::MAX),
            last: AtomicI64::new(i64::MIN),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a line may be logged now (`n` lines were held back since the last one);
    /// `None` when this one is held back.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX);
        let last = self.last.load(Ordering::Relaxed);
        let due = last == i64::MIN || now.saturating_sub(last) >= self.every_ms;
        if due
            && self
                .last
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::AcqRel));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_with_the_count_held_back() {
        let t = Throttle::new(Duration::from_millis(200));
        assert_eq!(t.allow(), Some(0), "the first line is logged");
        for _ in 0..5 {
            assert_eq!(t.allow(), None, "within the period");
        }
        std::thread::sleep(Duration::from_millis(220));
        assert_eq!(
            t.allow(),
            Some(5),
            "the next line says how many were held back"
        );
        assert_eq!(t.allow(), None);
    }
}

//! Rate-limited warnings (DESIGN 10: logging never blocks a request, and a burst of one
//! failure must not flood the log): at most one line per second per call site, carrying the
//! count of lines suppressed since the last one. Lock-free: two atomics per call site.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// One call site's budget.
#[derive(Debug)]
pub struct Throttle {
    /// Milliseconds (since the process's first use of a throttle) of the last line allowed,
    /// plus one; 0 before the first.
    last: AtomicU64,
    suppressed: AtomicU64,
}

const WINDOW_MS: u64 = 1000;

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
}

impl Throttle {
    pub const fn new() -> Self {
        Throttle {
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(suppressed)`: log this line, saying how many were left out since the last one;
    /// `None`: leave it out (it is counted).
    #[inline]
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(now_ms() + 1)
    }

    /// [`Throttle::allow`] at `now` (milliseconds, plus one).
    fn allow_at(&self, now: u64) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        if (last == 0 || now >= last + WINDOW_MS)
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_with_the_count_of_the_rest() {
        let throttle = Throttle::new();
        assert_eq!(throttle.allow_at(1), Some(0));
        for ms in 2..101 {
            assert_eq!(throttle.allow_at(ms), None);
        }
        assert_eq!(throttle.allow_at(WINDOW_MS), None);
        assert_eq!(throttle.allow_at(1 + WINDOW_MS), Some(100));
        assert_eq!(throttle.allow_at(2 + WINDOW_MS), None);
    }
}

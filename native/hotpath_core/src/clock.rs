//! Hotpath's one clock: `std::time::Instant` (the OS monotonic clock), as nanoseconds or
//! milliseconds since the process first read it.
//!
//! Every native timestamp (limiter decisions, histogram windows, metrics reads) comes from
//! here. `Instant` is monotonic across threads, so a reading never goes backwards whichever
//! scheduler thread takes it. Tests never need it: every time-based path also takes an
//! injected time.

use std::sync::OnceLock;
use std::time::Instant;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since this process first used the clock.
#[inline]
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// Milliseconds since this process first used the clock.
#[inline]
pub fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn never_decreases_across_threads() {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    let mut last = now_ns();
                    for _ in 0..100_000 {
                        let now = now_ns();
                        assert!(now >= last);
                        last = now;
                    }
                    last
                })
            })
            .collect();
        let latest = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap();
        assert!(now_ns() >= latest);
    }

    #[test]
    fn milliseconds_follow_nanoseconds() {
        let before = now_ns();
        std::thread::sleep(Duration::from_millis(3));
        let ms = now_ms();
        assert!(ms * 1_000_000 + 1_000_000 > before + 3_000_000);
        assert!(ms <= now_ns() / 1_000_000);
    }
}

//! Hotpath's one clock, the maintained [`quanta`] crate, as nanoseconds or milliseconds since
//! the process first read it.
//!
//! Every native timestamp (limiter decisions, histogram windows, metrics reads) comes from
//! here. `quanta::Clock` reads the CPU's time-stamp counter only where the CPU reports an
//! invariant one (calibrated once against the OS monotonic clock) and the OS monotonic clock
//! otherwise; `std::time::Instant` costs about a whole rate-limiter decision more per read
//! (the A/B row `hit/2, clock: Instant` in `benches/rate_limiter.exs`). Tests never need it:
//! every time-based path also takes an injected time. [`unix_ms`] is the one wall-clock read,
//! for timestamps exported to a scraper.

use std::sync::OnceLock;

struct Epoch {
    clock: quanta::Clock,
    start: quanta::Instant,
}

#[inline]
fn epoch() -> &'static Epoch {
    static EPOCH: OnceLock<Epoch> = OnceLock::new();
    EPOCH.get_or_init(|| {
        let clock = quanta::Clock::new();
        let start = clock.now();
        Epoch { clock, start }
    })
}

/// Nanoseconds since this process first used the clock.
#[inline]
pub fn now_ns() -> u64 {
    let e = epoch();
    e.clock.now().saturating_duration_since(e.start).as_nanos() as u64
}

/// Milliseconds since this process first used the clock.
#[inline]
pub fn now_ms() -> u64 {
    now_ns() / 1_000_000
}

/// Milliseconds since the Unix epoch, from the OS wall clock: only for timestamps that leave
/// the process (exemplars, `_created`), never for measuring time. 0 if the clock reads before
/// 1970.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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

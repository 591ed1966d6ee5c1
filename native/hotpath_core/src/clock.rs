//! A cheap monotonic clock in nanoseconds.
//!
//! Reading the OS monotonic clock (`clock_gettime`, through `Instant`) costs 20-40 ns, about
//! as much as a whole rate-limiter decision. [`now_ns`] reads the CPU's time-stamp counter
//! instead (a few ns) and converts it with a per-thread anchor taken from the OS clock:
//!
//! * each thread keeps `(tsc, ns)` from its last OS reading and a ticks-per-ns estimate;
//! * a reading within [`RESYNC_NS`] of the anchor is extrapolated from the counter; anything
//!   else (an older anchor, a counter that went backwards after a migration to a core whose
//!   counter differs, a jump after a VM pause) takes a fresh OS reading and re-anchors;
//! * results never decrease on a thread.
//!
//! The error is therefore bounded by the extrapolation span times the rate estimate's error:
//! a few ns to a few µs, far below the millisecond the limiter promises, on any CPU, even
//! one without an invariant counter. On other architectures it is `Instant` directly.

use std::sync::OnceLock;
use std::time::Instant;

/// Longest span extrapolated from the counter before the OS clock is read again.
pub const RESYNC_NS: u64 = 100_000;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since this process first used the clock, from the OS monotonic clock.
pub fn os_now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// One thread's clock state: the anchor of [`now_ns`]. A caller that already keeps
/// thread-local state can hold an `Anchor` there and call [`Anchor::now_ns`], saving a second
/// thread-local access on hot paths. Keep an anchor on one thread: its readings are monotonic
/// for the thread that owns it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anchor {
    tsc: u64,
    ns: u64,
    /// Nanoseconds per tick, in 32.32 fixed point; 0 until measured.
    ns_per_tick: u64,
    /// Ticks in RESYNC_NS (0 until measured: always resync).
    resync_ticks: u64,
    last: u64,
}

impl Anchor {
    /// A fresh anchor (it calibrates itself on its first readings).
    pub const fn new() -> Anchor {
        Anchor {
            tsc: 0,
            ns: 0,
            ns_per_tick: 0,
            resync_ticks: 0,
            last: 0,
        }
    }

    /// Nanoseconds since the process's clock epoch, never less than this anchor's previous
    /// reading.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    pub fn now_ns(&mut self) -> u64 {
        let a = self;
        let tsc = rdtsc();
        let ticks = tsc.wrapping_sub(a.tsc);
        let ns = if a.ns_per_tick != 0 && ticks < a.resync_ticks {
            a.ns + ((ticks as u128 * a.ns_per_tick as u128) >> 32) as u64
        } else {
            a.resync(tsc)
        };
        let ns = ns.max(a.last);
        a.last = ns;
        ns
    }

    /// Nanoseconds since the process's clock epoch, from the OS monotonic clock.
    #[cfg(not(target_arch = "x86_64"))]
    #[inline]
    pub fn now_ns(&mut self) -> u64 {
        let ns = os_now_ns().max(self.last);
        self.last = ns;
        ns
    }

    #[cfg(target_arch = "x86_64")]
    #[cold]
    fn resync(&mut self, tsc: u64) -> u64 {
        let a = self;
        let ns = os_now_ns();
        let span = ns.saturating_sub(a.ns);
        let valid = a.tsc != 0 && tsc > a.tsc;
        if valid && span >= RESYNC_NS / 4 {
            // Long enough since the anchor for the OS readings' jitter not to matter: measure
            // the counter's rate, then re-anchor.
            let ns_per_tick = ((span as u128) << 32) / ((tsc - a.tsc) as u128);
            if ns_per_tick > 0 && ns_per_tick < (1u128 << 40) {
                a.ns_per_tick = ns_per_tick as u64;
                a.resync_ticks =
                    (((RESYNC_NS as u128) << 32) / ns_per_tick).min(u64::MAX as u128) as u64;
            }
            a.tsc = tsc;
            a.ns = ns;
        } else if !valid || a.ns_per_tick != 0 {
            // First reading, a counter that went backwards, or a calibrated thread past its
            // span: re-anchor. (While calibrating, the anchor is kept until the span is long
            // enough to measure.)
            a.tsc = tsc;
            a.ns = ns;
        }
        ns
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn rdtsc() -> u64 {
    // SAFETY: RDTSC exists on every x86_64 CPU (it is part of the baseline ISA), reads a
    // register and touches no memory; the intrinsic is `unsafe` only by convention.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

thread_local! {
    static ANCHOR: std::cell::Cell<Anchor> = const { std::cell::Cell::new(Anchor::new()) };
}

/// Nanoseconds since the process's clock epoch, monotonic on each thread (see the module
/// docs for how it is read and its error bound).
pub fn now_ns() -> u64 {
    ANCHOR.with(|cell| {
        let mut anchor = cell.get();
        let ns = anchor.now_ns();
        cell.set(anchor);
        ns
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn never_decreases_on_a_thread() {
        let mut last = now_ns();
        for _ in 0..1_000_000 {
            let now = now_ns();
            assert!(now >= last);
            last = now;
        }
    }

    #[test]
    fn tracks_the_os_clock_closely() {
        for round in 0..200 {
            // Alternate busy stretches (extrapolated readings) with sleeps (resyncs).
            if round % 2 == 0 {
                std::thread::sleep(Duration::from_micros(300));
            }
            let before = os_now_ns();
            let now = now_ns();
            let after = os_now_ns();
            // Within the OS readings, allowing 50 µs of extrapolation error.
            assert!(now + 50_000 >= before, "{now} < {before}");
            assert!(now <= after + 50_000, "{now} > {after}");
        }
    }

    #[test]
    fn agrees_across_threads() {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    // Bracketed by OS readings, so a preemption between the reads only
                    // widens the bracket: the error itself must stay far below 1 ms.
                    (0..10_000)
                        .map(|_| {
                            let before = os_now_ns();
                            let now = now_ns();
                            let after = os_now_ns();
                            before.saturating_sub(now).max(now.saturating_sub(after))
                        })
                        .max()
                        .unwrap()
                })
            })
            .collect();
        for h in handles {
            let worst = h.join().unwrap();
            assert!(worst < 100_000, "{worst} ns outside the OS clock's bracket");
        }
    }
}

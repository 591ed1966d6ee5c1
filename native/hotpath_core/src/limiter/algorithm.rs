//! The four rate-limiting algorithms as pure state transitions.
//!
//! Every function here maps `(policy, stored slot, now, cost)` to a [`Decision`] and the slot
//! to store. Time is nanoseconds on the table's monotonic axis. There is no I/O, no clock and
//! no locking: the table calls [`decide`] while it holds the key's lock (its bucket's, or the
//! shard's writer lock for a new key), which is what makes each decision atomic.
//!
//! Every slot carries `expires`: the instant from which its state is indistinguishable from a
//! key never seen. The sweeper removes a slot only when `expires <= now`, so it can never drop
//! a key that still constrains.

use crate::error::{Error, Result};

/// Nanoseconds per millisecond.
pub const NS_PER_MS: u64 = 1_000_000;

/// The algorithm of a limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Generic cell rate algorithm: one timestamp per key (the theoretical arrival time).
    /// Smooth: `limit` per `period` sustained, `burst` at once.
    Gcra,
    /// A bucket of `burst` tokens refilled at `limit` per `period`, stored as its GCRA dual (the
    /// instant the bucket is full again), so decisions are exact and denials free.
    TokenBucket,
    /// At most `limit` per window of `period`; a key's window starts at its first hit after
    /// the previous window ended (no aligned, thundering-herd resets).
    FixedWindow,
    /// The two-counter sliding window: the previous window's count weighted by its overlap
    /// with the sliding window, plus the current count. O(1) memory per key.
    SlidingWindow,
}

impl Algorithm {
    /// All algorithms, in documentation order.
    pub const ALL: [Algorithm; 4] = [
        Algorithm::Gcra,
        Algorithm::TokenBucket,
        Algorithm::FixedWindow,
        Algorithm::SlidingWindow,
    ];

    /// The Elixir name of the algorithm.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Gcra => "gcra",
            Algorithm::TokenBucket => "token_bucket",
            Algorithm::FixedWindow => "fixed_window",
            Algorithm::SlidingWindow => "sliding_window",
        }
    }

    /// Parses an Elixir name.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }

    /// True when the algorithm takes a `burst` distinct from `limit`.
    pub fn has_burst(self) -> bool {
        matches!(self, Algorithm::Gcra | Algorithm::TokenBucket)
    }
}

/// A validated rate-limiting policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Policy {
    algorithm: Algorithm,
    limit: u64,
    period_ns: u64,
    burst: u64,
    /// GCRA emission interval: `ceil(period / limit)`, at least 1 ns. Rounding up means the
    /// sustained rate is never above `limit / period`.
    interval_ns: u64,
}

impl Policy {
    /// Largest `limit` and `burst` accepted (counts are stored in 32 bits).
    pub const MAX_LIMIT: u64 = u32::MAX as u64;
    /// Largest `period` accepted: 100 days, in milliseconds.
    pub const MAX_PERIOD_MS: u64 = 100 * 24 * 3600 * 1000;

    /// Builds a policy: `limit` requests per `period_ms`, with `burst` (GCRA and token bucket
    /// only; defaults to `limit`).
    pub fn new(
        algorithm: Algorithm,
        limit: u64,
        period_ms: u64,
        burst: Option<u64>,
    ) -> Result<Policy> {
        if limit == 0 || limit > Self::MAX_LIMIT {
            return Err(Error::invalid(format!(
                "limit must be an integer in 1..{}, got {limit}",
                Self::MAX_LIMIT
            )));
        }
        if period_ms == 0 || period_ms > Self::MAX_PERIOD_MS {
            return Err(Error::invalid(format!(
                "period must be an integer number of milliseconds in 1..{} (100 days), got {period_ms}",
                Self::MAX_PERIOD_MS
            )));
        }
        let burst = match burst {
            None => limit,
            Some(_) if !algorithm.has_burst() => {
                return Err(Error::invalid(format!(
                    "burst applies only to :gcra and :token_bucket, not :{}",
                    algorithm.name()
                )))
            }
            Some(b) if b == 0 || b > Self::MAX_LIMIT => {
                return Err(Error::invalid(format!(
                    "burst must be an integer in 1..{}, got {b}",
                    Self::MAX_LIMIT
                )))
            }
            Some(b) => b,
        };
        let period_ns = period_ms * NS_PER_MS;
        let interval_ns = period_ns.div_ceil(limit).max(1);
        // burst * interval <= 2^32 * 8.64e18 / limit: bound it so time arithmetic stays in u64.
        if (burst as u128) * (interval_ns as u128) > (1u128 << 62) {
            return Err(Error::invalid(format!(
                "burst {burst} with limit {limit} per {period_ms} ms spans more than 146 years"
            )));
        }
        Ok(Policy {
            algorithm,
            limit,
            period_ns,
            burst,
            interval_ns,
        })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
    /// Requests per period.
    pub fn limit(&self) -> u64 {
        self.limit
    }
    /// The period in nanoseconds.
    pub fn period_ns(&self) -> u64 {
        self.period_ns
    }
    /// Largest cost admitted at once (GCRA, token bucket) or per window (`limit`).
    pub fn capacity(&self) -> u64 {
        match self.algorithm {
            Algorithm::Gcra | Algorithm::TokenBucket => self.burst,
            Algorithm::FixedWindow | Algorithm::SlidingWindow => self.limit,
        }
    }
    /// The burst (equal to `limit` for the window algorithms).
    pub fn burst(&self) -> u64 {
        self.burst
    }
    /// The GCRA emission interval in nanoseconds.
    pub fn interval_ns(&self) -> u64 {
        self.interval_ns
    }
}

/// The stored state of one key: 16 bytes whatever the algorithm.
///
/// | algorithm      | `expires`                         | `x`           | `y`            |
/// |----------------|-----------------------------------|---------------|----------------|
/// | GCRA / bucket  | theoretical arrival time (TAT)    | -             | -              |
/// | fixed window   | end of the key's current window   | count         | -              |
/// | sliding window | when the state becomes fresh      | current count | previous count |
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Slot {
    /// From this instant on the slot behaves exactly like an absent key.
    pub expires: u64,
    /// Algorithm-specific counter.
    pub x: u32,
    /// Algorithm-specific counter.
    pub y: u32,
}

/// The answer to a hit or a peek. Times are nanoseconds from `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted. `remaining`: unit-cost requests that would still be admitted right now;
    /// `reset_after`: time until the key is back to its fresh state.
    Allow {
        /// Unit-cost requests still admissible now.
        remaining: u64,
        /// Time until the key is fresh again.
        reset_after: u64,
    },
    /// Refused now; the same request is admitted after `retry_after` (> 0) if nothing else
    /// is admitted in between. Nothing was charged.
    Deny {
        /// Time until this request would be admitted.
        retry_after: u64,
        /// Time until the key is fresh again.
        reset_after: u64,
    },
    /// The cost exceeds the policy's capacity: this request can never be admitted.
    Never {
        /// Time until the key is fresh again.
        reset_after: u64,
    },
}

impl Decision {
    /// True for [`Decision::Allow`].
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// Decides a request of `cost` at `now` against `slot` (`None`: the key is absent).
///
/// Returns the decision and, when the request is admitted, the slot to store. A denied
/// request leaves the stored state untouched (nothing is charged).
#[inline(always)]
pub fn decide(
    policy: &Policy,
    slot: Option<Slot>,
    now: u64,
    cost: u64,
) -> (Decision, Option<Slot>) {
    // A slot past its expiry is, by construction, the same as an absent key.
    let slot = slot.filter(|s| s.expires > now);
    match policy.algorithm {
        Algorithm::Gcra | Algorithm::TokenBucket => gcra(policy, slot, now, cost),
        Algorithm::FixedWindow => fixed_window(policy, slot, now, cost),
        Algorithm::SlidingWindow => sliding_window(policy, slot, now, cost),
    }
}

#[inline]
fn gcra(p: &Policy, slot: Option<Slot>, now: u64, cost: u64) -> (Decision, Option<Slot>) {
    let t = p.interval_ns;
    let tat = slot.map_or(now, |s| s.expires).max(now);
    if cost > p.burst {
        let reset_after = tat - now;
        return (Decision::Never { reset_after }, None);
    }
    // Capacity window: `burst` emission intervals ahead of now (tolerance + one interval).
    let window = p.burst * t;
    let new_tat = tat + cost * t;
    if new_tat - now <= window {
        let remaining = (window - (new_tat - now)) / t;
        let decision = Decision::Allow {
            remaining,
            reset_after: new_tat - now,
        };
        let stored = Slot {
            expires: new_tat,
            x: 0,
            y: 0,
        };
        (decision, Some(stored))
    } else {
        let decision = Decision::Deny {
            retry_after: new_tat - window - now,
            reset_after: tat - now,
        };
        (decision, None)
    }
}

#[inline]
fn fixed_window(p: &Policy, slot: Option<Slot>, now: u64, cost: u64) -> (Decision, Option<Slot>) {
    // An absent key opens its window at its first admitted hit.
    let (end, count) = slot.map_or((now + p.period_ns, 0), |s| (s.expires, s.x as u64));
    let active_reset = if count > 0 { end - now } else { 0 };
    if cost > p.limit {
        return (
            Decision::Never {
                reset_after: active_reset,
            },
            None,
        );
    }
    if count + cost <= p.limit {
        let count = count + cost;
        let decision = Decision::Allow {
            remaining: p.limit - count,
            reset_after: end - now,
        };
        let stored = Slot {
            expires: end,
            x: count as u32,
            y: 0,
        };
        (decision, Some(stored))
    } else {
        let decision = Decision::Deny {
            retry_after: end - now,
            reset_after: end - now,
        };
        (decision, None)
    }
}

/// The sliding-window state at `now`: (current window end, current count, previous count).
fn sliding_state(p: &Policy, slot: Option<Slot>, now: u64) -> (u64, u64, u64) {
    let period = p.period_ns;
    let Some(s) = slot else {
        return (now + period, 0, 0);
    };
    let (cur, prev) = (s.x as u64, s.y as u64);
    // `expires` is the current window's end plus one period while `cur > 0`, its end otherwise.
    let end = if cur > 0 {
        s.expires.saturating_sub(period)
    } else {
        s.expires
    };
    if now < end {
        (end, cur, prev)
    } else {
        // The window rolled over once (twice would have expired the slot): the current
        // count becomes the previous one. cur > 0 here, or the slot would have expired.
        (end + period, 0, cur)
    }
}

#[inline]
fn sliding_window(p: &Policy, slot: Option<Slot>, now: u64, cost: u64) -> (Decision, Option<Slot>) {
    let period = p.period_ns as u128;
    let (end, cur, prev) = sliding_state(p, slot, now);
    // Overlap of the previous window with the sliding window [now - period, now).
    let weight = (end - now) as u128;
    let limit = p.limit as u128;
    let fresh_at = |cur: u64, prev: u64| -> u64 {
        if cur > 0 {
            end + p.period_ns
        } else if prev > 0 {
            end
        } else {
            now
        }
    };
    let reset_now = fresh_at(cur, prev) - now;
    if cost > p.limit {
        return (
            Decision::Never {
                reset_after: reset_now,
            },
            None,
        );
    }
    let used = (prev as u128) * weight + (cur as u128) * period;
    let cost_scaled = (cost as u128) * period;
    if used + cost_scaled <= limit * period {
        let cur = cur + cost;
        let left = limit * period - (prev as u128) * weight - (cur as u128) * period;
        let expires = fresh_at(cur, prev);
        let decision = Decision::Allow {
            remaining: (left / period) as u64,
            reset_after: expires - now,
        };
        let stored = Slot {
            expires,
            x: cur as u32,
            y: prev as u32,
        };
        (decision, Some(stored))
    } else {
        // Earliest instant t at which prev * overlap(t) + (cur + cost) * period <= limit * period.
        let retry_at = if cur + cost <= p.limit {
            // Within the current window: wait until the previous window's weight is small enough.
            // prev > 0 here, since with prev = 0 the request would have fit.
            let room = (p.limit - cur - cost) as u128 * period;
            end - (room / prev as u128) as u64
        } else {
            // In the next window, where `cur` becomes the previous count (cur > 0 here).
            let room = (p.limit - cost) as u128 * period;
            end + p.period_ns - (room / cur as u128) as u64
        };
        let decision = Decision::Deny {
            retry_after: retry_at - now,
            reset_after: reset_now,
        };
        (decision, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = NS_PER_MS;

    fn policy(algorithm: Algorithm, limit: u64, period_ms: u64, burst: Option<u64>) -> Policy {
        Policy::new(algorithm, limit, period_ms, burst).unwrap()
    }

    /// Runs hits at the given times (ms) with cost 1, threading the slot.
    fn run(p: &Policy, times_ms: &[u64]) -> Vec<Decision> {
        let mut slot = None;
        times_ms
            .iter()
            .map(|&t| {
                let (d, s) = decide(p, slot, t * MS, 1);
                if s.is_some() {
                    slot = s;
                }
                d
            })
            .collect()
    }

    #[test]
    fn policy_validation_names_the_option() {
        let err = |r: Result<Policy>| r.unwrap_err().to_string();
        assert!(err(Policy::new(Algorithm::Gcra, 0, 1000, None)).starts_with("limit must be"));
        assert!(err(Policy::new(Algorithm::Gcra, 1, 0, None)).starts_with("period must be"));
        assert!(err(Policy::new(
            Algorithm::Gcra,
            1,
            Policy::MAX_PERIOD_MS + 1,
            None
        ))
        .starts_with("period must be"));
        assert!(err(Policy::new(Algorithm::Gcra, 1, 1000, Some(0))).starts_with("burst must be"));
        assert!(err(Policy::new(Algorithm::FixedWindow, 1, 1000, Some(2)))
            .contains("only to :gcra and :token_bucket"));
        assert!(err(Policy::new(
            Algorithm::Gcra,
            1,
            Policy::MAX_PERIOD_MS,
            Some(Policy::MAX_LIMIT)
        ))
        .contains("146 years"));
    }

    #[test]
    fn gcra_allows_burst_then_spaces_requests() {
        // 10 per second, burst 3: three at once, then one every 100 ms.
        let p = policy(Algorithm::Gcra, 10, 1000, Some(3));
        let d = run(&p, &[0, 0, 0, 0, 50, 100, 100]);
        assert_eq!(
            d[0],
            Decision::Allow {
                remaining: 2,
                reset_after: 100 * MS
            }
        );
        assert_eq!(
            d[2],
            Decision::Allow {
                remaining: 0,
                reset_after: 300 * MS
            }
        );
        assert_eq!(
            d[3],
            Decision::Deny {
                retry_after: 100 * MS,
                reset_after: 300 * MS
            }
        );
        assert_eq!(
            d[4],
            Decision::Deny {
                retry_after: 50 * MS,
                reset_after: 250 * MS
            }
        );
        assert!(d[5].allowed());
        assert!(!d[6].allowed());
    }

    #[test]
    fn gcra_weighted_cost_and_never() {
        let p = policy(Algorithm::Gcra, 10, 1000, Some(5));
        let (d, s) = decide(&p, None, 0, 5);
        assert_eq!(
            d,
            Decision::Allow {
                remaining: 0,
                reset_after: 500 * MS
            }
        );
        let (d, _) = decide(&p, s, 0, 6);
        assert_eq!(
            d,
            Decision::Never {
                reset_after: 500 * MS
            }
        );
        // A weighted deny waits for the whole cost.
        let (d, _) = decide(&p, s, 0, 2);
        assert_eq!(
            d,
            Decision::Deny {
                retry_after: 200 * MS,
                reset_after: 500 * MS
            }
        );
    }

    #[test]
    fn token_bucket_decides_like_gcra() {
        let g = policy(Algorithm::Gcra, 7, 1000, Some(4));
        let b = policy(Algorithm::TokenBucket, 7, 1000, Some(4));
        let times = [0, 0, 1, 2, 100, 140, 143, 500, 501, 502, 503, 504, 2000];
        assert_eq!(run(&g, &times), run(&b, &times));
    }

    #[test]
    fn fixed_window_counts_per_key_window() {
        let p = policy(Algorithm::FixedWindow, 2, 1000, None);
        let d = run(&p, &[100, 200, 300, 1099, 1100, 1100]);
        assert_eq!(
            d[0],
            Decision::Allow {
                remaining: 1,
                reset_after: 1000 * MS
            }
        );
        assert_eq!(
            d[1],
            Decision::Allow {
                remaining: 0,
                reset_after: 900 * MS
            }
        );
        assert_eq!(
            d[2],
            Decision::Deny {
                retry_after: 800 * MS,
                reset_after: 800 * MS
            }
        );
        assert!(!d[3].allowed());
        // The window opened at 100 ms ends at 1100 ms.
        assert!(d[4].allowed());
        assert!(d[5].allowed());
    }

    #[test]
    fn sliding_window_weights_the_previous_window() {
        let p = policy(Algorithm::SlidingWindow, 10, 1000, None);
        let mut slot = None;
        // 10 hits at t = 0 fill the first window [0, 1000).
        for _ in 0..10 {
            let (d, s) = decide(&p, slot, 0, 1);
            assert!(d.allowed());
            slot = s;
        }
        // Full now; at 1100 ms the first window weighs 90%: 9 + 1 fits.
        let (d, _) = decide(&p, slot, 500 * MS, 1);
        assert_eq!(
            d,
            Decision::Deny {
                retry_after: 600 * MS,
                reset_after: 1500 * MS
            }
        );
        // At 1500 ms the previous window weighs 50%: 5 used, 5 remain.
        let (d, s) = decide(&p, slot, 1500 * MS, 1);
        assert_eq!(
            d,
            Decision::Allow {
                remaining: 4,
                reset_after: 1500 * MS
            }
        );
        let (_, s2) = decide(&p, s, 1500 * MS, 4);
        let (d, _) = decide(&p, s2, 1500 * MS, 1);
        // prev 10 weighs 0.5 → 5, cur 5: full; one more needs the weight to drop by 0.1.
        assert_eq!(
            d,
            Decision::Deny {
                retry_after: 100 * MS,
                reset_after: 1500 * MS
            }
        );
    }

    #[test]
    fn denies_are_not_charged() {
        for algorithm in Algorithm::ALL {
            let p = policy(algorithm, 1, 1000, None);
            let (_, slot) = decide(&p, None, 0, 1);
            let (d, stored) = decide(&p, slot, 10 * MS, 1);
            assert!(!d.allowed(), "{algorithm:?}");
            assert_eq!(stored, None, "{algorithm:?}");
        }
    }

    #[test]
    fn never_answers_for_impossible_costs() {
        for algorithm in Algorithm::ALL {
            let p = policy(algorithm, 3, 1000, None);
            let (d, s) = decide(&p, None, 0, 4);
            assert_eq!(d, Decision::Never { reset_after: 0 }, "{algorithm:?}");
            assert_eq!(s, None);
            assert_eq!(
                decide(&p, None, 0, u64::MAX).0,
                Decision::Never { reset_after: 0 }
            );
        }
    }

    #[test]
    fn expired_slots_behave_as_absent() {
        for algorithm in Algorithm::ALL {
            let p = policy(algorithm, 3, 1000, None);
            let (_, slot) = decide(&p, None, 0, 2);
            let slot = slot.unwrap();
            let later = slot.expires;
            assert_eq!(
                decide(&p, Some(slot), later, 1),
                decide(&p, None, later, 1),
                "{algorithm:?}"
            );
        }
    }
}

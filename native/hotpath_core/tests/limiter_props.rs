//! Property tests of the limiter against independent reference models.
//!
//! Each model is written in a different formulation from the implementation (the
//! continuous-state leaky bucket for GCRA, explicit event logs for the windows), knows nothing
//! about expiry, and is compared decision by decision with a [`Table`] that is swept at random
//! moments: a sweep that dropped a key still constraining it would show up as a mismatch.

use hotpath_core::limiter::{
    Algorithm, ByteKind, Config, Decision, KeyRef, OnFull, Policy, Table, NS_PER_MS,
};
use proptest::prelude::*;
use std::time::Duration;

#[derive(Debug, Clone)]
enum Op {
    Hit { key: u8, cost: u64 },
    Peek { key: u8, cost: u64 },
    Sweep,
}

#[derive(Debug, Clone)]
struct Step {
    advance_ns: u64,
    op: Op,
}

fn steps(period_ms: u64, max_cost: u64) -> impl Strategy<Value = Vec<Step>> {
    let period_ns = period_ms * NS_PER_MS;
    let advance = prop_oneof![
        3 => Just(0u64),
        4 => 0..period_ns / 4,
        2 => 0..period_ns * 2,
        1 => 0..period_ns * 4,
    ];
    let op = prop_oneof![
        8 => (0u8..3, 1..=max_cost).prop_map(|(key, cost)| Op::Hit { key, cost }),
        2 => (0u8..3, 1..=max_cost).prop_map(|(key, cost)| Op::Peek { key, cost }),
        1 => Just(Op::Sweep),
    ];
    prop::collection::vec(
        (advance, op).prop_map(|(advance_ns, op)| Step { advance_ns, op }),
        1..120,
    )
}

fn key(k: u8) -> [u8; 6] {
    let mut bytes = *b"user:0";
    bytes[5] += k;
    bytes
}

trait Model: Default {
    /// The decision for `cost` at `now`; records the request when `commit` and admitted.
    fn decide(&mut self, p: &Policy, now: u64, cost: u64, commit: bool) -> Decision;
}

/// GCRA as the continuous-state leaky bucket: a level that drains one ns per ns.
#[derive(Default)]
struct LeakyBucket {
    level: u64,
    last: u64,
}

impl Model for LeakyBucket {
    fn decide(&mut self, p: &Policy, now: u64, cost: u64, commit: bool) -> Decision {
        let t = p.interval_ns();
        let cap = p.burst() * t;
        let level = self.level.saturating_sub(now - self.last);
        if cost > p.burst() {
            return Decision::Never { reset_after: level };
        }
        let needed = level + cost * t;
        if needed > cap {
            return Decision::Deny {
                retry_after: needed - cap,
                reset_after: level,
            };
        }
        if commit {
            self.level = needed;
            self.last = now;
        }
        Decision::Allow {
            remaining: (cap - needed) / t,
            reset_after: needed,
        }
    }
}

/// A fixed window from the log of window openings.
#[derive(Default)]
struct WindowLog {
    /// (start, admitted cost) of each window opened so far.
    windows: Vec<(u64, u64)>,
}

impl Model for WindowLog {
    fn decide(&mut self, p: &Policy, now: u64, cost: u64, commit: bool) -> Decision {
        let period = p.period_ns();
        let current = self
            .windows
            .last()
            .copied()
            .filter(|&(start, _)| now < start + period);
        let (start, count) = current.unwrap_or((now, 0));
        let end = start + period;
        if cost > p.limit() {
            let reset_after = if current.is_some() { end - now } else { 0 };
            return Decision::Never { reset_after };
        }
        if count + cost > p.limit() {
            return Decision::Deny {
                retry_after: end - now,
                reset_after: end - now,
            };
        }
        if commit {
            match current {
                Some(_) => self.windows.last_mut().unwrap().1 += cost,
                None => self.windows.push((now, cost)),
            }
        }
        Decision::Allow {
            remaining: p.limit() - count - cost,
            reset_after: end - now,
        }
    }
}

/// The sliding window from an event log and an anchor that moves only when the log is idle.
#[derive(Default)]
struct SlidingLog {
    anchor: u64,
    events: Vec<(u64, u64)>,
}

impl SlidingLog {
    fn sum(&self, from: u64, to: u64) -> u64 {
        self.events
            .iter()
            .filter(|&&(t, _)| from <= t && t < to)
            .map(|&(_, c)| c)
            .sum()
    }
}

impl Model for SlidingLog {
    fn decide(&mut self, p: &Policy, now: u64, cost: u64, commit: bool) -> Decision {
        let period = p.period_ns();
        let window_of = |anchor: u64| anchor + (now - anchor) / period * period;
        let mut anchor = self.anchor;
        let mut start = window_of(anchor);
        let (mut cur, mut prev) = (
            self.sum(start, start + period),
            self.sum(start.saturating_sub(period), start),
        );
        if cur == 0 && prev == 0 {
            anchor = now;
            start = now;
            cur = 0;
            prev = 0;
        }
        let end = start + period;
        let fresh_at = |cur: u64, prev: u64| {
            if cur > 0 {
                end + period
            } else if prev > 0 {
                end
            } else {
                now
            }
        };
        let (limit, per) = (p.limit() as u128, period as u128);
        let weight = (end - now) as u128;
        if cost > p.limit() {
            return Decision::Never {
                reset_after: fresh_at(cur, prev) - now,
            };
        }
        let used = prev as u128 * weight + cur as u128 * per;
        if used + cost as u128 * per > limit * per {
            // Scan forward for the first admitting instant (the model's own search).
            let retry_at = first_admitting(now, end, period, cur, prev, cost, p.limit());
            return Decision::Deny {
                retry_after: retry_at - now,
                reset_after: fresh_at(cur, prev) - now,
            };
        }
        if commit {
            self.anchor = anchor;
            self.events.push((now, cost));
        }
        let cur = cur + cost;
        let left = limit * per - prev as u128 * weight - cur as u128 * per;
        Decision::Allow {
            remaining: (left / per) as u64,
            reset_after: fresh_at(cur, prev) - now,
        }
    }
}

/// Binary search for the first t in (now, end + period] admitting `cost`, where before `end`
/// the counts are (cur, prev) and from `end` on they are (0, cur).
fn first_admitting(
    now: u64,
    end: u64,
    period: u64,
    cur: u64,
    prev: u64,
    cost: u64,
    limit: u64,
) -> u64 {
    let admits = |t: u64| {
        let (c, pr, e) = if t < end {
            (cur, prev, end)
        } else {
            (0, cur, end + period)
        };
        if t >= end + period {
            return true;
        }
        (pr as u128) * ((e - t) as u128) + ((c + cost) as u128) * period as u128
            <= limit as u128 * period as u128
    };
    let (mut lo, mut hi) = (now, end + period);
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        if admits(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

fn check_against<M: Model>(
    algorithm: Algorithm,
    limit: u64,
    period_ms: u64,
    burst: Option<u64>,
    steps: &[Step],
) {
    let policy = Policy::new(algorithm, limit, period_ms, burst).unwrap();
    let table = Table::new(Config {
        policy,
        max_keys: 1000,
        max_bytes: usize::MAX,
        on_full: OnFull::Deny,
    });
    let mut models: Vec<M> = (0..3).map(|_| M::default()).collect();
    let mut now = 0;
    for (i, step) in steps.iter().enumerate() {
        now += step.advance_ns;
        match step.op {
            Op::Hit { key: k, cost } => {
                let bytes = key(k);
                let got = table.hit(KeyRef::Bytes(ByteKind::Binary, &bytes), now, cost, None);
                let want = models[k as usize].decide(&policy, now, cost, true);
                assert_eq!(got, want, "step {i}: hit key {k} cost {cost} at {now}");
            }
            Op::Peek { key: k, cost } => {
                let bytes = key(k);
                let key_ref = KeyRef::Bytes(ByteKind::Binary, &bytes);
                let before = table.slot(key_ref);
                let got = table.peek(key_ref, now, cost, None);
                assert_eq!(table.slot(key_ref), before, "step {i}: peek changed state");
                let want = models[k as usize].decide(&policy, now, cost, false);
                assert_eq!(got, want, "step {i}: peek key {k} cost {cost} at {now}");
            }
            Op::Sweep => {
                let mut next = Some(0);
                while let Some(from) = next {
                    next = table.sweep(from, now, Duration::ZERO).next;
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn gcra_matches_the_leaky_bucket(limit in 1u64..20, period_ms in 1u64..3000, burst in 1u64..30, s in steps(1000, 12)) {
        check_against::<LeakyBucket>(Algorithm::Gcra, limit, period_ms, Some(burst), &s);
    }

    #[test]
    fn token_bucket_matches_the_leaky_bucket(limit in 1u64..20, period_ms in 1u64..3000, burst in 1u64..30, s in steps(1000, 12)) {
        check_against::<LeakyBucket>(Algorithm::TokenBucket, limit, period_ms, Some(burst), &s);
    }

    #[test]
    fn fixed_window_matches_the_window_log(limit in 1u64..20, period_ms in 1u64..3000, s in steps(1000, 12)) {
        check_against::<WindowLog>(Algorithm::FixedWindow, limit, period_ms, None, &s);
    }

    #[test]
    fn sliding_window_matches_the_event_log(limit in 1u64..20, period_ms in 1u64..3000, s in steps(1000, 12)) {
        check_against::<SlidingLog>(Algorithm::SlidingWindow, limit, period_ms, None, &s);
    }

    /// GCRA never admits more than burst + elapsed / interval in any span of requests.
    #[test]
    fn gcra_admits_at_most_burst_plus_elapsed(limit in 1u64..50, period_ms in 1u64..2000, burst in 1u64..20, s in steps(1000, 5)) {
        let policy = Policy::new(Algorithm::Gcra, limit, period_ms, Some(burst)).unwrap();
        let table = Table::new(Config { policy, max_keys: 10, max_bytes: usize::MAX, on_full: OnFull::Deny });
        let mut admitted = Vec::new();
        let mut now = 0;
        for step in &s {
            now += step.advance_ns;
            if let Op::Hit { cost, .. } = step.op {
                if table.hit(KeyRef::Int(1), now, cost, None).allowed() {
                    admitted.push((now, cost));
                }
            }
        }
        for i in 0..admitted.len() {
            let mut total = 0;
            for &(t, c) in &admitted[i..] {
                total += c;
                let bound = burst + (t - admitted[i].0) / policy.interval_ns();
                prop_assert!(total <= bound, "{total} admitted within {} ns (bound {bound})", t - admitted[i].0);
            }
        }
    }

    /// A fixed window never admits more than `limit` within one window, nor more than twice
    /// `limit` within any span shorter than a period.
    #[test]
    fn fixed_window_admits_at_most_limit_per_window(limit in 1u64..50, period_ms in 1u64..2000, s in steps(1000, 5)) {
        let policy = Policy::new(Algorithm::FixedWindow, limit, period_ms, None).unwrap();
        let table = Table::new(Config { policy, max_keys: 10, max_bytes: usize::MAX, on_full: OnFull::Deny });
        let mut admitted: Vec<(u64, u64)> = Vec::new();
        let mut window_start: Option<u64> = None;
        let mut in_window = 0;
        let mut now = 0;
        let period = policy.period_ns();
        for step in &s {
            now += step.advance_ns;
            if let Op::Hit { cost, .. } = step.op {
                if table.hit(KeyRef::Int(1), now, cost, None).allowed() {
                    if window_start.is_none_or(|start| now >= start + period) {
                        window_start = Some(now);
                        in_window = 0;
                    }
                    in_window += cost;
                    prop_assert!(in_window <= limit);
                    admitted.push((now, cost));
                }
            }
        }
        for i in 0..admitted.len() {
            let span: u64 = admitted[i..].iter().take_while(|&&(t, _)| t < admitted[i].0 + period).map(|&(_, c)| c).sum();
            prop_assert!(span <= 2 * limit);
        }
    }

    /// Denied and never-admissible requests are free: they leave the stored state unchanged.
    #[test]
    fn refusals_change_nothing(alg in 0usize..4, limit in 1u64..10, s in steps(500, 15)) {
        let algorithm = Algorithm::ALL[alg];
        let policy = Policy::new(algorithm, limit, 500, None).unwrap();
        let table = Table::new(Config { policy, max_keys: 10, max_bytes: usize::MAX, on_full: OnFull::Deny });
        let mut now = 0;
        for step in &s {
            now += step.advance_ns;
            if let Op::Hit { cost, .. } = step.op {
                let before = table.slot(KeyRef::Int(7));
                if !table.hit(KeyRef::Int(7), now, cost, None).allowed() {
                    prop_assert_eq!(table.slot(KeyRef::Int(7)), before);
                }
            }
        }
    }
}

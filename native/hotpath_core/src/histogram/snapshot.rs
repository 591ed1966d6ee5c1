//! A plain (single-owner) histogram value: what a snapshot of a concurrent histogram returns,
//! what merges and serializes.

use super::layout::{Layout, Place};
use crate::error::{Error, Result};
use std::sync::Arc;

/// A compensated float sum (Neumaier): `hi + lo` carries the sum with the rounding error of
/// every addition kept in `lo`, so the result is correctly rounded for any realistic input
/// (for example, a million additions of `0.1` give exactly `100000.0`).
///
/// **Saturating**: every addition that would leave the float range stops at `f64::MAX` (or
/// `-f64::MAX`), like integer saturating arithmetic, so both parts stay finite whatever is
/// added (`1e308 + 1e308` reads `f64::MAX`; adding `-1e308` to that then gives
/// `f64::MAX - 1e308`). No read ever sees an infinite or NaN sum, and a merge never carries one.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sum {
    /// The running float sum.
    pub hi: f64,
    /// The accumulated rounding errors of `hi`.
    pub lo: f64,
}

/// Clamps an overflowed float to the finite range (`±inf` to `±f64::MAX`); NaN (only from
/// non-finite inputs, which callers never pass) becomes `0.0`.
#[inline]
pub fn saturate(v: f64) -> f64 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(f64::MIN, f64::MAX)
    }
}

/// `a + b`, saturating at `±f64::MAX` instead of overflowing to an infinity.
#[inline]
pub fn saturating_add(a: f64, b: f64) -> f64 {
    saturate(a + b)
}

/// `a + b` and its exact rounding error (Knuth's TwoSum, branch-free), saturating: when
/// `a + b` overflows the result is `±f64::MAX` with no error term.
#[inline]
pub fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    if !s.is_finite() {
        return (saturate(s), 0.0);
    }
    let bb = s - a;
    let err = (a - (s - bb)) + (b - bb);
    (s, if err.is_finite() { err } else { 0.0 })
}

impl Sum {
    /// Adds `v`.
    #[inline]
    pub fn add(&mut self, v: f64) {
        let (s, e) = two_sum(self.hi, saturate(v));
        self.hi = s;
        self.lo = saturating_add(self.lo, e);
    }

    /// Adds `v * n`, keeping the rounding error of the product too.
    pub fn add_n(&mut self, v: f64, n: u64) {
        if n == 1 {
            return self.add(v);
        }
        let nf = n as f64;
        let p = v * nf;
        let pe = v.mul_add(nf, -p);
        self.add(saturate(p));
        if p.is_finite() && pe.is_finite() {
            self.lo = saturating_add(self.lo, pe);
        }
    }

    /// Adds another compensated sum.
    pub fn merge(&mut self, other: Sum) {
        self.add(other.hi);
        self.lo = saturating_add(self.lo, saturate(other.lo));
    }

    /// The sum, correctly rounded, always finite (saturated at `±f64::MAX`).
    pub fn value(&self) -> f64 {
        let v = self.hi + self.lo;
        if v.is_nan() {
            saturate(self.hi)
        } else {
            saturate(v)
        }
    }
}

/// A histogram value: counts per bucket, exact count, compensated sum, exact min and max.
///
/// Log buckets are stored sparsely as `(index, count)` pairs in increasing index order, with
/// no zero counts; equal snapshots therefore compare equal field by field.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub(super) layout: Arc<Layout>,
    pub(super) pos: Vec<(u32, u64)>,
    pub(super) neg: Vec<(u32, u64)>,
    pub(super) zero: u64,
    pub(super) overflow: [u64; 2],
    pub(super) classic: Vec<u64>,
    pub(super) count: u64,
    pub(super) sum: Sum,
    pub(super) min: f64,
    pub(super) max: f64,
}

/// Counts of one side, as `(index, count)`: `record` inserts in order.
fn bump(side: &mut Vec<(u32, u64)>, idx: u32, n: u64) {
    match side.binary_search_by_key(&idx, |&(i, _)| i) {
        Ok(at) => side[at].1 = side[at].1.saturating_add(n),
        Err(at) => side.insert(at, (idx, n)),
    }
}

fn merge_sides(a: &[(u32, u64)], b: &[(u32, u64)]) -> Vec<(u32, u64)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push((a[i].0, a[i].1.saturating_add(b[j].1)));
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Checks a quantile argument.
pub fn check_quantile(q: f64) -> Result<f64> {
    if q.is_finite() && (0.0..=1.0).contains(&q) {
        Ok(q)
    } else {
        Err(Error::invalid(format!(
            "quantile must be a number between 0 and 1, got {q}"
        )))
    }
}

impl Snapshot {
    /// An empty histogram of `layout`.
    pub fn new(layout: Arc<Layout>) -> Self {
        let classic = if layout.bounds().is_empty() {
            Vec::new()
        } else {
            vec![0; layout.bounds().len() + 1]
        };
        Snapshot {
            layout,
            pos: Vec::new(),
            neg: Vec::new(),
            zero: 0,
            overflow: [0, 0],
            classic,
            count: 0,
            sum: Sum::default(),
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// The layout.
    pub fn layout(&self) -> &Arc<Layout> {
        &self.layout
    }

    /// Records `v` once. `v` must be finite.
    pub fn record(&mut self, v: f64) -> Result<()> {
        self.record_n(v, 1)
    }

    /// Records `v` `n` times. `v` must be finite; `n == 0` does nothing.
    pub fn record_n(&mut self, v: f64, n: u64) -> Result<()> {
        crate::error::finite("value", v)?;
        if n == 0 {
            return Ok(());
        }
        match self.layout.place(v) {
            Place::Zero => self.zero += n,
            Place::Bucket { neg: false, idx } => bump(&mut self.pos, idx as u32, n),
            Place::Bucket { neg: true, idx } => bump(&mut self.neg, idx as u32, n),
            Place::Overflow { neg } => self.overflow[neg as usize] += n,
        }
        if !self.classic.is_empty() {
            let i = self.layout.classic_index(v);
            self.classic[i] += n;
        }
        self.count = self.count.saturating_add(n);
        self.sum.add_n(v, n);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        Ok(())
    }

    /// Adds every observation of `other`. Refuses a different layout with
    /// [`Error::Incompatible`].
    pub fn merge(&mut self, other: &Snapshot) -> Result<()> {
        self.layout.check_compatible(&other.layout)?;
        self.pos = merge_sides(&self.pos, &other.pos);
        self.neg = merge_sides(&self.neg, &other.neg);
        self.zero = self.zero.saturating_add(other.zero);
        for i in 0..2 {
            self.overflow[i] = self.overflow[i].saturating_add(other.overflow[i]);
        }
        for (a, b) in self.classic.iter_mut().zip(&other.classic) {
            *a = a.saturating_add(*b);
        }
        self.count = self.count.saturating_add(other.count);
        self.sum.merge(other.sum);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        Ok(())
    }

    /// Heap bytes held by this value (bucket entries and classic counts; the layout is shared).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + (self.pos.capacity() + self.neg.capacity()) * std::mem::size_of::<(u32, u64)>()
            + self.classic.capacity() * 8
    }

    /// Number of sparse bucket entries (non-empty log buckets, both signs).
    pub fn entries(&self) -> usize {
        self.pos.len() + self.neg.len()
    }

    /// Number of observations (exact).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the observations (compensated).
    pub fn sum(&self) -> f64 {
        self.sum.value()
    }

    /// The compensated sum's two parts.
    pub fn sum_parts(&self) -> Sum {
        self.sum
    }

    /// Smallest observation, `None` when empty.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0 && self.min.is_finite()).then_some(self.min)
    }

    /// Largest observation, `None` when empty.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0 && self.max.is_finite()).then_some(self.max)
    }

    /// Mean of the observations (the saturated sum over the count, so always finite),
    /// `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| saturate(self.sum() / self.count as f64))
    }

    /// Count of values below the floor in magnitude (reported as 0).
    pub fn zero_count(&self) -> u64 {
        self.zero
    }

    /// Counts beyond the ceiling: `[positive, negative]`.
    pub fn overflow_counts(&self) -> [u64; 2] {
        self.overflow
    }

    /// Non-empty positive log buckets as `(lower, upper, count)`, increasing.
    pub fn positive_buckets(&self) -> impl Iterator<Item = (f64, f64, u64)> + '_ {
        self.pos.iter().map(|&(i, c)| {
            let (l, u) = self.layout.bucket_bounds(i as usize);
            (l, u, c)
        })
    }

    /// Non-empty negative log buckets as `(lower, upper, count)` where the bucket covers
    /// `[-upper, -lower)`, increasing magnitude.
    pub fn negative_buckets(&self) -> impl Iterator<Item = (f64, f64, u64)> + '_ {
        self.neg.iter().map(|&(i, c)| {
            let (l, u) = self.layout.bucket_bounds(i as usize);
            (l, u, c)
        })
    }

    /// Non-empty positive log buckets as `(estimate, count)`, increasing: the value
    /// [`Snapshot::quantile`] reports for each.
    pub fn positive_estimates(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.pos
            .iter()
            .map(|&(i, c)| (self.layout.estimate(i as usize), c))
    }

    /// Non-empty negative log buckets as `(magnitude estimate, count)`, increasing magnitude.
    pub fn negative_estimates(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.neg
            .iter()
            .map(|&(i, c)| (self.layout.estimate(i as usize), c))
    }

    /// Classic bucket counts (not cumulative), one per bound plus the last for `+Inf`; empty
    /// when the layout has no classic buckets.
    pub fn classic_counts(&self) -> &[u64] {
        &self.classic
    }

    /// The `q`-quantile estimate (nearest rank: the value of rank `max(1, ceil(q * count))`),
    /// within the layout's relative error of the exact one for values inside the range; the
    /// first and last ranks are the exact min and max. `None` when empty.
    pub fn quantile(&self, q: f64) -> Result<Option<f64>> {
        let q = check_quantile(q)?;
        Ok(self.quantile_unchecked(q))
    }

    /// Several quantiles at once, in one walk over the buckets: the work is
    /// `O(entries + qs.len() * log(qs.len()))`, whatever the number of quantiles asked.
    pub fn quantiles(&self, qs: &[f64]) -> Result<Vec<Option<f64>>> {
        for &q in qs {
            check_quantile(q)?;
        }
        if self.count == 0 {
            return Ok(vec![None; qs.len()]);
        }
        let mut order: Vec<(u64, usize)> = qs
            .iter()
            .enumerate()
            .map(|(i, &q)| (self.rank(q), i))
            .collect();
        order.sort_unstable();
        let mut out = vec![None; qs.len()];
        let mut next = order.iter().peekable();
        self.walk(|upto, value| {
            while let Some(&&(rank, i)) = next.peek() {
                if rank > upto {
                    return true;
                }
                out[i] = Some(self.finish(rank, value));
                next.next();
            }
            false
        });
        for &(rank, i) in next {
            // Ranks beyond the walked buckets: positive overflow (or a torn snapshot).
            out[i] = Some(self.finish(rank, self.max));
        }
        Ok(out)
    }

    fn rank(&self, q: f64) -> u64 {
        ((q * self.count as f64).ceil() as u64).clamp(1, self.count)
    }

    /// The reported value of `rank` whose bucket estimate is `estimate`: the extreme ranks are
    /// known exactly, and clamping to the exact extremes only moves an estimate towards the
    /// true value.
    fn finish(&self, rank: u64, estimate: f64) -> f64 {
        if rank == 1 && self.min.is_finite() {
            return self.min;
        }
        if rank == self.count && self.max.is_finite() {
            return self.max;
        }
        let (lo, hi) = (self.min, self.max);
        if lo <= hi {
            estimate.clamp(lo, hi)
        } else {
            estimate
        }
    }

    fn quantile_unchecked(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = self.rank(q);
        let estimate = self.value_at_rank(rank)?;
        Some(self.finish(rank, estimate))
    }

    /// Calls `f(cumulative_count, value)` for each group of ranks in increasing order (negative
    /// overflow, negative buckets, zero, positive buckets) until it returns false. Positive
    /// overflow is not visited.
    fn walk(&self, mut f: impl FnMut(u64, f64) -> bool) {
        let mut seen = self.overflow[1];
        if seen > 0 && !f(seen, self.min) {
            return;
        }
        for &(i, c) in self.neg.iter().rev() {
            seen = seen.saturating_add(c);
            if !f(seen, -self.layout.estimate(i as usize)) {
                return;
            }
        }
        if self.zero > 0 {
            seen = seen.saturating_add(self.zero);
            if !f(seen, 0.0) {
                return;
            }
        }
        for &(i, c) in &self.pos {
            seen = seen.saturating_add(c);
            if !f(seen, self.layout.estimate(i as usize)) {
                return;
            }
        }
    }

    /// After a snapshot torn by concurrent writers (a bucket count visible before the min/max
    /// update), replaces a missing extreme by the estimate of the lowest/highest bucket.
    pub(super) fn repair_extremes(&mut self) {
        if self.count == 0 || (self.min.is_finite() && self.max.is_finite()) {
            return;
        }
        let (min, max) = (self.min, self.max);
        self.min = f64::NEG_INFINITY;
        self.max = f64::INFINITY;
        let lo = self.value_at_rank(1).unwrap_or(0.0);
        let hi = self.value_at_rank(self.count).unwrap_or(0.0);
        let ceiling = self.layout.ceiling();
        let clamp = |v: f64| v.clamp(-ceiling, ceiling);
        self.min = if min.is_finite() { min } else { clamp(lo) };
        self.max = if max.is_finite() { max } else { clamp(hi) };
        if self.min > self.max {
            std::mem::swap(&mut self.min, &mut self.max);
        }
    }

    fn value_at_rank(&self, rank: u64) -> Option<f64> {
        let mut seen = self.overflow[1];
        if rank <= seen {
            return Some(self.min);
        }
        for &(i, c) in self.neg.iter().rev() {
            seen += c;
            if rank <= seen {
                return Some(-self.layout.estimate(i as usize));
            }
        }
        seen += self.zero;
        if rank <= seen {
            return Some(0.0);
        }
        for &(i, c) in &self.pos {
            seen += c;
            if rank <= seen {
                return Some(self.layout.estimate(i as usize));
            }
        }
        // The rest is positive overflow (or a torn concurrent snapshot).
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        Snapshot::new(Arc::new(Layout::default_layout()))
    }

    #[test]
    fn empty_snapshot() {
        let s = snap();
        assert_eq!(s.count(), 0);
        assert_eq!(s.sum(), 0.0);
        assert_eq!(s.min(), None);
        assert_eq!(s.max(), None);
        assert_eq!(s.mean(), None);
        assert_eq!(s.quantile(0.5), Ok(None));
    }

    #[test]
    fn sum_of_tenths_is_exact() {
        let mut s = snap();
        for _ in 0..1_000_000 {
            s.record(0.1).unwrap();
        }
        assert_eq!(s.sum(), 100_000.0);
        let naive: f64 = (0..1_000_000).map(|_| 0.1).sum();
        assert_ne!(naive, 100_000.0);
    }

    #[test]
    fn record_n_keeps_product_error() {
        let mut a = snap();
        a.record_n(0.1, 1_000_000).unwrap();
        assert_eq!(a.sum(), 100_000.0);
        assert_eq!(a.count(), 1_000_000);
    }

    #[test]
    fn quantiles_of_known_data() {
        let mut s = snap();
        for v in 1..=100 {
            s.record(v as f64).unwrap();
        }
        let p50 = s.quantile(0.5).unwrap().unwrap();
        assert!((p50 - 50.0).abs() / 50.0 <= s.layout().relative_error());
        assert_eq!(s.quantile(0.0).unwrap(), Some(1.0));
        assert_eq!(s.quantile(1.0).unwrap(), Some(100.0));
        assert!(s.quantile(1.5).unwrap_err().is_argument_error());
        assert!(s.quantile(f64::NAN).unwrap_err().is_argument_error());
    }

    #[test]
    fn negative_zero_and_overflow_order() {
        let mut s = snap();
        for v in [-5.0, 0.0, 1e-20, 3.0, 1e15, -1e15] {
            s.record(v).unwrap();
        }
        assert_eq!(s.quantile(0.0).unwrap(), Some(-1e15));
        let second = s.quantile(2.0 / 6.0).unwrap().unwrap();
        assert!((second + 5.0).abs() <= 5.0 * 0.01, "{second}");
        assert_eq!(s.quantile(0.5).unwrap(), Some(0.0));
        assert_eq!(s.quantile(1.0).unwrap(), Some(1e15));
        assert_eq!(s.zero_count(), 2);
        assert_eq!(s.overflow_counts(), [1, 1]);
    }

    #[test]
    fn non_finite_values_are_refused() {
        let mut s = snap();
        assert!(s.record(f64::NAN).unwrap_err().is_argument_error());
        assert!(s.record(f64::INFINITY).unwrap_err().is_argument_error());
        assert_eq!(s.count(), 0);
    }
}

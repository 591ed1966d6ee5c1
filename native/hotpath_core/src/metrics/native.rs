//! Prometheus native histograms (exponential buckets) from a histogram snapshot.
//!
//! A native histogram of schema `n` has base `gamma = 2^(2^-n)`; its positive bucket `i`
//! covers `(gamma^(i-1), gamma^i]`, negative bucket `i` the mirror image, and a zero bucket
//! covers `[-zero_threshold, zero_threshold]`. Hotpath's buckets are log-linear (each octave
//! split into `2^m` equal widths, see [`crate::histogram::Layout`]); octave bounds agree but
//! the bounds inside an octave do not, so each Hotpath bucket is counted in the native bucket
//! that holds its estimate (the value Hotpath reports for it), and the overflow buckets in the
//! native bucket that holds the max (or min).
//!
//! **Schema.** `min(m + 2, 8)`: a native bucket is a quarter of a Hotpath bucket's relative
//! width (`m = 6`, the 1 % default, gives schema 8, buckets 0.27 % wide), and 8 is the finest
//! schema Prometheus reads. A quantile a Prometheus server computes from the native histogram
//! lies in the native bucket of Hotpath's own estimate, so within [`native_error`] of it
//! (0.27 % at schema 8), and within the layout's relative error plus that of the exact value.
//!
//! **Zero bucket.** Its threshold is the lower bound of the layout's lowest bucket: exactly
//! the magnitudes Hotpath counts as zero.

use crate::histogram::{Layout, Snapshot};

/// Finest schema Prometheus reads.
pub const MAX_SCHEMA: i32 = 8;

/// The schema of `layout`'s native histograms.
pub fn schema(layout: &Layout) -> i32 {
    (layout.sub_bits() as i32 + 2).min(MAX_SCHEMA)
}

/// Relative width `gamma - 1` of a native bucket of `schema`: the most a quantile from the
/// native histogram differs from Hotpath's, relative to Hotpath's.
pub fn native_error(schema: i32) -> f64 {
    (-(schema as f64)).exp2().exp2() - 1.0
}

/// Upper bound `2^(j / 2^n - 1)` of sub-bucket `j` of the octave `[0.5, 1)`.
fn octave_bound(j: i64, schema: i32) -> f64 {
    (j as f64 / (1u64 << schema) as f64 - 1.0).exp2()
}

/// The index of the native bucket of schema `schema` (0..=8) holding magnitude `x` (finite,
/// `> 0`): `ceil(log_gamma x)`, computed from the float's exponent and a search of the octave
/// bounds, as the Prometheus clients do, so that a power of two closes its bucket.
pub fn index(x: f64, schema: i32) -> i32 {
    debug_assert!(x > 0.0 && x.is_finite());
    // frexp: x = frac * 2^exp with frac in [0.5, 1).
    let (x, bias) = if x < f64::MIN_POSITIVE {
        (x * 2f64.powi(64), 64)
    } else {
        (x, 0)
    };
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64 - 1022 - bias;
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    let per_octave = 1i64 << schema;
    // The first j with octave_bound(j) >= frac, from the logarithm and then exact compares.
    let mut j = ((frac.log2() + 1.0) * per_octave as f64).ceil() as i64;
    j = j.clamp(0, per_octave);
    while j > 0 && octave_bound(j - 1, schema) >= frac {
        j -= 1;
    }
    while j < per_octave && octave_bound(j, schema) < frac {
        j += 1;
    }
    (j + (exp - 1) * per_octave) as i32
}

/// One side of a native histogram: spans `(offset, length)` and count deltas, as the protobuf
/// format carries them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Side {
    /// `(offset, length)`: the first offset is the first index, the others the gap since the
    /// previous span.
    pub spans: Vec<(i32, u32)>,
    /// Each bucket's count minus the previous bucket's (the first: minus 0).
    pub deltas: Vec<i64>,
}

impl Side {
    /// From `(index, count)` pairs in any order (equal indexes add up; zero counts are
    /// skipped).
    fn from_counts(mut counts: Vec<(i32, u64)>) -> Self {
        counts.sort_unstable_by_key(|&(i, _)| i);
        let mut merged: Vec<(i32, u64)> = Vec::with_capacity(counts.len());
        for (i, c) in counts.into_iter().filter(|&(_, c)| c > 0) {
            match merged.last_mut() {
                Some((last, n)) if *last == i => *n += c,
                _ => merged.push((i, c)),
            }
        }
        let mut side = Side::default();
        let mut previous: Option<(i32, u64)> = None;
        for (i, c) in merged {
            match previous {
                Some((p, _)) if p + 1 == i => side.spans.last_mut().expect("a span").1 += 1,
                Some((p, _)) => side.spans.push((i - p - 1, 1)),
                None => side.spans.push((i, 1)),
            }
            side.deltas
                .push(c as i64 - previous.map_or(0, |(_, pc)| pc as i64));
            previous = Some((i, c));
        }
        side
    }
}

/// A native histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct Native {
    /// Schema (`gamma = 2^(2^-schema)`).
    pub schema: i32,
    /// Magnitudes up to this are counted in the zero bucket.
    pub zero_threshold: f64,
    /// The zero bucket's count.
    pub zero_count: u64,
    /// Every count (zero bucket and both sides).
    pub count: u64,
    /// Positive buckets.
    pub positive: Side,
    /// Negative buckets.
    pub negative: Side,
}

/// The native histogram of `snapshot`.
pub fn native(snapshot: &Snapshot) -> Native {
    let layout = snapshot.layout();
    let schema = schema(layout);
    let mut count = snapshot.zero_count();
    let mut side = |buckets: Vec<(f64, u64)>, overflow: u64, extreme: Option<f64>| {
        let mut counts: Vec<(i32, u64)> = buckets
            .into_iter()
            .map(|(estimate, c)| (index(estimate, schema), c))
            .collect();
        if let (true, Some(x)) = (overflow > 0, extreme) {
            counts.push((index(x.abs(), schema), overflow));
        }
        count += counts.iter().map(|&(_, c)| c).sum::<u64>();
        Side::from_counts(counts)
    };
    let [over_pos, over_neg] = snapshot.overflow_counts();
    let positive = side(
        snapshot.positive_estimates().collect(),
        over_pos,
        snapshot.max(),
    );
    let negative = side(
        snapshot.negative_estimates().collect(),
        over_neg,
        snapshot.min(),
    );
    Native {
        schema,
        zero_threshold: layout.bucket_bounds(0).0,
        zero_count: snapshot.zero_count(),
        count,
        positive,
        negative,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::{Layout, Snapshot};
    use std::sync::Arc;

    /// The magnitudes `(lower, upper]` of native bucket `i`.
    fn bounds(i: i32, schema: i32) -> (f64, f64) {
        let gamma_log = (-(schema as f64)).exp2();
        (
            ((i - 1) as f64 * gamma_log).exp2(),
            (i as f64 * gamma_log).exp2(),
        )
    }

    #[test]
    fn indexes_follow_the_native_bounds() {
        for schema in 0..=8 {
            assert_eq!(index(1.0, schema), 0);
            assert_eq!(index(2.0, schema), 1 << schema);
            assert_eq!(index(0.5, schema), -(1 << schema));
            for &x in &[1e-9, 0.003, 0.7, 1.0000001, 3.3, 1234.5, 9.9e11, 1e-310] {
                let i = index(x, schema);
                let (lo, hi) = bounds(i, schema);
                assert!(
                    lo < x * (1.0 + 1e-12) && x <= hi * (1.0 + 1e-12),
                    "{x} in bucket {i} ({lo}, {hi}] at schema {schema}"
                );
            }
        }
    }

    #[test]
    fn schemas_follow_the_relative_error() {
        let at = |e: f64| schema(&Layout::new(e, 1e-9, 1e12, &[]).unwrap());
        assert_eq!(at(0.01), 8);
        assert_eq!(at(0.001), 8);
        assert_eq!(at(0.05), 6);
        assert!(native_error(8) < 0.0028);
    }

    #[test]
    fn spans_and_deltas() {
        let side = Side::from_counts(vec![(5, 2), (3, 1), (4, 4), (9, 1), (4, 1)]);
        assert_eq!(side.spans, vec![(3, 3), (3, 1)]);
        assert_eq!(side.deltas, vec![1, 4, -3, -1]);
    }

    #[test]
    fn counts_and_zero_bucket() {
        let layout = Arc::new(Layout::new(0.01, 1e-6, 1e6, &[]).unwrap());
        let mut s = Snapshot::new(layout.clone());
        for v in [0.0, 1e-9, 1.0, 1.0, 2.5, -3.0, 5e6, -7e6, 1e-3] {
            s.record(v).unwrap();
        }
        let n = native(&s);
        assert_eq!(n.count, s.count());
        assert_eq!(n.zero_count, 2);
        assert_eq!(n.zero_threshold, layout.bucket_bounds(0).0);
        let decode = |side: &Side| {
            let mut out = Vec::new();
            let (mut at, mut deltas, mut c) = (0i32, side.deltas.iter(), 0i64);
            for (k, &(offset, len)) in side.spans.iter().enumerate() {
                at = if k == 0 { offset } else { at + offset };
                for _ in 0..len {
                    c += deltas.next().unwrap();
                    out.push((at, c as u64));
                    at += 1;
                }
            }
            out
        };
        let pos = decode(&n.positive);
        assert_eq!(pos.iter().map(|p| p.1).sum::<u64>(), 5);
        let estimate = match layout.place(1.0) {
            crate::histogram::Place::Bucket { idx, .. } => layout.estimate(idx),
            other => panic!("{other:?}"),
        };
        assert!(
            pos.contains(&(index(estimate, 8), 2)),
            "1.0 twice, at its estimate"
        );
        assert!(pos.contains(&(index(5e6, 8), 1)), "overflow at the max");
        let neg = decode(&n.negative);
        assert_eq!(neg.iter().map(|p| p.1).sum::<u64>(), 2);
        assert!(neg.contains(&(index(7e6, 8), 1)), "overflow at the min");
    }
}

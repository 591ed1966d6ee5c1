//! Bucket layout: which bucket a value falls in, and what each bucket covers.
//!
//! Log-linear buckets read straight from the bits of an `f64`: with `m` sub-bucket bits, the
//! key of a positive value `v` is `(v.to_bits() - 1) >> (52 - m)`, that is the exponent and the
//! top `m` mantissa bits of the float just below `v`. Each octave `[2^e, 2^(e+1)]` is split into
//! `2^m` equal-width buckets; bucket `k` covers `(L_k, U_k]` with
//! `L_k = f64::from_bits(k << (52 - m))` and `U_k = f64::from_bits((k + 1) << (52 - m))`.
//! Buckets are **upper-inclusive** like Prometheus native histograms and DDSketch, so a value
//! equal to a power of two lands in the bucket that ends there.
//!
//! `U_k / L_k <= 1 + 2^-m`, so reporting `2 L U / (L + U)` for every value of the bucket is off
//! by at most `alpha = (U - L) / (U + L) <= 2^-m / (2 + 2^-m)` relative to the value: 0.78 % for
//! the default `m = 6` (chosen for the default `relative_error` of 1 %).
//!
//! Values whose magnitude is below the floor are counted in a zero bucket (reported as 0);
//! values beyond the ceiling are counted in an overflow bucket per sign (reported as the exact
//! max, or min for negatives). Negative values use a mirror set of buckets.

use crate::error::{Error, Result};

/// Largest number of sub-bucket bits (relative error 0.012 %).
pub const MAX_SUB_BITS: u32 = 12;
/// Largest number of buckets per sign a layout may have (bounds memory: 8 MiB per sign).
pub const MAX_BUCKETS: u64 = 1 << 20;
/// Largest number of classic (`buckets:`) upper bounds.
pub const MAX_BOUNDS: usize = 1024;
/// Smallest floor: the smallest normal `f64`.
pub const MIN_FLOOR: f64 = f64::MIN_POSITIVE;
/// Largest ceiling: keeps every bucket bound and estimate finite.
pub const MAX_CEILING: f64 = 1.0e300;

/// Default relative error (1 %).
pub const DEFAULT_RELATIVE_ERROR: f64 = 0.01;
/// Default floor: smaller magnitudes count as zero.
pub const DEFAULT_FLOOR: f64 = 1.0e-9;
/// Default ceiling: larger magnitudes go to the overflow bucket.
pub const DEFAULT_CEILING: f64 = 1.0e12;

/// Where a value is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// `|v|` below the floor (and zero itself).
    Zero,
    /// Log bucket `idx` of the positive (`neg == false`) or negative side.
    Bucket {
        /// Negative side.
        neg: bool,
        /// Index in `0..layout.len()`.
        idx: usize,
    },
    /// `|v|` above the ceiling.
    Overflow {
        /// Negative side.
        neg: bool,
    },
}

/// The bucket layout of a histogram. Two histograms merge only when their layouts are equal.
#[derive(Debug, Clone)]
pub struct Layout {
    sub_bits: u32,
    key_min: u64,
    key_max: u64,
    bounds: Box<[f64]>,
}

impl PartialEq for Layout {
    fn eq(&self, other: &Self) -> bool {
        self.sub_bits == other.sub_bits
            && self.key_min == other.key_min
            && self.key_max == other.key_max
            && self.bounds.len() == other.bounds.len()
            && self
                .bounds
                .iter()
                .zip(other.bounds.iter())
                .all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

impl Eq for Layout {}

/// The guaranteed relative error of `m` sub-bucket bits.
pub fn alpha(sub_bits: u32) -> f64 {
    let w = (-(sub_bits as f64)).exp2();
    w / (2.0 + w)
}

#[inline]
fn key(magnitude_bits: u64, shift: u32) -> u64 {
    (magnitude_bits - 1) >> shift
}

impl Layout {
    /// Builds a layout from user options.
    ///
    /// * `relative_error` in `(0, 1)`: the smallest number of sub-bucket bits whose guaranteed
    ///   error is at most this is chosen (see [`Layout::relative_error`] for the actual bound);
    /// * `floor` and `ceiling`: magnitudes below `floor` count as zero, above `ceiling` as overflow;
    /// * `bounds`: classic bucket upper bounds (inclusive), strictly increasing, may be empty.
    pub fn new(relative_error: f64, floor: f64, ceiling: f64, bounds: &[f64]) -> Result<Self> {
        if !(relative_error.is_finite() && relative_error > 0.0 && relative_error < 1.0) {
            return Err(Error::invalid(format!(
                "relative_error must be a number between 0 and 1 (exclusive), got {relative_error}"
            )));
        }
        let sub_bits = (0..=MAX_SUB_BITS)
            .find(|&m| alpha(m) <= relative_error)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "relative_error must be at least {:.3e} (the finest layout), got {relative_error}",
                    alpha(MAX_SUB_BITS)
                ))
            })?;
        if !(floor.is_finite() && floor >= MIN_FLOOR) {
            return Err(Error::invalid(format!(
                "floor must be a number >= {MIN_FLOOR:e}, got {floor:?}"
            )));
        }
        if !(ceiling.is_finite() && ceiling > floor && ceiling <= MAX_CEILING) {
            return Err(Error::invalid(format!(
                "ceiling must be a number > floor ({floor:?}) and <= {MAX_CEILING:e}, got {ceiling:?}"
            )));
        }
        let shift = 52 - sub_bits;
        let key_min = key(floor.to_bits(), shift);
        let key_max = key(ceiling.to_bits(), shift);
        let n = key_max - key_min + 1;
        if n > MAX_BUCKETS {
            return Err(Error::invalid(format!(
                "floor {floor:?} to ceiling {ceiling:?} at relative_error {relative_error:?} needs {n} \
                 buckets, more than {MAX_BUCKETS}: narrow the range or raise relative_error"
            )));
        }
        Self::from_raw(sub_bits, key_min, key_max, bounds.to_vec()).map_err(|e| match e {
            Error::Malformed(m) => Error::InvalidArgument(m),
            other => other,
        })
    }

    /// The default layout: 1 % relative error over `1e-9..1e12`, no classic buckets.
    pub fn default_layout() -> Self {
        Self::new(DEFAULT_RELATIVE_ERROR, DEFAULT_FLOOR, DEFAULT_CEILING, &[])
            .expect("the default layout is valid")
    }

    /// Rebuilds a layout from its raw parts (as serialized), validating every invariant.
    /// Errors are [`Error::Malformed`].
    pub fn from_raw(sub_bits: u32, key_min: u64, key_max: u64, bounds: Vec<f64>) -> Result<Self> {
        if sub_bits > MAX_SUB_BITS {
            return Err(Error::malformed(format!(
                "sub-bucket bits {sub_bits} above {MAX_SUB_BITS}"
            )));
        }
        let shift = 52 - sub_bits;
        let lo = key(MIN_FLOOR.to_bits(), shift);
        let hi = key(MAX_CEILING.to_bits(), shift);
        if key_min < lo || key_max > hi || key_min > key_max {
            return Err(Error::malformed("bucket key range out of bounds"));
        }
        if key_max - key_min + 1 > MAX_BUCKETS {
            return Err(Error::malformed(format!("more than {MAX_BUCKETS} buckets")));
        }
        if bounds.len() > MAX_BOUNDS {
            return Err(Error::malformed(format!(
                "buckets: at most {MAX_BOUNDS} bounds, got {}",
                bounds.len()
            )));
        }
        if let Some(bad) = bounds.iter().find(|b| !b.is_finite()) {
            return Err(Error::malformed(format!(
                "buckets: bounds must be finite numbers, got {bad}"
            )));
        }
        if bounds.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::malformed(
                "buckets: bounds must be strictly increasing",
            ));
        }
        Ok(Layout {
            sub_bits,
            key_min,
            key_max,
            bounds: bounds.into_boxed_slice(),
        })
    }

    /// Sub-bucket bits (`m`): each octave has `2^m` buckets.
    pub fn sub_bits(&self) -> u32 {
        self.sub_bits
    }

    /// Raw key range `(key_min, key_max)`, for serialization.
    pub fn keys(&self) -> (u64, u64) {
        (self.key_min, self.key_max)
    }

    #[inline]
    fn shift(&self) -> u32 {
        52 - self.sub_bits
    }

    /// Number of log buckets per sign.
    pub fn len(&self) -> usize {
        (self.key_max - self.key_min + 1) as usize
    }

    /// Always false: a layout has at least one bucket.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Classic bucket upper bounds (inclusive), possibly empty.
    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    /// The guaranteed bound on the relative error of quantile estimates for values within the
    /// range.
    pub fn relative_error(&self) -> f64 {
        alpha(self.sub_bits)
    }

    /// Effective floor: magnitudes at or below this count as zero.
    pub fn floor(&self) -> f64 {
        f64::from_bits(self.key_min << self.shift())
    }

    /// Effective ceiling: magnitudes above this count as overflow.
    pub fn ceiling(&self) -> f64 {
        f64::from_bits((self.key_max + 1) << self.shift())
    }

    /// Where `v` is counted. `v` must not be NaN.
    #[inline]
    pub fn place(&self, v: f64) -> Place {
        let bits = v.to_bits();
        let neg = bits >> 63 == 1;
        let magnitude = bits & !(1 << 63);
        if magnitude == 0 {
            return Place::Zero;
        }
        let k = key(magnitude, self.shift());
        let idx = k.wrapping_sub(self.key_min);
        if idx <= self.key_max - self.key_min {
            Place::Bucket {
                neg,
                idx: idx as usize,
            }
        } else if k < self.key_min {
            Place::Zero
        } else {
            Place::Overflow { neg }
        }
    }

    /// Index of the classic bucket of `v`: the first bound `>= v`, or `bounds.len()` (`+Inf`).
    #[inline]
    pub fn classic_index(&self, v: f64) -> usize {
        if self.bounds.len() <= 16 {
            // Branch-free count: a binary search mispredicts on varied values.
            self.bounds.iter().filter(|b| **b < v).count()
        } else {
            self.bounds.partition_point(|b| *b < v)
        }
    }

    /// The magnitudes `(lower, upper]` covered by log bucket `idx`.
    pub fn bucket_bounds(&self, idx: usize) -> (f64, f64) {
        let k = self.key_min + idx as u64;
        (
            f64::from_bits(k << self.shift()),
            f64::from_bits((k + 1) << self.shift()),
        )
    }

    /// The magnitude reported for every value of log bucket `idx`: the harmonic mean
    /// `2 L U / (L + U)` of its bounds, computed as `L * (2 U / (L + U))` so that nothing
    /// overflows near the ceiling (`L U` would pass `f64::MAX` above ~1e154) or underflows near
    /// the floor (`L U` is subnormal below ~1e-154): `2 U / (L + U)` is in `[1, 2)` and `L + U`
    /// stays below `2 MAX_CEILING`. The lowest bucket of a layout whose floor is
    /// [`MIN_FLOOR`] starts at a subnormal `L` (subnormals are not log-spaced); the only
    /// magnitude in the allowed range there is its upper bound, which is what it reports.
    pub fn estimate(&self, idx: usize) -> f64 {
        let (l, u) = self.bucket_bounds(idx);
        if l < MIN_FLOOR {
            return u;
        }
        l * (2.0 * u / (l + u))
    }

    /// `Ok` when `other` has the same layout, else [`Error::Incompatible`] naming the difference.
    pub fn check_compatible(&self, other: &Layout) -> Result<()> {
        if self.sub_bits != other.sub_bits {
            return Err(Error::incompatible(format!(
                "different relative errors ({:.4} vs {:.4})",
                self.relative_error(),
                other.relative_error()
            )));
        }
        if self.key_min != other.key_min || self.key_max != other.key_max {
            return Err(Error::incompatible(format!(
                "different ranges ({:e}..{:e} vs {:e}..{:e})",
                self.floor(),
                self.ceiling(),
                other.floor(),
                other.ceiling()
            )));
        }
        if self != other {
            return Err(Error::incompatible(format!(
                "different classic buckets ({:?} vs {:?})",
                self.bounds, other.bounds
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layout_meets_one_percent() {
        let l = Layout::default_layout();
        assert_eq!(l.sub_bits(), 6);
        assert!(l.relative_error() <= 0.01);
        assert!(l.floor() <= 1e-9 && l.ceiling() >= 1e12);
        assert!(l.len() < 5000, "{}", l.len());
    }

    #[test]
    fn buckets_are_upper_inclusive() {
        let l = Layout::default_layout();
        let Place::Bucket { idx, neg: false } = l.place(1.0) else {
            panic!()
        };
        let (lo, hi) = l.bucket_bounds(idx);
        assert_eq!(hi, 1.0);
        assert!(lo < 1.0);
        let Place::Bucket { idx: next, .. } = l.place(1.0f64.next_up()) else {
            panic!()
        };
        assert_eq!(next, idx + 1);
    }

    #[test]
    fn zero_negative_and_overflow() {
        let l = Layout::default_layout();
        assert_eq!(l.place(0.0), Place::Zero);
        assert_eq!(l.place(-0.0), Place::Zero);
        assert_eq!(l.place(1e-12), Place::Zero);
        assert_eq!(l.place(-1e-12), Place::Zero);
        assert_eq!(l.place(1e13), Place::Overflow { neg: false });
        assert_eq!(l.place(-1e13), Place::Overflow { neg: true });
        assert_eq!(l.place(f64::MAX), Place::Overflow { neg: false });
        assert!(matches!(l.place(-2.0), Place::Bucket { neg: true, .. }));
        assert!(matches!(
            l.place(1e-9),
            Place::Bucket { neg: false, idx: 0 }
        ));
    }

    #[test]
    fn classic_bounds_are_inclusive() {
        let l = Layout::new(0.01, 1e-9, 1e12, &[1.0, 5.0, 10.0]).unwrap();
        assert_eq!(l.classic_index(0.5), 0);
        assert_eq!(l.classic_index(1.0), 0);
        assert_eq!(l.classic_index(1.0f64.next_up()), 1);
        assert_eq!(l.classic_index(5.0), 1);
        assert_eq!(l.classic_index(10.0), 2);
        assert_eq!(l.classic_index(10.5), 3);
    }

    #[test]
    fn invalid_options_are_argument_errors() {
        for (re, f, c, b) in [
            (0.0, 1e-9, 1e12, vec![]),
            (1.0, 1e-9, 1e12, vec![]),
            (f64::NAN, 1e-9, 1e12, vec![]),
            (1e-9, 1e-9, 1e12, vec![]),
            (0.01, 0.0, 1e12, vec![]),
            (0.01, 1.0, 0.5, vec![]),
            (0.01, 1e-9, f64::INFINITY, vec![]),
            (0.01, 1e-9, 1e12, vec![2.0, 1.0]),
            (0.01, 1e-9, 1e12, vec![1.0, 1.0]),
            (0.01, 1e-9, 1e12, vec![f64::NAN]),
            (0.0002, 1e-300, 1e300, vec![]),
        ] {
            let err = Layout::new(re, f, c, &b).unwrap_err();
            assert!(err.is_argument_error(), "{err}");
        }
    }

    #[test]
    fn incompatible_layouts_name_the_difference() {
        let a = Layout::default_layout();
        let b = Layout::new(0.001, 1e-9, 1e12, &[]).unwrap();
        let c = Layout::new(0.01, 1e-6, 1e12, &[]).unwrap();
        let d = Layout::new(0.01, 1e-9, 1e12, &[1.0]).unwrap();
        assert!(a.check_compatible(&a.clone()).is_ok());
        assert!(a
            .check_compatible(&b)
            .unwrap_err()
            .to_string()
            .contains("relative errors"));
        assert!(a
            .check_compatible(&c)
            .unwrap_err()
            .to_string()
            .contains("ranges"));
        assert!(a
            .check_compatible(&d)
            .unwrap_err()
            .to_string()
            .contains("classic"));
    }
}

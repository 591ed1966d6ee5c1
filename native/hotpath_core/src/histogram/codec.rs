//! The binary form of a [`Snapshot`]: versioned and compact (sparse buckets, varints).
//!
//! ```text
//! "HPH" version:u8(=1)
//! sub_bits:u8 key_min:varint key_span:varint nbounds:varint bound:f64le*nbounds
//! zero:varint overflow_pos:varint overflow_neg:varint
//! sum_hi:f64le sum_lo:f64le min:f64le max:f64le
//! npos:varint (gap:varint count:varint)*npos      gap = idx - previous idx - 1 (first: idx)
//! nneg:varint (gap:varint count:varint)*nneg
//! classic:varint*(nbounds + 1)                    only when nbounds > 0
//! ```
//!
//! Decoding checks every length against the layout before allocating, every index, every
//! count sum for overflow, the float fields, and that nothing trails: hostile input is an
//! [`Error::Malformed`], never a panic or an outsized allocation.

use super::layout::Layout;
use super::snapshot::{Snapshot, Sum};
use crate::error::{Error, Result};
use std::sync::Arc;

const MAGIC: &[u8; 3] = b"HPH";
const VERSION: u8 = 1;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_side(out: &mut Vec<u8>, side: &[(u32, u64)]) {
    put_varint(out, side.len() as u64);
    let mut next = 0u64;
    for &(idx, count) in side {
        put_varint(out, idx as u64 - next);
        put_varint(out, count);
        next = idx as u64 + 1;
    }
}

impl Snapshot {
    /// Serializes to the versioned binary form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let layout = self.layout();
        let (key_min, key_max) = layout.keys();
        let mut out = Vec::with_capacity(64 + 8 * (self.pos.len() + self.neg.len()));
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(layout.sub_bits() as u8);
        put_varint(&mut out, key_min);
        put_varint(&mut out, key_max - key_min);
        put_varint(&mut out, layout.bounds().len() as u64);
        for b in layout.bounds() {
            put_f64(&mut out, *b);
        }
        put_varint(&mut out, self.zero);
        put_varint(&mut out, self.overflow[0]);
        put_varint(&mut out, self.overflow[1]);
        for v in [self.sum.hi, self.sum.lo, self.min, self.max] {
            put_f64(&mut out, v);
        }
        put_side(&mut out, &self.pos);
        put_side(&mut out, &self.neg);
        for c in &self.classic {
            put_varint(&mut out, *c);
        }
        out
    }

    /// Decodes the binary form. Any defect is [`Error::Malformed`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Snapshot> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(3)? != MAGIC {
            return Err(Error::malformed("not a Hotpath histogram (bad magic)"));
        }
        let version = r.byte()?;
        if version != VERSION {
            return Err(Error::malformed(format!(
                "unsupported histogram format version {version} (this build reads {VERSION})"
            )));
        }
        let sub_bits = r.byte()? as u32;
        let key_min = r.varint()?;
        let span = r.varint()?;
        let key_max = key_min
            .checked_add(span)
            .ok_or_else(|| Error::malformed("bucket key range overflows"))?;
        let nbounds = r.varint()?;
        if nbounds > super::MAX_BOUNDS as u64 {
            return Err(Error::malformed("too many classic bounds"));
        }
        let mut bounds = Vec::with_capacity(nbounds as usize);
        for _ in 0..nbounds {
            bounds.push(r.f64()?);
        }
        let layout = Arc::new(Layout::from_raw(sub_bits, key_min, key_max, bounds)?);
        let mut s = Snapshot::new(layout.clone());
        s.zero = r.varint()?;
        s.overflow = [r.varint()?, r.varint()?];
        let (hi, lo, min, max) = (r.f64()?, r.f64()?, r.f64()?, r.f64()?);
        if hi.is_nan() || lo.is_nan() || min.is_nan() || max.is_nan() {
            return Err(Error::malformed("NaN in sum, min or max"));
        }
        // Sums saturate at ±f64::MAX: an infinite one was not written by this library, and
        // accepting it would poison every read and every merge target.
        if !(hi.is_finite() && lo.is_finite()) {
            return Err(Error::malformed("sum is not a finite number"));
        }
        s.sum = Sum { hi, lo };
        s.min = min;
        s.max = max;
        s.pos = r.side(layout.len())?;
        s.neg = r.side(layout.len())?;
        for c in s.classic.iter_mut() {
            *c = r.varint()?;
        }
        if r.at != bytes.len() {
            return Err(Error::malformed(format!(
                "{} trailing bytes",
                bytes.len() - r.at
            )));
        }
        let mut count = s
            .zero
            .checked_add(s.overflow[0])
            .and_then(|c| c.checked_add(s.overflow[1]));
        for &(_, c) in s.pos.iter().chain(s.neg.iter()) {
            count = count.and_then(|t| t.checked_add(c));
        }
        s.count = count.ok_or_else(|| Error::malformed("total count overflows"))?;
        if s.classic
            .iter()
            .try_fold(0u64, |t, c| t.checked_add(*c))
            .is_none()
        {
            return Err(Error::malformed("classic bucket counts overflow"));
        }
        if s.count == 0 {
            if min != f64::INFINITY || max != f64::NEG_INFINITY {
                return Err(Error::malformed("min/max set on an empty histogram"));
            }
        } else if !(min.is_finite() && max.is_finite() && min <= max) {
            return Err(Error::malformed("min/max inconsistent with the counts"));
        }
        Ok(s)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| Error::malformed("truncated histogram"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn f64(&mut self) -> Result<f64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_le_bytes(a))
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            let part = (b & 0x7f) as u64;
            if i == 9 && part > 1 {
                return Err(Error::malformed("varint overflows 64 bits"));
            }
            v |= part << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Error::malformed("varint longer than 10 bytes"))
    }

    fn side(&mut self, len: usize) -> Result<Vec<(u32, u64)>> {
        let n = self.varint()?;
        // Each entry takes at least 2 bytes: bound the allocation by the input too.
        if n > len as u64 || n > (self.bytes.len() - self.at) as u64 / 2 {
            return Err(Error::malformed("more bucket entries than the layout has"));
        }
        let mut out = Vec::with_capacity(n as usize);
        let mut next = 0u64;
        for _ in 0..n {
            let idx = next
                .checked_add(self.varint()?)
                .filter(|&i| i < len as u64)
                .ok_or_else(|| Error::malformed("bucket index out of range"))?;
            let count = self.varint()?;
            if count == 0 {
                return Err(Error::malformed("zero count in a sparse bucket entry"));
            }
            out.push((idx as u32, count));
            next = idx + 1;
        }
        Ok(out)
    }
}

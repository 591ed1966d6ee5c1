//! An unkeyed hash for short byte strings, for tables whose keys an attacker cannot choose or
//! where a collision costs only a cache miss (metric names, the per-thread series memo).
//!
//! Folded 64x64->128 multiplies over 16-byte steps; inputs of up to 16 bytes are read with a
//! few overlapping loads (no byte loop, no copy into a padded buffer, which stalls store
//! forwarding). Tables keyed by attacker-chosen data (the rate limiter's) use aHash instead.

use std::hash::{BuildHasher, Hasher};

/// Mixing constants (odd, with balanced bits).
pub const P0: u64 = 0xa076_1d64_78bd_642f;
/// See [`P0`].
pub const P1: u64 = 0xe703_7ed1_a0b4_28db;
/// See [`P0`].
pub const P2: u64 = 0x8ebc_6af0_9c88_c6e3;

/// The high and low halves of `a * b` folded together.
#[inline(always)]
pub fn fold(a: u64, b: u64) -> u64 {
    let x = (a as u128) * (b as u128);
    (x as u64) ^ ((x >> 64) as u64)
}

/// The 8 bytes of `b` at `at`, little-endian.
#[inline(always)]
pub(crate) fn r8(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The 4 bytes of `b` at `at`, little-endian, widened.
#[inline(always)]
pub(crate) fn r4(b: &[u8], at: usize) -> u64 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes")) as u64
}

/// Hashes `bytes` with `seed`.
#[inline]
pub fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let n = bytes.len();
    let mut seed = seed ^ P0;
    let (a, b) = if n <= 16 {
        if n >= 4 {
            // Four overlapping 4-byte reads cover every byte of 4..=16.
            let q = (n >> 3) << 2;
            (
                (r4(bytes, 0) << 32) | r4(bytes, q),
                (r4(bytes, n - 4) << 32) | r4(bytes, n - 4 - q),
            )
        } else if n > 0 {
            let b = |i: usize| bytes[i] as u64;
            ((b(0) << 16) | (b(n >> 1) << 8) | b(n - 1), 0)
        } else {
            (0, 0)
        }
    } else {
        let mut at = 0;
        while n - at > 16 {
            seed = fold(r8(bytes, at) ^ P1, r8(bytes, at + 8) ^ seed);
            at += 16;
        }
        // The last 16 bytes, overlapping what was hashed already.
        (r8(bytes, n - 16), r8(bytes, n - 8))
    };
    fold(P1 ^ n as u64, fold(a ^ P1, b ^ seed) ^ P2)
}

/// A [`Hasher`] over [`hash_bytes`]: each write folds into the state.
#[derive(Debug, Clone, Copy, Default)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.0 = hash_bytes(self.0, bytes);
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = fold(self.0 ^ i ^ P1, P2);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`FastHasher`]s (unkeyed: see the module docs for where that is fine).
#[derive(Debug, Clone, Copy, Default)]
pub struct FastBuild;

impl BuildHasher for FastBuild {
    type Hasher = FastHasher;

    #[inline]
    fn build_hasher(&self) -> FastHasher {
        FastHasher(0)
    }
}

/// A map from byte strings to `V`, hashed once with [`hash_bytes`] per lookup (a
/// `HashMap<Box<[u8]>, V>` hashes a length prefix and the bytes in two rounds).
#[derive(Debug, Clone)]
pub struct BytesMap<V> {
    table: hashbrown::HashTable<(Box<[u8]>, V)>,
}

impl<V> Default for BytesMap<V> {
    fn default() -> Self {
        BytesMap {
            table: hashbrown::HashTable::new(),
        }
    }
}

impl<V> BytesMap<V> {
    /// The value of `key`, if any.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<&V> {
        self.table
            .find(hash_bytes(0, key), |(k, _)| **k == *key)
            .map(|(_, v)| v)
    }

    /// The value of `key`, inserted with `make` when missing.
    pub fn get_or_insert_with(&mut self, key: &[u8], make: impl FnOnce() -> V) -> &mut V {
        let hash = hash_bytes(0, key);
        let entry = self
            .table
            .entry(hash, |(k, _)| **k == *key, |(k, _)| hash_bytes(0, k))
            .or_insert_with(|| (key.into(), make()));
        &mut entry.into_mut().1
    }

    /// Every entry, in no particular order.
    pub fn into_entries(self) -> impl Iterator<Item = (Box<[u8]>, V)> {
        self.table.into_iter()
    }
}

impl<V> Extend<(Box<[u8]>, V)> for BytesMap<V> {
    /// Inserts each entry, replacing the value of a key already present.
    fn extend<I: IntoIterator<Item = (Box<[u8]>, V)>>(&mut self, entries: I) {
        for (key, value) in entries {
            let hash = hash_bytes(0, &key);
            match self
                .table
                .entry(hash, |(k, _)| *k == key, |(k, _)| hash_bytes(0, k))
            {
                hashbrown::hash_table::Entry::Occupied(mut e) => e.get_mut().1 = value,
                hashbrown::hash_table::Entry::Vacant(e) => {
                    e.insert((key, value));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_byte_and_length_matters() {
        let base: Vec<u8> = (0..40u8).collect();
        let mut seen = HashSet::new();
        for len in 0..=base.len() {
            assert!(seen.insert(hash_bytes(0, &base[..len])), "length {len}");
            for i in 0..len {
                let mut changed = base[..len].to_vec();
                changed[i] ^= 1;
                assert!(seen.insert(hash_bytes(0, &changed)), "byte {i} of {len}");
            }
        }
    }

    #[test]
    fn bytes_map_finds_what_it_holds() {
        let mut m = BytesMap::default();
        for i in 0..100u32 {
            *m.get_or_insert_with(format!("metric.{i}").as_bytes(), || 0) += i;
        }
        *m.get_or_insert_with(b"metric.7", || 0) += 1;
        assert_eq!(m.get(b"metric.7"), Some(&8));
        assert_eq!(m.get(b"metric.99"), Some(&99));
        assert_eq!(m.get(b"metric.100"), None);
        let mut copy = BytesMap::default();
        copy.extend(m.into_entries());
        copy.extend([(b"metric.7".to_vec().into_boxed_slice(), 70)]);
        assert_eq!(copy.get(b"metric.7"), Some(&70));
        assert_eq!(copy.into_entries().count(), 100);
    }

    #[test]
    fn seed_matters() {
        assert_ne!(hash_bytes(1, b"route"), hash_bytes(2, b"route"));
    }
}

//! An unkeyed hash for short byte strings, for tables whose keys an attacker cannot choose or
//! where a collision costs only a cache miss (metric names, the per-thread series memo).
//!
//! Folded 64x64->128 multiplies over 16-byte steps; inputs of up to 16 bytes are read with a
//! few overlapping loads (no byte loop, no copy into a padded buffer, which stalls store
//! forwarding). Tables keyed by attacker-chosen data (the rate limiter's) use aHash instead.

use std::hash::{BuildHasher, Hasher};

/// Mixing constants (odd, with balanced bits).
pub const SEED_MIX: u64 = 0xa076_1d64_78bd_642f;
/// See [`SEED_MIX`].
pub const INPUT_MIX: u64 = 0xe703_7ed1_a0b4_28db;
/// See [`SEED_MIX`].
pub const FINAL_MIX: u64 = 0x8ebc_6af0_9c88_c6e3;

/// The high and low halves of `a * b` folded together.
#[inline(always)]
pub fn fold_mul(a: u64, b: u64) -> u64 {
    let x = (a as u128) * (b as u128);
    (x as u64) ^ ((x >> 64) as u64)
}

/// The 8 bytes of `b` at `at`, little-endian.
#[inline(always)]
pub(crate) fn read_u64_le(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The 4 bytes of `b` at `at`, little-endian, widened.
#[inline(always)]
pub(crate) fn read_u32_le(b: &[u8], at: usize) -> u64 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes")) as u64
}

/// Two words holding every byte of `bytes` (at most 16 of them).
#[inline(always)]
fn short_words(bytes: &[u8]) -> (u64, u64) {
    let n = bytes.len();
    if n >= 4 {
        // Four overlapping 4-byte reads cover every byte of 4..=16.
        let q = (n >> 3) << 2;
        (
            (read_u32_le(bytes, 0) << 32) | read_u32_le(bytes, q),
            (read_u32_le(bytes, n - 4) << 32) | read_u32_le(bytes, n - 4 - q),
        )
    } else if n > 0 {
        let b = |i: usize| bytes[i] as u64;
        ((b(0) << 16) | (b(n >> 1) << 8) | b(n - 1), 0)
    } else {
        (0, 0)
    }
}

/// Hashes `bytes` with `seed`.
#[inline]
pub fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let n = bytes.len();
    let mut seed = seed ^ SEED_MIX;
    let (a, b) = if n <= 16 {
        short_words(bytes)
    } else {
        let mut at = 0;
        while n - at > 16 {
            seed = fold_mul(
                read_u64_le(bytes, at) ^ INPUT_MIX,
                read_u64_le(bytes, at + 8) ^ seed,
            );
            at += 16;
        }
        // The last 16 bytes, overlapping what was hashed already.
        (read_u64_le(bytes, n - 16), read_u64_le(bytes, n - 8))
    };
    fold_mul(
        INPUT_MIX ^ n as u64,
        fold_mul(a ^ INPUT_MIX, b ^ seed) ^ FINAL_MIX,
    )
}

/// `a == b`, inline for the short keys of a lookup (names, labels): word compares with an
/// overlapping last word instead of a call to `memcmp`.
#[inline]
pub fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    } else if !(4..=64).contains(&n) {
        return a == b;
    } else if n < 8 {
        return read_u32_le(a, 0) == read_u32_le(b, 0)
            && read_u32_le(a, n - 4) == read_u32_le(b, n - 4);
    }
    let mut at = 0;
    while at + 8 < n {
        if read_u64_le(a, at) != read_u64_le(b, at) {
            return false;
        }
        at += 8;
    }
    read_u64_le(a, n - 8) == read_u64_le(b, n - 8)
}

/// A one-multiply hash of the length and (beyond 16 bytes) the first, middle and last 8 bytes
/// only: for table keys a program defines (metric names), which rarely share all three. Keys
/// that do still work, they share a probe sequence and are told apart by comparison.
#[inline]
pub fn hash_sampled(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    let (a, b) = if n <= 16 {
        short_words(bytes)
    } else {
        (
            read_u64_le(bytes, 0) ^ read_u64_le(bytes, (n - 8) / 2).rotate_left(32),
            read_u64_le(bytes, n - 8),
        )
    };
    fold_mul(a ^ INPUT_MIX, b ^ n as u64 ^ FINAL_MIX)
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
        self.0 = fold_mul(self.0 ^ i ^ INPUT_MIX, FINAL_MIX);
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

/// A map from byte strings a program defines (names) to `V`, hashed with one multiply per
/// lookup ([`hash_sampled`]; a `HashMap<Box<[u8]>, V>` hashes a length prefix and every byte).
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
            .find(hash_sampled(key), |(k, _)| eq_bytes(k, key))
            .map(|(_, v)| v)
    }

    /// The value of `key`, inserted with `make` when missing.
    pub fn get_or_insert_with(&mut self, key: &[u8], make: impl FnOnce() -> V) -> &mut V {
        let hash = hash_sampled(key);
        let entry = self
            .table
            .entry(hash, |(k, _)| **k == *key, |(k, _)| hash_sampled(k))
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
            let hash = hash_sampled(&key);
            match self
                .table
                .entry(hash, |(k, _)| *k == key, |(k, _)| hash_sampled(k))
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
    fn bytes_map_tells_apart_keys_with_the_same_hash() {
        // 40 bytes: the hash samples bytes 0..8, 16..24 and 32..40 only.
        let key = |i: u8| {
            let mut k = [b'x'; 40];
            k[10] = i;
            k
        };
        assert_eq!(hash_sampled(&key(1)), hash_sampled(&key(2)));
        let mut m = BytesMap::default();
        for i in 0..50u8 {
            *m.get_or_insert_with(&key(i), || 0) += i as u32;
        }
        for i in 0..50u8 {
            assert_eq!(m.get(&key(i)), Some(&(i as u32)));
        }
        assert_eq!(m.get(&key(50)), None);
    }

    #[test]
    fn sampled_hash_covers_short_keys_and_the_length() {
        let base: Vec<u8> = (0..16u8).collect();
        let mut seen = HashSet::new();
        for len in 0..=base.len() {
            assert!(seen.insert(hash_sampled(&base[..len])), "length {len}");
            for i in 0..len {
                let mut changed = base[..len].to_vec();
                changed[i] ^= 1;
                assert!(seen.insert(hash_sampled(&changed)), "byte {i} of {len}");
            }
        }
    }

    #[test]
    fn eq_bytes_is_slice_equality() {
        let base: Vec<u8> = (1..=80u8).collect();
        let copy = base.clone();
        for len in 0..=base.len() {
            let a = &base[..len];
            assert!(eq_bytes(a, &copy[..len]), "length {len}");
            assert!(len == 0 || !eq_bytes(a, &base[..len - 1]), "length {len}");
            for i in 0..len {
                let mut changed = a.to_vec();
                changed[i] ^= 0x80;
                assert!(!eq_bytes(a, &changed), "byte {i} of {len}");
            }
        }
    }

    #[test]
    fn seed_matters() {
        assert_ne!(hash_bytes(1, b"route"), hash_bytes(2, b"route"));
    }
}

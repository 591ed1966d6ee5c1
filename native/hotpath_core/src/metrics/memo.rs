//! A per-thread memo from the raw inputs of a record call to the series they resolve to.
//!
//! Resolving a series the slow way reads every tag value as text (checking UTF-8, converting
//! atoms and integers), builds the label key and looks it up in the metric's shared map. The
//! memo skips all of that for repeated calls: its key is the tag values as the caller has them
//! (binary bytes, atom terms, integers, see [`CallKey`]), built on the stack, hashed with aHash
//! and found in a direct-mapped table the caller keeps per thread ([`Memo`]). The caller
//! guarantees that equal call keys always resolve to the same series (the NIF layer: equal
//! bytes, atoms or integers give equal label text), so a hit is exact.
//!
//! An entry is valid for one registry (`instance`, unique for the process's life), one
//! selector (a metric name or a single metric) and one [`Registry::generation`], read before
//! the series were resolved: after a prune every entry of that registry misses once. Entries
//! keep their series alive until they are overwritten, so a thread holds at most [`SLOTS`]
//! series of registries or prunes that are gone.
//!
//! [`Registry::generation`]: super::Registry::generation

use super::Series;
use ahash::RandomState;
use std::sync::Arc;

/// Words of the longest call key; longer keys are not memoized.
pub const KEY_WORDS: usize = 24;

/// Entries per thread (a power of two).
pub const SLOTS: usize = 512;

const BINARY: u64 = 1 << 56;
const ATOM: u64 = 2 << 56;
const INT: u64 = 3 << 56;

/// The call key of one record: each tag value as a header word and the term's own content
/// (no conversion to text). Built and compared in whole words only, so reading a word back
/// always forwards from the store that wrote it.
#[derive(Debug)]
pub struct CallKey {
    len: usize,
    /// `words[..len]` are written; the rest is never read. Zeroed at `new` (192 bytes, a few
    /// stores: a few ns on a call of hundreds; it replaced reading the array as uninitialized
    /// memory, issue #15).
    words: [u64; KEY_WORDS],
}

/// The 8 bytes of `b` at `at`, little-endian.
#[inline(always)]
fn read_u64_le(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The 4 bytes of `b` at `at`, little-endian, widened.
#[inline(always)]
fn read_u32_le(b: &[u8], at: usize) -> u64 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes")) as u64
}

/// The last `n % 8` bytes of `b` (`n = b.len()`, not a multiple of 8) as one little-endian
/// word, read with loads that stay inside `b` and without a loop over bytes.
#[inline(always)]
fn tail_word(b: &[u8]) -> u64 {
    let n = b.len();
    let rem = n % 8;
    if n >= 8 {
        read_u64_le(b, n - 8) >> ((8 - rem) * 8)
    } else if rem >= 4 {
        // Two overlapping 4-byte reads; the overlap holds the same bytes in both.
        read_u32_le(b, 0) | (read_u32_le(b, rem - 4) << ((rem - 4) * 8))
    } else {
        // 1 to 3 bytes: the first, middle and last byte, each at its own place (they
        // coincide for shorter tails and then OR the same byte twice).
        let mid = rem / 2;
        b[0] as u64 | (b[mid] as u64) << (mid * 8) | (b[rem - 1] as u64) << ((rem - 1) * 8)
    }
}

impl CallKey {
    /// An empty key.
    #[inline]
    pub fn new() -> Self {
        CallKey {
            len: 0,
            words: [0; KEY_WORDS],
        }
    }

    /// Appends a word (the caller checked there is room).
    #[inline(always)]
    fn put(&mut self, word: u64) {
        self.words[self.len] = word;
        self.len += 1;
    }

    /// A binary: its length, then its bytes 8 to a word. False when full.
    #[inline]
    pub fn push_binary(&mut self, bytes: &[u8]) -> bool {
        let n = bytes.len();
        if self.len + 1 + n.div_ceil(8) > KEY_WORDS {
            return false;
        }
        self.put(BINARY | n as u64);
        for chunk in bytes.chunks_exact(8) {
            self.put(read_u64_le(chunk, 0));
        }
        if !n.is_multiple_of(8) {
            self.put(tail_word(bytes));
        }
        true
    }

    #[inline]
    fn push_tagged(&mut self, header: u64, word: u64) -> bool {
        if self.len + 2 > KEY_WORDS {
            return false;
        }
        self.put(header);
        self.put(word);
        true
    }

    /// An atom, by its term (atoms live as long as the VM, so the term names one atom).
    #[inline]
    pub fn push_atom(&mut self, term: u64) -> bool {
        self.push_tagged(ATOM, term)
    }

    /// A 64-bit integer.
    #[inline]
    pub fn push_int(&mut self, i: i64) -> bool {
        self.push_tagged(INT, i as u64)
    }

    /// The words pushed so far.
    #[inline]
    pub fn words(&self) -> &[u64] {
        &self.words[..self.len]
    }
}

impl Default for CallKey {
    fn default() -> Self {
        Self::new()
    }
}

/// Word-by-word equality. The early exit keeps it scalar: a vectorized compare would load
/// several words written by separate stores at once, which cannot forward.
#[inline]
fn words_equal(a: &[u64], b: &[u64]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    for i in 0..a.len() {
        if a[i] != b[i] {
            return false;
        }
    }
    true
}

/// One memoized call.
struct Entry {
    hash: u64,
    instance: u64,
    selector: u32,
    generation: u64,
    key: Vec<u64>,
    series: Vec<Arc<Series>>,
}

/// A thread's memo: [`SLOTS`] direct-mapped entries, allocated on the first insert. The
/// caller keeps one per thread (in its own thread-local state, next to whatever else its hot
/// path needs, so a call pays for one thread-local access).
#[derive(Default)]
pub struct Memo {
    slots: Vec<Option<Entry>>,
}

/// The hash of a lookup triple: aHash with fixed seeds. Unkeyed is enough: a collision only
/// costs a miss (the table is direct-mapped and bounded), never a longer probe.
#[inline]
fn hash(instance: u64, selector: u32, key: &CallKey) -> u64 {
    const STATE: RandomState = RandomState::with_seeds(
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    );
    STATE.hash_one((instance, selector, key.words()))
}

/// A missed lookup: the hash of its call key, for [`Memo::insert`].
pub struct Probe {
    hash: u64,
}

impl Memo {
    /// An empty memo (allocates nothing).
    pub const fn new() -> Self {
        Memo { slots: Vec::new() }
    }

    /// Runs `f` with the memoized series of `(instance, selector, key)` if this memo has them
    /// under `generation`; `Err(probe)` (to pass to [`Memo::insert`]) otherwise.
    #[inline]
    pub fn with_hit<R>(
        &self,
        instance: u64,
        selector: u32,
        generation: u64,
        key: &CallKey,
        f: impl FnOnce(&[Arc<Series>]) -> R,
    ) -> Result<R, Probe> {
        let hash = hash(instance, selector, key);
        match self.slots.get(hash as usize & (SLOTS - 1)) {
            Some(Some(e))
                if e.hash == hash
                    && e.instance == instance
                    && e.selector == selector
                    && e.generation == generation
                    && words_equal(&e.key, key.words()) =>
            {
                Ok(f(&e.series))
            }
            _ => Err(Probe { hash }),
        }
    }

    /// Memoizes `series` for `(instance, selector, key)` under `generation` (read before they
    /// were resolved), replacing whatever the slot held.
    pub fn insert(
        &mut self,
        probe: Probe,
        instance: u64,
        selector: u32,
        generation: u64,
        key: &CallKey,
        series: Vec<Arc<Series>>,
    ) {
        if self.slots.is_empty() {
            self.slots.resize_with(SLOTS, || None);
        }
        let slot = &mut self.slots[probe.hash as usize & (SLOTS - 1)];
        match slot {
            Some(e) => {
                e.hash = probe.hash;
                e.instance = instance;
                e.selector = selector;
                e.generation = generation;
                e.key.clear();
                e.key.extend_from_slice(key.words());
                e.series = series;
            }
            None => {
                *slot = Some(Entry {
                    hash: probe.hash,
                    instance,
                    selector,
                    generation,
                    key: key.words().to_vec(),
                    series,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{spec, Kind, Registry};

    #[test]
    fn binary_words_hold_every_byte() {
        let bytes: Vec<u8> = (1..=40u8).collect();
        for n in 0..=bytes.len() {
            let mut key = CallKey::new();
            assert!(key.push_binary(&bytes[..n]));
            let mut expect = vec![BINARY | n as u64];
            for chunk in bytes[..n].chunks(8) {
                let mut w = [0u8; 8];
                w[..chunk.len()].copy_from_slice(chunk);
                expect.push(u64::from_le_bytes(w));
            }
            assert_eq!(key.words(), &expect[..], "length {n}");
        }
    }

    #[test]
    fn full_keys_are_refused() {
        let mut key = CallKey::new();
        assert!(!key.push_binary(&[7; KEY_WORDS * 8]));
        assert_eq!(key.words().len(), 0);
        for _ in 0..KEY_WORDS / 2 {
            assert!(key.push_int(1));
        }
        assert!(!key.push_atom(5));
    }

    #[test]
    fn hits_only_the_same_instance_selector_generation_and_key() {
        let r = Registry::new(vec![spec("m", Kind::Counter, &["a"])]).unwrap();
        let series = r.metric(0).unwrap().resolve(&[1, b'x']).unwrap();
        let mut key = CallKey::new();
        key.push_binary(b"x");
        let mut memo = Memo::new();
        let Err(probe) = memo.with_hit(7, 1, 0, &key, |_| ()) else {
            panic!("empty memo hit")
        };
        memo.insert(probe, 7, 1, 0, &key, vec![series.clone()]);
        let hit = memo.with_hit(7, 1, 0, &key, |s| Arc::ptr_eq(&s[0], &series));
        assert!(matches!(hit, Ok(true)));
        let mut other = CallKey::new();
        other.push_binary(b"y");
        assert!(memo.with_hit(7, 1, 0, &other, |_| ()).is_err());
        assert!(memo.with_hit(8, 1, 0, &key, |_| ()).is_err());
        assert!(memo.with_hit(7, 2, 0, &key, |_| ()).is_err());
        assert!(memo.with_hit(7, 1, 1, &key, |_| ()).is_err());
    }
}

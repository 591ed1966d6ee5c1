//! A per-thread memo from the raw inputs of a record call to the series they resolve to.
//!
//! Resolving a series the slow way reads every tag value as text (checking UTF-8, converting
//! atoms and integers), builds the label key and looks it up in the metric's shared map. The
//! memo skips all of that for repeated calls: its key is the tag values as the caller has them
//! (binary bytes, atom terms, integers, see [`CallKey`]), built on the stack, hashed once and
//! found in a direct-mapped table of this thread. The caller guarantees that equal call keys
//! always resolve to the same series (the NIF layer: equal bytes, atoms or integers give equal
//! label text), so a hit is exact.
//!
//! An entry is valid for one registry (`instance`, unique for the process's life), one
//! selector (a metric name or a single metric) and one [`Registry::generation`], read before
//! the series were resolved: after a prune every entry of that registry misses once. Entries
//! keep their series alive until they are overwritten, so a thread holds at most [`SLOTS`]
//! series of registries or prunes that are gone.
//!
//! [`Registry::generation`]: super::Registry::generation

use super::Series;
use crate::fasthash::{fold, r4, r8, P1, P2};
use std::cell::RefCell;
use std::sync::Arc;

/// Words of the longest call key; longer keys are not memoized.
pub const KEY_WORDS: usize = 24;

/// Entries per thread (a power of two).
pub const SLOTS: usize = 512;

const BINARY: u64 = 1 << 56;
const ATOM: u64 = 2 << 56;
const INT: u64 = 3 << 56;

/// The call key of one record: each tag value as a header word and the term's own content
/// (no conversion to text). Built, hashed and compared in whole words only, so reading a word
/// back always forwards from the store that wrote it.
#[derive(Debug)]
pub struct CallKey {
    len: usize,
    words: [u64; KEY_WORDS],
}

/// The last `n % 8` bytes of `b` (`n = b.len()`, not a multiple of 8) as one little-endian
/// word, read with loads that stay inside `b`.
#[inline(always)]
fn tail_word(b: &[u8]) -> u64 {
    let n = b.len();
    let rem = n % 8;
    if n >= 8 {
        r8(b, n - 8) >> ((8 - rem) * 8)
    } else if rem >= 4 {
        // Two overlapping 4-byte reads; the overlap holds the same bytes in both.
        r4(b, 0) | (r4(b, rem - 4) << ((rem - 4) * 8))
    } else {
        b.iter()
            .rev()
            .fold(0, |word, &byte| (word << 8) | byte as u64)
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

    #[inline]
    fn push2(&mut self, header: u64, word: u64) -> bool {
        if self.len + 2 > KEY_WORDS {
            return false;
        }
        self.words[self.len] = header;
        self.words[self.len + 1] = word;
        self.len += 2;
        true
    }

    /// A binary: its length, then its bytes 8 to a word. False when full.
    #[inline]
    pub fn push_binary(&mut self, bytes: &[u8]) -> bool {
        let n = bytes.len();
        let need = 1 + n.div_ceil(8);
        if self.len + need > KEY_WORDS {
            return false;
        }
        self.words[self.len] = BINARY | n as u64;
        let mut at = self.len + 1;
        for chunk in bytes.chunks_exact(8) {
            self.words[at] = r8(chunk, 0);
            at += 1;
        }
        if !n.is_multiple_of(8) {
            self.words[at] = tail_word(bytes);
        }
        self.len += need;
        true
    }

    /// An atom, by its term (atoms live as long as the VM, so the term names one atom).
    #[inline]
    pub fn push_atom(&mut self, term: u64) -> bool {
        self.push2(ATOM, term)
    }

    /// A 64-bit integer.
    #[inline]
    pub fn push_int(&mut self, i: i64) -> bool {
        self.push2(INT, i as u64)
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
fn same(a: &[u64], b: &[u64]) -> bool {
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

struct Cache {
    slots: Vec<Option<Entry>>,
}

thread_local! {
    static CACHE: RefCell<Cache> = const { RefCell::new(Cache { slots: Vec::new() }) };
}

/// The hash of a lookup triple. Unkeyed: a collision only costs a miss (the table is
/// direct-mapped and bounded), never a longer probe.
#[inline]
fn hash(instance: u64, selector: u32, key: &[u64]) -> u64 {
    let mut h = fold(
        instance ^ P1,
        ((selector as u64) << 8) ^ key.len() as u64 ^ P2,
    );
    for pair in key.chunks(2) {
        h = fold(pair[0] ^ P1, pair.get(1).copied().unwrap_or(0) ^ h);
    }
    h
}

/// A missed lookup: the hash of its call key, for [`insert`].
pub struct Probe {
    hash: u64,
}

/// Runs `f` with the memoized series of `(instance, selector, key)` if this thread has them
/// under `generation`; `Err(probe)` (to pass to [`insert`]) otherwise.
#[inline]
pub fn with_hit<R>(
    instance: u64,
    selector: u32,
    generation: u64,
    key: &CallKey,
    f: impl FnOnce(&[Arc<Series>]) -> R,
) -> Result<R, Probe> {
    let hash = hash(instance, selector, key.words());
    CACHE.with(|cell| {
        let cache = cell.borrow();
        match cache.slots.get(hash as usize & (SLOTS - 1)) {
            Some(Some(e))
                if e.hash == hash
                    && e.instance == instance
                    && e.selector == selector
                    && e.generation == generation
                    && same(&e.key, key.words()) =>
            {
                Ok(f(&e.series))
            }
            _ => Err(Probe { hash }),
        }
    })
}

/// Memoizes `series` for `(instance, selector, key)` under `generation` (read before they
/// were resolved), replacing whatever the slot held.
pub fn insert(
    probe: Probe,
    instance: u64,
    selector: u32,
    generation: u64,
    key: &CallKey,
    series: Vec<Arc<Series>>,
) {
    CACHE.with(|cell| {
        let mut cache = cell.borrow_mut();
        if cache.slots.is_empty() {
            cache.slots.resize_with(SLOTS, || None);
        }
        let slot = &mut cache.slots[probe.hash as usize & (SLOTS - 1)];
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
    });
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
        let Err(probe) = with_hit(7, 1, 0, &key, |_| ()) else {
            panic!("empty memo hit")
        };
        insert(probe, 7, 1, 0, &key, vec![series.clone()]);
        let hit = with_hit(7, 1, 0, &key, |s| Arc::ptr_eq(&s[0], &series));
        assert!(matches!(hit, Ok(true)));
        let mut other = CallKey::new();
        other.push_binary(b"y");
        assert!(with_hit(7, 1, 0, &other, |_| ()).is_err());
        assert!(with_hit(8, 1, 0, &key, |_| ()).is_err());
        assert!(with_hit(7, 2, 0, &key, |_| ()).is_err());
        assert!(with_hit(7, 1, 1, &key, |_| ()).is_err());
    }
}

//! Limiter keys: 16 bytes, with binaries up to 14 bytes stored inline.
//!
//! The NIF layer turns an Elixir term into a [`KeyRef`] without allocating: binaries,
//! integers and atoms directly, any other term through its external term format. A
//! [`Key`] (owned) is built only when a key is inserted.

use std::hash::{Hash, Hasher};

/// Longest binary stored inside the key itself.
pub const INLINE_BYTES: usize = 14;

/// What the bytes of a byte key are: a binary, or another term's external format. Keeping
/// the two apart means `"abc"` and a term whose encoding happens to be `abc` never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ByteKind {
    /// An Elixir binary.
    Binary = 0,
    /// `term_to_binary/1` of any other term.
    Term = 1,
}

/// A borrowed key, as decoded from a term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRef<'a> {
    /// A small integer.
    Int(i64),
    /// An atom, by its VM-wide identity (atoms are never garbage collected).
    Atom(u64),
    /// A binary or an encoded term.
    Bytes(ByteKind, &'a [u8]),
}

impl Hash for KeyRef<'_> {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        match *self {
            KeyRef::Int(i) => {
                state.write_u8(0);
                state.write_i64(i);
            }
            KeyRef::Atom(a) => {
                state.write_u8(1);
                state.write_u64(a);
            }
            KeyRef::Bytes(kind, bytes) => {
                state.write_u8(2 + kind as u8);
                state.write(bytes);
            }
        }
    }
}

/// An owned key, as stored in a table: two words.
///
/// The top byte of the second word is a tag. Integers, atoms and byte keys of up to
/// [`INLINE_BYTES`] bytes are packed into the words themselves, so that a lookup compares two
/// words per probed bucket and building the key costs a few register operations. Longer bytes
/// live in a boxed slice owned by the key: the first word is its address, the second its
/// length under the tag.
pub struct Key {
    a: u64,
    b: u64,
}

const TAG_SHIFT: u32 = 56;
const LEN_MASK: u64 = (1 << TAG_SHIFT) - 1;
/// Bits of the second word that every key leaves zero: inline bytes fill at most its low 48
/// bits (14 bytes, 8 in the first word), integers and atoms none, and a heap key's length
/// is below 2^48. A table may keep per-key state there (see [`Key::into_words`]).
pub const SPARE_BITS: u64 = 0xFF << 48;
/// Tags: inline binaries are `len` (0..=14), inline terms `0x10 + len`.
const TAG_INLINE_TERM: u64 = 0x10;
const TAG_INT: u64 = 0x20;
const TAG_ATOM: u64 = 0x21;
const TAG_HEAP_BINARY: u64 = 0x30;
const TAG_HEAP_TERM: u64 = 0x31;

#[inline]
fn tag_of(b: u64) -> u64 {
    b >> TAG_SHIFT
}

/// The two words of a key that is not stored on the heap, or `None` for longer bytes.
#[inline(always)]
fn words(key: KeyRef<'_>) -> Option<(u64, u64)> {
    match key {
        KeyRef::Int(i) => Some((i as u64, TAG_INT << TAG_SHIFT)),
        KeyRef::Atom(a) => Some((a, TAG_ATOM << TAG_SHIFT)),
        KeyRef::Bytes(kind, bytes) if bytes.len() <= INLINE_BYTES => {
            let (a, b) = pack(bytes);
            let tag = bytes.len() as u64
                + match kind {
                    ByteKind::Binary => 0,
                    ByteKind::Term => TAG_INLINE_TERM,
                };
            Some((a, b | tag << TAG_SHIFT))
        }
        KeyRef::Bytes(..) => None,
    }
}

/// The tag-and-length word of heap bytes.
#[inline]
fn heap_meta(kind: ByteKind, len: usize) -> u64 {
    let tag = match kind {
        ByteKind::Binary => TAG_HEAP_BINARY,
        ByteKind::Term => TAG_HEAP_TERM,
    };
    tag << TAG_SHIFT | len as u64
}

/// Packs up to [`INLINE_BYTES`] bytes into two words with at most two (overlapping) loads:
/// for a given length the result determines every byte, so equal words mean equal bytes.
/// The top byte of the second word is always zero (room for the tag).
#[inline(always)]
fn pack(bytes: &[u8]) -> (u64, u64) {
    let len = bytes.len();
    debug_assert!(len <= INLINE_BYTES);
    let le64 = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let le32 = |at: usize| u64::from(u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()));
    match len {
        // `b` holds bytes 8..len: the last eight bytes shifted past those already in `a`.
        8.. => (le64(0), (le64(len - 8) >> 8) >> ((15 - len) * 8)),
        4..=7 => (le32(0) | le32(len - 4) << 32, 0),
        _ => (
            bytes
                .iter()
                .rev()
                .fold(0, |acc, &byte| acc << 8 | u64::from(byte)),
            0,
        ),
    }
}

/// The inverse of [`pack`]: the bytes of an inline key of `len` bytes.
fn unpack(a: u64, b: u64, len: usize) -> [u8; INLINE_BYTES] {
    let mut data = [0u8; INLINE_BYTES];
    match len {
        8.. => {
            data[..8].copy_from_slice(&a.to_le_bytes());
            data[8..len].copy_from_slice(&b.to_le_bytes()[..len - 8]);
        }
        4..=7 => {
            data[..4].copy_from_slice(&(a as u32).to_le_bytes());
            data[len - 4..len].copy_from_slice(&((a >> 32) as u32).to_le_bytes());
        }
        _ => {
            for (i, byte) in data[..len].iter_mut().enumerate() {
                *byte = (a >> (8 * i)) as u8;
            }
        }
    }
    data
}

impl Key {
    /// The owned form of a borrowed key (allocates only for bytes longer than
    /// [`INLINE_BYTES`]).
    #[inline]
    pub fn from_ref(key: KeyRef<'_>) -> Key {
        if let Some((a, b)) = words(key) {
            return Key { a, b };
        }
        let KeyRef::Bytes(kind, bytes) = key else {
            unreachable!("only byte keys are stored on the heap")
        };
        let boxed: Box<[u8]> = bytes.into();
        let len = boxed.len();
        assert!(len < 1 << 48, "a key's length leaves its spare bits free");
        let address = Box::into_raw(boxed).cast::<u8>().expose_provenance();
        Key {
            a: address as u64,
            b: heap_meta(kind, len),
        }
    }

    /// The key's two words, which now own its heap bytes (if any) until
    /// [`Key::from_words`] takes them back. The second word's [`SPARE_BITS`] are zero.
    pub fn into_words(self) -> (u64, u64) {
        let key = std::mem::ManuallyDrop::new(self);
        debug_assert_eq!(key.b & SPARE_BITS, 0);
        (key.a, key.b)
    }

    /// The key whose words [`Key::into_words`] gave.
    ///
    /// # Safety
    /// `(a, b)` came from `into_words` (spare bits cleared again), and the key is taken back
    /// at most once: a heap key's bytes are freed when the result drops.
    pub unsafe fn from_words(a: u64, b: u64) -> Key {
        Key { a, b }
    }

    /// Calls `f` with the key whose words [`Key::into_words`] gave, without taking it back.
    ///
    /// # Safety
    /// `(a, b)` came from `into_words` (spare bits cleared again) and that key was not taken
    /// back yet, nor will be while `f` runs: a heap key's bytes stay allocated.
    #[inline(always)]
    pub unsafe fn with_words<R>(a: u64, b: u64, f: impl FnOnce(&Key) -> R) -> R {
        // Never dropped: the words still own the bytes.
        let key = std::mem::ManuallyDrop::new(Key { a, b });
        f(&key)
    }

    fn is_heap(&self) -> bool {
        tag_of(self.b) >= TAG_HEAP_BINARY
    }

    /// The heap bytes of a heap key.
    fn heap_slice(&self) -> &[u8] {
        debug_assert!(self.is_heap());
        let ptr = std::ptr::with_exposed_provenance::<u8>(self.a as usize);
        // SAFETY: a heap key is only made by `from_ref`, which leaked a `Box<[u8]>` of exactly
        // `b & LEN_MASK` bytes at `a` (with its provenance exposed). The fields are private and
        // `Key` is neither `Copy` nor `Clone`, so the box is owned by this key alone and freed
        // only by its `Drop`: the slice is valid, initialised and unaliased by writers for
        // the lifetime of `&self`.
        unsafe { std::slice::from_raw_parts(ptr, (self.b & LEN_MASK) as usize) }
    }

    /// Calls `f` with the borrowed view of this key (inline bytes are unpacked on the stack).
    pub fn with_ref<R>(&self, f: impl FnOnce(KeyRef<'_>) -> R) -> R {
        let tag = tag_of(self.b);
        match tag {
            TAG_INT => f(KeyRef::Int(self.a as i64)),
            TAG_ATOM => f(KeyRef::Atom(self.a)),
            TAG_HEAP_BINARY => f(KeyRef::Bytes(ByteKind::Binary, self.heap_slice())),
            TAG_HEAP_TERM => f(KeyRef::Bytes(ByteKind::Term, self.heap_slice())),
            _ => {
                let (kind, len) = if tag >= TAG_INLINE_TERM {
                    (ByteKind::Term, tag - TAG_INLINE_TERM)
                } else {
                    (ByteKind::Binary, tag)
                };
                let data = unpack(self.a, self.b & LEN_MASK, len as usize);
                f(KeyRef::Bytes(kind, &data[..len as usize]))
            }
        }
    }

    /// The key's hash under `state`: the same as its [`Probe`]'s.
    #[inline]
    pub fn hash_with(&self, state: &ahash::RandomState) -> u64 {
        if self.is_heap() {
            state.hash_one((self.b, self.heap_slice()))
        } else {
            state.hash_one((self.a, self.b))
        }
    }

    /// Bytes allocated outside the key itself (0 for inline keys).
    pub fn heap_bytes(&self) -> usize {
        if self.is_heap() {
            (self.b & LEN_MASK) as usize
        } else {
            0
        }
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        if self.is_heap() {
            let ptr = std::ptr::with_exposed_provenance_mut::<u8>(self.a as usize);
            let len = (self.b & LEN_MASK) as usize;
            // SAFETY: as in `heap_slice`, `a` and `len` are exactly the box `from_ref` leaked
            // and this key owns it alone; `drop` runs once, so the box is freed once.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
        }
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        if self.is_heap() {
            self.b == other.b && self.heap_slice() == other.heap_slice()
        } else {
            self.a == other.a && self.b == other.b
        }
    }
}

impl Eq for Key {}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.with_ref(|key| write!(f, "Key({key:?})"))
    }
}

/// A key prepared for lookups: its hash, and what to compare stored keys with (two words for
/// keys that fit inline, the borrowed bytes for longer ones).
#[derive(Debug, Clone, Copy)]
pub enum Probe<'a> {
    /// The two words of a key stored inline.
    Words(u64, u64),
    /// Bytes longer than [`INLINE_BYTES`], with their tag-and-length word.
    Long(u64, ByteKind, &'a [u8]),
}

impl<'a> Probe<'a> {
    /// Prepares `key`.
    #[inline(always)]
    pub fn new(key: KeyRef<'a>) -> Probe<'a> {
        match (words(key), key) {
            (Some((a, b)), _) => Probe::Words(a, b),
            (None, KeyRef::Bytes(kind, bytes)) => {
                Probe::Long(heap_meta(kind, bytes.len()), kind, bytes)
            }
            (None, _) => unreachable!("integers and atoms are always inline"),
        }
    }

    /// The hash of the key under `state`: equal to [`Key::hash_with`] of the stored key.
    #[inline]
    pub fn hash_with(&self, state: &ahash::RandomState) -> u64 {
        match *self {
            Probe::Words(a, b) => state.hash_one((a, b)),
            Probe::Long(meta, _, bytes) => state.hash_one((meta, bytes)),
        }
    }

    /// The second word of the key as stored (its state bits clear): the packed word of an
    /// inline key, the tag-and-length word of heap bytes.
    #[inline(always)]
    pub fn second_word(&self) -> u64 {
        match *self {
            Probe::Words(_, b) | Probe::Long(b, ..) => b,
        }
    }

    /// True when `stored` is this key.
    #[inline]
    pub fn matches(&self, stored: &Key) -> bool {
        match *self {
            Probe::Words(a, b) => stored.a == a && stored.b == b,
            Probe::Long(meta, _, bytes) => stored.b == meta && stored.heap_slice() == bytes,
        }
    }

    /// The bytes the stored key would allocate outside itself (as [`Key::heap_bytes`]).
    #[inline]
    pub fn heap_bytes(&self) -> usize {
        match *self {
            Probe::Words(..) => 0,
            Probe::Long(_, _, bytes) => bytes.len(),
        }
    }

    /// The key to store.
    pub fn into_key(self) -> Key {
        match self {
            Probe::Words(a, b) => Key { a, b },
            Probe::Long(_, kind, bytes) => Key::from_ref(KeyRef::Bytes(kind, bytes)),
        }
    }
}

/// The plain twin of [`Key`] for the A/B row of issue #15 (`benches/native_ab.exs`): the same
/// inline packing, with long bytes in a `Box` held by an enum instead of an address packed
/// into the key's words. Safe Rust, 24 bytes where [`Key`] is 16.
#[cfg(feature = "bench")]
pub mod plain {
    use super::{heap_meta, words, ByteKind, KeyRef, Probe};

    /// A key as a safe enum.
    #[derive(Debug, PartialEq, Eq)]
    pub enum PlainKey {
        /// The two words of a key that fits inline (as [`super::Key`] packs them).
        Inline(u64, u64),
        /// Longer bytes.
        Heap(ByteKind, Box<[u8]>),
    }

    impl PlainKey {
        /// The owned form of `key`.
        pub fn from_ref(key: KeyRef<'_>) -> PlainKey {
            match (words(key), key) {
                (Some((a, b)), _) => PlainKey::Inline(a, b),
                (None, KeyRef::Bytes(kind, bytes)) => PlainKey::Heap(kind, bytes.into()),
                (None, _) => unreachable!("integers and atoms are always inline"),
            }
        }

        /// True when this is the key of `probe` (compared as [`Probe::matches`] compares).
        #[inline]
        pub fn matches(&self, probe: &Probe<'_>) -> bool {
            match (self, *probe) {
                (PlainKey::Inline(a, b), Probe::Words(pa, pb)) => *a == pa && *b == pb,
                (PlainKey::Heap(kind, bytes), Probe::Long(_, pkind, pbytes)) => {
                    *kind == pkind && **bytes == *pbytes
                }
                _ => false,
            }
        }

        /// The key's hash under `state`, as [`super::Probe::hash_with`] computes it.
        pub fn hash_with(&self, state: &ahash::RandomState) -> u64 {
            match self {
                PlainKey::Inline(a, b) => state.hash_one((*a, *b)),
                PlainKey::Heap(kind, bytes) => {
                    state.hash_one((heap_meta(*kind, bytes.len()), &bytes[..]))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_kinds(long: &[u8]) -> Vec<KeyRef<'_>> {
        let mut refs = vec![
            KeyRef::Int(-5),
            KeyRef::Int(i64::MAX),
            KeyRef::Atom(1234),
            KeyRef::Bytes(ByteKind::Binary, long),
            KeyRef::Bytes(ByteKind::Term, long),
        ];
        for len in 0..=INLINE_BYTES {
            refs.push(KeyRef::Bytes(ByteKind::Binary, &long[..len]));
            refs.push(KeyRef::Bytes(ByteKind::Term, &long[..len]));
        }
        refs
    }

    #[test]
    fn packing_is_exact_for_every_length() {
        let source: Vec<u8> = (1..=INLINE_BYTES as u8).collect();
        for len in 0..=INLINE_BYTES {
            let (a, b) = pack(&source[..len]);
            assert_eq!(b >> TAG_SHIFT, 0, "len {len}");
            assert_eq!(&unpack(a, b, len)[..len], &source[..len], "len {len}");
        }
    }

    #[test]
    fn packing_tells_apart_strings_that_differ_in_one_byte() {
        for len in 1..=INLINE_BYTES {
            let base = vec![b'x'; len];
            for at in 0..len {
                let mut other = base.clone();
                other[at] = b'y';
                assert_ne!(pack(&base), pack(&other), "len {len}, byte {at}");
            }
        }
    }

    #[test]
    fn a_key_is_16_bytes() {
        assert_eq!(std::mem::size_of::<Key>(), 16);
    }

    #[test]
    fn owned_and_borrowed_keys_agree() {
        let state = ahash::RandomState::new();
        let long: Vec<u8> = (0..40).collect();
        for r in all_kinds(&long) {
            let owned = Key::from_ref(r);
            owned.with_ref(|back| assert_eq!(back, r));
            assert_eq!(owned.hash_with(&state), Probe::new(r).hash_with(&state));
            assert_eq!(Probe::new(r).into_key(), owned);
        }
        assert_eq!(
            Key::from_ref(KeyRef::Bytes(ByteKind::Binary, &long)).heap_bytes(),
            40
        );
        assert_eq!(Key::from_ref(KeyRef::Int(1)).heap_bytes(), 0);
    }

    #[test]
    fn probes_match_exactly_their_key() {
        let long: Vec<u8> = (0..30).collect();
        let refs = all_kinds(&long);
        for (i, a) in refs.iter().enumerate() {
            for (j, b) in refs.iter().enumerate() {
                assert_eq!(
                    Probe::new(*a).matches(&Key::from_ref(*b)),
                    i == j,
                    "{a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn binaries_and_terms_with_the_same_bytes_differ() {
        let a = Key::from_ref(KeyRef::Bytes(ByteKind::Binary, b"abc"));
        let b = Key::from_ref(KeyRef::Bytes(ByteKind::Term, b"abc"));
        assert_ne!(a, b);
        let long = [7u8; 20];
        let a = Key::from_ref(KeyRef::Bytes(ByteKind::Binary, &long));
        let b = Key::from_ref(KeyRef::Bytes(ByteKind::Term, &long));
        assert_ne!(a, b);
    }
}

//! Limiter keys: 24 bytes, with binaries up to 14 bytes stored inline.
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

/// An owned key, as stored in a table.
///
/// Integers, atoms and byte keys of up to [`INLINE_BYTES`] bytes are packed into two words
/// (the top byte of the second word is a tag), so that a lookup compares two words and
/// building the key costs a few register operations. Longer bytes are boxed.
#[derive(Clone, PartialEq, Eq)]
pub enum Key {
    /// The two words of a key that fits inline.
    Inline(u64, u64),
    /// Bytes longer than [`INLINE_BYTES`].
    Heap(ByteKind, Box<[u8]>),
}

const TAG_SHIFT: u32 = 56;
const LEN_MASK: u64 = (1 << TAG_SHIFT) - 1;
/// Tags: inline binaries are `len` (0..=14), inline terms `0x10 + len`.
const TAG_INLINE_TERM: u64 = 0x10;
const TAG_INT: u64 = 0x20;
const TAG_ATOM: u64 = 0x21;
const TAG_HEAP_BINARY: u64 = 0x30;
const TAG_HEAP_TERM: u64 = 0x31;

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

/// The tag-and-length word of heap bytes (hashed with them, so that a binary and a term
/// with the same bytes hash apart).
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

/// The process's hash seed for limiter keys (random per process, so that keys chosen by
/// clients cannot be made to collide).
fn seed() -> &'static ahash::RandomState {
    static SEED: std::sync::OnceLock<ahash::RandomState> = std::sync::OnceLock::new();
    SEED.get_or_init(ahash::RandomState::new)
}

impl Key {
    /// The owned form of a borrowed key (allocates only for bytes longer than
    /// [`INLINE_BYTES`]).
    #[inline]
    pub fn from_ref(key: KeyRef<'_>) -> Key {
        Probe::new(key).into_key()
    }

    /// Calls `f` with the borrowed view of this key (inline bytes are unpacked on the stack).
    pub fn with_ref<R>(&self, f: impl FnOnce(KeyRef<'_>) -> R) -> R {
        match *self {
            Key::Heap(kind, ref bytes) => f(KeyRef::Bytes(kind, bytes)),
            Key::Inline(a, b) => match b >> TAG_SHIFT {
                TAG_INT => f(KeyRef::Int(a as i64)),
                TAG_ATOM => f(KeyRef::Atom(a)),
                tag => {
                    let (kind, len) = if tag >= TAG_INLINE_TERM {
                        (ByteKind::Term, tag - TAG_INLINE_TERM)
                    } else {
                        (ByteKind::Binary, tag)
                    };
                    let data = unpack(a, b & LEN_MASK, len as usize);
                    f(KeyRef::Bytes(kind, &data[..len as usize]))
                }
            },
        }
    }

    /// The key's hash: the same as its [`Probe`]'s.
    #[inline]
    pub fn hash64(&self) -> u64 {
        match *self {
            Key::Inline(a, b) => seed().hash_one((a, b)),
            Key::Heap(kind, ref bytes) => seed().hash_one((heap_meta(kind, bytes.len()), bytes)),
        }
    }

    /// Bytes allocated outside the key itself (0 for inline keys).
    pub fn heap_bytes(&self) -> usize {
        match self {
            Key::Inline(..) => 0,
            Key::Heap(_, bytes) => bytes.len(),
        }
    }
}

/// A stored key hashes as its precomputed hash (see [`PassThrough`]).
impl Hash for Key {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash64());
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.with_ref(|key| write!(f, "Key({key:?})"))
    }
}

/// A key prepared for lookups: its hash, and what to compare stored keys with (two words for
/// keys that fit inline, the borrowed bytes for longer ones). Hashing is done once, in
/// [`Probe::new`]: the table picks the shard from it and the shard's map takes it as it is.
#[derive(Debug, Clone, Copy)]
pub struct Probe<'a> {
    hash: u64,
    shape: Shape<'a>,
}

#[derive(Debug, Clone, Copy)]
enum Shape<'a> {
    Words(u64, u64),
    Long(ByteKind, &'a [u8]),
}

impl<'a> Probe<'a> {
    /// Prepares `key`.
    #[inline(always)]
    pub fn new(key: KeyRef<'a>) -> Probe<'a> {
        match (words(key), key) {
            (Some((a, b)), _) => Probe {
                hash: seed().hash_one((a, b)),
                shape: Shape::Words(a, b),
            },
            (None, KeyRef::Bytes(kind, bytes)) => Probe {
                hash: seed().hash_one((heap_meta(kind, bytes.len()), bytes)),
                shape: Shape::Long(kind, bytes),
            },
            (None, _) => unreachable!("integers and atoms are always inline"),
        }
    }

    /// The key's hash: equal to [`Key::hash64`] of the stored key.
    #[inline]
    pub fn hash64(&self) -> u64 {
        self.hash
    }

    /// True when `stored` is this key.
    #[inline]
    pub fn matches(&self, stored: &Key) -> bool {
        match (self.shape, stored) {
            (Shape::Words(a, b), Key::Inline(sa, sb)) => a == *sa && b == *sb,
            (Shape::Long(kind, bytes), Key::Heap(skind, sbytes)) => {
                kind == *skind && bytes == &sbytes[..]
            }
            _ => false,
        }
    }

    /// The bytes the stored key would allocate outside itself (as [`Key::heap_bytes`]).
    #[inline]
    pub fn heap_bytes(&self) -> usize {
        match self.shape {
            Shape::Words(..) => 0,
            Shape::Long(_, bytes) => bytes.len(),
        }
    }

    /// The key to store.
    pub fn into_key(self) -> Key {
        match self.shape {
            Shape::Words(a, b) => Key::Inline(a, b),
            Shape::Long(kind, bytes) => Key::Heap(kind, bytes.into()),
        }
    }
}

/// A probe hashes as its precomputed hash, as the stored key does.
impl Hash for Probe<'_> {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl papaya::Equivalent<Key> for Probe<'_> {
    #[inline]
    fn equivalent(&self, key: &Key) -> bool {
        self.matches(key)
    }
}

/// The hasher of a table's maps: keys and probes write their own precomputed hash (one
/// `write_u64`), which it passes through.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassThrough;

/// The state of [`PassThrough`].
#[derive(Debug, Default)]
pub struct PassThroughHasher(u64);

impl std::hash::BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;

    #[inline]
    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

impl Hasher for PassThroughHasher {
    #[inline]
    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }

    /// Only `write_u64` is used (by [`Key`] and [`Probe`]); anything else is folded in so the
    /// hasher stays a hasher.
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
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
    fn a_key_is_24_bytes() {
        assert_eq!(std::mem::size_of::<Key>(), 24);
    }

    #[test]
    fn owned_and_borrowed_keys_agree() {
        let long: Vec<u8> = (0..40).collect();
        for r in all_kinds(&long) {
            let owned = Key::from_ref(r);
            owned.with_ref(|back| assert_eq!(back, r));
            assert_eq!(owned.hash64(), Probe::new(r).hash64());
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

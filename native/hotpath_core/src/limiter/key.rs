//! Limiter keys: 16 bytes, with binaries up to 14 bytes stored inline.
//!
//! The NIF layer turns an Elixir term into a [`KeyRef`] without allocating: binaries,
//! integers and atoms directly, any other term through its external term format. A
//! [`Key`] (owned) is built only when a key is inserted.

use std::hash::{Hash, Hasher};
use std::mem::ManuallyDrop;
use thin_vec::ThinVec;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A small integer.
    Int(i64),
    /// An atom.
    Atom(u64),
    /// A binary of up to [`INLINE_BYTES`] bytes, stored in place.
    InlineBinary {
        /// Number of bytes used in `data`.
        len: u8,
        /// The bytes, zero-padded.
        data: [u8; INLINE_BYTES],
    },
    /// An encoded term of up to [`INLINE_BYTES`] bytes, stored in place.
    InlineTerm {
        /// Number of bytes used in `data`.
        len: u8,
        /// The bytes, zero-padded.
        data: [u8; INLINE_BYTES],
    },
    /// Longer bytes, in one allocation whose header holds the length (an 8-byte pointer).
    Heap(ByteKind, ThinVec<u8>),
}

impl Key {
    /// The owned form of a borrowed key.
    #[inline]
    pub fn from_ref(key: KeyRef<'_>) -> Key {
        match key {
            KeyRef::Int(i) => Key::Int(i),
            KeyRef::Atom(a) => Key::Atom(a),
            KeyRef::Bytes(kind, bytes) if bytes.len() <= INLINE_BYTES => {
                let data = inline_bytes(bytes);
                let len = bytes.len() as u8;
                match kind {
                    ByteKind::Binary => Key::InlineBinary { len, data },
                    ByteKind::Term => Key::InlineTerm { len, data },
                }
            }
            KeyRef::Bytes(kind, bytes) => Key::Heap(kind, ThinVec::from(bytes)),
        }
    }

    /// The borrowed view used for hashing and comparison.
    #[inline]
    pub fn as_ref(&self) -> KeyRef<'_> {
        match self {
            Key::Int(i) => KeyRef::Int(*i),
            Key::Atom(a) => KeyRef::Atom(*a),
            Key::InlineBinary { len, data } => {
                KeyRef::Bytes(ByteKind::Binary, &data[..*len as usize])
            }
            Key::InlineTerm { len, data } => KeyRef::Bytes(ByteKind::Term, &data[..*len as usize]),
            Key::Heap(kind, bytes) => KeyRef::Bytes(*kind, bytes),
        }
    }

    /// Bytes allocated outside the key itself (0 for inline keys).
    pub fn heap_bytes(&self) -> usize {
        match self {
            // ThinVec's header holds length and capacity (two usize).
            Key::Heap(_, bytes) => bytes.capacity() + 2 * std::mem::size_of::<usize>(),
            _ => 0,
        }
    }
}

/// `bytes` (at most [`INLINE_BYTES`]) zero-padded, copied with at most two overlapping loads
/// and stores of one width instead of a `memcpy` call.
#[inline]
fn inline_bytes(bytes: &[u8]) -> [u8; INLINE_BYTES] {
    let mut data = [0u8; INLINE_BYTES];
    let len = bytes.len();
    debug_assert!(len <= INLINE_BYTES);
    match len {
        8.. => {
            data[..8].copy_from_slice(&bytes[..8]);
            data[len - 8..len].copy_from_slice(&bytes[len - 8..]);
        }
        4..=7 => {
            data[..4].copy_from_slice(&bytes[..4]);
            data[len - 4..len].copy_from_slice(&bytes[len - 4..]);
        }
        2..=3 => {
            data[..2].copy_from_slice(&bytes[..2]);
            data[len - 2..len].copy_from_slice(&bytes[len - 2..]);
        }
        1 => data[0] = bytes[0],
        _ => {}
    }
    data
}

/// A key prepared for lookups: keys that fit a [`Key`] without allocating are converted
/// once and compared in their stored form (a few word comparisons instead of a slice
/// comparison per probed bucket); longer ones stay borrowed.
#[derive(Debug)]
pub enum Probe<'a> {
    /// The key in its stored form. Never a [`Key::Heap`], so it owns no allocation and
    /// needs no drop (which keeps the drop check off the hot path).
    Stored(ManuallyDrop<Key>),
    /// A key longer than [`INLINE_BYTES`].
    Long(KeyRef<'a>),
}

impl<'a> Probe<'a> {
    /// Prepares `key`.
    #[inline]
    pub fn new(key: KeyRef<'a>) -> Probe<'a> {
        match key {
            KeyRef::Bytes(_, bytes) if bytes.len() > INLINE_BYTES => Probe::Long(key),
            _ => Probe::Stored(ManuallyDrop::new(Key::from_ref(key))),
        }
    }

    /// True when `stored` is this key.
    #[inline]
    pub fn matches(&self, stored: &Key) -> bool {
        match self {
            Probe::Stored(key) => **key == *stored,
            Probe::Long(key) => matches!(stored, Key::Heap(..)) && stored.as_ref() == *key,
        }
    }

    /// The key to store.
    pub fn into_key(self) -> Key {
        match self {
            Probe::Stored(key) => ManuallyDrop::into_inner(key),
            Probe::Long(key) => Key::from_ref(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_copies_are_exact_for_every_length() {
        let source: Vec<u8> = (1..=INLINE_BYTES as u8).collect();
        for len in 0..=INLINE_BYTES {
            let data = inline_bytes(&source[..len]);
            assert_eq!(&data[..len], &source[..len]);
            assert!(data[len..].iter().all(|&b| b == 0), "len {len}");
        }
    }

    #[test]
    fn a_key_is_16_bytes() {
        assert_eq!(std::mem::size_of::<Key>(), 16);
    }

    #[test]
    fn owned_and_borrowed_keys_agree() {
        let state = ahash::RandomState::new();
        let long = [7u8; 40];
        let refs = [
            KeyRef::Int(-5),
            KeyRef::Atom(1234),
            KeyRef::Bytes(ByteKind::Binary, b""),
            KeyRef::Bytes(ByteKind::Binary, b"exactly14bytes"),
            KeyRef::Bytes(ByteKind::Binary, &long),
            KeyRef::Bytes(ByteKind::Term, &long),
        ];
        for r in refs {
            let owned = Key::from_ref(r);
            assert_eq!(owned.as_ref(), r);
            assert_eq!(state.hash_one(owned.as_ref()), state.hash_one(r));
        }
        assert_eq!(
            Key::from_ref(KeyRef::Bytes(ByteKind::Binary, &long)).heap_bytes(),
            40 + 16
        );
        assert_eq!(Key::from_ref(KeyRef::Int(1)).heap_bytes(), 0);
    }

    #[test]
    fn probes_match_exactly_their_key() {
        let long = [9u8; 30];
        let refs = [
            KeyRef::Int(3),
            KeyRef::Atom(3),
            KeyRef::Bytes(ByteKind::Binary, b"abc"),
            KeyRef::Bytes(ByteKind::Term, b"abc"),
            KeyRef::Bytes(ByteKind::Binary, &long),
            KeyRef::Bytes(ByteKind::Term, &long),
        ];
        for (i, a) in refs.iter().enumerate() {
            for (j, b) in refs.iter().enumerate() {
                assert_eq!(
                    Probe::new(*a).matches(&Key::from_ref(*b)),
                    i == j,
                    "{a:?} vs {b:?}"
                );
            }
            assert_eq!(Probe::new(*a).into_key(), Key::from_ref(*a));
        }
    }

    #[test]
    fn binaries_and_terms_with_the_same_bytes_differ() {
        let a = Key::from_ref(KeyRef::Bytes(ByteKind::Binary, b"abc"));
        let b = Key::from_ref(KeyRef::Bytes(ByteKind::Term, b"abc"));
        assert_ne!(a, b);
    }
}

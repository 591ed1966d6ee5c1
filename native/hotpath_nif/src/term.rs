//! The one place that reads a term's machine word.
//!
//! Two hot paths need an atom's identity as a number: limiter keys (`KeyRef::Atom`) and the
//! metrics series memo (`CallKey::push_atom`). An atom's term word is that identity: on every
//! BEAM an atom is an immediate whose word encodes its index in the atom table, which never
//! changes while the VM runs (atoms are never garbage collected). So equal atoms have equal
//! words, and different atoms different words.
//!
//! [`check_words`] runs in the library's `load` and refuses to load if the words do not behave
//! that way, so a change in rustler's `ErlNifTerm` or in the VM's term layout fails loudly
//! instead of mixing up keys or recording into the wrong series.

use rustler::sys::ErlNifTerm;
use rustler::{Encoder, Env, Term};

// `ErlNifTerm` is `#[repr(transparent)]` over `size_t` (rustler `sys/types.rs`); these fail
// the build if that ever stops being one `usize` wide, or a `usize` wider than a `u64`.
const _: () = assert!(std::mem::size_of::<ErlNifTerm>() == std::mem::size_of::<usize>());
const _: () = assert!(std::mem::align_of::<ErlNifTerm>() == std::mem::align_of::<usize>());
const _: () = assert!(std::mem::size_of::<usize>() <= std::mem::size_of::<u64>());

/// The machine word of `term` (its `ERL_NIF_TERM`). Only an immediate's word (atoms, small
/// integers) identifies it for the life of the VM; a boxed term's word is a heap pointer.
#[inline]
pub fn word(term: Term) -> u64 {
    let raw: ErlNifTerm = term.as_c_arg();
    // SAFETY: `ErlNifTerm` is `#[repr(transparent)]` over `size_t` = `usize` (rustler
    // `sys/types.rs`; size and alignment asserted above), so it has exactly the size,
    // alignment and validity of `usize`, and every bit pattern is a valid `usize`: the
    // transmute only reinterprets the same word, by value (no pointer is involved).
    let word: usize = unsafe { std::mem::transmute::<ErlNifTerm, usize>(raw) };
    word as u64
}

/// Checks at load that [`word`] gives atoms the identity the hot paths rely on: the same
/// atom read twice has one word, different atoms different words, and two small integers'
/// words differ by 16 (a small integer is `value << 4` with a 4-bit immediate tag:
/// the words are real term words, not hashes or pointers).
pub fn check_words(env: Env) -> bool {
    let a = rustler::types::atom::ok().encode(env);
    let a_again = rustler::Atom::from_str(env, "ok").map(|x| x.encode(env));
    let b = rustler::types::atom::error().encode(env);
    let (one, two) = (1i64.encode(env), 2i64.encode(env));
    let Ok(a_again) = a_again else { return false };
    let step = word(two).wrapping_sub(word(one));
    word(a) == word(a_again) && word(a) != word(b) && step == 16
}

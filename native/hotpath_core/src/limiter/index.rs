//! One shard's index: a hash table whose lookups take no lock and write nothing shared, with
//! one writer at a time.
//!
//! A hit on a stored key (the common case) probes the index without a lock and locks the
//! key's own bucket with its first access to it (see [`View::lock`]): the only line it
//! writes is the one holding the key's state, which it writes anyway, and it takes that
//! line once, for writing. The shard lock of a plain sharded table is another line, written by every
//! hit on any of the shard's keys, and two schedulers hitting different keys of one shard
//! pass it back and forth (issue #18). Adding, removing and moving keys is the writer's work,
//! under the shard's writer lock (see [`Writer`]).
//!
//! # Layout
//!
//! One allocation: a control byte per bucket, then the buckets, starting on a cache line.
//! Buckets form groups of 8 whose control bytes are one `u64`. A control byte is [`EMPTY`]
//! for a bucket never filled, else the top 7 bits of the key's hash with the high bit set.
//! A lookup walks the groups of its probe sequence (triangular, so it visits every group)
//! and stops at the first group holding an empty bucket. The shard holds the index as one
//! pointer whose low bits carry the group count's logarithm (see [`Index::into_raw`]), so a
//! hit reaches a key in three dependent loads: the shard, the control word, the bucket.
//!
//! A bucket is the key's two words and its value: 32 bytes for one slot, so that two buckets
//! share a cache line and none straddles two. The key's second word has 8 bits every key
//! leaves zero ([`SPARE_BITS`]); they hold the bucket's state:
//!
//! * [`VACANT`] until filled, then [`LIVE`], then [`GONE`] once removed or [`MOVED`] once
//!   copied into a newer index, plus the [`LOCKED`] bit;
//! * the key's words are written once before its control byte is published, and never
//!   change but for those state bits;
//! * the value is read and written only by whoever holds the bucket's lock.
//!
//! A bucket is never emptied nor reused: a removed key leaves a tombstone (its control byte
//! and a `GONE` state) until the writer rebuilds the index into a new one, which it does when
//! the filled buckets reach 7/8. That is what makes a lock-free probe sound: a published
//! control byte stays published and its key stays in place for the index's whole life, and
//! a probe that saw an empty bucket before an insert's publication simply misses a key that
//! was not there yet (the caller then takes the writer's path).
//!
//! # Lifetime
//!
//! A replaced index is retired, not freed (see [`super::epoch`]): a lookup that loaded it
//! may still be probing it. Its keys and values are dropped with it: the `LIVE` and `GONE`
//! ones; a `MOVED` bucket's key and value were moved (bitwise) to the newer index, which owns
//! them from then on and, being retired later, is freed later too.

use super::key::{Key, Probe, SPARE_BITS};
use std::alloc::{self, Layout};
use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ops::DerefMut;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

const GROUP: usize = 8;
/// The control byte of a bucket never filled (zeroed memory is an empty index). Tags have
/// the high bit set.
const EMPTY: u8 = 0;
const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Bucket states, in the key's spare bits (shifted by [`STATE_SHIFT`]), and the lock bit.
const VACANT: u64 = 0;
const LIVE: u64 = 1;
const GONE: u64 = 2;
const MOVED: u64 = 3;
const STATE: u64 = 3;
const LOCKED: u64 = 4;
const STATE_SHIFT: u32 = SPARE_BITS.trailing_zeros();
// `with_buckets` relies on zeroed memory being an empty index of vacant buckets.
const _: () = assert!(EMPTY == 0 && VACANT == 0 && (STATE | LOCKED) << STATE_SHIFT <= SPARE_BITS);

/// Spins on a held bucket lock before yielding the thread (a holder runs a few arithmetic
/// operations, unless the OS descheduled it).
const SPINS: u32 = 64;

/// The allocation's alignment: buckets start on a cache line, and a pointer to the index has
/// [`TAG_BITS`] low bits free.
const ALIGN: usize = 64;
const TAG_BITS: usize = 6;
const TAG_MASK: usize = (1 << TAG_BITS) - 1;

/// The control byte of `hash`: its top 7 bits, with the high bit set.
#[inline(always)]
fn tag(hash: u64) -> u8 {
    (hash >> 57) as u8 | 0x80
}

/// One high bit per byte of `group` equal to `tag` (may also flag a byte just above a true
/// match; never flags [`EMPTY`], which has no high bit).
#[inline(always)]
fn match_tag(group: u64, tag: u8) -> u64 {
    let x = group ^ (LO * tag as u64);
    x.wrapping_sub(LO) & !x & HI & group
}

/// One high bit per empty byte of `group`.
#[inline(always)]
fn match_empty(group: u64) -> u64 {
    !group & HI
}

/// Filled buckets an index of `buckets` takes before it must be rebuilt.
pub fn capacity(buckets: usize) -> usize {
    buckets / 8 * 7
}

/// The fewest buckets (a power of two, at least one group) that hold `keys` keys.
pub fn buckets_for(keys: usize) -> usize {
    let mut buckets = GROUP;
    while capacity(buckets) < keys {
        buckets *= 2;
    }
    buckets
}

/// How many of an index's buckets are filled, and how many of those hold a live key: the
/// writer's bookkeeping, kept beside the shard's writer lock.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    filled: usize,
    live: usize,
}

/// One key's place in an index (see the module docs). All zeroes is a vacant bucket.
pub struct Bucket<V> {
    /// The key's first word.
    a: AtomicU64,
    /// The key's second word, with the state in its spare bits.
    b: AtomicU64,
    value: UnsafeCell<MaybeUninit<V>>,
}

/// An index, owned (see the module docs).
pub struct Index<V> {
    base: NonNull<u8>,
    groups: usize,
    _values: PhantomData<V>,
}

/// A borrowed index: what readers probe and writers change.
pub struct View<'a, V> {
    base: NonNull<u8>,
    groups: usize,
    _index: PhantomData<&'a Index<V>>,
}

impl<V> Clone for View<'_, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for View<'_, V> {}

// SAFETY: the value cells are accessed by several threads only as the module docs say: read
// or written only under their bucket's lock (taken with `Acquire`, released with `Release`),
// or by the index's single writer before publication; everything else is atomic. So the
// index may be shared when values may move between threads (`V: Send`), exactly as a
// `Mutex<V>` may; a key owns plain bytes.
unsafe impl<V: Send> Sync for Index<V> {}
// SAFETY: the index owns its keys and values; sending it sends them.
unsafe impl<V: Send> Send for Index<V> {}
// SAFETY: a view is a shared borrow of an index (see above).
unsafe impl<V: Send> Sync for View<'_, V> {}
// SAFETY: as for `&Index<V>`, which is `Send` when `Index<V>` is `Sync`.
unsafe impl<V: Send> Send for View<'_, V> {}

/// Bytes of control words before the buckets: one `u64` per group, rounded up to a line.
fn ctrl_bytes(groups: usize) -> usize {
    (groups * 8).next_multiple_of(ALIGN)
}

fn layout<V>(groups: usize) -> Layout {
    let size = ctrl_bytes(groups) + groups * GROUP * std::mem::size_of::<Bucket<V>>();
    Layout::from_size_align(size, ALIGN.max(std::mem::align_of::<Bucket<V>>()))
        .expect("an index of at most 2^31 groups")
}

impl<V> Bucket<V> {
    /// The key's words (state bits cleared) and the state.
    #[inline(always)]
    fn load(&self, order: Ordering) -> (u64, u64, u64) {
        let b = self.b.load(order);
        (
            self.a.load(Ordering::Relaxed),
            b & !SPARE_BITS,
            b >> STATE_SHIFT,
        )
    }

    /// Locks a live bucket; `None` if its key was removed or moved to a newer index.
    #[inline(always)]
    pub fn lock(&self) -> Option<Locked<'_, V>> {
        let mut spins = 0;
        loop {
            let (a, b, state) = self.load(Ordering::Relaxed);
            if state & STATE != LIVE {
                return None;
            }
            if state & LOCKED == 0 {
                let unlocked = b | LIVE << STATE_SHIFT;
                let locked = b | (LIVE | LOCKED) << STATE_SHIFT;
                if self
                    .b
                    .compare_exchange_weak(unlocked, locked, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Some(Locked {
                        bucket: self,
                        key: (a, b),
                        next: LIVE,
                    });
                }
            } else {
                backoff(&mut spins);
            }
        }
    }

    /// Locks this bucket if it holds `probe`'s key, live. The lock's swap is the first access
    /// (it expects the probe's second word), and the rest of the key is compared under the
    /// lock: a bucket holding another key is unlocked untouched. A moved bucket with the
    /// probe's second word is reported moved without comparing the rest: only a rebuild
    /// moves buckets, and the writer's path, which the caller takes then, tells.
    #[inline(always)]
    fn lock_if(&self, probe: &Probe<'_>) -> Held<'_, V> {
        let b = probe.second_word();
        let unlocked = b | LIVE << STATE_SHIFT;
        let locked = b | (LIVE | LOCKED) << STATE_SHIFT;
        let mut spins = 0;
        loop {
            match self.b.compare_exchange_weak(
                unlocked,
                locked,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    let guard = Locked {
                        bucket: self,
                        key: (self.a.load(Ordering::Relaxed), b),
                        next: LIVE,
                    };
                    if guard.with_key(|key| probe.matches(key)) {
                        return Held::Locked(guard);
                    }
                    // Another key: the guard's drop restores it, live and unlocked.
                    return Held::Other;
                }
                Err(now) if now & !SPARE_BITS != b => return Held::Other,
                Err(now) => match (now >> STATE_SHIFT) & STATE {
                    // Held by another (or a spurious failure): wait with loads, not swaps,
                    // which would take the line from the holder, then try again.
                    LIVE => {
                        while self.b.load(Ordering::Relaxed) == locked {
                            backoff(&mut spins);
                        }
                    }
                    MOVED => return Held::Moved,
                    // Removed (GONE): the key may be stored again further on.
                    _ => return Held::Other,
                },
            }
        }
    }
}

/// One wait for a held bucket lock: a spin, or after [`SPINS`] of them a yield.
#[inline(always)]
fn backoff(spins: &mut u32) {
    if *spins < SPINS {
        *spins += 1;
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// What [`Bucket::lock_if`] found.
enum Held<'a, V> {
    Locked(Locked<'a, V>),
    Moved,
    Other,
}

/// What [`View::lock`] found.
pub enum Lookup<'a, V> {
    /// The key's live bucket, locked.
    Locked(Locked<'a, V>),
    /// The key was copied into a newer index: a rebuild raced the lookup.
    Moved,
    /// The key is not in the index.
    Absent,
}

impl<'a, V> Lookup<'a, V> {
    /// The locked bucket, if the key was found live.
    #[inline(always)]
    pub fn locked(self) -> Option<Locked<'a, V>> {
        match self {
            Lookup::Locked(locked) => Some(locked),
            Lookup::Moved | Lookup::Absent => None,
        }
    }
}

/// A bucket held under its lock: its value may be read and changed. Released on drop, into
/// the state the holder chose ([`LIVE`] unless it removed or moved the key).
pub struct Locked<'a, V> {
    bucket: &'a Bucket<V>,
    /// The key's words, state bits cleared.
    key: (u64, u64),
    next: u64,
}

impl<V> Locked<'_, V> {
    /// Calls `f` with the key.
    pub fn with_key<R>(&self, f: impl FnOnce(&Key) -> R) -> R {
        // SAFETY: a locked bucket is LIVE, so its words are a key the index owns (from
        // `Key::into_words`), which nothing takes back while it is locked.
        unsafe { Key::with_words(self.key.0, self.key.1, f) }
    }

    /// The value.
    #[inline(always)]
    pub fn value(&mut self) -> &mut V {
        // SAFETY: a LIVE bucket's value is initialised (written before the bucket was
        // published), and this guard holds the bucket's lock, the only right to its value:
        // no other reference to it exists until the guard drops (`&mut self`).
        unsafe { (*self.bucket.value.get()).assume_init_mut() }
    }
}

impl<V> Drop for Locked<'_, V> {
    #[inline(always)]
    fn drop(&mut self) {
        self.bucket
            .b
            .store(self.key.1 | self.next << STATE_SHIFT, Ordering::Release);
    }
}

impl<V> Index<V> {
    /// An empty index of `buckets` buckets (a power of two, at least 8).
    pub fn with_buckets(buckets: usize) -> Index<V> {
        assert!(buckets.is_power_of_two() && buckets >= GROUP);
        let groups = buckets / GROUP;
        let layout = layout::<V>(groups);
        // SAFETY: the layout's size is not zero (at least one line of control bytes).
        let base = unsafe { alloc::alloc_zeroed(layout) };
        let Some(base) = NonNull::new(base) else {
            alloc::handle_alloc_error(layout)
        };
        // All zeroes: every control byte EMPTY, every bucket VACANT (atomics of 0, values
        // uninitialised).
        Index {
            base,
            groups,
            _values: PhantomData,
        }
    }

    /// The index, borrowed.
    pub fn view(&self) -> View<'_, V> {
        View {
            base: self.base,
            groups: self.groups,
            _index: PhantomData,
        }
    }

    /// Buckets allocated.
    pub fn buckets(&self) -> usize {
        self.groups * GROUP
    }

    /// Bytes `buckets` buckets take, with their control bytes.
    pub fn bytes_for(buckets: usize) -> usize {
        buckets * (std::mem::size_of::<Bucket<V>>() + 1)
    }

    /// The index as one pointer: its address, with the base-2 logarithm of the group count
    /// in the low [`TAG_BITS`] bits (the allocation is aligned to `1 << TAG_BITS`). Owned by
    /// the pointer until [`Index::from_raw`].
    pub fn into_raw(self) -> *mut () {
        let this = std::mem::ManuallyDrop::new(self);
        let log = this.groups.trailing_zeros() as usize;
        debug_assert!(log <= TAG_MASK);
        this.base.as_ptr().map_addr(|a| a | log).cast()
    }

    /// The index of a pointer from [`Index::into_raw`], owned again.
    ///
    /// # Safety
    /// `raw` came from `into_raw`, is taken back once, and no [`View`] of it is used after.
    pub unsafe fn from_raw(raw: *mut ()) -> Index<V> {
        let (base, groups) = untag(raw);
        Index {
            base,
            groups,
            _values: PhantomData,
        }
    }

    /// A view of the index behind a pointer from [`Index::into_raw`].
    ///
    /// # Safety
    /// `raw` came from `into_raw`, and the index stays allocated for `'a`.
    #[inline(always)]
    pub unsafe fn view_raw<'a>(raw: *mut ()) -> View<'a, V> {
        let (base, groups) = untag(raw);
        View {
            base,
            groups,
            _index: PhantomData,
        }
    }
}

#[inline(always)]
fn untag(raw: *mut ()) -> (NonNull<u8>, usize) {
    let log = raw.addr() & TAG_MASK;
    let base = raw.map_addr(|a| a & !TAG_MASK).cast::<u8>();
    (
        NonNull::new(base).expect("an index pointer is not null"),
        1 << log,
    )
}

impl<'a, V> View<'a, V> {
    /// Buckets allocated.
    pub fn buckets(self) -> usize {
        self.groups * GROUP
    }

    /// Group `g`'s control word.
    #[inline(always)]
    fn ctrl(self, g: usize) -> &'a AtomicU64 {
        debug_assert!(g < self.groups);
        // SAFETY: every caller passes `g < groups` (a hash masked by `groups - 1`, a power of
        // two, or a loop over `0..groups`). The allocation starts with `groups` control words
        // (`u64`-aligned: the base is 64-aligned), zero-initialised and only ever accessed
        // atomically; it lives for `'a`.
        unsafe { &*self.base.as_ptr().cast::<AtomicU64>().add(g) }
    }

    /// Bucket `i` (group `i / 8`).
    #[inline(always)]
    fn bucket(self, i: usize) -> &'a Bucket<V> {
        debug_assert!(i < self.groups * GROUP);
        // SAFETY: every caller passes `i = g * 8 + j` with `g < groups` (as for `ctrl`) and
        // `j < 8`. After `ctrl_bytes` (a multiple of the buckets' alignment) come
        // `groups * 8` buckets, each valid from the start (atomics of 0, a value cell that
        // is only read through `Locked` or by the writer once initialised); the allocation
        // lives for `'a`. Buckets are only ever shared (`&`), their cells mediating writes.
        unsafe {
            &*self
                .base
                .as_ptr()
                .add(ctrl_bytes(self.groups))
                .cast::<Bucket<V>>()
                .add(i)
        }
    }

    /// Finds `probe`'s key and locks its bucket. The lock is the first thing a probe does to
    /// a bucket whose control byte matches: a compare-and-swap expecting the key's second
    /// word, unlocked and live, and the rest of the key is compared once it holds. So a hit
    /// on a key another scheduler wrote last takes the key's line once, for writing, where a
    /// read before the swap took it twice (shared, then exclusive). A locked bucket that
    /// turns out to hold another key (a tag and second word alike, rare) is unlocked again
    /// untouched. A removed key's tombstone is passed over: the key may be stored again
    /// further on.
    #[inline(always)]
    pub fn lock(self, hash: u64, probe: &Probe<'_>) -> Lookup<'a, V> {
        let tag = tag(hash);
        let group_mask = self.groups - 1;
        let mut g = hash as usize & group_mask;
        // Triangular probing visits every group once in `groups` steps.
        let mut stride = 0;
        loop {
            let ctrl = self.ctrl(g).load(Ordering::Acquire);
            let mut matches = match_tag(ctrl, tag);
            while matches != 0 {
                let bucket = self.bucket(g * GROUP + matches.trailing_zeros() as usize / 8);
                matches &= matches - 1;
                match bucket.lock_if(probe) {
                    Held::Other => {}
                    Held::Locked(locked) => return Lookup::Locked(locked),
                    Held::Moved => return Lookup::Moved,
                }
            }
            if match_empty(ctrl) != 0 || stride == group_mask {
                return Lookup::Absent;
            }
            stride += 1;
            g = (g + stride) & group_mask;
        }
    }

    /// The published buckets.
    fn published(self) -> impl Iterator<Item = &'a Bucket<V>> {
        (0..self.groups).flat_map(move |g| {
            let full = self.ctrl(g).load(Ordering::Acquire) & HI;
            (0..GROUP)
                .filter(move |i| full >> (i * 8 + 7) & 1 == 1)
                .map(move |i| self.bucket(g * GROUP + i))
        })
    }
}

/// The right to change an index's set of keys: a view of it with its bookkeeping `C` (the
/// shard's writer lock guard, or the counts of an index not yet published).
pub struct Writer<'a, V, C> {
    view: View<'a, V>,
    counts: C,
}

impl<'a, V, C: DerefMut<Target = Counts>> Writer<'a, V, C> {
    /// The writer of `view`, whose bookkeeping is `counts`. The caller holds the lock that
    /// makes it the index's only writer.
    pub fn new(view: View<'a, V>, counts: C) -> Writer<'a, V, C> {
        Writer { view, counts }
    }

    /// Replaces the bookkeeping (with a new index's, when it replaces this one).
    pub fn set_counts(&mut self, counts: Counts) {
        *self.counts = counts;
    }

    /// The index written.
    pub fn view(&self) -> View<'a, V> {
        self.view
    }

    /// Live keys.
    pub fn len(&self) -> usize {
        self.counts.live
    }

    /// Whether another key fits without a rebuild.
    pub fn has_room(&self) -> bool {
        self.counts.filled < capacity(self.view.buckets())
    }

    /// Stores a key that is not in the index. The caller checked [`Writer::has_room`].
    pub fn insert(&mut self, hash: u64, key: Key, value: V) {
        assert!(self.has_room(), "the caller checks for room first");
        let view = self.view;
        let group_mask = view.groups - 1;
        let mut g = hash as usize & group_mask;
        let mut stride = 1;
        let (ctrl, empties) = loop {
            let ctrl = view.ctrl(g).load(Ordering::Relaxed);
            let empties = match_empty(ctrl);
            if empties != 0 {
                break (ctrl, empties);
            }
            // Room is left, so some group of the (complete) probe sequence has an empty
            // bucket before the stride wraps.
            g = (g + stride) & group_mask;
            stride += 1;
        };
        let byte = empties.trailing_zeros() as usize / 8;
        let bucket = view.bucket(g * GROUP + byte);
        let (a, b) = key.into_words();
        // SAFETY: the bucket's control byte is EMPTY, so no reader dereferences its value
        // and no lock can be taken on it (its state is VACANT); this writer holds the
        // shard's writer lock, so no one else writes it. The value was uninitialised.
        unsafe { (*bucket.value.get()).write(value) };
        bucket.a.store(a, Ordering::Relaxed);
        bucket.b.store(b | LIVE << STATE_SHIFT, Ordering::Relaxed);
        let shift = byte * 8;
        let published = ctrl & !(0xFF << shift) | (tag(hash) as u64) << shift;
        view.ctrl(g).store(published, Ordering::Release);
        self.counts.filled += 1;
        self.counts.live += 1;
    }

    /// Removes the locked bucket's key (it leaves a tombstone). `locked` is a bucket of this
    /// index.
    pub fn remove(&mut self, mut locked: Locked<'_, V>) {
        locked.next = GONE;
        self.counts.live -= 1;
    }

    /// Calls `f` on every live bucket, each under its lock; `f` returns whether to keep it.
    pub fn retain(&mut self, mut f: impl FnMut(&Key, &mut V) -> bool) {
        for bucket in self.view.published() {
            let Some(mut locked) = bucket.lock() else {
                continue;
            };
            let (a, b) = locked.key;
            // SAFETY: the bucket is locked and LIVE: its words are a key this index owns.
            let keep = unsafe { Key::with_words(a, b, |key| f(key, locked.value())) };
            if !keep {
                self.remove(locked);
            }
        }
    }

    /// Calls `f` on every live key and value, each under its lock.
    pub fn for_each(&mut self, mut f: impl FnMut(&Key, &V)) {
        self.retain(|k, v| {
            f(k, v);
            true
        });
    }

    /// Moves every live key into a new index of `buckets` buckets and returns it with its
    /// bookkeeping: each old bucket is left [`MOVED`], so hits still probing this index take
    /// the writer's path (and wait for the writer lock) instead of changing a value that was
    /// copied. `hash` gives a key's hash (the index keeps only 7 of its bits).
    pub fn rebuild(&mut self, buckets: usize, hash: impl Fn(&Key) -> u64) -> (Index<V>, Counts) {
        assert!(
            capacity(buckets) >= self.counts.live,
            "a rebuild keeps every key"
        );
        let new = Index::with_buckets(buckets);
        let mut counts = Counts::default();
        let mut into = Writer::new(new.view(), &mut counts);
        for bucket in self.view.published() {
            let Some(mut locked) = bucket.lock() else {
                continue;
            };
            let (a, b) = locked.key;
            // SAFETY: the bucket is LIVE and locked by this writer: its words are a key this
            // index owns and its value is initialised, read by no one else. Both move to the
            // new index, and the bucket is marked MOVED on unlock, after which nothing here
            // drops or changes them (`Index`'s drop skips MOVED buckets, and no lock is
            // taken on them). Readers may still compare the old copy of the key: its bytes
            // (inline, or on the heap the new index now owns) stay valid as long as this
            // index, as the module docs explain.
            let (key, value) = unsafe {
                (
                    Key::from_words(a, b),
                    (*bucket.value.get()).assume_init_read(),
                )
            };
            into.insert(hash(&key), key, value);
            locked.next = MOVED;
        }
        self.counts.live = 0;
        (new, counts)
    }
}

impl<V> Drop for Index<V> {
    fn drop(&mut self) {
        let view = self.view();
        for bucket in view.published() {
            let (a, b, state) = bucket.load(Ordering::Relaxed);
            if state & STATE == LIVE || state & STATE == GONE {
                // SAFETY: a published LIVE or GONE bucket owns its key and initialised value
                // (MOVED ones were moved out, VACANT ones are never published), and `&mut
                // self` means no reader or lock holder is left; each is dropped once.
                unsafe {
                    drop(Key::from_words(a, b));
                    (*bucket.value.get()).assume_init_drop();
                }
            }
        }
        // SAFETY: allocated in `with_buckets` with this layout, freed once.
        unsafe { alloc::dealloc(self.base.as_ptr(), layout::<V>(self.groups)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::key::{ByteKind, KeyRef};

    #[test]
    fn tags_match_exactly_their_bytes() {
        let ctrl = u64::from_le_bytes([0x80, 0x81, 0, 0xff, 0x81, 0, 0, 0x80]);
        assert_eq!(match_tag(ctrl, 0x81), 0x80 << 8 | 0x80 << 32);
        // A byte just above a true match may be flagged too (then the key compare decides),
        // but only a full one.
        let m = match_tag(ctrl, 0x80);
        assert_eq!(m & (0x80 | 0x80 << 56), 0x80 | 0x80 << 56);
        assert_eq!(m & match_empty(ctrl), 0);
        assert_eq!(match_empty(ctrl), 0x80 << 16 | 0x80 << 40 | 0x80 << 48);
        assert_eq!(match_tag(0, 0x80), 0, "empty bytes never match");
    }

    #[test]
    fn a_full_probe_sequence_visits_every_group_and_finds_every_key() {
        let hasher = ahash::RandomState::new();
        let hash = |k: &Key| k.hash_with(&hasher);
        let index = Index::<u64>::with_buckets(64);
        let mut counts = Counts::default();
        let mut writer = Writer::new(index.view(), &mut counts);
        let long = |i: i64| format!("{i:040}");
        let keys: Vec<Key> = (0..56)
            .map(|i| match i % 2 {
                0 => Key::from_ref(KeyRef::Int(i)),
                _ => Key::from_ref(KeyRef::Bytes(ByteKind::Binary, long(i).as_bytes())),
            })
            .collect();
        for (i, key) in keys.into_iter().enumerate() {
            assert!(writer.has_room());
            writer.insert(hash(&key), key, i as u64);
        }
        assert!(!writer.has_room());
        for i in 0..56 {
            let long = long(i);
            let key = match i % 2 {
                0 => KeyRef::Int(i),
                _ => KeyRef::Bytes(ByteKind::Binary, long.as_bytes()),
            };
            let probe = Probe::new(key);
            let found = index.view().lock(probe.hash_with(&hasher), &probe);
            assert_eq!(*found.locked().unwrap().value(), i as u64);
        }
        // Rebuilt: the old buckets are moved, the new index has every key.
        let (new, counts) = writer.rebuild(128, hash);
        assert_eq!((counts.live, counts.filled), (56, 56));
        let probe = Probe::new(KeyRef::Int(10));
        let old = index.view().lock(probe.hash_with(&hasher), &probe);
        assert!(
            matches!(old, Lookup::Moved),
            "a moved bucket cannot be locked"
        );
        let found = new.view().lock(probe.hash_with(&hasher), &probe);
        assert_eq!(*found.locked().unwrap().value(), 10);
    }

    #[test]
    fn a_removed_key_is_passed_over_and_dropped_once() {
        let hasher = ahash::RandomState::new();
        let index = Index::<Box<u64>>::with_buckets(8);
        let mut counts = Counts::default();
        let mut writer = Writer::new(index.view(), &mut counts);
        let key = || Key::from_ref(KeyRef::Bytes(ByteKind::Binary, &[7; 100]));
        let probe_key = [7u8; 100];
        let probe = Probe::new(KeyRef::Bytes(ByteKind::Binary, &probe_key));
        let hash = probe.hash_with(&hasher);
        writer.insert(hash, key(), Box::new(1));
        let locked = index.view().lock(hash, &probe).locked().unwrap();
        writer.remove(locked);
        assert!(matches!(index.view().lock(hash, &probe), Lookup::Absent));
        writer.insert(hash, key(), Box::new(2));
        let mut found = index.view().lock(hash, &probe).locked().unwrap();
        assert_eq!(**found.value(), 2);
        assert_eq!(writer.len(), 1);
        // Dropping the index frees both keys' bytes and both boxes (Miri or a leak checker
        // would tell otherwise).
    }

    #[test]
    fn a_key_whose_tag_and_second_word_match_another_is_told_apart_and_left_as_it_was() {
        // Every key's hash is the same, so every control byte matches every probe: the
        // lookup locks each bucket in turn (their second words are alike too) and must
        // unlock the ones holding another key, live and unchanged.
        let hash = 0x5a5a_5a5a_5a5a_5a5a;
        let index = Index::<u64>::with_buckets(16);
        let mut counts = Counts::default();
        let mut writer = Writer::new(index.view(), &mut counts);
        // Inline: the same last 6 bytes and length, so the same second word.
        let inline = |i: u8| {
            let mut k = *b"abcdefgh-tail-";
            k[0] = b'0' + i;
            k
        };
        // Heap: one length, so one tag-and-length word.
        let heap = |i: u8| [i; 40];
        for i in 0..4u8 {
            writer.insert(
                hash,
                Key::from_ref(KeyRef::Bytes(ByteKind::Binary, &inline(i))),
                u64::from(i),
            );
            writer.insert(
                hash,
                Key::from_ref(KeyRef::Bytes(ByteKind::Binary, &heap(i))),
                100 + u64::from(i),
            );
        }
        for round in 0..2 {
            for i in (0..4u8).rev() {
                let (a, b) = (inline(i), heap(i));
                let probe = Probe::new(KeyRef::Bytes(ByteKind::Binary, &a));
                let mut locked = index.view().lock(hash, &probe).locked().unwrap();
                assert_eq!(*locked.value(), u64::from(i) + round);
                *locked.value() += 1;
                drop(locked);
                let probe = Probe::new(KeyRef::Bytes(ByteKind::Binary, &b));
                let mut found = index.view().lock(hash, &probe).locked().unwrap();
                assert_eq!(*found.value(), 100 + u64::from(i));
            }
        }
        let absent = inline(9);
        let probe = Probe::new(KeyRef::Bytes(ByteKind::Binary, &absent));
        assert!(matches!(index.view().lock(hash, &probe), Lookup::Absent));
        // Every bucket was left live and unlocked: a writer locks each of them.
        let mut seen = 0;
        writer.for_each(|_, _| seen += 1);
        assert_eq!(seen, 8);
    }
}

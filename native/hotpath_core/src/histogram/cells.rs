//! Concurrent storage: shards of atomics, each touched mostly by one thread.
//!
//! Every thread gets a number on first use (round-robin) and maps to shard `number % shards`.
//! The first thread to write a shard claims it: from then on it is that shard's **only
//! writer** and updates it with plain relaxed loads and stores (no locked instruction, no
//! cache-line transfer). A thread whose shard is owned by another thread, and every merge,
//! writes the extra **shared** shard with atomic read-modify-write operations instead. Either
//! way every update is exact; readers use relaxed loads and may see an observation half-applied.
//! Shards are allocated when first written, so a histogram's memory follows the threads that
//! actually wrote it, at most `shards + 1` shards (a metric series uses one owned shard, see
//! [`crate::metrics::SERIES_SHARDS`]).
//!
//! A shard keeps its log-bucket counts in two tiers:
//!
//! * **sparse slots**: a slot holds a bucket key and its count, claimed by the first update of
//!   that bucket (a plain store for the owner, a compare-and-swap on the shared shard) and never
//!   given to another bucket, so a bucket has at most one slot per shard. 8 slots live in the
//!   shard itself; 64 more are allocated when a bucket finds those taken. A bucket probes at
//!   most [`PROBES`] slots of each (linear probing from its hash). A histogram that sees a few
//!   distinct buckets (the common case for one metric series) costs 16 bytes per bucket.
//! * **dense blocks** of 64 counters under a per-sign table, allocated for buckets whose probes
//!   found every slot taken. Once a bucket's block exists the bucket counts there; what it
//!   counted in a slot before stays there, and readers add the two.
//!
//! Memory is bounded by the layout (every level, table and block allocated).
//!
//! Clearing is bounded work, whatever the layout: [`Cells::clear`] zeroes each shard's few
//! scalars, classic buckets and in-shard slots and starts a new **generation**; the 64-slot
//! level and each block hold counts of the generation they are tagged with, and one of an
//! older generation reads as zero and has its counts zeroed by the next update that reaches it
//! (slots keep their keys). So a record that rotates a window slot (which clears the slot)
//! does not walk the slot's counters.

use super::layout::{Layout, Place};
use super::snapshot::{saturate, saturating_add, two_sum, Snapshot, Sum};
use std::sync::atomic::{
    AtomicU32, AtomicU64, AtomicUsize, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed,
    Ordering::Release,
};
use std::sync::OnceLock;

/// Counters per lazily allocated dense block.
pub const BLOCK: usize = 64;
/// Slots of the two sparse levels of a shard, smallest first (powers of two).
pub const LEVEL_SLOTS: [usize; 2] = [8, 64];
/// Slots a bucket probes in a sparse level before trying the next one.
pub const PROBES: usize = 8;

/// The generation that a block's or a level's counts belong to; [`ZEROING`] while an updater
/// of the shared shard zeroes them for a newer one.
struct Tag(AtomicU64);

/// A tag's value while its counts are being zeroed (generations count up from 0).
const ZEROING: u64 = u64::MAX;

impl Tag {
    /// Whether the counts belong to `generation`, for a reader (Acquire: a reader that sees
    /// the tag sees the zeroed counts).
    #[inline]
    fn is(&self, generation: u64) -> bool {
        self.0.load(Acquire) == generation
    }

    /// Makes the counts belong to `generation`, zeroing them with `zero` first if they
    /// belong to an older one, for an updater. `OWNED`: the caller is the shard's single
    /// writer.
    #[inline]
    fn enter<const OWNED: bool>(&self, generation: u64, zero: impl Fn()) {
        let mut seen = self.0.load(Acquire);
        if seen == generation {
            return;
        }
        if OWNED {
            // No one else writes these counts: zero them, then tag them.
            if seen < generation {
                zero();
                self.0.store(generation, Release);
            }
            return;
        }
        // Updaters of the shared shard race: the one that moves the tag to ZEROING zeroes the
        // counts and publishes the generation; the others wait for it. A tag newer than
        // `generation` (the cells were cleared again meanwhile) is used as it is: the update
        // lands in the newer generation, as one racing with a clear may.
        let mut spins = 0u32;
        loop {
            if seen != ZEROING && seen >= generation {
                return;
            }
            if seen != ZEROING
                && self
                    .0
                    .compare_exchange(seen, ZEROING, Acquire, Relaxed)
                    .is_ok()
            {
                zero();
                self.0.store(generation, Release);
                return;
            }
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
            seen = self.0.load(Acquire);
        }
    }
}

fn zero_all(counts: &[AtomicU64]) {
    for c in counts {
        c.store(0, Relaxed);
    }
}

struct Block {
    tag: Tag,
    counts: [AtomicU64; BLOCK],
}

impl Block {
    fn new(generation: u64) -> Box<Self> {
        Box::new(Block {
            tag: Tag(AtomicU64::new(generation)),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        })
    }

    /// The block's counts if they belong to `generation`, for a reader.
    #[inline]
    fn counts_of(&self, generation: u64) -> Option<&[AtomicU64; BLOCK]> {
        self.tag.is(generation).then_some(&self.counts)
    }

    /// The block's counts, made to belong to `generation` first, for an updater.
    #[inline]
    fn counts_for<const OWNED: bool>(&self, generation: u64) -> &[AtomicU64; BLOCK] {
        self.tag
            .enter::<OWNED>(generation, || zero_all(&self.counts));
        &self.counts
    }
}

/// A free sparse slot's key.
const FREE: u32 = 0;

/// The sparse key of a log bucket: never [`FREE`] (`idx` is below 2^20, `MAX_BUCKETS`).
#[inline]
fn sparse_key(neg: bool, idx: usize) -> u32 {
    (idx as u32 + 1) | ((neg as u32) << 31)
}

/// The bucket of a sparse key: `(neg, idx)`.
#[inline]
fn sparse_bucket(key: u32) -> (bool, u32) {
    (key >> 31 == 1, (key & !(1 << 31)) - 1)
}

/// `N` sparse slots: a slot's key ([`FREE`] until claimed, then fixed) and count.
struct Slots<const N: usize> {
    keys: [AtomicU32; N],
    counts: [AtomicU64; N],
}

impl<const N: usize> Slots<N> {
    fn new() -> Self {
        debug_assert!(N.is_power_of_two());
        Slots {
            keys: std::array::from_fn(|_| AtomicU32::new(FREE)),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// The counter of `key`, claiming a free slot for it; `None` when the slots it probes
    /// all hold other keys. `OWNED`: the caller is the shard's single writer.
    #[inline]
    fn counter<const OWNED: bool>(&self, key: u32) -> Option<&AtomicU64> {
        // Fibonacci hashing: neighbouring buckets land apart.
        let start = (key.wrapping_mul(0x9E37_79B9) >> (32 - N.trailing_zeros())) as usize;
        for i in 0..PROBES.min(N) {
            let at = (start + i) & (N - 1);
            let seen = self.keys[at].load(Acquire);
            if seen == key {
                return Some(&self.counts[at]);
            }
            if seen != FREE {
                continue;
            }
            if OWNED {
                self.keys[at].store(key, Release);
                return Some(&self.counts[at]);
            }
            // A slot, once claimed, keeps its key: whoever loses the race for this slot finds
            // either its own key here or goes on probing, so every updater of a bucket agrees
            // on its slot.
            match self.keys[at].compare_exchange(FREE, key, AcqRel, Acquire) {
                Ok(_) => return Some(&self.counts[at]),
                Err(actual) if actual == key => return Some(&self.counts[at]),
                Err(_) => {}
            }
        }
        None
    }

    /// Appends the non-zero counts to `out`, by sign.
    fn read_into(&self, out: &mut [Vec<(u32, u64)>; 2]) {
        for (key, count) in self.keys.iter().zip(self.counts.iter()) {
            let key = key.load(Acquire);
            let c = count.load(Relaxed);
            if key != FREE && c > 0 {
                let (neg, idx) = sparse_bucket(key);
                out[neg as usize].push((idx, c));
            }
        }
    }
}

/// What a shard allocates once its small level is full: the large level (tagged with its
/// generation) and the dense tables.
struct Spill {
    tag: Tag,
    large: Slots<{ LEVEL_SLOTS[1] }>,
    sides: [OnceLock<Table>; 2],
    /// Dense counter blocks allocated (a read walks each of them).
    blocks: AtomicUsize,
}

impl Spill {
    fn new(generation: u64) -> Box<Self> {
        Box::new(Spill {
            tag: Tag(AtomicU64::new(generation)),
            large: Slots::new(),
            sides: [OnceLock::new(), OnceLock::new()],
            blocks: AtomicUsize::new(0),
        })
    }

    /// The large level's counter of `key` in `generation` (see [`Slots::counter`]).
    #[inline]
    fn large<const OWNED: bool>(&self, key: u32, generation: u64) -> Option<&AtomicU64> {
        self.tag
            .enter::<OWNED>(generation, || zero_all(&self.large.counts));
        self.large.counter::<OWNED>(key)
    }

    /// The dense block of bucket `idx`, if allocated.
    #[inline]
    fn block(&self, neg: bool, idx: usize) -> Option<&Block> {
        self.sides[neg as usize]
            .get()
            .and_then(|table| table[idx / BLOCK].get())
            .map(|b| &**b)
    }
}

type Table = Box<[OnceLock<Box<Block>>]>;

/// One shard: aligned to a cache line, whose first line holds the scalars every record
/// writes (owner, sum, min, max, zero and overflow counts).
#[repr(C, align(64))]
struct Shard {
    /// Thread number + 1 of the single writer; 0 = unclaimed; `usize::MAX` = shared shard.
    owner: AtomicUsize,
    sum_hi: AtomicU64,
    sum_lo: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
    zero: AtomicU64,
    overflow: [AtomicU64; 2],
    /// The small sparse level: zeroed by [`Shard::clear_scalars`] like the scalars (it is
    /// as small), so it needs no generation tag.
    small: Slots<{ LEVEL_SLOTS[0] }>,
    classic: Box<[AtomicU64]>,
    spill: OnceLock<Box<Spill>>,
}

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Const-initialized (no lazy-init state to check); `usize::MAX` = not assigned yet.
    static THREAD_SLOT: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

#[inline]
fn thread_slot() -> usize {
    THREAD_SLOT.with(|slot| {
        let n = slot.get();
        if n != usize::MAX {
            return n;
        }
        let n = NEXT_THREAD.fetch_add(1, Relaxed) % (usize::MAX - 1);
        slot.set(n);
        n
    })
}

/// Adds `x` to a float stored as bits in an atomic (saturating at `±f64::MAX`).
#[inline]
fn atomic_f64_add(cell: &AtomicU64, x: f64) {
    let mut cur = cell.load(Relaxed);
    loop {
        let new = saturating_add(f64::from_bits(cur), x).to_bits();
        match cell.compare_exchange_weak(cur, new, Relaxed, Relaxed) {
            Ok(_) => return,
            Err(actual) => cur = actual,
        }
    }
}

/// Adds `x` to the compensated sum `(hi, lo)`: the CAS on `hi` tells the exact value added to,
/// so TwoSum gives the exact rounding error, which goes to `lo` (Neumaier, made lock-free).
/// Saturating like [`Sum`]: both parts stay finite.
#[inline]
pub(crate) fn atomic_sum_add(hi: &AtomicU64, lo: &AtomicU64, x: f64) {
    let x = saturate(x);
    let mut cur = hi.load(Relaxed);
    loop {
        let (s, e) = two_sum(f64::from_bits(cur), x);
        match hi.compare_exchange_weak(cur, s.to_bits(), Relaxed, Relaxed) {
            Ok(_) => {
                if e != 0.0 {
                    atomic_f64_add(lo, e);
                }
                return;
            }
            Err(actual) => cur = actual,
        }
    }
}

#[inline]
fn atomic_min(cell: &AtomicU64, v: f64) {
    let mut cur = cell.load(Relaxed);
    while v < f64::from_bits(cur) {
        match cell.compare_exchange_weak(cur, v.to_bits(), Relaxed, Relaxed) {
            Ok(_) => return,
            Err(actual) => cur = actual,
        }
    }
}

#[inline]
fn atomic_max(cell: &AtomicU64, v: f64) {
    let mut cur = cell.load(Relaxed);
    while v > f64::from_bits(cur) {
        match cell.compare_exchange_weak(cur, v.to_bits(), Relaxed, Relaxed) {
            Ok(_) => return,
            Err(actual) => cur = actual,
        }
    }
}

/// A counter update: plain load + store for the single writer, an atomic add otherwise.
#[inline]
fn add<const OWNED: bool>(c: &AtomicU64, n: u64) {
    if OWNED {
        c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
    } else {
        c.fetch_add(n, Relaxed);
    }
}

#[inline]
fn sum_add<const OWNED: bool>(hi: &AtomicU64, lo: &AtomicU64, x: f64) {
    if OWNED {
        let (s, e) = two_sum(f64::from_bits(hi.load(Relaxed)), x);
        hi.store(s.to_bits(), Relaxed);
        // Unconditional: whether `e` is zero depends on the data, and a mispredicted branch
        // costs more than a plain load and store to a line already owned.
        lo.store(
            saturating_add(f64::from_bits(lo.load(Relaxed)), e).to_bits(),
            Relaxed,
        );
    } else {
        atomic_sum_add(hi, lo, x);
    }
}

#[inline]
fn float_add<const OWNED: bool>(cell: &AtomicU64, x: f64) {
    if OWNED {
        cell.store(
            saturating_add(f64::from_bits(cell.load(Relaxed)), x).to_bits(),
            Relaxed,
        );
    } else {
        atomic_f64_add(cell, x);
    }
}

#[inline]
fn set_min<const OWNED: bool>(cell: &AtomicU64, v: f64) {
    if OWNED {
        if v < f64::from_bits(cell.load(Relaxed)) {
            cell.store(v.to_bits(), Relaxed);
        }
    } else {
        atomic_min(cell, v);
    }
}

#[inline]
fn set_max<const OWNED: bool>(cell: &AtomicU64, v: f64) {
    if OWNED {
        if v > f64::from_bits(cell.load(Relaxed)) {
            cell.store(v.to_bits(), Relaxed);
        }
    } else {
        atomic_max(cell, v);
    }
}

const SHARED: usize = usize::MAX;

impl Shard {
    fn new(layout: &Layout, owner: usize) -> Box<Self> {
        let classic_len = if layout.bounds().is_empty() {
            0
        } else {
            layout.bounds().len() + 1
        };
        Box::new(Shard {
            owner: AtomicUsize::new(owner),
            sum_hi: AtomicU64::new(0f64.to_bits()),
            sum_lo: AtomicU64::new(0f64.to_bits()),
            min: AtomicU64::new(f64::INFINITY.to_bits()),
            max: AtomicU64::new(f64::NEG_INFINITY.to_bits()),
            zero: AtomicU64::new(0),
            overflow: [AtomicU64::new(0), AtomicU64::new(0)],
            small: Slots::new(),
            spill: OnceLock::new(),
            classic: (0..classic_len).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// The counter of bucket `idx`, in `generation`. `OWNED`: the caller is this shard's
    /// single writer.
    #[inline]
    fn counter<const OWNED: bool>(
        &self,
        layout: &Layout,
        neg: bool,
        idx: usize,
        generation: u64,
    ) -> &AtomicU64 {
        let spill = self.spill.get();
        // A bucket whose dense block exists counts there.
        if let Some(block) = spill.and_then(|s| s.block(neg, idx)) {
            return &block.counts_for::<OWNED>(generation)[idx % BLOCK];
        }
        let key = sparse_key(neg, idx);
        if let Some(c) = self.small.counter::<OWNED>(key) {
            return c;
        }
        let spill = spill.unwrap_or_else(|| self.spill.get_or_init(|| Spill::new(generation)));
        if let Some(c) = spill.large::<OWNED>(key, generation) {
            return c;
        }
        let table = spill.sides[neg as usize].get_or_init(|| {
            (0..blocks_per_side(layout))
                .map(|_| OnceLock::new())
                .collect()
        });
        let block = table[idx / BLOCK].get_or_init(|| {
            spill.blocks.fetch_add(1, Relaxed);
            Block::new(generation)
        });
        &block.counts_for::<OWNED>(generation)[idx % BLOCK]
    }

    /// Records `v` `n` times. `OWNED`: the caller is this shard's single writer.
    #[inline]
    fn record<const OWNED: bool>(&self, layout: &Layout, v: f64, n: u64, generation: u64) {
        match layout.place(v) {
            Place::Zero => add::<OWNED>(&self.zero, n),
            Place::Bucket { neg, idx } => {
                add::<OWNED>(self.counter::<OWNED>(layout, neg, idx, generation), n)
            }
            Place::Overflow { neg } => add::<OWNED>(&self.overflow[neg as usize], n),
        };
        if !self.classic.is_empty() {
            add::<OWNED>(&self.classic[layout.classic_index(v)], n);
        }
        if n == 1 {
            sum_add::<OWNED>(&self.sum_hi, &self.sum_lo, v);
        } else {
            let nf = n as f64;
            let p = v * nf;
            let pe = v.mul_add(nf, -p);
            sum_add::<OWNED>(&self.sum_hi, &self.sum_lo, saturate(p));
            if pe != 0.0 && p.is_finite() && pe.is_finite() {
                float_add::<OWNED>(&self.sum_lo, pe);
            }
        }
        set_min::<OWNED>(&self.min, v);
        set_max::<OWNED>(&self.max, v);
    }

    /// Zeroes the scalars, the classic buckets and the small level's counts (its keys stay;
    /// the large level and the blocks follow the cells' generation).
    fn clear_scalars(&self) {
        self.sum_hi.store(0f64.to_bits(), Relaxed);
        self.sum_lo.store(0f64.to_bits(), Relaxed);
        self.min.store(f64::INFINITY.to_bits(), Relaxed);
        self.max.store(f64::NEG_INFINITY.to_bits(), Relaxed);
        self.zero.store(0, Relaxed);
        for c in self.overflow.iter().chain(self.classic.iter()) {
            c.store(0, Relaxed);
        }
        zero_all(&self.small.counts);
    }

    fn memory(&self) -> usize {
        let mut bytes = std::mem::size_of::<Shard>() + self.classic.len() * 8;
        if let Some(spill) = self.spill.get() {
            bytes += std::mem::size_of::<Spill>();
            for side in &spill.sides {
                if let Some(table) = side.get() {
                    bytes += std::mem::size_of_val::<[OnceLock<Box<Block>>]>(table);
                    bytes += table.iter().filter(|b| b.get().is_some()).count()
                        * std::mem::size_of::<Block>();
                }
            }
        }
        bytes
    }
}

fn blocks_per_side(layout: &Layout) -> usize {
    layout.len().div_ceil(BLOCK)
}

/// The sharded counters of one histogram (or of one window slot): `shards` owned shards
/// plus the shared one at the end.
pub(super) struct Cells {
    shards: Box<[OnceLock<Box<Shard>>]>,
    /// Bumped by every [`Cells::clear`]: blocks of older generations count as zero.
    generation: AtomicU64,
}

impl Cells {
    pub(super) fn new(shards: usize) -> Self {
        debug_assert!(shards.is_power_of_two());
        Cells {
            shards: (0..shards + 1).map(|_| OnceLock::new()).collect(),
            generation: AtomicU64::new(0),
        }
    }

    fn shared(&self, layout: &Layout) -> &Shard {
        self.shards[self.shards.len() - 1].get_or_init(|| Shard::new(layout, SHARED))
    }

    /// Records `v` `n` times (`v` finite, `n >= 1`).
    #[inline]
    pub(super) fn record(&self, layout: &Layout, v: f64, n: u64) {
        let generation = self.generation.load(Acquire);
        let me = thread_slot() + 1;
        let owned = self.shards.len() - 1;
        let shard = self.shards[me & (owned - 1)].get_or_init(|| Shard::new(layout, 0));
        let owner = shard.owner.load(Relaxed);
        if owner == me
            || (owner == 0
                && shard
                    .owner
                    .compare_exchange(0, me, Relaxed, Relaxed)
                    .is_ok())
        {
            // Only this thread ever writes this shard from now on.
            shard.record::<true>(layout, v, n, generation);
        } else {
            self.shared(layout)
                .record::<false>(layout, v, n, generation);
        }
    }

    /// Adds a whole snapshot (same layout) into the shared shard.
    pub(super) fn add_snapshot(&self, layout: &Layout, s: &Snapshot) {
        let generation = self.generation.load(Acquire);
        let shard = self.shared(layout);
        for (neg, side) in [(false, &s.pos), (true, &s.neg)] {
            for &(idx, c) in side {
                shard
                    .counter::<false>(layout, neg, idx as usize, generation)
                    .fetch_add(c, Relaxed);
            }
        }
        shard.zero.fetch_add(s.zero, Relaxed);
        for i in 0..2 {
            shard.overflow[i].fetch_add(s.overflow[i], Relaxed);
        }
        for (cell, c) in shard.classic.iter().zip(&s.classic) {
            cell.fetch_add(*c, Relaxed);
        }
        atomic_sum_add(&shard.sum_hi, &shard.sum_lo, s.sum.hi);
        if s.sum.lo != 0.0 {
            atomic_f64_add(&shard.sum_lo, s.sum.lo);
        }
        if s.count > 0 {
            atomic_min(&shard.min, s.min);
            atomic_max(&shard.max, s.max);
        }
    }

    /// Zeroes every counter (allocations are kept). Bounded work: each allocated shard's
    /// scalars and classic buckets, then a new generation, which retires every block at once.
    pub(super) fn clear(&self) {
        for shard in self.shards.iter().filter_map(OnceLock::get) {
            shard.clear_scalars();
        }
        self.generation.fetch_add(1, Release);
    }

    /// The work a snapshot of these cells does now, in counters: every allocated block's 64
    /// counters and level's slots, plus one check per block slot of every allocated table.
    pub(super) fn read_work(&self, layout: &Layout) -> usize {
        let per_table = blocks_per_side(layout);
        self.shards
            .iter()
            .filter_map(OnceLock::get)
            .map(|s| {
                let spill = s.spill.get().map_or(0, |spill| {
                    let tables = spill.sides.iter().filter(|t| t.get().is_some()).count();
                    spill.blocks.load(Relaxed) * BLOCK + tables * per_table + LEVEL_SLOTS[1]
                });
                spill + LEVEL_SLOTS[0] + s.classic.len() + 8
            })
            .sum::<usize>()
            + self.shards.len()
    }

    /// Bytes allocated now.
    pub(super) fn memory(&self) -> usize {
        std::mem::size_of_val::<[OnceLock<Box<Shard>>]>(&self.shards)
            + self
                .shards
                .iter()
                .filter_map(OnceLock::get)
                .map(|s| s.memory())
                .sum::<usize>()
    }

    /// Bytes these cells could allocate at most.
    pub(super) fn max_memory(layout: &Layout, shards: usize) -> usize {
        let classic = if layout.bounds().is_empty() {
            0
        } else {
            (layout.bounds().len() + 1) * 8
        };
        let blocks = blocks_per_side(layout);
        let side =
            blocks * (std::mem::size_of::<OnceLock<Box<Block>>>() + std::mem::size_of::<Block>());
        (shards + 1) * std::mem::size_of::<OnceLock<Box<Shard>>>()
            + (shards + 1)
                * (std::mem::size_of::<Shard>() + classic + std::mem::size_of::<Spill>() + 2 * side)
    }

    /// Combines the shards into a snapshot. Counts are read with relaxed loads: a snapshot
    /// taken while other threads record is a consistent-enough view (each counter is exact;
    /// observations in flight may be half-visible), and `count` is always the sum of the
    /// bucket counts.
    pub(super) fn snapshot_into(&self, out: &mut Snapshot) {
        let generation = self.generation.load(Acquire);
        let shards: Vec<&Shard> = self
            .shards
            .iter()
            .filter_map(|s| s.get().map(|b| &**b))
            .collect();
        let mut sum = Sum::default();
        for shard in &shards {
            sum.merge(Sum {
                hi: f64::from_bits(shard.sum_hi.load(Relaxed)),
                lo: f64::from_bits(shard.sum_lo.load(Relaxed)),
            });
            out.min = out.min.min(f64::from_bits(shard.min.load(Relaxed)));
            out.max = out.max.max(f64::from_bits(shard.max.load(Relaxed)));
            out.zero += shard.zero.load(Relaxed);
            for i in 0..2 {
                out.overflow[i] += shard.overflow[i].load(Relaxed);
            }
            for (acc, c) in out.classic.iter_mut().zip(shard.classic.iter()) {
                *acc += c.load(Relaxed);
            }
        }
        // Every shard's non-zero counts by sign, then sorted and added up per bucket (a
        // bucket may appear in several shards, and in a sparse slot and a block of one shard).
        let mut found: [Vec<(u32, u64)>; 2] = [Vec::new(), Vec::new()];
        for shard in &shards {
            shard.small.read_into(&mut found);
            let Some(spill) = shard.spill.get() else {
                continue;
            };
            if spill.tag.is(generation) {
                spill.large.read_into(&mut found);
            }
            for (neg, side) in spill.sides.iter().enumerate() {
                let Some(table) = side.get() else { continue };
                for (b, block) in table.iter().enumerate() {
                    let Some(counts) = block.get().and_then(|b| b.counts_of(generation)) else {
                        continue;
                    };
                    for (i, c) in counts.iter().enumerate() {
                        let c = c.load(Relaxed);
                        if c > 0 {
                            found[neg].push(((b * BLOCK + i) as u32, c));
                        }
                    }
                }
            }
        }
        for (side, mut entries) in [&mut out.pos, &mut out.neg].into_iter().zip(found) {
            entries.sort_unstable_by_key(|e| e.0);
            debug_assert!(side.is_empty());
            for (idx, c) in entries {
                match side.last_mut() {
                    Some(last) if last.0 == idx => last.1 += c,
                    _ => side.push((idx, c)),
                }
            }
        }
        out.count = out.zero
            + out.overflow[0]
            + out.overflow[1]
            + out.pos.iter().map(|p| p.1).sum::<u64>()
            + out.neg.iter().map(|p| p.1).sum::<u64>();
        out.sum = sum;
        if out.count == 0 {
            out.min = f64::INFINITY;
            out.max = f64::NEG_INFINITY;
            out.sum = Sum::default();
        } else {
            out.repair_extremes();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn layout() -> Arc<Layout> {
        Arc::new(Layout::new(0.01, 1e-9, 1e12, &[1.0, 10.0, 100.0]).unwrap())
    }

    fn read(cells: &Cells, layout: &Arc<Layout>) -> Snapshot {
        let mut s = Snapshot::new(layout.clone());
        cells.snapshot_into(&mut s);
        s
    }

    fn reference(layout: &Arc<Layout>, values: &[f64], times: usize) -> Snapshot {
        let mut s = Snapshot::new(layout.clone());
        for _ in 0..times {
            for &v in values {
                s.record(v).unwrap();
            }
        }
        s
    }

    /// The per-bucket counts, exactly (the sum may round differently across shards).
    fn assert_same_counts(got: &Snapshot, want: &Snapshot) {
        assert_eq!(got.pos, want.pos);
        assert_eq!(got.neg, want.neg);
        assert_eq!(got.zero, want.zero);
        assert_eq!(got.overflow, want.overflow);
        assert_eq!(got.classic, want.classic);
        assert_eq!(got.count, want.count);
        assert_eq!((got.min, got.max), (want.min, want.max));
    }

    /// `n` values, each in its own log bucket, over `n / 64` octaves.
    fn distinct(n: usize) -> Vec<f64> {
        (0..n).map(|i| 1.0e-3 * 1.02f64.powi(i as i32)).collect()
    }

    fn owned_shard(cells: &Cells) -> &Shard {
        cells.shards[0].get().expect("the owned shard")
    }

    #[test]
    fn a_shard_is_three_cache_lines() {
        // The scalars' line, the small level's keys with the pointers, its counts.
        assert_eq!(std::mem::size_of::<Shard>(), 192);
    }

    #[test]
    fn a_few_buckets_stay_in_the_small_sparse_level() {
        let layout = layout();
        let cells = Cells::new(1);
        let values = [1.5, 3.2, 7.7, 12.5, 39.0, -2.0];
        for &v in values.iter().cycle().take(600) {
            cells.record(&layout, v, 1);
        }
        let shard = owned_shard(&cells);
        assert!(
            shard.spill.get().is_none(),
            "no large level, no table, no block"
        );
        assert_same_counts(&read(&cells, &layout), &reference(&layout, &values, 100));
        // The shard (with its small level) and the classic buckets.
        assert!(cells.memory() < 400, "{}", cells.memory());
    }

    #[test]
    fn sparse_levels_then_dense_blocks_count_every_bucket_exactly() {
        let layout = layout();
        let cells = Cells::new(1);
        let mut values = distinct(3000);
        values.extend(distinct(3000).iter().map(|v| -v));
        values.extend([0.0, 2e12, -2e12]);
        for &v in &values {
            cells.record(&layout, v, 1);
        }
        // Their neighbours, now that the levels are full: blocks, the first values' included.
        let neighbours: Vec<f64> = values.iter().map(|v| v * 1.01).collect();
        for &v in &neighbours {
            cells.record(&layout, v, 1);
        }
        // Again: a bucket first counted in a sparse slot now counts in its block, and a read
        // adds both.
        for &v in &values {
            cells.record(&layout, v, 2);
        }
        let shard = owned_shard(&cells);
        assert!(shard.small.keys.iter().all(|k| k.load(Relaxed) != FREE));
        let spill = shard.spill.get().unwrap();
        assert!(spill.large.keys.iter().any(|k| k.load(Relaxed) != FREE));
        assert!(spill.blocks.load(Relaxed) > 0);
        let in_both = shard.small.keys.iter().any(|k| {
            let (neg, idx) = sparse_bucket(k.load(Relaxed));
            spill.block(neg, idx as usize).is_some()
        });
        assert!(in_both, "some bucket is counted in a slot and in a block");
        let got = read(&cells, &layout);
        let mut want = reference(&layout, &values, 3);
        want.merge(&reference(&layout, &neighbours, 1)).unwrap();
        assert_same_counts(&got, &want);
        assert!(got.pos.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn many_threads_on_one_owned_shard_and_the_shared_one_give_exact_counts() {
        let layout = layout();
        let cells = Arc::new(Cells::new(1));
        // Hot values (sparse slots) and a spread wide enough for dense blocks.
        let mut values = vec![1.5, 3.2, 7.7, 12.5, 39.0, -4.0, 0.0];
        values.extend(distinct(400));
        let values = Arc::new(values);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (cells, values, layout) = (cells.clone(), values.clone(), layout.clone());
                std::thread::spawn(move || {
                    for round in 0..20 {
                        // Each thread walks the values from its own offset.
                        for i in 0..values.len() {
                            let v = values[(i + t * 37 + round) % values.len()];
                            cells.record(&layout, v, 1);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(
            cells.shards.iter().filter(|s| s.get().is_some()).count(),
            2,
            "one owned shard and the shared one, whatever the number of threads"
        );
        assert_same_counts(&read(&cells, &layout), &reference(&layout, &values, 8 * 20));
    }

    #[test]
    fn shared_shard_writers_agree_on_each_buckets_slot() {
        // Every thread writes the shared shard (the owned one is taken first), all racing to
        // claim the same few sparse slots.
        let layout = layout();
        let cells = Arc::new(Cells::new(1));
        std::thread::spawn({
            let (cells, layout) = (cells.clone(), layout.clone());
            move || cells.record(&layout, 1000.0, 1)
        })
        .join()
        .unwrap();
        let values: Arc<Vec<f64>> = Arc::new(distinct(12));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (cells, values, layout) = (cells.clone(), values.clone(), layout.clone());
                std::thread::spawn(move || {
                    for _ in 0..2_000 {
                        for &v in values.iter() {
                            cells.record(&layout, v, 1);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let shared = cells.shards[1].get().unwrap();
        let large = shared.spill.get().map(|s| &s.large.keys[..]);
        let mut keys: Vec<u32> = shared
            .small
            .keys
            .iter()
            .chain(large.into_iter().flatten())
            .map(|k| k.load(Relaxed))
            .filter(|&k| k != FREE)
            .collect();
        let claimed = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), claimed, "a bucket claimed two slots");
        let mut want = reference(&layout, &values, 8 * 2_000);
        want.record(1000.0).unwrap();
        assert_same_counts(&read(&cells, &layout), &want);
    }

    #[test]
    fn a_cleared_level_reads_zero_keeps_its_keys_and_counts_again() {
        let layout = layout();
        let cells = Cells::new(1);
        let values = distinct(40);
        for &v in &values {
            cells.record(&layout, v, 3);
        }
        cells.clear();
        let empty = read(&cells, &layout);
        assert_eq!(empty.count, 0);
        assert!(empty.pos.is_empty());
        let shard = owned_shard(&cells);
        assert!(shard.small.keys.iter().all(|k| k.load(Relaxed) != FREE));
        assert!(
            shard.spill.get().is_some(),
            "40 buckets: the large level too"
        );
        // One value: only the level it lives in is zeroed and retagged; the others read zero.
        cells.record(&layout, values[0], 1);
        assert_same_counts(&read(&cells, &layout), &reference(&layout, &values[..1], 1));
        for &v in &values[1..] {
            cells.record(&layout, v, 1);
        }
        assert_same_counts(&read(&cells, &layout), &reference(&layout, &values, 1));
    }

    #[test]
    fn memory_accounts_for_every_tier_and_stays_under_the_bound() {
        let layout = layout();
        let cells = Cells::new(1);
        let bound = Cells::max_memory(&layout, 1);
        let mut last = cells.memory();
        for n in [1, 8, 60, 600, 6000] {
            for &v in &distinct(n) {
                cells.record(&layout, v, 1);
            }
            let now = cells.memory();
            assert!(now >= last && now <= bound, "{now} of {bound}");
            last = now;
        }
        assert!(read(&cells, &layout).count > 0);
    }
}

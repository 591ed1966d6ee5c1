//! Concurrent storage: shards of atomics, each touched mostly by one thread.
//!
//! Every thread gets a number on first use (round-robin) and maps to shard `number % shards`.
//! The first thread to write a shard claims it: from then on it is that shard's **only
//! writer** and updates it with plain relaxed loads and stores (no locked instruction, no
//! cache-line transfer). A thread whose shard is owned by another thread, and every merge,
//! writes the extra **shared** shard with atomic read-modify-write operations instead. Either
//! way every update is exact; readers use relaxed loads and may see an observation half-applied.
//!
//! Shards, the per-sign bucket tables and the 64-counter blocks are allocated on first use:
//! memory follows the octaves actually seen and is bounded by the layout.
//!
//! Clearing is bounded work, whatever the layout: [`Cells::clear`] zeroes each shard's few
//! scalars and classic buckets and starts a new **generation**; a block holds counts of the
//! generation it is tagged with, and one of an older generation reads as zero and is zeroed by
//! the next update that reaches it. So a record that rotates a window slot (which clears the
//! slot) does not walk the slot's blocks.

use super::layout::{Layout, Place};
use super::snapshot::{saturate, saturating_add, two_sum, Snapshot, Sum};
use std::sync::atomic::{
    AtomicU64, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::sync::OnceLock;

/// Counters per lazily allocated block.
pub const BLOCK: usize = 64;

struct Block {
    /// The generation these counts belong to; [`ZEROING`] while an updater of the shared
    /// shard zeroes them for a newer one.
    generation: AtomicU64,
    counts: [AtomicU64; BLOCK],
}

/// A block's generation while it is being zeroed (generations count up from 0).
const ZEROING: u64 = u64::MAX;

impl Block {
    fn new(generation: u64) -> Box<Self> {
        Box::new(Block {
            generation: AtomicU64::new(generation),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        })
    }

    /// The block's counts if they belong to `generation`, for a reader.
    #[inline]
    fn counts_of(&self, generation: u64) -> Option<&[AtomicU64; BLOCK]> {
        (self.generation.load(Acquire) == generation).then_some(&self.counts)
    }

    /// The block's counts, made to belong to `generation` first (zeroed if they belong to an
    /// older one), for an updater. `OWNED`: the caller is the shard's single writer.
    #[inline]
    fn counts_for<const OWNED: bool>(&self, generation: u64) -> &[AtomicU64; BLOCK] {
        let mut seen = self.generation.load(Acquire);
        if seen == generation {
            return &self.counts;
        }
        if OWNED {
            // No one else writes this block: zero it, then tag it.
            if seen < generation {
                self.zero(generation);
            }
            return &self.counts;
        }
        // Updaters of the shared shard race: the one that moves the tag to ZEROING zeroes the
        // counts and publishes the generation; the others wait for it. A tag newer than
        // `generation` (the cells were cleared again meanwhile) is used as it is: the update
        // lands in the newer generation, as one racing with a clear may.
        let mut spins = 0u32;
        loop {
            if seen != ZEROING && seen >= generation {
                return &self.counts;
            }
            if seen != ZEROING
                && self
                    .generation
                    .compare_exchange(seen, ZEROING, Acquire, Relaxed)
                    .is_ok()
            {
                self.zero(generation);
                return &self.counts;
            }
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
            seen = self.generation.load(Acquire);
        }
    }

    fn zero(&self, generation: u64) {
        for c in &self.counts {
            c.store(0, Relaxed);
        }
        // Release: a reader that sees the tag sees the zeroed counts.
        self.generation.store(generation, Release);
    }
}

type Table = Box<[OnceLock<Box<Block>>]>;

/// One shard: aligned so two shards never share a cache line.
#[repr(align(128))]
struct Shard {
    /// Thread number + 1 of the single writer; 0 = unclaimed; `usize::MAX` = shared shard.
    owner: AtomicUsize,
    sum_hi: AtomicU64,
    sum_lo: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
    zero: AtomicU64,
    overflow: [AtomicU64; 2],
    sides: [OnceLock<Table>; 2],
    classic: Box<[AtomicU64]>,
    /// Counter blocks allocated in this shard (a read walks each of them).
    blocks: AtomicUsize,
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
            sides: [OnceLock::new(), OnceLock::new()],
            classic: (0..classic_len).map(|_| AtomicU64::new(0)).collect(),
            blocks: AtomicUsize::new(0),
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
        let table = self.sides[neg as usize].get_or_init(|| {
            (0..blocks_per_side(layout))
                .map(|_| OnceLock::new())
                .collect()
        });
        let block = table[idx / BLOCK].get_or_init(|| {
            self.blocks.fetch_add(1, Relaxed);
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

    /// Zeroes the scalars and classic buckets (the blocks follow the cells' generation).
    fn clear_scalars(&self) {
        self.sum_hi.store(0f64.to_bits(), Relaxed);
        self.sum_lo.store(0f64.to_bits(), Relaxed);
        self.min.store(f64::INFINITY.to_bits(), Relaxed);
        self.max.store(f64::NEG_INFINITY.to_bits(), Relaxed);
        self.zero.store(0, Relaxed);
        for c in self.overflow.iter().chain(self.classic.iter()) {
            c.store(0, Relaxed);
        }
    }

    fn memory(&self) -> usize {
        let mut bytes = std::mem::size_of::<Shard>() + self.classic.len() * 8;
        for side in &self.sides {
            if let Some(table) = side.get() {
                bytes += std::mem::size_of_val::<[OnceLock<Box<Block>>]>(table);
                bytes += table.iter().filter(|b| b.get().is_some()).count()
                    * std::mem::size_of::<Block>();
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
    /// counters, plus one check per block slot of every allocated table.
    pub(super) fn read_work(&self, layout: &Layout) -> usize {
        let per_table = blocks_per_side(layout);
        self.shards
            .iter()
            .filter_map(OnceLock::get)
            .map(|s| {
                let tables = s.sides.iter().filter(|t| t.get().is_some()).count();
                s.blocks.load(Relaxed) * BLOCK + tables * per_table + s.classic.len() + 8
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
            + (shards + 1) * (std::mem::size_of::<Shard>() + classic + 2 * side)
    }

    /// Combines the shards into a snapshot. Counts are read with relaxed loads: a snapshot
    /// taken while other threads record is a consistent-enough view (each counter is exact;
    /// observations in flight may be half-visible), and `count` is always the sum of the
    /// bucket counts.
    pub(super) fn snapshot_into(&self, out: &mut Snapshot) {
        let generation = self.generation.load(Acquire);
        let layout = out.layout.clone();
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
        let blocks = blocks_per_side(&layout);
        let mut acc = [0u64; BLOCK];
        for (neg, side) in [(false, &mut out.pos), (true, &mut out.neg)] {
            let tables: Vec<&Table> = shards
                .iter()
                .filter_map(|s| s.sides[neg as usize].get())
                .collect();
            if tables.is_empty() {
                continue;
            }
            for b in 0..blocks {
                let mut any = false;
                for table in &tables {
                    if let Some(counts) = table[b].get().and_then(|b| b.counts_of(generation)) {
                        if !any {
                            acc = [0; BLOCK];
                            any = true;
                        }
                        for (a, c) in acc.iter_mut().zip(counts.iter()) {
                            *a += c.load(Relaxed);
                        }
                    }
                }
                if any {
                    for (i, &c) in acc.iter().enumerate() {
                        if c > 0 {
                            side.push(((b * BLOCK + i) as u32, c));
                        }
                    }
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

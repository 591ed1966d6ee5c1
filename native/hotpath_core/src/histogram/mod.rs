//! Concurrent histograms with bounded relative error, exact counts and a compensated sum.
//!
//! * [`Layout`]: log-linear buckets read from the float's bits (no logarithm), a zero bucket,
//!   negative buckets, overflow buckets, and optional classic buckets with inclusive bounds.
//! * [`Histogram`]: records from any number of threads without a lock (sharded atomics), with
//!   an optional sliding window of time slots driven by a caller-supplied monotonic time.
//! * [`Snapshot`]: a plain value combining the shards; merges, quantiles, serialization.
//!
//! ```
//! use hotpath_core::histogram::{Histogram, Options};
//! let h = Histogram::new(&Options::default()).unwrap();
//! for v in 1..=1000 {
//!     h.record(v as f64, 0).unwrap();
//! }
//! let s = h.snapshot();
//! assert_eq!(s.count(), 1000);
//! assert_eq!(s.sum(), 500_500.0);
//! let p99 = s.quantile(0.99).unwrap().unwrap();
//! assert!((p99 - 990.0).abs() <= 990.0 * 0.01);
//! ```

mod cells;
mod codec;
mod layout;
mod snapshot;

pub use layout::{
    alpha, Layout, Place, DEFAULT_CEILING, DEFAULT_FLOOR, DEFAULT_RELATIVE_ERROR, MAX_BOUNDS,
    MAX_BUCKETS, MAX_CEILING, MAX_SUB_BITS, MIN_FLOOR,
};
pub use snapshot::{check_quantile, two_sum, Snapshot, Sum};

use crate::error::{Error, Result};
pub(crate) use cells::atomic_sum_add;
use cells::Cells;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Largest number of shards.
pub const MAX_SHARDS: usize = 64;
/// Largest number of window slots.
pub const MAX_SLOTS: u32 = 3600;
/// Largest count recorded by one call.
pub const MAX_COUNT: u64 = u32::MAX as u64;

/// A sliding window: the last `slots` time slots of `slot_ms` milliseconds each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowOptions {
    /// Width of one slot, in milliseconds.
    pub slot_ms: u64,
    /// Number of slots kept.
    pub slots: u32,
}

impl WindowOptions {
    /// A window of `span_ms` split in `slots` slots (`span_ms` must divide evenly).
    pub fn new(span_ms: u64, slots: u32) -> Result<Self> {
        if slots == 0 || slots > MAX_SLOTS {
            return Err(Error::invalid(format!(
                "window slots must be between 1 and {MAX_SLOTS}, got {slots}"
            )));
        }
        if span_ms == 0 || !span_ms.is_multiple_of(slots as u64) {
            return Err(Error::invalid(format!(
                "window span must be a positive number of milliseconds divisible by the \
                 number of slots ({slots}), got {span_ms}"
            )));
        }
        Ok(WindowOptions {
            slot_ms: span_ms / slots as u64,
            slots,
        })
    }

    /// Total span in milliseconds.
    pub fn span_ms(&self) -> u64 {
        self.slot_ms * self.slots as u64
    }
}

/// Options of a [`Histogram`].
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Bound on the relative error of quantiles (default 0.01).
    pub relative_error: f64,
    /// Magnitudes below count as zero (default 1e-9).
    pub floor: f64,
    /// Magnitudes above count as overflow (default 1e12).
    pub ceiling: f64,
    /// Classic bucket upper bounds, inclusive (default none).
    pub buckets: Vec<f64>,
    /// Sliding window (default none).
    pub window: Option<WindowOptions>,
    /// Number of single-writer shards, rounded up to a power of two; default
    /// [`default_shards`].
    pub shards: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            relative_error: DEFAULT_RELATIVE_ERROR,
            floor: DEFAULT_FLOOR,
            ceiling: DEFAULT_CEILING,
            buckets: Vec::new(),
            window: None,
            shards: None,
        }
    }
}

/// Default shard count: twice the available parallelism (room for the threads that map to
/// the same shard), rounded up to a power of two, between 4 and 16. Shards are allocated when
/// first written, so unused ones cost a pointer.
pub fn default_shards() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(4)
        .clamp(4, 16)
        .next_power_of_two()
}

struct Slot {
    /// `(epoch + 1) << 1 | clearing`; 0 = never used.
    state: AtomicU64,
    cells: Cells,
}

struct Window {
    options: WindowOptions,
    slots: Box<[Slot]>,
}

const CLEARING: u64 = 1;

impl Window {
    #[inline]
    fn slot_for(&self, now_ms: u64) -> Option<&Slot> {
        let epoch = now_ms / self.options.slot_ms;
        let slot = &self.slots[(epoch % self.options.slots as u64) as usize];
        let tag = (epoch + 1) << 1;
        let mut spins = 0u32;
        loop {
            let state = slot.state.load(Ordering::Acquire);
            if state == tag {
                return Some(slot);
            }
            if state & CLEARING != 0 {
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
                continue;
            }
            if state > tag {
                // The slot already holds a later epoch: this caller's time is stale.
                return None;
            }
            if slot
                .state
                .compare_exchange(state, tag | CLEARING, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                slot.cells.clear();
                slot.state.store(tag, Ordering::Release);
                return Some(slot);
            }
        }
    }

    fn snapshot(&self, layout: &Arc<Layout>, now_ms: u64) -> Snapshot {
        let epoch = now_ms / self.options.slot_ms;
        let oldest = (epoch + 1).saturating_sub(self.options.slots as u64);
        let mut total = Snapshot::new(layout.clone());
        for slot in self.slots.iter() {
            let before = slot.state.load(Ordering::Acquire);
            if before == 0 || before & CLEARING != 0 {
                continue;
            }
            let slot_epoch = (before >> 1) - 1;
            if slot_epoch < oldest || slot_epoch > epoch {
                continue;
            }
            let mut s = Snapshot::new(layout.clone());
            slot.cells.snapshot_into(&mut s);
            if slot.state.load(Ordering::Acquire) == before {
                total.merge(&s).expect("same layout");
            }
        }
        total
    }
}

/// A concurrent histogram. All methods take `&self`.
pub struct Histogram {
    layout: Arc<Layout>,
    shards: usize,
    cells: Cells,
    window: Option<Window>,
    /// What [`Histogram::from_snapshot`] started from, kept as the sparse snapshot itself so a
    /// decoded histogram costs memory proportional to its encoding (a few bytes per bucket
    /// entry), not a 512-byte counter block per entry. Dropped by `reset`.
    base: Mutex<Option<Arc<Snapshot>>>,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("layout", &self.layout)
            .field("shards", &self.shards)
            .field("window", &self.window.as_ref().map(|w| w.options))
            .finish()
    }
}

/// Memory of a histogram, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Allocated now.
    pub bytes: usize,
    /// The most it can ever allocate (fixed by the options).
    pub max_bytes: usize,
}

/// Checks a count argument.
pub fn check_count(n: u64) -> Result<u64> {
    if (1..=MAX_COUNT).contains(&n) {
        Ok(n)
    } else {
        Err(Error::invalid(format!(
            "count must be an integer between 1 and {MAX_COUNT}, got {n}"
        )))
    }
}

impl Histogram {
    /// A new empty histogram.
    pub fn new(options: &Options) -> Result<Self> {
        let layout = Layout::new(
            options.relative_error,
            options.floor,
            options.ceiling,
            &options.buckets,
        )?;
        let shards = match options.shards {
            None => default_shards(),
            Some(n) if (1..=MAX_SHARDS).contains(&n) => n.next_power_of_two(),
            Some(n) => {
                return Err(Error::invalid(format!(
                    "shards must be between 1 and {MAX_SHARDS}, got {n}"
                )))
            }
        };
        Ok(Self::with_layout(Arc::new(layout), shards, options.window))
    }

    /// A new empty histogram of an existing layout.
    pub fn with_layout(layout: Arc<Layout>, shards: usize, window: Option<WindowOptions>) -> Self {
        let shards = shards.clamp(1, MAX_SHARDS).next_power_of_two();
        Histogram {
            layout,
            shards,
            cells: Cells::new(shards),
            window: window.map(|options| Window {
                options,
                slots: (0..options.slots)
                    .map(|_| Slot {
                        state: AtomicU64::new(0),
                        cells: Cells::new(shards),
                    })
                    .collect(),
            }),
            base: Mutex::new(None),
        }
    }

    /// A histogram (no window) whose cumulative view starts as `snapshot`. It holds the
    /// snapshot as it is: the memory is the snapshot's (proportional to its encoding), and
    /// counter blocks are only allocated by later records and merges.
    pub fn from_snapshot(snapshot: Snapshot, shards: usize) -> Self {
        let h = Self::with_layout(snapshot.layout().clone(), shards, None);
        if snapshot.count() > 0 {
            *h.base_lock() = Some(Arc::new(snapshot));
        }
        h
    }

    fn base_lock(&self) -> MutexGuard<'_, Option<Arc<Snapshot>>> {
        // Nothing panics while holding the lock (it only swaps an Arc), so a poisoned lock
        // still holds a consistent value.
        self.base.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn base(&self) -> Option<Arc<Snapshot>> {
        self.base_lock().clone()
    }

    /// The layout.
    pub fn layout(&self) -> &Arc<Layout> {
        &self.layout
    }

    /// The window options, if any.
    pub fn window(&self) -> Option<WindowOptions> {
        self.window.as_ref().map(|w| w.options)
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Records `v` once. `now_ms` (monotonic milliseconds) only matters with a window.
    #[inline]
    pub fn record(&self, v: f64, now_ms: u64) -> Result<()> {
        if !v.is_finite() {
            return Err(Error::invalid(format!(
                "value must be a finite number, got {v}"
            )));
        }
        self.cells.record(&self.layout, v, 1);
        if let Some(w) = &self.window {
            if let Some(slot) = w.slot_for(now_ms) {
                slot.cells.record(&self.layout, v, 1);
            }
        }
        Ok(())
    }

    /// Records `v` `n` times (`1 <= n <= MAX_COUNT`).
    pub fn record_n(&self, v: f64, n: u64, now_ms: u64) -> Result<()> {
        crate::error::finite("value", v)?;
        check_count(n)?;
        self.cells.record(&self.layout, v, n);
        if let Some(w) = &self.window {
            if let Some(slot) = w.slot_for(now_ms) {
                slot.cells.record(&self.layout, v, n);
            }
        }
        Ok(())
    }

    /// Everything recorded since creation (or the last reset), plus merged snapshots.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::new(self.layout.clone());
        self.cells.snapshot_into(&mut s);
        if let Some(base) = self.base() {
            s.merge(&base).expect("same layout");
        }
        s
    }

    /// What the window holds at `now_ms`: the current slot and the `slots - 1` before it.
    /// `None` without a window.
    pub fn window_snapshot(&self, now_ms: u64) -> Option<Snapshot> {
        self.window
            .as_ref()
            .map(|w| w.snapshot(&self.layout, now_ms))
    }

    /// Adds a snapshot of the same layout to the cumulative view (not to the window, which
    /// describes what this histogram saw recently).
    pub fn merge_snapshot(&self, other: &Snapshot) -> Result<()> {
        self.layout.check_compatible(other.layout())?;
        self.cells.add_snapshot(&self.layout, other);
        Ok(())
    }

    /// Adds a snapshot of the same layout to the window slot of `now_ms`, so that a window read
    /// at `now_ms` includes it (merged views put another histogram's window there). Does
    /// nothing without a window.
    pub fn merge_window_snapshot(&self, other: &Snapshot, now_ms: u64) -> Result<()> {
        self.layout.check_compatible(other.layout())?;
        if let Some(slot) = self.window.as_ref().and_then(|w| w.slot_for(now_ms)) {
            slot.cells.add_snapshot(&self.layout, other);
        }
        Ok(())
    }

    /// Zeroes the cumulative view and the window. Observations recorded concurrently with a
    /// reset may survive it partially.
    pub fn reset(&self) {
        *self.base_lock() = None;
        self.cells.clear();
        if let Some(w) = &self.window {
            for slot in w.slots.iter() {
                slot.cells.clear();
                slot.state.store(0, Ordering::Release);
            }
        }
    }

    /// The work (in counters visited) a read of the cumulative view (`window == false`) or of
    /// the window does now: proportional to what was allocated, not to the layout's size.
    pub fn read_work(&self, window: bool) -> usize {
        let base = self
            .base()
            .map_or(0, |b| b.entries() + b.classic_counts().len());
        if window {
            self.window.as_ref().map_or(0, |w| {
                w.slots
                    .iter()
                    .map(|s| s.cells.read_work(&self.layout))
                    .sum()
            })
        } else {
            self.cells.read_work(&self.layout) + base
        }
    }

    /// Memory allocated now and the bound fixed by the options.
    pub fn memory(&self) -> Memory {
        let slots = self.window.as_ref().map_or(0, |w| w.slots.len());
        let window_bytes = self
            .window
            .as_ref()
            .map_or(0, |w| w.slots.iter().map(|s| s.cells.memory() + 8).sum());
        let base_bytes = self.base().map_or(0, |b| b.heap_bytes());
        Memory {
            bytes: std::mem::size_of::<Self>() + self.cells.memory() + window_bytes + base_bytes,
            max_bytes: std::mem::size_of::<Self>()
                + (1 + slots) * Cells::max_memory(&self.layout, self.shards)
                + slots * 8
                + base_bytes,
        }
    }
}

#[cfg(test)]
mod tests;

//! `Hotpath.Histogram`: a concurrent histogram as a resource.
//!
//! `record` runs on a normal scheduler and allocates nothing. Reads that walk the buckets
//! (`histogram_read`, `histogram_to_binary`) refuse on a normal scheduler when the histogram is
//! large (answering `:dirty`), and the Elixir side then calls the `_dirty` twin.

use crate::error::{argument_error, guard, lift, NifResult};
use hotpath_core::clock;
use hotpath_core::histogram::{check_quantile, Histogram, Options, Snapshot, WindowOptions};
use rustler::types::binary::NewBinary;
use rustler::{Atom, Binary, Encoder, Env, NifMap, Resource, ResourceArc, Term};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

mod atoms {
    rustler::atoms! { ok, error, dirty, cumulative, window, monotonic, manual }
}

/// Above this many counters to walk (allocated blocks of 64 counters, table slots, sparse
/// entries of a decoded histogram), reads go to a dirty scheduler (~0.2 ms of work).
const NORMAL_SCHEDULER_COUNTERS: usize = 8 * 1024;

/// Most quantiles one read computes on a normal scheduler; more go to the dirty twin (the
/// list is decoded and the answer encoded per quantile).
pub const NORMAL_SCHEDULER_QUANTILES: usize = 256;

/// Largest binary `from_binary` decodes on a normal scheduler (decoding is linear in the
/// input, ~0.1 ms at this size); larger ones go to the dirty twin.
pub const NORMAL_SCHEDULER_DECODE_BYTES: usize = 8 * 1024;

/// Largest `(window slots + 1) * (shards + 1)` that `histogram_new` allocates on a normal
/// scheduler; larger histograms are created by the dirty twin.
const NORMAL_SCHEDULER_CELLS: usize = 128;

/// Tells the scheduler how much of its ~1 ms timeslice a normal-scheduler call used (1 % per
/// 10 µs, at least 1 %): a NIF call costs the calling process about one reduction otherwise, so
/// a loop of 50 µs calls would keep its scheduler for a whole reduction budget (hundreds of ms).
/// A no-op on dirty schedulers.
fn report_time(env: Env, started: Instant) {
    let us = started.elapsed().as_micros();
    let percent = (us / 10 + 1).min(100) as i32;
    rustler::schedule::consume_timeslice(env, percent);
}

/// The clock a windowed histogram reads.
pub enum Clock {
    /// Milliseconds since the library was loaded (monotonic).
    Monotonic,
    /// Milliseconds set by `advance/2`: tests drive time without sleeping.
    Manual(AtomicU64),
}

impl Clock {
    #[inline]
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::Monotonic => clock::now_ms(),
            Clock::Manual(ms) => ms.load(Ordering::Relaxed),
        }
    }
}

/// The resource behind a `Hotpath.Histogram`.
pub struct HistogramResource {
    pub hist: Histogram,
    pub clock: Clock,
}

#[rustler::resource_impl(name = "Hotpath.Histogram")]
impl Resource for HistogramResource {}

/// Borrows the resource behind a term for the duration of the call (no reference-count
/// traffic).
#[inline]
pub(crate) fn handle<'a>(term: Term<'a>) -> NifResult<&'a HistogramResource> {
    term.try_get_resource::<HistogramResource>()
        .ok_or_else(|| argument_error("expected a histogram from Hotpath.Histogram.new/1"))
}

#[derive(NifMap)]
struct NewOptions {
    relative_error: f64,
    floor: f64,
    ceiling: f64,
    buckets: Vec<f64>,
    window: Option<(u64, u32)>,
    shards: Option<usize>,
    manual_clock: bool,
}

fn new_cells(options: &NewOptions) -> usize {
    let slots = options.window.map_or(0, |(_, slots)| slots as usize);
    let shards = options
        .shards
        .unwrap_or_else(hotpath_core::histogram::default_shards);
    slots
        .saturating_add(1)
        .saturating_mul(shards.saturating_add(1))
}

/// A new histogram, or `:dirty` when it is large enough (window slots times shards) that
/// allocating it belongs on a dirty scheduler.
#[rustler::nif]
fn histogram_new(env: Env, options: NewOptions) -> NifResult<Term> {
    if new_cells(&options) > NORMAL_SCHEDULER_CELLS {
        return Ok(atoms::dirty().encode(env));
    }
    let started = Instant::now();
    let result = new(env, options);
    report_time(env, started);
    result
}

#[rustler::nif(schedule = "DirtyCpu")]
fn histogram_new_dirty(env: Env, options: NewOptions) -> NifResult<Term> {
    new(env, options)
}

fn new(env: Env, options: NewOptions) -> NifResult<Term> {
    guard(|| {
        let window = match options.window {
            Some((span, slots)) => Some(lift(WindowOptions::new(span, slots))?),
            None => None,
        };
        let hist = lift(Histogram::new(&Options {
            relative_error: options.relative_error,
            floor: options.floor,
            ceiling: options.ceiling,
            buckets: options.buckets,
            window,
            shards: options.shards,
        }))?;
        let clock = if options.manual_clock {
            Clock::Manual(AtomicU64::new(0))
        } else {
            Clock::Monotonic
        };
        Ok(ResourceArc::new(HistogramResource { hist, clock }).encode(env))
    })
}

/// The hot path: decode the resource and a float, add to this thread's shard.
#[rustler::nif]
fn histogram_record(h: Term, value: f64) -> NifResult<Atom> {
    let h = handle(h)?;
    let now = if h.hist.window().is_some() {
        h.clock.now_ms()
    } else {
        0
    };
    lift(h.hist.record(value, now))?;
    Ok(atoms::ok())
}

#[rustler::nif]
fn histogram_record_n(h: Term, value: f64, count: Term) -> NifResult<Atom> {
    let h = handle(h)?;
    let count = match count.decode::<u64>() {
        Ok(n) => n,
        Err(_) => {
            return Err(argument_error(format!(
                "count must be an integer between 1 and {}",
                hotpath_core::histogram::MAX_COUNT
            )))
        }
    };
    let now = if h.hist.window().is_some() {
        h.clock.now_ms()
    } else {
        0
    };
    guard(|| {
        lift(h.hist.record_n(value, count, now))?;
        Ok(atoms::ok())
    })
}

/// The counters a read of `view` (or of both views, for `None`) walks now: what is allocated,
/// not the most the layout could allocate.
fn counters_to_walk(h: &HistogramResource, window: Option<bool>) -> usize {
    match window {
        Some(w) => h.hist.read_work(w),
        None => h.hist.read_work(false) + h.hist.read_work(true),
    }
}

fn view_snapshot(h: &HistogramResource, view: Atom) -> NifResult<Snapshot> {
    if view == atoms::cumulative() {
        Ok(h.hist.snapshot())
    } else if view == atoms::window() {
        h.hist
            .window_snapshot(h.clock.now_ms())
            .ok_or_else(|| argument_error("view: :window needs a histogram created with window:"))
    } else {
        Err(argument_error("view must be :cumulative or :window"))
    }
}

#[derive(NifMap)]
pub struct Stats {
    count: u64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
    mean: Option<f64>,
    quantiles: Vec<Option<f64>>,
    buckets: Option<Vec<(Option<f64>, u64)>>,
    zero_count: u64,
    overflow_count: u64,
}

pub fn stats(s: &Snapshot, qs: &[f64]) -> NifResult<Stats> {
    for &q in qs {
        lift(check_quantile(q))?;
    }
    let bounds = s.layout().bounds();
    let buckets = (!bounds.is_empty()).then(|| {
        bounds
            .iter()
            .map(|b| Some(*b))
            .chain(std::iter::once(None))
            .zip(s.classic_counts().iter().copied())
            .collect()
    });
    let [over_pos, over_neg] = s.overflow_counts();
    // The BEAM has no infinite floats. Sums saturate in the core (so do means); the clamps
    // keep that promise at the boundary too.
    let finite = |v: f64| v.clamp(f64::MIN, f64::MAX);
    Ok(Stats {
        count: s.count(),
        sum: finite(s.sum()),
        min: s.min(),
        max: s.max(),
        mean: s.mean().map(finite),
        quantiles: lift(s.quantiles(qs))?,
        buckets,
        zero_count: s.zero_count(),
        overflow_count: over_pos + over_neg,
    })
}

fn read<'a>(
    env: Env<'a>,
    h: Term<'a>,
    view: Atom,
    qs: Term<'a>,
    dirty: bool,
) -> NifResult<Term<'a>> {
    let started = Instant::now();
    let h = handle(h)?;
    if !dirty && counters_to_walk(h, Some(view == atoms::window())) > NORMAL_SCHEDULER_COUNTERS {
        return Ok(atoms::dirty().encode(env));
    }
    let max = if dirty {
        usize::MAX
    } else {
        NORMAL_SCHEDULER_QUANTILES
    };
    let qs = match decode_quantiles(qs, max) {
        Ok(qs) => qs,
        Err(None) => return Ok(atoms::dirty().encode(env)),
        Err(Some(e)) => return Err(e),
    };
    let result = guard(|| {
        let s = view_snapshot(h, view)?;
        Ok(stats(&s, &qs)?.encode(env))
    });
    report_time(env, started);
    result
}

/// Decodes a proper list of floats of at most `max` elements; `Err(None)` when it is longer
/// (looking at no more than `max + 1` cells).
fn decode_quantiles(qs: Term, max: usize) -> Result<Vec<f64>, Option<rustler::Error>> {
    let bad = || {
        Some(argument_error(
            "quantiles must be a proper list of numbers in 0..1",
        ))
    };
    let mut out = Vec::new();
    let mut rest = qs;
    loop {
        if rest.is_empty_list() {
            return Ok(out);
        }
        let (head, tail) = rest.list_get_cell().map_err(|_| bad())?;
        if out.len() == max {
            return Err(None);
        }
        out.push(head.decode::<f64>().map_err(|_| bad())?);
        rest = tail;
    }
}

/// Statistics of one view: `%{count, sum, min, max, mean, quantiles, buckets, ...}` or
/// `:dirty` when the histogram is too large to walk on a normal scheduler, or more than
/// [`NORMAL_SCHEDULER_QUANTILES`] quantiles are asked.
#[rustler::nif]
fn histogram_read<'a>(env: Env<'a>, h: Term<'a>, view: Atom, qs: Term<'a>) -> NifResult<Term<'a>> {
    read(env, h, view, qs, false)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn histogram_read_dirty<'a>(
    env: Env<'a>,
    h: Term<'a>,
    view: Atom,
    qs: Term<'a>,
) -> NifResult<Term<'a>> {
    read(env, h, view, qs, true)
}

fn to_binary<'a>(env: Env<'a>, h: Term<'a>, dirty: bool) -> NifResult<Term<'a>> {
    let started = Instant::now();
    let h = handle(h)?;
    if !dirty && counters_to_walk(h, Some(false)) > NORMAL_SCHEDULER_COUNTERS {
        return Ok(atoms::dirty().encode(env));
    }
    let result = guard(|| {
        let bytes = h.hist.snapshot().to_bytes();
        let mut bin = NewBinary::new(env, bytes.len());
        bin.as_mut_slice().copy_from_slice(&bytes);
        Ok(Binary::from(bin).encode(env))
    });
    report_time(env, started);
    result
}

#[rustler::nif]
fn histogram_to_binary<'a>(env: Env<'a>, h: Term<'a>) -> NifResult<Term<'a>> {
    to_binary(env, h, false)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn histogram_to_binary_dirty<'a>(env: Env<'a>, h: Term<'a>) -> NifResult<Term<'a>> {
    to_binary(env, h, true)
}

/// Decodes a binary into a new histogram (cumulative view only). Decoding is linear in the
/// input, and the histogram holds the decoded sparse snapshot, so its memory is proportional
/// to the input (at most 8 bytes per input byte plus a fixed part), whatever layout the binary
/// names.
fn from_binary<'a>(env: Env<'a>, bin: Binary) -> NifResult<Term<'a>> {
    guard(|| {
        let snapshot = lift(Snapshot::from_bytes(bin.as_slice()))?;
        let hist = Histogram::from_snapshot(snapshot, hotpath_core::histogram::default_shards());
        Ok((
            atoms::ok(),
            ResourceArc::new(HistogramResource {
                hist,
                clock: Clock::Monotonic,
            }),
        )
            .encode(env))
    })
}

/// `{:ok, histogram}`, `{:error, {:malformed, message}}`, or `:dirty` for a binary larger than
/// [`NORMAL_SCHEDULER_DECODE_BYTES`].
#[rustler::nif]
fn histogram_from_binary<'a>(env: Env<'a>, bin: Binary) -> NifResult<Term<'a>> {
    if bin.len() > NORMAL_SCHEDULER_DECODE_BYTES {
        return Ok(atoms::dirty().encode(env));
    }
    let started = Instant::now();
    let result = from_binary(env, bin);
    report_time(env, started);
    result
}

#[rustler::nif(schedule = "DirtyCpu")]
fn histogram_from_binary_dirty<'a>(env: Env<'a>, bin: Binary) -> NifResult<Term<'a>> {
    from_binary(env, bin)
}

/// Adds `other` (a histogram or a binary from `to_binary`) into `into`.
#[rustler::nif(schedule = "DirtyCpu")]
fn histogram_merge(into: Term, other: Term) -> NifResult<Atom> {
    let into = handle(into)?;
    let snapshot = if let Ok(bin) = other.decode::<Binary>() {
        lift(Snapshot::from_bytes(bin.as_slice()))?
    } else {
        handle(other)?.hist.snapshot()
    };
    guard(|| {
        lift(into.hist.merge_snapshot(&snapshot))?;
        Ok(atoms::ok())
    })
}

/// Zeroes every allocated counter: proportional to the layout, so on a dirty scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn histogram_reset(h: Term) -> NifResult<Atom> {
    let h = handle(h)?;
    guard(|| {
        h.hist.reset();
        Ok(atoms::ok())
    })
}

#[derive(NifMap)]
struct Info {
    relative_error: f64,
    floor: f64,
    ceiling: f64,
    buckets: Vec<f64>,
    window: Option<(u64, u32)>,
    shards: usize,
    clock: Atom,
    memory: u64,
    max_memory: u64,
}

/// Options and memory; measuring memory walks the bucket tables, so on a dirty scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn histogram_info(h: Term) -> NifResult<Info> {
    let h = handle(h)?;
    guard(|| {
        let layout = h.hist.layout();
        let memory = h.hist.memory();
        Ok(Info {
            relative_error: layout.relative_error(),
            floor: layout.floor(),
            ceiling: layout.ceiling(),
            buckets: layout.bounds().to_vec(),
            window: h.hist.window().map(|w| (w.span_ms(), w.slots)),
            shards: h.hist.shards(),
            clock: match h.clock {
                Clock::Monotonic => atoms::monotonic(),
                Clock::Manual(_) => atoms::manual(),
            },
            memory: memory.bytes as u64,
            max_memory: memory.max_bytes as u64,
        })
    })
}

/// Moves a manual clock forward by `ms` milliseconds, stopping at `u64::MAX` (never wrapping
/// back to an earlier time); returns the new time.
#[rustler::nif]
fn histogram_advance(h: Term, ms: u64) -> NifResult<u64> {
    let h = handle(h)?;
    match &h.clock {
        Clock::Manual(now) => {
            let step = |t: u64| Some(t.saturating_add(ms));
            let before = now
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, step)
                .unwrap_or_else(|t| t);
            Ok(before.saturating_add(ms))
        }
        Clock::Monotonic => Err(argument_error(
            "advance/2 needs a histogram created with clock: :manual",
        )),
    }
}

//! The registry behind `Hotpath.Metrics`: metrics, their series (one per set of label values),
//! cardinality caps, pruning, and the Prometheus text exposition.
//!
//! A series is found by its **key**: the label values encoded as `len:varint bytes` each, in
//! the order of the metric's label names (see [`push_label`]). Callers build the key in a
//! reused buffer, so a lookup of an existing series allocates nothing.

pub mod exemplar;
pub mod memo;
pub mod merge;
pub mod native;
pub mod prometheus;
pub mod protobuf;

use crate::error::{Error, Result};
use crate::histogram::{Histogram, Layout, Options, Snapshot, WindowOptions};
use ahash::RandomState;
use dashmap::DashMap;
use exemplar::{Exemplar, Exemplars};
use std::sync::atomic::{
    AtomicBool, AtomicU64, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::sync::{Arc, OnceLock};

/// The hasher of Hotpath's maps (aHash), for the NIF layer's lookup tables.
pub type FastState = RandomState;

/// Label value of every label of the overflow series of a metric over its cap. Tags that
/// give every label this value record into the overflow series (never a second series with
/// the same labels).
pub const OVERFLOW_LABEL: &str = "_overflow_";
/// Largest `max_series` accepted.
pub const MAX_SERIES_CAP: usize = 10_000_000;
/// Single-writer shards of a summary's or distribution's series (unless its histogram
/// options name a count): the first thread that records into a series owns one shard, every
/// other thread records into the series' shared shard. So a series holds at most two shards
/// per set of cells (the cumulative view and each window slot) whatever the number of
/// schedulers; a standalone [`Histogram`] defaults to [`crate::histogram::default_shards`].
pub const SERIES_SHARDS: usize = 1;
/// Longest label value accepted, in bytes (`Hotpath.Metrics` documents the same limit): keeps
/// the work of resolving a series on a normal scheduler small and bounds a series key.
pub const MAX_LABEL_BYTES: usize = 4096;

/// The kind of a metric (the five `Telemetry.Metrics` kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Counts records; the value is ignored.
    Counter,
    /// Sums the values (compensated float sum).
    Sum,
    /// Keeps the last value.
    LastValue,
    /// A histogram exported as quantiles.
    Summary,
    /// A histogram exported with classic buckets.
    Distribution,
}

/// The definition of one metric.
#[derive(Debug, Clone)]
pub struct MetricSpec {
    /// Exposition name (valid Prometheus name, counters already suffixed `_total`).
    pub name: String,
    /// HELP text.
    pub help: String,
    /// Kind.
    pub kind: Kind,
    /// Label names, valid Prometheus label names.
    pub labels: Vec<String>,
    /// Series beyond this many go to the overflow series.
    pub max_series: usize,
    /// Histogram options (summaries and distributions).
    pub histogram: Options,
    /// Quantiles exported for summaries.
    pub quantiles: Vec<f64>,
}

/// The value of one series.
pub enum SeriesValue {
    /// Number of records.
    Counter(AtomicU64),
    /// Compensated sum `(hi, lo)` as float bits.
    Sum(AtomicU64, AtomicU64),
    /// Last value as float bits; NaN bits = never set.
    LastValue(AtomicU64),
    /// A histogram (summaries, distributions).
    Histogram(Box<Histogram>),
}

/// One series: label values and a value.
pub struct Series {
    labels: Box<[String]>,
    value: SeriesValue,
    touched: AtomicBool,
    /// Live handles bound to this series: a pinned series is never pruned.
    pins: AtomicUsize,
    /// Unix time of its creation, in milliseconds (OpenMetrics' `_created`).
    created_ms: u64,
    /// Allocated by the first record that carries an exemplar.
    exemplars: OnceLock<Box<Exemplars>>,
}

/// A read of one series.
#[derive(Debug, Clone, PartialEq)]
pub enum SeriesRead {
    /// Counter value.
    Counter(u64),
    /// Sum.
    Sum(f64),
    /// Last value, `None` before the first record.
    LastValue(Option<f64>),
    /// Histogram: cumulative view and, with a window, the window view.
    Histogram(Box<Snapshot>, Option<Box<Snapshot>>),
}

const UNSET: u64 = f64::NAN.to_bits();

impl Series {
    fn new(labels: Box<[String]>, metric: &Metric) -> Self {
        let value = match metric.spec.kind {
            Kind::Counter => SeriesValue::Counter(AtomicU64::new(0)),
            Kind::Sum => SeriesValue::Sum(AtomicU64::new(0), AtomicU64::new(0)),
            Kind::LastValue => SeriesValue::LastValue(AtomicU64::new(UNSET)),
            Kind::Summary | Kind::Distribution => {
                SeriesValue::Histogram(Box::new(Histogram::with_layout(
                    metric
                        .layout
                        .clone()
                        .expect("histogram metrics have a layout"),
                    metric.shards,
                    metric.spec.histogram.window,
                )))
            }
        };
        Series {
            labels,
            value,
            touched: AtomicBool::new(true),
            pins: AtomicUsize::new(0),
            created_ms: crate::clock::unix_ms(),
            exemplars: OnceLock::new(),
        }
    }

    /// Unix time of the series' creation, in milliseconds.
    pub fn created_ms(&self) -> u64 {
        self.created_ms
    }

    /// Records `value` as [`Series::record`] does, and keeps `exemplar` as the last one of
    /// the value's slot: a counter's only slot (its value becomes 1, the increment), the
    /// classic bucket of the value for a distribution with buckets, a summary's only slot.
    /// Sums and last values keep no exemplars (OpenMetrics has none for them).
    pub fn record_exemplar(&self, value: f64, now_ms: u64, mut exemplar: Exemplar) -> Result<()> {
        self.record(value, now_ms)?;
        let (slots, index) = match &self.value {
            SeriesValue::Counter(_) => {
                exemplar.value = 1.0;
                (1, 0)
            }
            SeriesValue::Histogram(h) => {
                let layout = h.layout();
                exemplar.value = value;
                (layout.bounds().len() + 1, layout.classic_index(value))
            }
            SeriesValue::Sum(..) | SeriesValue::LastValue(_) => return Ok(()),
        };
        self.exemplars
            .get_or_init(|| Box::new(Exemplars::new(slots)))
            .set(index, exemplar);
        Ok(())
    }

    /// The exemplar slots (see [`Series::record_exemplar`]); empty if none was recorded.
    pub fn exemplars(&self) -> Vec<Option<Exemplar>> {
        self.exemplars.get().map_or_else(Vec::new, |e| e.read())
    }

    /// Label values, in the order of the metric's label names.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Keeps the series from being pruned until [`Series::unpin`].
    pub fn pin(&self) {
        self.pins.fetch_add(1, Relaxed);
    }

    /// Undoes one [`Series::pin`].
    pub fn unpin(&self) {
        self.pins.fetch_sub(1, Relaxed);
    }

    /// Whether recording needs a time (a histogram with a window).
    pub fn needs_time(&self) -> bool {
        matches!(&self.value, SeriesValue::Histogram(h) if h.window().is_some())
    }

    /// Records `value` (ignored by counters; must be finite otherwise).
    #[inline]
    pub fn record(&self, value: f64, now_ms: u64) -> Result<()> {
        if !self.touched.load(Relaxed) {
            self.touched.store(true, Relaxed);
        }
        match &self.value {
            SeriesValue::Counter(c) => {
                c.fetch_add(1, Relaxed);
                Ok(())
            }
            SeriesValue::Sum(hi, lo) => {
                crate::error::finite("value", value)?;
                crate::histogram::atomic_sum_add(hi, lo, value);
                Ok(())
            }
            SeriesValue::LastValue(v) => {
                crate::error::finite("value", value)?;
                v.store(value.to_bits(), Relaxed);
                Ok(())
            }
            SeriesValue::Histogram(h) => h.record(value, now_ms),
        }
    }

    /// Reads the series; `now_ms` positions the window.
    pub fn read(&self, now_ms: u64) -> SeriesRead {
        match &self.value {
            SeriesValue::Counter(c) => SeriesRead::Counter(c.load(Relaxed)),
            SeriesValue::Sum(hi, lo) => {
                SeriesRead::Sum(f64::from_bits(hi.load(Relaxed)) + f64::from_bits(lo.load(Relaxed)))
            }
            SeriesValue::LastValue(v) => {
                let bits = v.load(Relaxed);
                SeriesRead::LastValue((bits != UNSET).then(|| f64::from_bits(bits)))
            }
            SeriesValue::Histogram(h) => SeriesRead::Histogram(
                Box::new(h.snapshot()),
                h.window_snapshot(now_ms).map(Box::new),
            ),
        }
    }

    fn memory(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.labels.iter().map(|l| l.len() + 24).sum::<usize>()
            + match &self.value {
                SeriesValue::Histogram(h) => h.memory().bytes,
                _ => 0,
            }
            + self.exemplars.get().map_or(0, |e| e.memory())
    }
}

/// One metric: its spec and its series.
pub struct Metric {
    spec: MetricSpec,
    layout: Option<Arc<Layout>>,
    shards: usize,
    series: DashMap<Box<[u8]>, Arc<Series>, RandomState>,
    overflow: OnceLock<Arc<Series>>,
    len: AtomicUsize,
    dropped: AtomicU64,
}

/// Appends one label value to a series key.
#[inline]
pub fn push_label(key: &mut Vec<u8>, value: &[u8]) {
    let mut n = value.len();
    while n >= 0x80 {
        key.push((n as u8) | 0x80);
        n >>= 7;
    }
    key.push(n as u8);
    key.extend_from_slice(value);
}

fn decode_key(mut key: &[u8]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    while !key.is_empty() {
        let mut n = 0usize;
        let mut shift = 0;
        loop {
            let (&b, rest) = key.split_first()?;
            key = rest;
            n |= ((b & 0x7f) as usize).checked_shl(shift)?;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        if n > key.len() {
            return None;
        }
        let (value, rest) = key.split_at(n);
        out.push(String::from_utf8_lossy(value).into_owned());
        key = rest;
    }
    Some(out)
}

impl Metric {
    fn new(spec: MetricSpec) -> Result<Self> {
        if spec.max_series == 0 || spec.max_series > MAX_SERIES_CAP {
            return Err(Error::invalid(format!(
                "max_series of {} must be between 1 and {MAX_SERIES_CAP}, got {}",
                spec.name, spec.max_series
            )));
        }
        let (layout, shards) = match spec.kind {
            Kind::Summary | Kind::Distribution => {
                let options = Options {
                    shards: spec.histogram.shards.or(Some(SERIES_SHARDS)),
                    ..spec.histogram.clone()
                };
                let h = Histogram::new(&options)
                    .map_err(|e| Error::invalid(format!("{}: {e}", spec.name)))?;
                (Some(h.layout().clone()), h.shards())
            }
            _ => (None, 1),
        };
        if let Some(q) = spec.quantiles.iter().find(|q| !(0.0..=1.0).contains(*q)) {
            return Err(Error::invalid(format!(
                "{}: quantiles must be numbers between 0 and 1, got {q}",
                spec.name
            )));
        }
        Ok(Metric {
            spec,
            layout,
            shards,
            series: DashMap::with_hasher(RandomState::new()),
            overflow: OnceLock::new(),
            len: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    /// The spec.
    pub fn spec(&self) -> &MetricSpec {
        &self.spec
    }

    /// Records `value` into the series of `key` (see [`push_label`]). A counter ignores the
    /// value. A new series beyond the cap goes to the overflow series.
    ///
    /// This looks the series up in the shared map on every call: hot callers resolve a series
    /// once and keep the `Arc` (the NIF layer keeps a per-thread cache checked against
    /// [`Registry::generation`]).
    pub fn record(&self, key: &[u8], value: f64, now_ms: u64) -> Result<()> {
        self.resolve(key)?.record(value, now_ms)
    }

    /// The series of `key`, created if needed (the overflow series beyond the cap).
    pub fn resolve(&self, key: &[u8]) -> Result<Arc<Series>> {
        if let Some(series) = self.series.get(key) {
            return Ok(series.value().clone());
        }
        self.new_series(key)
    }

    fn new_series(&self, key: &[u8]) -> Result<Arc<Series>> {
        let labels = decode_key(key)
            .filter(|l| l.len() == self.spec.labels.len())
            .ok_or_else(|| Error::invalid("series key does not match the metric's labels"))?;
        let overflow_labels = !labels.is_empty() && labels.iter().all(|l| l == OVERFLOW_LABEL);
        if overflow_labels || self.len.load(Relaxed) >= self.spec.max_series {
            return Ok(self.overflow_series());
        }
        let entry = self.series.entry(key.into()).or_insert_with(|| {
            self.len.fetch_add(1, Relaxed);
            Arc::new(Series::new(labels.into_boxed_slice(), self))
        });
        Ok(entry.value().clone())
    }

    fn overflow_series(&self) -> Arc<Series> {
        self.overflow
            .get_or_init(|| {
                let labels = vec![OVERFLOW_LABEL.to_string(); self.spec.labels.len()];
                Arc::new(Series::new(labels.into_boxed_slice(), self))
            })
            .clone()
    }

    /// Counts one dropped event (a value or tags that could not be recorded).
    pub fn drop_one(&self) {
        self.dropped.fetch_add(1, Relaxed);
    }

    /// Events dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Number of series (without the overflow series).
    pub fn series_count(&self) -> usize {
        self.len.load(Relaxed)
    }

    /// Every series, sorted by label values, the overflow series last.
    pub fn series(&self) -> Vec<Arc<Series>> {
        let mut all: Vec<Arc<Series>> = self.series.iter().map(|e| e.value().clone()).collect();
        all.sort_by(|a, b| a.labels.cmp(&b.labels));
        all.extend(self.overflow.get().cloned());
        all
    }

    /// Removes the series not recorded since the previous prune; returns how many.
    fn prune(&self) -> usize {
        let mut removed = 0;
        self.series.retain(|_, s| {
            let keep = s.touched.swap(false, Relaxed) || s.pins.load(Relaxed) > 0;
            if !keep {
                removed += 1;
            }
            keep
        });
        self.len.fetch_sub(removed, Relaxed);
        removed
    }

    fn memory(&self) -> usize {
        std::mem::size_of::<Self>()
            + self
                .series
                .iter()
                .map(|e| e.key().len() + 48 + e.value().memory())
                .sum::<usize>()
            + self.overflow.get().map_or(0, |s| s.memory())
    }
}

/// A set of metrics.
pub struct Registry {
    metrics: Box<[Metric]>,
    /// Bumped after every prune (see [`Registry::generation`]).
    generation: AtomicU64,
}

fn valid_name(name: &str, colon: bool) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

impl Registry {
    /// Builds a registry, validating names and options.
    pub fn new(specs: Vec<MetricSpec>) -> Result<Self> {
        let mut names = std::collections::HashSet::new();
        for spec in &specs {
            if !valid_name(&spec.name, true) {
                return Err(Error::invalid(format!(
                    "{:?} is not a valid Prometheus metric name",
                    spec.name
                )));
            }
            let family = exposition_names(spec);
            for n in family {
                if !names.insert(n.clone()) {
                    return Err(Error::invalid(format!(
                        "two metrics would both be exported as {n:?}: give one a different name"
                    )));
                }
            }
            for label in &spec.labels {
                let reserved = match spec.kind {
                    Kind::Distribution => label == "le",
                    Kind::Summary => label == "quantile",
                    _ => false,
                };
                if !valid_name(label, false) || label.starts_with("__") || reserved {
                    return Err(Error::invalid(format!(
                        "{}: {label:?} is not a valid label name here",
                        spec.name
                    )));
                }
            }
            let mut sorted = spec.labels.clone();
            sorted.sort();
            sorted.dedup();
            if sorted.len() != spec.labels.len() {
                return Err(Error::invalid(format!("{}: duplicate tags", spec.name)));
            }
        }
        for reserved in [prometheus::DROPPED_NAME, prometheus::CLUSTER_UP_NAME] {
            if names.contains(reserved) {
                return Err(Error::invalid(format!(
                    "{reserved} is reserved for Hotpath's own metrics"
                )));
            }
        }
        let metrics = specs
            .into_iter()
            .map(Metric::new)
            .collect::<Result<Vec<_>>>()?;
        Ok(Registry {
            metrics: metrics.into_boxed_slice(),
            generation: AtomicU64::new(0),
        })
    }

    /// The metric at `index`.
    #[inline]
    pub fn metric(&self, index: usize) -> Option<&Metric> {
        self.metrics.get(index)
    }

    /// All metrics, in definition order.
    pub fn metrics(&self) -> &[Metric] {
        &self.metrics
    }

    /// Removes every series not recorded since the previous prune; returns how many.
    pub fn prune(&self) -> usize {
        let removed = self.metrics.iter().map(Metric::prune).sum();
        self.generation.fetch_add(1, Release);
        removed
    }

    /// Changes after every prune. A cache of resolved series is valid while this has not
    /// changed since **before** the series were resolved: read it first, resolve, then keep
    /// the series under that value.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Acquire)
    }

    /// Total number of series.
    pub fn series_count(&self) -> usize {
        self.metrics.iter().map(Metric::series_count).sum()
    }

    /// Approximate bytes used.
    pub fn memory(&self) -> usize {
        self.metrics.iter().map(Metric::memory).sum()
    }
}

/// Every sample name a metric's family produces.
fn exposition_names(spec: &MetricSpec) -> Vec<String> {
    match spec.kind {
        Kind::Summary | Kind::Distribution => vec![
            spec.name.clone(),
            format!("{}_sum", spec.name),
            format!("{}_count", spec.name),
            format!("{}_bucket", spec.name),
        ],
        _ => vec![spec.name.clone()],
    }
}

/// Helper for specs in tests and for defaults.
pub fn spec(name: &str, kind: Kind, labels: &[&str]) -> MetricSpec {
    MetricSpec {
        name: name.to_string(),
        help: format!("{name} help"),
        kind,
        labels: labels.iter().map(|l| l.to_string()).collect(),
        max_series: 10_000,
        histogram: Options {
            window: match kind {
                Kind::Summary => Some(WindowOptions::new(60_000, 6).expect("valid")),
                _ => None,
            },
            buckets: match kind {
                Kind::Distribution => vec![0.005, 0.01, 0.1, 1.0, 10.0],
                _ => vec![],
            },
            ..Options::default()
        },
        quantiles: vec![0.5, 0.9, 0.99],
    }
}

#[cfg(test)]
mod tests;

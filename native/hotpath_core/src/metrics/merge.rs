//! Cluster views: the series of a registry exported as plain values, and merged into another
//! registry of the same definitions (`Hotpath.Metrics.cluster_snapshot/2`).
//!
//! Counters and sums add up, histograms merge bucket by bucket (so the merged quantiles are
//! exactly those of one histogram that recorded every value), a window is merged into the
//! merged histogram's current slot, and dropped-event counts add up. Last values cannot be
//! combined: a merged registry whose last-value metric has one more label than the exported
//! one keeps each node's value apart under that label.
//!
//! [`Registry::import`] checks everything before it changes anything, so an import that fails
//! leaves the registry as it was.

use super::{push_label, Kind, Registry, SeriesValue, UNSET};
use crate::error::{Error, Result};
use crate::histogram::{Snapshot, Sum};
use std::sync::atomic::Ordering::Relaxed;

/// The value of one exported series.
#[derive(Debug, Clone, PartialEq)]
pub enum Exported {
    /// Number of records.
    Counter(u64),
    /// Compensated sum.
    Sum(Sum),
    /// Last value, `None` if never set.
    LastValue(Option<f64>),
    /// Cumulative histogram and, with a window, what the window held when exported.
    Histogram(Box<Snapshot>, Option<Box<Snapshot>>),
}

/// One exported series.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedSeries {
    /// Label values, in the order of the metric's label names.
    pub labels: Vec<String>,
    /// Its value.
    pub value: Exported,
}

/// One exported metric.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedMetric {
    /// Exposition name (what metrics are matched by).
    pub name: String,
    /// Kind.
    pub kind: Kind,
    /// Label names.
    pub labels: Vec<String>,
    /// Events dropped.
    pub dropped: u64,
    /// Every series.
    pub series: Vec<ExportedSeries>,
}

impl Registry {
    /// Every metric and series as plain values; `now_ms` positions windows.
    pub fn export(&self, now_ms: u64) -> Vec<ExportedMetric> {
        self.metrics()
            .iter()
            .map(|metric| {
                let spec = metric.spec();
                let series = metric
                    .series()
                    .iter()
                    .map(|s| {
                        let value = match &s.value {
                            SeriesValue::Counter(n) => Exported::Counter(n.load(Relaxed)),
                            SeriesValue::Sum(hi, lo) => Exported::Sum(Sum {
                                hi: f64::from_bits(hi.load(Relaxed)),
                                lo: f64::from_bits(lo.load(Relaxed)),
                            }),
                            SeriesValue::LastValue(v) => {
                                let bits = v.load(Relaxed);
                                Exported::LastValue((bits != UNSET).then(|| f64::from_bits(bits)))
                            }
                            SeriesValue::Histogram(h) => Exported::Histogram(
                                Box::new(h.snapshot()),
                                h.window_snapshot(now_ms).map(Box::new),
                            ),
                        };
                        ExportedSeries {
                            labels: s.labels().to_vec(),
                            value,
                        }
                    })
                    .collect();
                ExportedMetric {
                    name: spec.name.clone(),
                    kind: spec.kind,
                    labels: spec.labels.clone(),
                    dropped: metric.dropped(),
                    series,
                }
            })
            .collect()
    }

    /// Merges what another registry exported into this one. Metrics are matched by name;
    /// exported metrics this registry does not define are ignored. A metric of the same name
    /// but another kind, other labels or an incompatible histogram layout is an
    /// [`Error::Incompatible`], and then nothing is merged.
    ///
    /// A last-value metric defined here with one label more than the exported one (appended
    /// last) gets `node` as that label's value, so each node's value stays its own series.
    pub fn import(&self, exported: &[ExportedMetric], node: &str, now_ms: u64) -> Result<()> {
        let mut plan = Vec::with_capacity(exported.len());
        for e in exported {
            let Some(index) = self.metrics().iter().position(|m| m.spec().name == e.name) else {
                continue;
            };
            let spec = self.metrics()[index].spec();
            if spec.kind != e.kind {
                return Err(Error::incompatible(format!(
                    "{}: a {:?} here, a {:?} there",
                    e.name, spec.kind, e.kind
                )));
            }
            let extra = spec.kind == Kind::LastValue
                && spec.labels.len() == e.labels.len() + 1
                && spec.labels[..e.labels.len()] == e.labels[..];
            if !extra && spec.labels != e.labels {
                return Err(Error::incompatible(format!(
                    "{}: labels {:?} here, {:?} there",
                    e.name, spec.labels, e.labels
                )));
            }
            let layout = self.metrics()[index].layout.as_ref();
            for s in &e.series {
                if s.labels.len() != e.labels.len() {
                    return Err(Error::malformed(format!(
                        "{}: a series with {} label values for {} labels",
                        e.name,
                        s.labels.len(),
                        e.labels.len()
                    )));
                }
                let fits = match (&s.value, spec.kind) {
                    (Exported::Counter(_), Kind::Counter)
                    | (Exported::Sum(_), Kind::Sum)
                    | (Exported::LastValue(_), Kind::LastValue) => true,
                    (Exported::Histogram(c, w), Kind::Summary | Kind::Distribution) => {
                        let layout = layout.expect("histogram metrics have a layout");
                        layout.check_compatible(c.layout())?;
                        if let Some(w) = w {
                            layout.check_compatible(w.layout())?;
                        }
                        true
                    }
                    _ => false,
                };
                if !fits {
                    return Err(Error::malformed(format!(
                        "{}: a series value of another kind",
                        e.name
                    )));
                }
            }
            plan.push((index, extra, e));
        }
        let mut key = Vec::new();
        for (index, extra, e) in plan {
            let metric = &self.metrics()[index];
            metric.dropped.fetch_add(e.dropped, Relaxed);
            for s in &e.series {
                if s.value == Exported::LastValue(None) {
                    continue;
                }
                key.clear();
                for label in &s.labels {
                    push_label(&mut key, label.as_bytes());
                }
                if extra {
                    push_label(&mut key, node.as_bytes());
                }
                let series = metric.resolve(&key)?;
                match (&s.value, &series.value) {
                    (Exported::Counter(n), SeriesValue::Counter(c)) => {
                        c.fetch_add(*n, Relaxed);
                    }
                    (Exported::Sum(sum), SeriesValue::Sum(hi, lo)) => {
                        crate::histogram::atomic_sum_add(hi, lo, sum.hi);
                        crate::histogram::atomic_sum_add(hi, lo, sum.lo);
                    }
                    (Exported::LastValue(Some(v)), SeriesValue::LastValue(cell)) => {
                        cell.store(v.to_bits(), Relaxed);
                    }
                    (Exported::Histogram(c, w), SeriesValue::Histogram(h)) => {
                        h.merge_snapshot(c)?;
                        if let Some(w) = w {
                            h.merge_window_snapshot(w, now_ms)?;
                        }
                    }
                    _ => unreachable!("checked above"),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{spec, Kind, MetricSpec, Registry, SeriesRead};
    use super::*;

    fn key(values: &[&str]) -> Vec<u8> {
        let mut k = Vec::new();
        for v in values {
            push_label(&mut k, v.as_bytes());
        }
        k
    }

    fn specs() -> Vec<MetricSpec> {
        vec![
            spec("req_total", Kind::Counter, &["route"]),
            spec("bytes_total", Kind::Sum, &["route"]),
            spec("query_time", Kind::Summary, &["repo"]),
            spec("http_duration", Kind::Distribution, &["route"]),
        ]
    }

    /// Records `values` into every metric of `r` under the same labels.
    fn record(r: &Registry, labels: &[&str], values: impl IntoIterator<Item = f64>) {
        for v in values {
            for m in r.metrics() {
                m.record(&key(labels), v, 1_000).unwrap();
            }
        }
    }

    #[test]
    fn merging_exports_equals_recording_the_union() {
        let (a, b, union) = (
            Registry::new(specs()).unwrap(),
            Registry::new(specs()).unwrap(),
            Registry::new(specs()).unwrap(),
        );
        let left: Vec<f64> = (1..=500).map(|i| (i * 7 % 1000) as f64).collect();
        let right: Vec<f64> = (1..=300).map(|i| (i * 13 % 5000) as f64 / 4.0).collect();
        record(&a, &["x"], left.iter().copied());
        record(&b, &["x"], right.iter().copied());
        record(&b, &["y"], [3.0, 4.0]);
        record(&union, &["x"], left.iter().chain(&right).copied());
        record(&union, &["y"], [3.0, 4.0]);
        a.metric(0).unwrap().drop_one();

        let merged = Registry::new(specs()).unwrap();
        merged.import(&a.export(1_000), "a", 1_000).unwrap();
        merged.import(&b.export(1_000), "b", 1_000).unwrap();

        for (m, u) in merged.metrics().iter().zip(union.metrics()) {
            let ms: Vec<_> = m.series().iter().map(|s| s.read(1_000)).collect();
            let us: Vec<_> = u.series().iter().map(|s| s.read(1_000)).collect();
            assert_eq!(ms, us, "{}", m.spec().name);
        }
        assert_eq!(merged.metric(0).unwrap().dropped(), 1);
        assert_eq!(
            merged
                .render_prometheus(1_000)
                .replace("dropped_total{metric=\"req_total\"} 1", ""),
            union
                .render_prometheus(1_000)
                .replace("dropped_total{metric=\"req_total\"} 0", "")
        );
        // The window went into the current slot: a summary renders its quantiles from it.
        let SeriesRead::Histogram(_, Some(window)) =
            merged.metric(2).unwrap().series()[0].read(1_000)
        else {
            panic!("a summary has a window")
        };
        assert_eq!(window.count(), 800);
    }

    #[test]
    fn last_values_stay_per_node_under_an_extra_label() {
        let source = Registry::new(vec![spec("queue_len", Kind::LastValue, &["q"])]).unwrap();
        source
            .metric(0)
            .unwrap()
            .record(&key(&["mail"]), 5.0, 0)
            .unwrap();
        let merged =
            Registry::new(vec![spec("queue_len", Kind::LastValue, &["q", "node"])]).unwrap();
        merged.import(&source.export(0), "a@h", 0).unwrap();
        source
            .metric(0)
            .unwrap()
            .record(&key(&["mail"]), 7.0, 0)
            .unwrap();
        merged.import(&source.export(0), "b@h", 0).unwrap();
        let series = merged.metric(0).unwrap().series();
        let read: Vec<_> = series
            .iter()
            .map(|s| (s.labels().to_vec(), s.read(0)))
            .collect();
        assert_eq!(
            read,
            vec![
                (
                    vec!["mail".into(), "a@h".into()],
                    SeriesRead::LastValue(Some(5.0))
                ),
                (
                    vec!["mail".into(), "b@h".into()],
                    SeriesRead::LastValue(Some(7.0))
                ),
            ]
        );
    }

    #[test]
    fn incompatible_exports_change_nothing() {
        let merged = Registry::new(specs()).unwrap();
        let source = Registry::new(specs()).unwrap();
        record(&source, &["x"], [1.0]);
        let good = source.export(0);

        let mut other_kind = good.clone();
        other_kind[0].kind = Kind::Sum;
        let mut other_labels = good.clone();
        other_labels[1].labels = vec!["path".into()];
        let mut finer = specs();
        finer[2].histogram.relative_error = 0.001;
        let other_layout = Registry::new(finer).unwrap();
        record(&other_layout, &["x"], [1.0]);
        let mut short = good.clone();
        short[0].series[0].labels.clear();

        for (bad, what) in [
            (other_kind, "incompatible"),
            (other_labels, "incompatible"),
            (other_layout.export(0), "incompatible"),
            (short, "malformed"),
        ] {
            let err = merged.import(&bad, "n", 0).unwrap_err();
            assert!(err.to_string().contains(what), "{err}");
            assert_eq!(merged.series_count(), 0, "nothing merged before the error");
        }

        // Metrics this registry does not define are ignored.
        let extra = Registry::new(vec![spec("other_total", Kind::Counter, &[])]).unwrap();
        extra.metric(0).unwrap().record(&[], 0.0, 0).unwrap();
        merged.import(&extra.export(0), "n", 0).unwrap();
        assert_eq!(merged.series_count(), 0);
    }

    #[test]
    fn cluster_up_family() {
        let mut out = String::new();
        super::super::prometheus::render_cluster_up(
            &mut out,
            &[("a@h".into(), true), ("b\"@h".into(), false)],
            super::super::prometheus::Format::Prometheus,
        );
        assert!(out.ends_with(
            "# TYPE hotpath_metrics_cluster_up gauge\nhotpath_metrics_cluster_up{node=\"a@h\"} 1\nhotpath_metrics_cluster_up{node=\"b\\\"@h\"} 0\n"
        ));
    }
}

//! Cluster views of `Hotpath.Metrics` (`cluster_snapshot/2`, `prometheus/2`): a registry's
//! series exported as terms that travel between nodes, merged into a fresh registry of the
//! same definitions, and rendered with the nodes that did not answer.
//!
//! Histograms travel in the binary format of `Hotpath.Histogram.to_binary/1`. Every NIF here
//! walks all series and runs on a dirty CPU scheduler. Imported terms come from another node:
//! they are checked completely (a defect is `{:error, {:malformed, message}}`) before anything
//! is merged.

use super::{registry, ProperVec};
use crate::error::{guard, lift, NifResult};
use hotpath_core::clock;
use hotpath_core::histogram::{Snapshot, Sum};
use hotpath_core::metrics::merge::{Exported, ExportedMetric, ExportedSeries};
use hotpath_core::metrics::{Kind, MAX_LABEL_BYTES};
use hotpath_core::Error as CoreError;
use rustler::types::binary::NewBinary;
use rustler::{Atom, Binary, Encoder, Env, Term};

mod atoms {
    rustler::atoms! {
        ok, nil, counter, sum, last_value, summary, distribution, histogram
    }
}

const KINDS: [Kind; 5] = [
    Kind::Counter,
    Kind::Sum,
    Kind::LastValue,
    Kind::Summary,
    Kind::Distribution,
];

fn kind_atom(kind: Kind) -> Atom {
    match kind {
        Kind::Counter => atoms::counter(),
        Kind::Sum => atoms::sum(),
        Kind::LastValue => atoms::last_value(),
        Kind::Summary => atoms::summary(),
        Kind::Distribution => atoms::distribution(),
    }
}

fn binary<'a>(env: Env<'a>, bytes: &[u8]) -> Term<'a> {
    let mut bin = NewBinary::new(env, bytes.len());
    bin.as_mut_slice().copy_from_slice(bytes);
    Binary::from(bin).encode(env)
}

/// A float the VM can hold (sums can overflow to infinity).
fn finite(v: f64) -> f64 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(f64::MIN, f64::MAX)
    }
}

fn encode_value<'a>(env: Env<'a>, value: &Exported) -> Term<'a> {
    match value {
        Exported::Counter(n) => (atoms::counter(), *n).encode(env),
        Exported::Sum(s) => (atoms::sum(), finite(s.hi), finite(s.lo)).encode(env),
        Exported::LastValue(Some(v)) => (atoms::last_value(), *v).encode(env),
        Exported::LastValue(None) => (atoms::last_value(), atoms::nil()).encode(env),
        Exported::Histogram(c, w) => {
            let window = match w {
                Some(w) => binary(env, &w.to_bytes()),
                None => atoms::nil().encode(env),
            };
            (atoms::histogram(), binary(env, &c.to_bytes()), window).encode(env)
        }
    }
}

/// Every metric of the registry as
/// `[{name, kind, label_names, dropped, [{label_values, value}]}]`, values being
/// `{:counter, n}`, `{:sum, hi, lo}`, `{:last_value, float | nil}` or
/// `{:histogram, cumulative_binary, window_binary | nil}`.
#[rustler::nif(schedule = "DirtyCpu")]
fn metrics_export<'a>(env: Env<'a>, reg: Term<'a>) -> NifResult<Term<'a>> {
    let r = registry(reg)?;
    guard(|| {
        let exported = r.registry.export(clock::now_ms());
        let terms: Vec<Term> = exported
            .iter()
            .map(|m| {
                let series: Vec<Term> = m
                    .series
                    .iter()
                    .map(|s| (s.labels.clone(), encode_value(env, &s.value)).encode(env))
                    .collect();
                (
                    m.name.clone(),
                    kind_atom(m.kind),
                    m.labels.clone(),
                    m.dropped,
                    series,
                )
                    .encode(env)
            })
            .collect();
        Ok(terms.encode(env))
    })
}

type Malformed<T> = Result<T, CoreError>;

fn bad(what: &str) -> CoreError {
    CoreError::malformed(format!("exported metrics: {what}"))
}

fn decode_snapshot(term: Term) -> Malformed<Box<Snapshot>> {
    let bin = term
        .decode::<Binary>()
        .map_err(|_| bad("a histogram is not a binary"))?;
    Snapshot::from_bytes(bin.as_slice()).map(Box::new)
}

fn decode_float(term: Term) -> Malformed<f64> {
    term.decode::<f64>()
        .ok()
        .or_else(|| term.decode::<i64>().ok().map(|i| i as f64))
        .filter(|v| v.is_finite())
        .ok_or_else(|| bad("a value is not a number"))
}

fn decode_value(term: Term) -> Malformed<Exported> {
    let items =
        rustler::types::tuple::get_tuple(term).map_err(|_| bad("a value is not a tuple"))?;
    let tag = items
        .first()
        .and_then(|t| t.decode::<Atom>().ok())
        .ok_or_else(|| bad("a value has no kind"))?;
    match items[1..] {
        [n] if tag == atoms::counter() => n
            .decode::<u64>()
            .map(Exported::Counter)
            .map_err(|_| bad("a counter is not a non-negative integer")),
        [hi, lo] if tag == atoms::sum() => Ok(Exported::Sum(Sum {
            hi: decode_float(hi)?,
            lo: decode_float(lo)?,
        })),
        [v] if tag == atoms::last_value() => {
            if v.decode::<Atom>().is_ok_and(|a| a == atoms::nil()) {
                Ok(Exported::LastValue(None))
            } else {
                decode_float(v).map(|v| Exported::LastValue(Some(v)))
            }
        }
        [c, w] if tag == atoms::histogram() => {
            let window = if w.decode::<Atom>().is_ok_and(|a| a == atoms::nil()) {
                None
            } else {
                Some(decode_snapshot(w)?)
            };
            Ok(Exported::Histogram(decode_snapshot(c)?, window))
        }
        _ => Err(bad("a value of an unknown kind")),
    }
}

/// A proper list of label names or values, each at most [`MAX_LABEL_BYTES`] of UTF-8.
fn decode_labels(term: Term, what: &str) -> Malformed<Vec<String>> {
    let ProperVec(labels) = term
        .decode::<ProperVec<String>>()
        .map_err(|_| bad(&format!("{what} are not a proper list of strings")))?;
    if labels.iter().any(|l| l.len() > MAX_LABEL_BYTES) {
        return Err(bad(&format!("{what} longer than {MAX_LABEL_BYTES} bytes")));
    }
    Ok(labels)
}

/// The elements of a proper list (rustler's own list decoding panics on an improper one).
fn decode_list<'a>(term: Term<'a>, what: &str) -> Malformed<Vec<Term<'a>>> {
    term.decode::<ProperVec<Term<'a>>>()
        .map(|l| l.0)
        .map_err(|_| bad(&format!("{what} is not a proper list")))
}

fn decode_metric(term: Term) -> Malformed<ExportedMetric> {
    let (name, kind, labels, dropped, series): (String, Atom, Term, u64, Term) = term
        .decode()
        .map_err(|_| bad("a metric is not {name, kind, labels, dropped, series}"))?;
    let labels = decode_labels(labels, "label names")?;
    let series = decode_list(series, "a metric's series")?;
    let kind = KINDS
        .into_iter()
        .find(|k| kind_atom(*k) == kind)
        .ok_or_else(|| bad("unknown metric kind"))?;
    let series = series
        .into_iter()
        .map(|s| {
            let (labels, value): (Term, Term) = s
                .decode()
                .map_err(|_| bad("a series is not {label_values, value}"))?;
            Ok(ExportedSeries {
                labels: decode_labels(labels, "label values")?,
                value: decode_value(value)?,
            })
        })
        .collect::<Malformed<Vec<_>>>()?;
    Ok(ExportedMetric {
        name,
        kind,
        labels,
        dropped,
        series,
    })
}

/// Merges what `metrics_export` returned on another node into `reg`; `node` (a binary) labels
/// last values (see `Registry::import`). `:ok`, or `{:error, {:malformed | :incompatible,
/// message}}` and nothing merged. Whatever `exported` is (it comes from another node), a
/// defect is `{:error, {:malformed, message}}`, never a panic.
#[rustler::nif(schedule = "DirtyCpu")]
fn metrics_import<'a>(reg: Term<'a>, exported: Term<'a>, node: String) -> NifResult<Atom> {
    let r = registry(reg)?;
    let decoded = lift(decode_list(exported, "the export").and_then(|metrics| {
        metrics
            .into_iter()
            .map(decode_metric)
            .collect::<Malformed<Vec<_>>>()
    }))?;
    guard(|| lift(r.registry.import(&decoded, &node, clock::now_ms())))?;
    Ok(atoms::ok())
}

/// The registry in `format` (as `metrics_prometheus`) followed by the cluster family: `nodes`
/// is `[{node_name, merged?}]`.
#[rustler::nif(schedule = "DirtyCpu")]
fn metrics_prometheus_cluster<'a>(
    env: Env<'a>,
    reg: Term<'a>,
    nodes: ProperVec<(String, bool)>,
    format: rustler::Atom,
) -> NifResult<Term<'a>> {
    let r = registry(reg)?;
    let nodes = nodes.0;
    let format = super::exposition(format)?;
    guard(|| {
        Ok(binary(
            env,
            &super::render(&r.registry, format, Some(&nodes)),
        ))
    })
}

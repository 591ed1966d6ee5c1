//! Reads of a whole registry: Prometheus text, snapshots, pruning, info. Each walks every
//! series, so each runs on a dirty CPU scheduler.

use super::{atoms, exposition, registry, render};
use crate::error::{guard, NifResult};
use crate::histogram::stats;
use hotpath_core::clock;
use hotpath_core::metrics::SeriesRead;
use rustler::types::binary::NewBinary;
use rustler::{Atom, Binary, Encoder, Env, NifMap, Term};

/// The registry in `format` (`:prometheus`, `:openmetrics` or `:protobuf`), as a binary
/// (dirty scheduler).
#[rustler::nif(schedule = "DirtyCpu")]
fn metrics_prometheus<'a>(env: Env<'a>, reg: Term<'a>, format: Atom) -> NifResult<Term<'a>> {
    let r = registry(reg)?;
    let format = exposition(format)?;
    guard(|| {
        let bytes = render(&r.registry, format, None);
        let mut bin = NewBinary::new(env, bytes.len());
        bin.as_mut_slice().copy_from_slice(&bytes);
        Ok(Binary::from(bin).encode(env))
    })
}

/// Every metric: `{dropped, [{label_values, read}]}`, in definition order (dirty scheduler).
#[rustler::nif(schedule = "DirtyCpu")]
fn metrics_snapshot<'a>(env: Env<'a>, reg: Term<'a>) -> NifResult<Term<'a>> {
    let r = registry(reg)?;
    guard(|| {
        let now = clock::now_ms();
        let mut out = Vec::new();
        for metric in r.registry.metrics() {
            let spec = metric.spec();
            let mut series_out = Vec::new();
            for series in metric.series() {
                let read = match series.read(now) {
                    SeriesRead::Counter(n) => (atoms::counter(), n).encode(env),
                    SeriesRead::Sum(s) => (atoms::sum(), s.clamp(f64::MIN, f64::MAX)).encode(env),
                    SeriesRead::LastValue(v) => (atoms::last_value(), v).encode(env),
                    SeriesRead::Histogram(cumulative, window) => {
                        let c = stats(&cumulative, &spec.quantiles)?;
                        let w = match window {
                            Some(w) => Some(stats(&w, &spec.quantiles)?),
                            None => None,
                        };
                        (atoms::histogram(), c, w).encode(env)
                    }
                };
                series_out.push((series.labels().to_vec(), read));
            }
            out.push((metric.dropped(), series_out));
        }
        Ok(out.encode(env))
    })
}

/// Removes the series not recorded since the previous prune (dirty scheduler).
#[rustler::nif(schedule = "DirtyCpu")]
fn metrics_prune(reg: Term) -> NifResult<usize> {
    let r = registry(reg)?;
    guard(|| Ok(r.registry.prune()))
}

#[derive(NifMap)]
struct MetricsInfo {
    series: usize,
    memory: usize,
}

/// Series count and approximate memory (dirty scheduler: walks every series).
#[rustler::nif(schedule = "DirtyCpu")]
fn metrics_info(reg: Term) -> NifResult<MetricsInfo> {
    let r = registry(reg)?;
    guard(|| {
        Ok(MetricsInfo {
            series: r.registry.series_count(),
            memory: r.registry.memory(),
        })
    })
}

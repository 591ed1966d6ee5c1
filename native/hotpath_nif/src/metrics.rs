//! `Hotpath.Metrics`: the registry as a resource, the record path, snapshots and exposition.
//!
//! `metrics_record` resolves a metric name (a binary or a list of atoms) to its metrics in a
//! hash map, reads the tag values out of the tags map, encodes them into a reused thread-local
//! key buffer and records: no allocation once the series exists. Reads walk every series and
//! run on dirty CPU schedulers.

use crate::error::{argument_error, guard, lift, NifResult};
use crate::fast_nif::fast_nif;
use crate::histogram::{monotonic_ms, stats};
use crate::published::{LocalCopy, LocalTable, Published};
use crate::raw_resource::RawResourceType;
use hotpath_core::histogram::{Options, WindowOptions};
use hotpath_core::metrics::FastState;
use hotpath_core::metrics::{push_label, Kind, MetricSpec, Registry, Series, SeriesRead};
use rustler::sys::{enif_get_atom, ErlNifCharEncoding, ErlNifTerm};
use rustler::types::binary::NewBinary;
use rustler::{Atom, Binary, Encoder, Env, NifMap, Term};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

mod atoms {
    rustler::atoms! {
        ok, nil, counter, sum, last_value, summary, distribution, histogram,
        unknown_metric, unknown_instance, bad_value, missing_tag, convert_tags
    }
}

/// A registry and its lookup tables.
pub struct Instance {
    pub(crate) registry: Registry,
    /// Tag keys (atoms) of each metric, in label order.
    tag_keys: Vec<Vec<Atom>>,
    /// Metric indexes by dotted binary name.
    by_binary: HashMap<Box<[u8]>, Vec<usize>, FastState>,
    /// Metric indexes by atom-list name (atom terms are stable for the VM's life).
    by_atoms: HashMap<Box<[ErlNifTerm]>, Vec<usize>, FastState>,
}

/// The resource behind a `Hotpath.Metrics` registry term.
pub struct MetricsResource(Arc<Instance>);

/// The resource type, opened in `load`.
pub static METRICS: RawResourceType<MetricsResource> = RawResourceType::new();

#[inline]
pub(crate) fn registry<'a>(term: Term<'a>) -> NifResult<&'a Instance> {
    METRICS
        .get(term)
        .map(|r| &*r.0)
        .ok_or_else(|| argument_error("expected a Hotpath.Metrics registry"))
}

// ---- instances by name (see `published.rs`) ----------------------------------------

static PUBLISHED: Published<Instance> = Published::new();

thread_local! {
    static LOCAL_PUBLISHED: LocalCopy<Instance> = const { RefCell::new(LocalTable::new()) };
}

/// Runs `f` with the instance published under `name` (an atom term), if any.
#[inline]
fn with_published<T>(name: Term, f: impl FnOnce(&Instance) -> T) -> Option<T> {
    PUBLISHED.with(&LOCAL_PUBLISHED, name.as_c_arg(), f)
}

/// Publishes `reg` under the atom `name` (replacing what was there).
#[rustler::nif]
fn metrics_publish(reg: Term, name: Atom) -> NifResult<Atom> {
    let instance = METRICS
        .get(reg)
        .ok_or_else(|| argument_error("expected a Hotpath.Metrics registry"))?
        .0
        .clone();
    PUBLISHED.publish(name.as_c_arg(), instance);
    Ok(atoms::ok())
}

/// Removes the instance published under `name`, if `reg` is still the one published.
#[rustler::nif]
fn metrics_unpublish(reg: Term, name: Atom) -> NifResult<Atom> {
    let instance = registry(reg)?;
    PUBLISHED.unpublish(name.as_c_arg(), instance);
    Ok(atoms::ok())
}

#[derive(NifMap)]
struct SpecIn {
    kind: Atom,
    name: String,
    help: String,
    labels: Vec<String>,
    tag_keys: Vec<Atom>,
    max_series: usize,
    buckets: Vec<f64>,
    quantiles: Vec<f64>,
    relative_error: f64,
    window: Option<(u64, u32)>,
    binary_name: String,
    atom_name: Vec<Atom>,
}

fn atom_key(atoms: &[Atom]) -> Box<[ErlNifTerm]> {
    atoms.iter().map(|a| a.as_c_arg()).collect()
}

#[rustler::nif]
fn metrics_new(env: Env, specs: Vec<SpecIn>) -> NifResult<Term> {
    guard(|| {
        let mut tag_keys = Vec::new();
        let mut by_binary: HashMap<Box<[u8]>, Vec<usize>, FastState> = HashMap::default();
        let mut by_atoms: HashMap<Box<[ErlNifTerm]>, Vec<usize>, FastState> = HashMap::default();
        let mut core = Vec::new();
        for (i, s) in specs.into_iter().enumerate() {
            let kind = if s.kind == atoms::counter() {
                Kind::Counter
            } else if s.kind == atoms::sum() {
                Kind::Sum
            } else if s.kind == atoms::last_value() {
                Kind::LastValue
            } else if s.kind == atoms::summary() {
                Kind::Summary
            } else if s.kind == atoms::distribution() {
                Kind::Distribution
            } else {
                return Err(argument_error("unknown metric kind"));
            };
            if s.labels.len() != s.tag_keys.len() {
                return Err(argument_error("labels and tag keys differ in length"));
            }
            let window = match s.window {
                Some((span, slots)) => Some(lift(WindowOptions::new(span, slots))?),
                None => None,
            };
            by_binary
                .entry(s.binary_name.into_bytes().into_boxed_slice())
                .or_default()
                .push(i);
            by_atoms.entry(atom_key(&s.atom_name)).or_default().push(i);
            tag_keys.push(s.tag_keys);
            core.push(MetricSpec {
                name: s.name,
                help: s.help,
                kind,
                labels: s.labels,
                max_series: s.max_series,
                histogram: Options {
                    relative_error: s.relative_error,
                    buckets: s.buckets,
                    window,
                    ..Options::default()
                },
                quantiles: s.quantiles,
            });
        }
        let registry = lift(Registry::new(core))?;
        Ok(METRICS.make(
            env,
            MetricsResource(Arc::new(Instance {
                registry,
                tag_keys,
                by_binary,
                by_atoms,
            })),
        ))
    })
}

thread_local! {
    /// Series keys of one record call, reused across calls.
    static KEYS: RefCell<(Vec<u8>, Vec<usize>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

enum Refusal {
    BadValue,
    MissingTag,
    ConvertTags,
}

fn refusal(r: Refusal) -> Atom {
    match r {
        Refusal::BadValue => atoms::bad_value(),
        Refusal::MissingTag => atoms::missing_tag(),
        Refusal::ConvertTags => atoms::convert_tags(),
    }
}

/// Appends the label text of one tag value: binaries (UTF-8), atoms (`nil` is ""), integers,
/// floats. Anything else asks the caller to convert the tags to strings.
#[inline]
fn push_tag(key: &mut Vec<u8>, value: Term) -> Result<(), Refusal> {
    if let Ok(bin) = value.decode::<Binary>() {
        if std::str::from_utf8(bin.as_slice()).is_err() {
            return Err(Refusal::ConvertTags);
        }
        push_label(key, bin.as_slice());
    } else if value.is_atom() {
        if value.as_c_arg() == atoms::nil().as_c_arg() {
            push_label(key, b"");
            return Ok(());
        }
        let mut buf = [0u8; 260];
        // SAFETY: `buf` is writable for its full length, which is passed; atoms have at most
        // 255 characters, so a Latin-1 name and its NUL fit. Returns 0 when the atom cannot
        // be written in Latin-1 (then the caller converts the tags).
        let n = unsafe {
            enif_get_atom(
                value.get_env().as_c_arg(),
                value.as_c_arg(),
                buf.as_mut_ptr() as *mut rustler::sys::c_char,
                buf.len() as u32,
                ErlNifCharEncoding::ERL_NIF_LATIN1,
            )
        };
        if n <= 0 {
            return Err(Refusal::ConvertTags);
        }
        let latin1 = &buf[..(n as usize - 1)];
        if latin1.is_ascii() {
            push_label(key, latin1);
        } else {
            let utf8: String = latin1.iter().map(|&b| b as char).collect();
            push_label(key, utf8.as_bytes());
        }
    } else if let Ok(i) = value.decode::<i64>() {
        let mut buf = [0u8; 24];
        push_label(key, format_int(i, &mut buf));
    } else if let Ok(f) = value.decode::<f64>() {
        push_label(key, format!("{f}").as_bytes());
    } else {
        return Err(Refusal::ConvertTags);
    }
    Ok(())
}

fn format_int(i: i64, buf: &mut [u8; 24]) -> &[u8] {
    let mut at = buf.len();
    let neg = i < 0;
    let mut n = i.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if neg {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

fn value_of(term: Term) -> Option<f64> {
    term.decode::<f64>()
        .ok()
        .or_else(|| term.decode::<i64>().ok().map(|i| i as f64))
}

/// Records into every metric in `indexes`: checks the value and every tag first, so nothing
/// is recorded unless everything can be.
fn record_into(
    r: &Instance,
    indexes: &[usize],
    value: Term,
    tags: Term,
) -> NifResult<Result<(), Refusal>> {
    let mut number = None;
    for &i in indexes {
        let metric = r.registry.metric(i).ok_or(rustler::Error::BadArg)?;
        if metric.spec().kind != Kind::Counter && number.is_none() {
            match value_of(value) {
                Some(v) => number = Some(v),
                None => return Ok(Err(Refusal::BadValue)),
            }
        }
    }
    let needs_tags = indexes.iter().any(|&i| !r.tag_keys[i].is_empty());
    if needs_tags && !tags.is_map() {
        return Err(argument_error("tags must be a map"));
    }
    // Reading the clock costs about an empty NIF call: only windows need it.
    let now = if indexes.iter().any(|&i| {
        r.registry
            .metric(i)
            .is_some_and(|m| m.spec().histogram.window.is_some())
    }) {
        monotonic_ms()
    } else {
        0
    };
    KEYS.with(|cell| {
        let (buf, ends) = &mut *cell.borrow_mut();
        buf.clear();
        ends.clear();
        for &i in indexes {
            for &tag in &r.tag_keys[i] {
                let Ok(v) = tags.map_get(tag) else {
                    return Ok(Err(Refusal::MissingTag));
                };
                if let Err(refused) = push_tag(buf, v) {
                    return Ok(Err(refused));
                }
            }
            ends.push(buf.len());
        }
        let mut start = 0;
        for (&i, &end) in indexes.iter().zip(ends.iter()) {
            let metric = r.registry.metric(i).ok_or(rustler::Error::BadArg)?;
            lift(metric.record(&buf[start..end], number.unwrap_or(0.0), now))?;
            start = end;
        }
        Ok(Ok(()))
    })
}

fn indexes_of<'r>(r: &'r Instance, name: Term) -> Option<&'r Vec<usize>> {
    if let Ok(bin) = name.decode::<Binary>() {
        return r.by_binary.get(bin.as_slice());
    }
    let mut ids = [ErlNifTerm::default(); 32];
    let mut n = 0;
    for item in name.decode::<rustler::ListIterator>().ok()? {
        if !item.is_atom() || n == ids.len() {
            return None;
        }
        ids[n] = item.as_c_arg();
        n += 1;
    }
    r.by_atoms.get(&ids[..n])
}

/// Records `value` with `tags` into the metrics named `name`. Returns `:ok`, or an atom saying
/// why nothing was recorded: `:unknown_metric`, `:bad_value`, `:missing_tag`, `:convert_tags`
/// (a tag value is not a string, atom or number: the caller converts and retries).
fn metrics_record<'a>(_env: Env<'a>, [reg, name, value, tags]: [Term<'a>; 4]) -> NifResult<Atom> {
    let r = registry(reg)?;
    let Some(indexes) = indexes_of(r, name) else {
        return Ok(atoms::unknown_metric());
    };
    Ok(match record_into(r, indexes, value, tags)? {
        Ok(()) => atoms::ok(),
        Err(refused) => refusal(refused),
    })
}

fast_nif!("metrics_record", 4, metrics_record);

/// `metrics_record` with the instance given by its published name; `:unknown_instance` when
/// nothing is published under it.
fn metrics_record_named<'a>(
    _env: Env<'a>,
    [instance, name, value, tags]: [Term<'a>; 4],
) -> NifResult<Atom> {
    with_published(instance, |r| {
        let Some(indexes) = indexes_of(r, name) else {
            return Ok(atoms::unknown_metric());
        };
        Ok(match record_into(r, indexes, value, tags)? {
            Ok(()) => atoms::ok(),
            Err(refused) => refusal(refused),
        })
    })
    .unwrap_or_else(|| Ok(atoms::unknown_instance()))
}

fast_nif!("metrics_record_named", 4, metrics_record_named);

/// Runs `f` with the instance `target` names: a registry term, or the atom it is published
/// under (`:unknown_instance` when nothing is).
#[inline]
fn with_instance(target: Term, f: impl FnOnce(&Instance) -> NifResult<Atom>) -> NifResult<Atom> {
    if target.is_atom() {
        with_published(target, f).unwrap_or_else(|| Ok(atoms::unknown_instance()))
    } else {
        f(registry(target)?)
    }
}

/// Like `metrics_record` for one metric by index (the telemetry handler's path). `target` is
/// the instance name (what the handler config holds) or a registry term.
fn metrics_record_index<'a>(
    _env: Env<'a>,
    [target, index, value, tags]: [Term<'a>; 4],
) -> NifResult<Atom> {
    let index: usize = index.decode()?;
    with_instance(target, |r| {
        if r.registry.metric(index).is_none() {
            return Err(argument_error("no metric at this index"));
        }
        Ok(match record_into(r, &[index], value, tags)? {
            Ok(()) => atoms::ok(),
            Err(refused) => refusal(refused),
        })
    })
}

fast_nif!("metrics_record_index", 4, metrics_record_index);

// ---- pre-resolved series handles ------------------------------------------------------

/// The series one `(name, tags)` resolves to, one per metric of that name, pinned so pruning
/// keeps them while the handle lives.
pub struct SeriesHandle {
    series: Vec<(Kind, Arc<Series>)>,
    needs_time: bool,
}

impl Drop for SeriesHandle {
    fn drop(&mut self) {
        for (_, s) in &self.series {
            s.unpin();
        }
    }
}

/// The resource type of handles, opened in `load`.
pub static HANDLES: RawResourceType<SeriesHandle> = RawResourceType::new();

/// Resolves `(name, tags)` of instance `target` to a handle: `{:ok, handle}` or one of the
/// refusal atoms of `metrics_record` (`:unknown_instance`, `:unknown_metric`, `:missing_tag`,
/// `:convert_tags`).
#[rustler::nif]
fn metrics_handle<'a>(
    env: Env<'a>,
    target: Term<'a>,
    name: Term<'a>,
    tags: Term<'a>,
) -> NifResult<Term<'a>> {
    let resolve = |r: &Instance| -> NifResult<Term<'a>> {
        let Some(indexes) = indexes_of(r, name) else {
            return Ok(atoms::unknown_metric().encode(env));
        };
        let needs_tags = indexes.iter().any(|&i| !r.tag_keys[i].is_empty());
        if needs_tags && !tags.is_map() {
            return Err(argument_error("tags must be a map"));
        }
        let mut series = Vec::with_capacity(indexes.len());
        for &i in indexes {
            let mut key = Vec::new();
            for &tag in &r.tag_keys[i] {
                let Ok(v) = tags.map_get(tag) else {
                    return Ok(atoms::missing_tag().encode(env));
                };
                if let Err(refused) = push_tag(&mut key, v) {
                    return Ok(refusal(refused).encode(env));
                }
            }
            let metric = r.registry.metric(i).ok_or(rustler::Error::BadArg)?;
            let s = lift(metric.resolve(&key))?;
            series.push((metric.spec().kind, s));
        }
        for (_, s) in &series {
            s.pin();
        }
        let needs_time = series.iter().any(|(_, s)| s.needs_time());
        Ok((
            atoms::ok(),
            HANDLES.make(env, SeriesHandle { series, needs_time }),
        )
            .encode(env))
    };
    if target.is_atom() {
        with_published(target, resolve).unwrap_or_else(|| Ok(atoms::unknown_instance().encode(env)))
    } else {
        resolve(registry(target)?)
    }
}

/// Records through a handle: `:ok`, or `:bad_value` when a non-counter metric gets a
/// non-number.
fn metrics_record_handle<'a>(_env: Env<'a>, [handle, value]: [Term<'a>; 2]) -> NifResult<Atom> {
    let h = HANDLES
        .get(handle)
        .ok_or_else(|| argument_error("expected a handle from Hotpath.Metrics.handle/3"))?;
    let number = value_of(value);
    if number.is_none() && h.series.iter().any(|(k, _)| *k != Kind::Counter) {
        return Ok(atoms::bad_value());
    }
    let now = if h.needs_time { monotonic_ms() } else { 0 };
    for (_, s) in &h.series {
        lift(s.record(number.unwrap_or(0.0), now))?;
    }
    Ok(atoms::ok())
}

fast_nif!("metrics_record_handle", 2, metrics_record_handle);

/// Counts one dropped event for the metric at `index` (`target` as in `metrics_record_index`).
#[rustler::nif]
fn metrics_drop(target: Term, index: usize) -> NifResult<Atom> {
    with_instance(target, |r| {
        let metric = r
            .registry
            .metric(index)
            .ok_or_else(|| argument_error("no metric at this index"))?;
        metric.drop_one();
        Ok(atoms::ok())
    })
}

/// The registry in the Prometheus text format, as a binary (dirty scheduler).
#[rustler::nif(schedule = "DirtyCpu")]
fn metrics_prometheus<'a>(env: Env<'a>, reg: Term<'a>) -> NifResult<Term<'a>> {
    let r = registry(reg)?;
    guard(|| {
        let text = r.registry.render_prometheus(monotonic_ms());
        let mut bin = NewBinary::new(env, text.len());
        bin.as_mut_slice().copy_from_slice(text.as_bytes());
        Ok(Binary::from(bin).encode(env))
    })
}

/// Every metric: `{dropped, [{label_values, read}]}`, in definition order (dirty scheduler).
#[rustler::nif(schedule = "DirtyCpu")]
fn metrics_snapshot<'a>(env: Env<'a>, reg: Term<'a>) -> NifResult<Term<'a>> {
    let r = registry(reg)?;
    guard(|| {
        let now = monotonic_ms();
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

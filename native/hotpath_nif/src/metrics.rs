//! `Hotpath.Metrics`: the registry as a resource, the record path, snapshots and exposition.
//!
//! `metrics_record` resolves a metric name (a binary or a list of atoms) to its group of
//! metrics in a hash map, reads the tag values out of the tags map into a call key on the
//! stack and finds the series in this thread's memo ([`hotpath_core::metrics::memo`]): no allocation
//! and no shared write but the records themselves. A miss converts the tag values to label
//! text and resolves each series in its metric's map. Reads walk every series and run on dirty
//! CPU schedulers.

use crate::error::{argument_error, guard, lift, NifResult};
use crate::histogram::stats;
use crate::published::{LocalTable, Published};
use hotpath_core::clock;
use hotpath_core::fasthash::{BytesMap, FastBuild};
use hotpath_core::histogram::{Options, WindowOptions};
use hotpath_core::metrics::memo::{CallKey, Memo};
use hotpath_core::metrics::{
    push_label, Kind, MetricSpec, Registry, Series, SeriesRead, MAX_LABEL_BYTES,
};
use rustler::sys::{enif_get_atom, ErlNifCharEncoding, ErlNifTerm};
use rustler::types::binary::NewBinary;
use rustler::{Atom, Binary, Decoder, Encoder, Env, NifMap, Resource, ResourceArc, Term};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

mod atoms {
    rustler::atoms! {
        ok, nil, counter, sum, last_value, summary, distribution, histogram,
        unknown_metric, unknown_instance, bad_value, missing_tag, convert_tags, label_too_long
    }
}

/// A proper list, decoded element by element.
///
/// rustler's `Vec<T>` decoder and its `ListIterator` panic on an improper list (`[a | b]`,
/// raised as `:nif_panicked`); this walks the cells itself and refuses such a list with
/// `BadArg` (an `ArgumentError`), or with the error of the first element that does not decode.
pub(crate) struct ProperVec<T>(pub Vec<T>);

impl<'a, T: Decoder<'a>> Decoder<'a> for ProperVec<T> {
    fn decode(term: Term<'a>) -> NifResult<Self> {
        let mut out = Vec::new();
        let mut rest = term;
        loop {
            match rest.list_get_cell() {
                Ok((head, tail)) => {
                    out.push(head.decode()?);
                    rest = tail;
                }
                Err(_) if rest.is_empty_list() => return Ok(ProperVec(out)),
                Err(_) => return Err(rustler::Error::BadArg),
            }
        }
    }
}

impl<T: Encoder> Encoder for ProperVec<T> {
    fn encode<'b>(&self, env: Env<'b>) -> Term<'b> {
        self.0.encode(env)
    }
}

/// The metrics one record call selects (those sharing a name, or a single metric) and what
/// recording into them needs.
struct Group {
    indexes: Box<[usize]>,
    /// Every tag key of these metrics, once, in first-seen order: the call key reads these.
    tag_keys: Box<[Atom]>,
    /// Some metric is not a counter (counters ignore the value).
    needs_number: bool,
    /// Some metric has a window.
    needs_time: bool,
}

/// The selector bit of a single metric's group (the telemetry handler's path); without it,
/// a selector is the index of a named group.
const SINGLE: u32 = 1 << 31;

/// A registry and its lookup tables.
pub struct Instance {
    /// Unique for the process's life (keys the per-thread series memo).
    uid: u64,
    pub(crate) registry: Registry,
    /// Tag keys (atoms) of each metric, in label order.
    tag_keys: Vec<Vec<Atom>>,
    /// The groups of metric names, by group index.
    groups: Vec<Group>,
    /// One group per metric, by metric index.
    singles: Vec<Group>,
    /// Group index by dotted binary name.
    by_binary: BytesMap<u32>,
    /// Group index by atom-list name (atom terms are stable for the VM's life).
    by_atoms: HashMap<Box<[ErlNifTerm]>, u32, FastBuild>,
}

impl Group {
    fn new(indexes: Vec<usize>, tag_keys: &[Vec<Atom>], specs: &[MetricSpec]) -> Self {
        let mut keys: Vec<Atom> = Vec::new();
        for &i in &indexes {
            for &k in &tag_keys[i] {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        Group {
            needs_number: indexes.iter().any(|&i| specs[i].kind != Kind::Counter),
            needs_time: indexes.iter().any(|&i| specs[i].histogram.window.is_some()),
            indexes: indexes.into_boxed_slice(),
            tag_keys: keys.into_boxed_slice(),
        }
    }
}

/// Numbers the groups of a name map's entries: each name's metric indexes become a group,
/// the name maps to its index.
fn number_groups<K, M: Default + Extend<(K, u32)>>(
    names: impl IntoIterator<Item = (K, Vec<usize>)>,
    groups: &mut Vec<Group>,
    tag_keys: &[Vec<Atom>],
    specs: &[MetricSpec],
) -> M {
    let mut map = M::default();
    map.extend(names.into_iter().map(|(name, indexes)| {
        groups.push(Group::new(indexes, tag_keys, specs));
        (name, (groups.len() - 1) as u32)
    }));
    map
}

/// The resource behind a `Hotpath.Metrics` registry term.
pub struct MetricsResource(Arc<Instance>);

#[rustler::resource_impl(name = "Hotpath.Metrics")]
impl Resource for MetricsResource {}

#[inline]
pub(crate) fn registry<'a>(term: Term<'a>) -> NifResult<&'a Instance> {
    term.try_get_resource::<MetricsResource>()
        .map(|r| &*r.0)
        .ok_or_else(|| argument_error("expected a Hotpath.Metrics registry"))
}

// ---- instances by name (see `published.rs`) ----------------------------------------

static PUBLISHED: Published<Instance> = Published::new();

/// What a scheduler thread keeps for the record path: its copy of the published instances
/// and its series memo, behind one thread-local access.
struct Hot {
    published: LocalTable<Instance>,
    memo: Memo,
}

thread_local! {
    static HOT: RefCell<Hot> = const {
        RefCell::new(Hot { published: LocalTable::new(), memo: Memo::new() })
    };
}

/// Runs `f` with this thread's [`Hot`] state. Not reentrant: `f` must not call it again.
#[inline]
fn with_hot<T>(f: impl FnOnce(&mut Hot) -> T) -> T {
    HOT.with(|cell| f(&mut cell.borrow_mut()))
}

/// Runs `f` with the instance published under `name` (an atom term), if any, and this
/// thread's memo.
#[inline]
fn with_published<T>(name: Term, f: impl FnOnce(&Instance, &mut Memo) -> T) -> Option<T> {
    with_hot(|hot| {
        let Hot { published, memo } = hot;
        PUBLISHED.find(published, name.as_c_arg(), |r| f(r, memo))
    })
}

/// Publishes `reg` under the atom `name` (replacing what was there).
#[rustler::nif]
fn metrics_publish(reg: Term, name: Atom) -> NifResult<Atom> {
    let instance = reg
        .try_get_resource::<MetricsResource>()
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
    labels: ProperVec<String>,
    tag_keys: ProperVec<Atom>,
    max_series: usize,
    buckets: ProperVec<f64>,
    quantiles: ProperVec<f64>,
    relative_error: f64,
    window: Option<(u64, u32)>,
    binary_name: String,
    atom_name: ProperVec<Atom>,
}

fn atom_key(atoms: &[Atom]) -> Box<[ErlNifTerm]> {
    atoms.iter().map(|a| a.as_c_arg()).collect()
}

/// A registry of `specs` (dirty scheduler: its work grows with the number of definitions).
#[rustler::nif(schedule = "DirtyCpu")]
fn metrics_new(env: Env, specs: ProperVec<SpecIn>) -> NifResult<Term> {
    let specs = specs.0;
    guard(|| {
        let mut tag_keys = Vec::new();
        let mut by_binary: BytesMap<Vec<usize>> = BytesMap::default();
        let mut by_atoms: HashMap<Box<[ErlNifTerm]>, Vec<usize>, FastBuild> = HashMap::default();
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
            let (labels, keys) = (s.labels.0, s.tag_keys.0);
            if labels.len() != keys.len() {
                return Err(argument_error("labels and tag keys differ in length"));
            }
            let window = match s.window {
                Some((span, slots)) => Some(lift(WindowOptions::new(span, slots))?),
                None => None,
            };
            by_binary
                .get_or_insert_with(s.binary_name.as_bytes(), Vec::new)
                .push(i);
            by_atoms
                .entry(atom_key(&s.atom_name.0))
                .or_default()
                .push(i);
            tag_keys.push(keys);
            core.push(MetricSpec {
                name: s.name,
                help: s.help,
                kind,
                labels,
                max_series: s.max_series,
                histogram: Options {
                    relative_error: s.relative_error,
                    buckets: s.buckets.0,
                    window,
                    ..Options::default()
                },
                quantiles: s.quantiles.0,
            });
        }
        let mut groups = Vec::new();
        let by_binary = number_groups(by_binary.into_entries(), &mut groups, &tag_keys, &core);
        let by_atoms = number_groups(by_atoms, &mut groups, &tag_keys, &core);
        let singles = (0..core.len())
            .map(|i| Group::new(vec![i], &tag_keys, &core))
            .collect();
        let registry = lift(Registry::new(core))?;
        static NEXT_UID: AtomicU64 = AtomicU64::new(0);
        Ok(ResourceArc::new(MetricsResource(Arc::new(Instance {
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
            registry,
            tag_keys,
            groups,
            singles,
            by_binary,
            by_atoms,
        })))
        .encode(env))
    })
}

enum Refusal {
    MissingTag,
    ConvertTags,
    LabelTooLong,
}

fn refusal(r: Refusal) -> Atom {
    match r {
        Refusal::MissingTag => atoms::missing_tag(),
        Refusal::ConvertTags => atoms::convert_tags(),
        Refusal::LabelTooLong => atoms::label_too_long(),
    }
}

/// Appends the label text of one tag value: binaries (UTF-8, at most [`MAX_LABEL_BYTES`]),
/// atoms (`nil` is ""), integers, floats. Anything else asks the caller to convert the tags to
/// strings. The length is checked before the bytes are read, so a long binary costs nothing.
#[inline]
fn push_tag(key: &mut Vec<u8>, value: Term) -> Result<(), Refusal> {
    if let Ok(bin) = value.decode::<Binary>() {
        if bin.len() > MAX_LABEL_BYTES {
            return Err(Refusal::LabelTooLong);
        }
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

/// Appends a tag value to a call key: binaries, atoms and 64-bit integers; false for other
/// terms and when the key is full (then the call is not memoized).
#[inline]
fn push_call_key(key: &mut CallKey, value: Term) -> bool {
    if let Ok(bin) = value.decode::<Binary>() {
        key.push_binary(bin.as_slice())
    } else if value.is_atom() {
        key.push_atom(crate::term::word(value))
    } else {
        value.decode::<i64>().is_ok_and(|i| key.push_int(i))
    }
}

/// Records `value` with `tags` into the metrics of `group` (selected by `selector`). Reads
/// the value and every tag first, so nothing is recorded unless everything can be.
#[inline]
fn record_group(
    r: &Instance,
    memo: &mut Memo,
    selector: u32,
    group: &Group,
    value: Term,
    tags: Term,
) -> NifResult<Atom> {
    let number = if group.needs_number {
        match value_of(value) {
            Some(v) => v,
            None => return Ok(atoms::bad_value()),
        }
    } else {
        0.0
    };
    if !group.tag_keys.is_empty() && !tags.is_map() {
        return Err(argument_error("tags must be a map"));
    }
    // Read before resolving: see `Registry::generation`.
    let generation = r.registry.generation();
    let mut key = CallKey::new();
    let mut memoized = true;
    for &tag in group.tag_keys.iter() {
        let Ok(v) = tags.map_get(tag) else {
            return Ok(atoms::missing_tag());
        };
        memoized = memoized && push_call_key(&mut key, v);
    }
    // Reading the clock costs about an empty NIF call: only windows need it.
    let now = if group.needs_time { clock::now_ms() } else { 0 };
    let mut probe = None;
    if memoized {
        let hit = memo.with_hit(r.uid, selector, generation, &key, |series| {
            record_all(series, number, now)
        });
        match hit {
            Ok(done) => return done,
            Err(missed) => probe = Some(missed),
        }
    }
    let series = match resolve_group(r, group, tags)? {
        Ok(series) => series,
        Err(refused) => return Ok(refusal(refused)),
    };
    let done = record_all(&series, number, now);
    if let Some(probe) = probe {
        memo.insert(probe, r.uid, selector, generation, &key, series);
    }
    done
}

#[inline]
fn record_all(series: &[Arc<Series>], number: f64, now: u64) -> NifResult<Atom> {
    for s in series {
        lift(s.record(number, now))?;
    }
    Ok(atoms::ok())
}

/// The series of `group` for `tags`, the slow way: each metric's label key from the tag
/// values as text, then its map. Every key is built before any series is created.
fn resolve_group(
    r: &Instance,
    group: &Group,
    tags: Term,
) -> NifResult<Result<Vec<Arc<Series>>, Refusal>> {
    let mut buf = Vec::new();
    let mut ends = Vec::with_capacity(group.indexes.len());
    for &i in group.indexes.iter() {
        for &tag in &r.tag_keys[i] {
            let Ok(v) = tags.map_get(tag) else {
                return Ok(Err(Refusal::MissingTag));
            };
            if let Err(refused) = push_tag(&mut buf, v) {
                return Ok(Err(refused));
            }
        }
        ends.push(buf.len());
    }
    // The slow path's work grows with the label text (up to 32 tags of MAX_LABEL_BYTES each,
    // about 0.5 ms): report it, so a process resolving long labels in a loop yields. About
    // 1 % of a slice per 2.5 KB (measured ~250 bytes/µs); the memo hit path never gets here.
    if buf.len() >= 2_500 {
        let percent = (buf.len() / 2_500).clamp(1, 100) as i32;
        rustler::schedule::consume_timeslice(tags.get_env(), percent);
    }
    let mut series = Vec::with_capacity(group.indexes.len());
    let mut start = 0;
    for (&i, &end) in group.indexes.iter().zip(&ends) {
        let metric = r.registry.metric(i).ok_or(rustler::Error::BadArg)?;
        series.push(lift(metric.resolve(&buf[start..end]))?);
        start = end;
    }
    Ok(Ok(series))
}

/// The group a metric name selects, with its selector. A list name is walked cell by cell
/// (at most 32 atoms, then it cannot name a metric): an improper list or one of other terms
/// selects nothing, and a long list costs no more than 33 cells.
#[inline]
fn group_of<'r>(r: &'r Instance, name: Term) -> Option<(u32, &'r Group)> {
    let selector = if let Ok(bin) = name.decode::<Binary>() {
        *r.by_binary.get(bin.as_slice())?
    } else {
        let mut ids = [ErlNifTerm::default(); 32];
        let mut n = 0;
        let mut rest = name;
        while let Ok((item, tail)) = rest.list_get_cell() {
            if !item.is_atom() || n == ids.len() {
                return None;
            }
            ids[n] = item.as_c_arg();
            n += 1;
            rest = tail;
        }
        if !rest.is_empty_list() {
            return None;
        }
        *r.by_atoms.get(&ids[..n])?
    };
    Some((selector, &r.groups[selector as usize]))
}

/// Records into the metrics named `name` of `r`.
#[inline]
fn record_named(
    r: &Instance,
    memo: &mut Memo,
    name: Term,
    value: Term,
    tags: Term,
) -> NifResult<Atom> {
    match group_of(r, name) {
        Some((selector, group)) => record_group(r, memo, selector, group, value, tags),
        None => Ok(atoms::unknown_metric()),
    }
}

/// Records `value` with `tags` into the metrics named `name`. Returns `:ok`, or an atom saying
/// why nothing was recorded: `:unknown_metric`, `:bad_value`, `:missing_tag`, `:convert_tags`
/// (a tag value is not a string, atom or number: the caller converts and retries).
#[rustler::nif]
fn metrics_record<'a>(
    reg: Term<'a>,
    name: Term<'a>,
    value: Term<'a>,
    tags: Term<'a>,
) -> NifResult<Atom> {
    let r = registry(reg)?;
    with_hot(|hot| record_named(r, &mut hot.memo, name, value, tags))
}

/// `metrics_record` with the instance given by its published name; `:unknown_instance` when
/// nothing is published under it.
#[rustler::nif]
fn metrics_record_named<'a>(
    instance: Term<'a>,
    name: Term<'a>,
    value: Term<'a>,
    tags: Term<'a>,
) -> NifResult<Atom> {
    with_published(instance, |r, memo| record_named(r, memo, name, value, tags))
        .unwrap_or_else(|| Ok(atoms::unknown_instance()))
}

/// Runs `f` with the instance `target` names: a registry term, or the atom it is published
/// under (`:unknown_instance` when nothing is).
#[inline]
fn with_instance(
    target: Term,
    f: impl FnOnce(&Instance, &mut Memo) -> NifResult<Atom>,
) -> NifResult<Atom> {
    if target.is_atom() {
        with_published(target, f).unwrap_or_else(|| Ok(atoms::unknown_instance()))
    } else {
        let r = registry(target)?;
        with_hot(|hot| f(r, &mut hot.memo))
    }
}

/// Like `metrics_record` for one metric by index (the telemetry handler's path). `target` is
/// the instance name (what the handler config holds) or a registry term.
#[rustler::nif]
fn metrics_record_index<'a>(
    target: Term<'a>,
    index: usize,
    value: Term<'a>,
    tags: Term<'a>,
) -> NifResult<Atom> {
    with_instance(target, |r, memo| {
        let group = r
            .singles
            .get(index)
            .ok_or_else(|| argument_error("no metric at this index"))?;
        record_group(r, memo, SINGLE | index as u32, group, value, tags)
    })
}

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

#[rustler::resource_impl(name = "Hotpath.Metrics.Handle")]
impl Resource for SeriesHandle {}

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
        let Some((_, group)) = group_of(r, name) else {
            return Ok(atoms::unknown_metric().encode(env));
        };
        if !group.tag_keys.is_empty() && !tags.is_map() {
            return Err(argument_error("tags must be a map"));
        }
        let series = match resolve_group(r, group, tags)? {
            Ok(series) => series,
            Err(refused) => return Ok(refusal(refused).encode(env)),
        };
        let series: Vec<(Kind, Arc<Series>)> = group
            .indexes
            .iter()
            .zip(series)
            .map(|(&i, s)| (r.registry.metrics()[i].spec().kind, s))
            .collect();
        for (_, s) in &series {
            s.pin();
        }
        let needs_time = series.iter().any(|(_, s)| s.needs_time());
        Ok((
            atoms::ok(),
            ResourceArc::new(SeriesHandle { series, needs_time }),
        )
            .encode(env))
    };
    if target.is_atom() {
        with_published(target, |r, _| resolve(r))
            .unwrap_or_else(|| Ok(atoms::unknown_instance().encode(env)))
    } else {
        resolve(registry(target)?)
    }
}

/// Records through a handle: `:ok`, or `:bad_value` when a non-counter metric gets a
/// non-number.
#[rustler::nif]
fn metrics_record_handle(handle: Term, value: Term) -> NifResult<Atom> {
    let h = handle
        .try_get_resource::<SeriesHandle>()
        .ok_or_else(|| argument_error("expected a handle from Hotpath.Metrics.handle/3"))?;
    let number = value_of(value);
    if number.is_none() && h.series.iter().any(|(k, _)| *k != Kind::Counter) {
        return Ok(atoms::bad_value());
    }
    let now = if h.needs_time { clock::now_ms() } else { 0 };
    for (_, s) in &h.series {
        lift(s.record(number.unwrap_or(0.0), now))?;
    }
    Ok(atoms::ok())
}

/// Counts one dropped event for the metric at `index` (`target` as in `metrics_record_index`).
#[rustler::nif]
fn metrics_drop(target: Term, index: usize) -> NifResult<Atom> {
    with_instance(target, |r, _| {
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
        let text = r.registry.render_prometheus(clock::now_ms());
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

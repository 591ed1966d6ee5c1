//! The record path: `metrics_record`, `metrics_record_named`, `metrics_record_index` (the
//! telemetry handler's) and `metrics_drop`.

use super::{
    atoms, plain, registry, with_published, with_thread_state, Group, Instance, PLAIN_LOOKUP,
    SINGLE,
};
use crate::error::{argument_error, lift, NifResult};
use hotpath_core::clock;
use hotpath_core::metrics::exemplar::{Exemplar, MAX_EXEMPLAR_CHARS, MAX_EXEMPLAR_LABELS};
use hotpath_core::metrics::memo::{CallKey, Memo};
use hotpath_core::metrics::{push_label, Series, MAX_LABEL_BYTES};
use rustler::sys::ErlNifTerm;
use rustler::{Atom, Binary, Term};
use std::sync::Arc;

pub(super) enum Refusal {
    MissingTag,
    ConvertTags,
    LabelTooLong,
}

pub(super) fn refusal(r: Refusal) -> Atom {
    match r {
        Refusal::MissingTag => atoms::missing_tag(),
        Refusal::ConvertTags => atoms::convert_tags(),
        Refusal::LabelTooLong => atoms::label_too_long(),
    }
}

/// Appends the label text of one tag value: binaries (UTF-8, at most [`MAX_LABEL_BYTES`]),
/// atoms (`nil` is ""), integers. Anything else (floats included) asks the caller to convert
/// the tags to strings. The length is checked before the bytes are read, so a long binary costs nothing.
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
        // The atom's text (Latin-1 converted to UTF-8 by rustler; an atom with characters
        // beyond Latin-1 fails, and the caller converts the tags). Only on the slow path: a
        // memoized call never reads a tag's text.
        let Ok(text) = value.atom_to_string() else {
            return Err(Refusal::ConvertTags);
        };
        push_label(key, text.as_bytes());
    } else if let Ok(i) = value.decode::<i64>() {
        let mut buf = [0u8; 24];
        push_label(key, format_int(i, &mut buf));
    } else {
        // Floats too: their text is Elixir's (`inspect/1`: "1.0", "1.0e20"), written by the
        // caller's conversion, so a float never shares a series with an equal integer and
        // one value has one text on every path.
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

pub(super) fn value_of(term: Term) -> Option<f64> {
    term.decode::<f64>()
        .ok()
        .or_else(|| term.decode::<i64>().ok().map(|i| i as f64))
}

/// The number `group` records: `value` for groups with a metric other than a counter (`None`
/// when it is not a number), else 0 (counters ignore it; a counter's exemplar says 1).
#[inline]
fn number_of(group: &Group, value: Term) -> Option<f64> {
    if group.needs_number {
        value_of(value)
    } else {
        Some(0.0)
    }
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

/// Records `value` with `tags` into the metrics of `group` (selected by `selector`), with
/// `exemplar` if some. Reads the value and every tag first, so nothing is recorded unless
/// everything can be.
#[inline]
fn record_group(
    r: &Instance,
    memo: &mut Memo,
    selector: u32,
    group: &Group,
    value: Term,
    tags: Term,
    exemplar: Option<&Exemplar>,
) -> NifResult<Atom> {
    let Some(number) = number_of(group, value) else {
        return Ok(atoms::bad_value());
    };
    if !group.tag_keys.is_empty() && !tags.is_map() {
        return Err(argument_error("tags must be a map"));
    }
    // Read before resolving: see `Registry::generation`.
    let generation = r.registry.generation();
    let mut key = CallKey::new();
    let mut memoized = !plain(r, PLAIN_LOOKUP);
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
            record_all(series, number, now, exemplar)
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
    let done = record_all(&series, number, now, exemplar);
    if let Some(probe) = probe {
        memo.insert(probe, r.uid, selector, generation, &key, series);
    }
    done
}

#[inline]
fn record_all(
    series: &[Arc<Series>],
    number: f64,
    now: u64,
    exemplar: Option<&Exemplar>,
) -> NifResult<Atom> {
    for s in series {
        match exemplar {
            None => lift(s.record(number, now))?,
            Some(e) => lift(s.record_exemplar(number, now, e.clone()))?,
        }
    }
    Ok(atoms::ok())
}

/// The series of `group` for `tags`, the slow way: each metric's label key from the tag
/// values as text, then its map. Every key is built before any series is created.
pub(super) fn resolve_group(
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
pub(super) fn group_of<'r>(r: &'r Instance, name: Term) -> Option<(u32, &'r Group)> {
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
        Some((selector, group)) => record_group(r, memo, selector, group, value, tags, None),
        None => Ok(atoms::unknown_metric()),
    }
}

/// Records `value` with `tags` into the metrics named `name`. Returns `:ok`, or an atom saying
/// why nothing was recorded: `:unknown_metric`, `:bad_value`, `:missing_tag`, `:convert_tags`
/// (a tag value is not a string, atom or integer: the caller converts and retries).
#[rustler::nif]
fn metrics_record<'a>(
    reg: Term<'a>,
    name: Term<'a>,
    value: Term<'a>,
    tags: Term<'a>,
) -> NifResult<Atom> {
    let r = registry(reg)?;
    with_thread_state(|state| record_named(r, &mut state.memo, name, value, tags))
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
pub(super) fn with_instance(
    target: Term,
    f: impl FnOnce(&Instance, &mut Memo) -> NifResult<Atom>,
) -> NifResult<Atom> {
    if target.is_atom() {
        with_published(target, f).unwrap_or_else(|| Ok(atoms::unknown_instance()))
    } else {
        let r = registry(target)?;
        with_thread_state(|state| f(r, &mut state.memo))
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
        let group = single(r, index)?;
        record_group(r, memo, SINGLE | index as u32, group, value, tags, None)
    })
}

/// The one-metric group of the metric at `index`.
#[inline]
fn single(r: &Instance, index: usize) -> NifResult<&Group> {
    r.singles
        .get(index)
        .ok_or_else(|| argument_error("no metric at this index"))
}

/// The exemplar `labels` (`[{name, value}]`, binaries) describe, stamped now; `None` when it
/// is not one (see `Exemplar::new`). Reads at most `MAX_EXEMPLAR_LABELS + 1` list cells and
/// only short binaries, so a huge term costs nothing.
fn exemplar_of(labels: Term, value: f64) -> Option<Exemplar> {
    let mut pairs = Vec::new();
    let mut rest = labels;
    while let Ok((item, tail)) = rest.list_get_cell() {
        if pairs.len() == MAX_EXEMPLAR_LABELS {
            return None;
        }
        let (name, text): (Binary, Binary) = item.decode().ok()?;
        let short = |b: &Binary| b.len() <= 4 * MAX_EXEMPLAR_CHARS;
        if !(short(&name) && short(&text)) {
            return None;
        }
        let utf8 = |b: &Binary| std::str::from_utf8(b.as_slice()).ok().map(str::to_string);
        pairs.push((utf8(&name)?, utf8(&text)?));
        rest = tail;
    }
    if !rest.is_empty_list() {
        return None;
    }
    Exemplar::new(pairs, value, clock::unix_ms()).ok()
}

/// `metrics_record_index` with an exemplar: `labels` is `[{name, value}]` (binaries; at most
/// 8 labels and 128 characters in all). `:bad_exemplar`, with nothing recorded, when the
/// labels are not an exemplar's (the caller records without it).
#[rustler::nif]
fn metrics_record_exemplar<'a>(
    target: Term<'a>,
    index: usize,
    value: Term<'a>,
    tags: Term<'a>,
    labels: Term<'a>,
) -> NifResult<Atom> {
    with_instance(target, |r, memo| {
        let group = single(r, index)?;
        let Some(number) = number_of(group, value) else {
            return Ok(atoms::bad_value());
        };
        let Some(exemplar) = exemplar_of(labels, number) else {
            return Ok(atoms::bad_exemplar());
        };
        record_group(
            r,
            memo,
            SINGLE | index as u32,
            group,
            value,
            tags,
            Some(&exemplar),
        )
    })
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

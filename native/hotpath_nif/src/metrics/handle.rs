//! Pre-resolved series handles: `metrics_handle` resolves `(name, tags)` once,
//! `metrics_record_handle` records through it.

use super::record::{group_of, refusal, resolve_group, value_of};
use super::{atoms, registry, with_published, Instance};
use crate::error::{argument_error, lift, NifResult};
use hotpath_core::clock;
use hotpath_core::metrics::{Kind, Series};
use rustler::{Atom, Encoder, Env, Resource, ResourceArc, Term};
use std::sync::Arc;

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

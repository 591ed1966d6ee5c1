//! `metrics_new`: a registry from the Elixir definitions.

use super::{atoms, number_groups, Group, Instance, MetricsResource, ProperVec};
use crate::error::{argument_error, guard, lift, NifResult};
use hotpath_core::histogram::{Options, WindowOptions};
use hotpath_core::metrics::{FastState, Kind, MetricSpec, Registry};
use rustler::sys::ErlNifTerm;
use rustler::{Atom, Encoder, Env, NifMap, ResourceArc, Term};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
            let (labels, keys) = (s.labels.0, s.tag_keys.0);
            if labels.len() != keys.len() {
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
        let by_binary = number_groups(by_binary, &mut groups, &tag_keys, &core);
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
            #[cfg(feature = "bench")]
            bench: Default::default(),
        })))
        .encode(env))
    })
}

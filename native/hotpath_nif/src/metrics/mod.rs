//! `Hotpath.Metrics`: the registry as a resource, and the NIFs on it, by concern:
//!
//! * this module: the registry resource ([`Instance`]: metrics, tag keys, name lookup tables),
//!   instances published by name and the record path's per-thread series memo;
//! * [`new`]: building a registry from the Elixir definitions (`metrics_new`);
//! * [`record`]: the record path (`metrics_record*`, `metrics_drop`): a metric name (a binary
//!   or a list of atoms) resolves to its group of metrics in a hash map, the tag values are
//!   read out of the tags map into a call key on the stack and the series found in this
//!   thread's memo ([`hotpath_core::metrics::memo`]): no allocation and no shared write but the
//!   records themselves. A miss converts the tag values to label text and resolves each series
//!   in its metric's map;
//! * [`handle`]: pre-resolved series handles (`metrics_handle`, `metrics_record_handle`);
//! * [`read`]: snapshots, Prometheus text, pruning and info, on dirty CPU schedulers (they walk
//!   every series);
//! * [`cluster`]: export, import and the cluster-wide Prometheus text.

mod cluster;
mod handle;
mod new;
mod read;
mod record;

use crate::error::{argument_error, NifResult};
use crate::published::Published;
use hotpath_core::metrics::memo::Memo;
use hotpath_core::metrics::prometheus::Format;
use hotpath_core::metrics::{FastState, Kind, MetricSpec, Registry};
use rustler::sys::ErlNifTerm;
use rustler::{Atom, Decoder, Encoder, Env, Resource, Term};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

pub(super) mod atoms {
    rustler::atoms! {
        ok, nil, counter, sum, last_value, summary, distribution, histogram,
        unknown_metric, unknown_instance, bad_value, missing_tag, convert_tags, label_too_long,
        prometheus, openmetrics, protobuf, bad_exemplar
    }
}

/// An exposition format: one of the two texts, or protobuf.
#[derive(Clone, Copy)]
pub(crate) enum Exposition {
    Text(Format),
    Protobuf,
}

/// The format named by `format` (`:prometheus`, `:openmetrics` or `:protobuf`).
pub(crate) fn exposition(format: Atom) -> NifResult<Exposition> {
    if format == atoms::prometheus() {
        Ok(Exposition::Text(Format::Prometheus))
    } else if format == atoms::openmetrics() {
        Ok(Exposition::Text(Format::OpenMetrics))
    } else if format == atoms::protobuf() {
        Ok(Exposition::Protobuf)
    } else {
        Err(argument_error(
            "format must be :prometheus, :openmetrics or :protobuf",
        ))
    }
}

/// `registry` in `format`, followed by the cluster family when `nodes` is some (a cluster
/// view: no `_created`, see `Registry::render_view`).
pub(crate) fn render(
    registry: &hotpath_core::metrics::Registry,
    format: Exposition,
    nodes: Option<&[(String, bool)]>,
) -> Vec<u8> {
    use hotpath_core::metrics::{prometheus, protobuf};
    let now = hotpath_core::clock::now_ms();
    match format {
        Exposition::Text(format) => {
            let mut text = registry.render_view(now, format, nodes.is_none());
            if let Some(nodes) = nodes {
                prometheus::render_cluster_up(&mut text, nodes, format);
            }
            prometheus::finish(&mut text, format);
            text.into_bytes()
        }
        Exposition::Protobuf => {
            let mut out = registry.render_protobuf(now, nodes.is_none());
            if let Some(nodes) = nodes {
                protobuf::render_cluster_up(&mut out, nodes);
            }
            out
        }
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
pub(super) struct Group {
    pub(super) indexes: Box<[usize]>,
    /// Every tag key of these metrics, once, in first-seen order: the call key reads these.
    pub(super) tag_keys: Box<[Atom]>,
    /// Some metric is not a counter (counters ignore the value).
    pub(super) needs_number: bool,
    /// Some metric has a window.
    pub(super) needs_time: bool,
}

/// The selector bit of a single metric's group (the telemetry handler's path); without it,
/// a selector is the index of a named group.
pub(super) const SINGLE: u32 = 1 << 31;

/// A registry and its lookup tables.
pub struct Instance {
    /// Unique for the process's life (keys the per-thread series memo).
    pub(super) uid: u64,
    pub(crate) registry: Registry,
    /// Tag keys (atoms) of each metric, in label order.
    pub(super) tag_keys: Vec<Vec<Atom>>,
    /// The groups of metric names, by group index.
    pub(super) groups: Vec<Group>,
    /// One group per metric, by metric index.
    pub(super) singles: Vec<Group>,
    /// Group index by dotted binary name.
    pub(super) by_binary: HashMap<Box<[u8]>, u32, FastState>,
    /// Group index by atom-list name (atom terms are stable for the VM's life).
    pub(super) by_atoms: HashMap<Box<[ErlNifTerm]>, u32, FastState>,
    /// The A/B switches of this instance (`bench_metrics_variant`), only with the `bench`
    /// feature.
    #[cfg(feature = "bench")]
    pub(super) bench: bench::Variant,
}

/// A/B switch: no per-thread series memo, every call resolves its series the plain way (label
/// text, then the metric's map), as a memo miss does.
pub(super) const PLAIN_LOOKUP: u8 = 1;

/// Whether the A/B switch `bit` (`PLAIN_LOOKUP`) is on for `r`: always false without the
/// `bench` feature.
#[inline(always)]
pub(super) fn plain(r: &Instance, bit: u8) -> bool {
    #[cfg(feature = "bench")]
    {
        r.bench.is(bit)
    }
    #[cfg(not(feature = "bench"))]
    {
        let _ = (r, bit);
        false
    }
}

/// The A/B rows of the record path's tricks (`benches/metrics_ab.exs`): per-instance switches
/// that replace a trick with its plain version, both compiled into one library.
#[cfg(feature = "bench")]
pub(super) mod bench {
    use super::{atoms, registry, Instance};
    use crate::error::NifResult;
    use rustler::{Atom, Term};
    use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

    /// An instance's switches.
    #[derive(Default)]
    pub struct Variant {
        bits: AtomicU8,
    }

    impl Variant {
        #[inline(always)]
        pub fn is(&self, bit: u8) -> bool {
            self.bits.load(Relaxed) & bit != 0
        }
    }

    /// Sets the A/B switches of `reg` (`PLAIN_LOOKUP`, or 0 for the library's path).
    #[rustler::nif]
    fn bench_metrics_variant(reg: Term, bits: u8) -> NifResult<Atom> {
        let r: &Instance = registry(reg)?;
        r.bench.bits.store(bits, Relaxed);
        Ok(atoms::ok())
    }
}

impl Group {
    pub(super) fn new(indexes: Vec<usize>, tag_keys: &[Vec<Atom>], specs: &[MetricSpec]) -> Self {
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
pub(super) fn number_groups<K, M: Default + Extend<(K, u32)>>(
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
pub struct MetricsResource(pub(super) Arc<Instance>);

#[rustler::resource_impl(name = "Hotpath.Metrics")]
impl Resource for MetricsResource {}

#[inline]
pub(crate) fn registry<'a>(term: Term<'a>) -> NifResult<&'a Instance> {
    term.try_get_resource::<MetricsResource>()
        .map(|r| &*r.0)
        .ok_or_else(|| argument_error("expected a Hotpath.Metrics registry"))
}

// ---- instances by name (see `published.rs`) and the record path's thread state ----

static PUBLISHED: Published<Instance> = Published::new();

/// What a scheduler thread keeps for the record path: its series memo.
pub(super) struct ThreadState {
    pub(super) memo: Memo,
}

thread_local! {
    static THREAD_STATE: RefCell<ThreadState> = const {
        RefCell::new(ThreadState { memo: Memo::new() })
    };
}

/// Runs `f` with this thread's [`ThreadState`]. Not reentrant: `f` must not call it again.
#[inline]
pub(super) fn with_thread_state<T>(f: impl FnOnce(&mut ThreadState) -> T) -> T {
    THREAD_STATE.with(|cell| f(&mut cell.borrow_mut()))
}

/// Runs `f` with the instance published under `name` (an atom term), if any, and this
/// thread's memo.
#[inline]
pub(super) fn with_published<T>(
    name: Term,
    f: impl FnOnce(&Instance, &mut Memo) -> T,
) -> Option<T> {
    PUBLISHED.find(name.as_c_arg(), |r| {
        with_thread_state(|state| f(r, &mut state.memo))
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

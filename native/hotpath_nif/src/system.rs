//! NIFs about the library itself: the empty call and empty calls shaped like `hit` and
//! `Histogram.record/2` (benchmark floors), build information, and the probes the test
//! suite uses to check the error conventions.

use crate::error::{guard, lift, NifResult};
use crate::fast_nif::fast_nif;
use hotpath_core::Error as CoreError;
use rustler::{Atom, Binary, Env, NifMap, Term};

mod atoms {
    rustler::atoms! { ok, allow, route, method, release, debug, argument_error, malformed, incompatible, panic }
}

/// Does nothing: the cost of crossing into native code and back.
#[rustler::nif]
fn noop() -> Atom {
    atoms::ok()
}

/// The floor of a limiter hit: takes `hit`'s arguments (an atom, a binary, an integer), reads
/// them as `limiter_hit` does and answers a tuple of `hit`'s shape, without a table or a
/// clock. Registered like `limiter_hit` (see [`fast_nif!`]).
fn noop_hit_shape<'a>(
    env: Env<'a>,
    [name, key, cost]: [Term<'a>; 3],
) -> NifResult<(Atom, u64, u64)> {
    if !name.is_atom() {
        return Err(rustler::Error::BadArg);
    }
    let key: Binary = key.decode()?;
    let cost: u64 = cost.decode()?;
    let _ = env;
    Ok((atoms::allow(), key.len() as u64, cost))
}

fast_nif!("noop_hit_shape", 3, noop_hit_shape);

/// The floor of `Hotpath.Histogram.record/2`: takes `histogram_record`'s arguments (a histogram
/// resource, a float), reads them as `histogram_record` does and answers `:ok`, without
/// touching the histogram. Registered like `histogram_record` (see [`fast_nif!`]).
fn noop_histogram_record_shape<'a>(_env: Env<'a>, [h, value]: [Term<'a>; 2]) -> NifResult<Atom> {
    if crate::histogram::HISTOGRAM.get(h).is_none() {
        return Err(rustler::Error::BadArg);
    }
    let _: f64 = value.decode()?;
    Ok(atoms::ok())
}

fast_nif!(
    "noop_histogram_record_shape",
    2,
    noop_histogram_record_shape
);

/// The floor of `Hotpath.Metrics.record/4` as the benchmark calls it: takes
/// `metrics_record_named`'s arguments (an instance atom, a binary name, a float, a tags map),
/// reads the name, the value and the binary values of the bench's two tags (`:route`,
/// `:method`) as `metrics_record_named` does, and answers `:ok`, without a registry, a name
/// lookup or a series.
fn noop_metrics_record_shape<'a>(
    _env: Env<'a>,
    [instance, name, value, tags]: [Term<'a>; 4],
) -> NifResult<Atom> {
    if !instance.is_atom() {
        return Err(rustler::Error::BadArg);
    }
    let _: Binary = name.decode()?;
    let _: f64 = value.decode()?;
    for key in [atoms::route(), atoms::method()] {
        let _: Binary = tags.map_get(key)?.decode()?;
    }
    Ok(atoms::ok())
}

fast_nif!("noop_metrics_record_shape", 4, noop_metrics_record_shape);

#[derive(NifMap)]
struct NativeInfo {
    nif_version: String,
    core_version: String,
    nif_crate_version: String,
    profile: Atom,
}

/// Versions and build profile of the loaded library.
#[rustler::nif]
fn native_info() -> NativeInfo {
    NativeInfo {
        nif_version: "2.16".to_string(),
        core_version: hotpath_core::VERSION.to_string(),
        nif_crate_version: env!("CARGO_PKG_VERSION").to_string(),
        profile: if cfg!(debug_assertions) {
            atoms::debug()
        } else {
            atoms::release()
        },
    }
}

/// Exercises one error path, for the tests of the error conventions.
///
/// `:argument_error` raises `ArgumentError`, `:malformed`/`:incompatible` return
/// `{:error, {reason, message}}`, `:panic` panics inside `guard`, anything else is a bad
/// argument decoded by rustler.
#[rustler::nif]
fn debug_fail(kind: Atom) -> NifResult<Atom> {
    guard(|| {
        let error = if kind == atoms::argument_error() {
            CoreError::invalid("debug_fail: an invalid argument")
        } else if kind == atoms::malformed() {
            CoreError::malformed("debug_fail: malformed bytes")
        } else if kind == atoms::incompatible() {
            CoreError::incompatible("debug_fail: different layouts")
        } else if kind == atoms::panic() {
            panic!("debug_fail: deliberate panic")
        } else {
            return Err(rustler::Error::BadArg);
        };
        lift(Err(error))
    })
}

/// Panics outside `guard`: rustler's own catch raises `:nif_panicked`.
#[rustler::nif]
fn debug_unguarded_panic() -> Atom {
    panic!("debug_unguarded_panic: deliberate panic")
}

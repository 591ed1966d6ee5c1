//! Benchmark baselines and debug NIFs, compiled in only with the crate's `bench` feature
//! (Hotpath's own MIX_ENV=test build and `make bench`; never the package or the precompiled
//! release artifacts). `Hotpath.Native` keeps their stubs, so in a plain build calling one
//! raises the stub's `:nif_not_loaded` error; the library itself never calls them.

use crate::compute::{bytes_term, decode_algorithm};
use crate::error::{guard, lift, NifResult};
use crate::fast_nif::fast_nif;
use hotpath_core::digest;
use hotpath_core::password::{self, HashParams};
use hotpath_core::Error as CoreError;
use rustler::{Atom, Binary, Encoder, Env, Term};

mod atoms {
    rustler::atoms! { ok, allow, route, method, argument_error, malformed, incompatible, panic }
}

/// The floor of a limiter hit: takes `hit`'s arguments (an atom, a binary, an integer), reads
/// them as `limiter_hit` does and answers a tuple of `hit`'s shape, without a table or a
/// clock. Registered like `limiter_hit` (with [`fast_nif!`]).
fn noop_hit_shape<'a>(env: Env<'a>, [name, key, cost]: [Term<'a>; 3]) -> NifResult<Term<'a>> {
    if !name.is_atom() {
        return Err(rustler::Error::BadArg);
    }
    let key: Binary = key.decode()?;
    let cost: u64 = cost.decode()?;
    Ok((atoms::allow(), key.len() as u64, cost).encode(env))
}

fast_nif!("noop_hit_shape", 3, noop_hit_shape);

/// The floor of `Hotpath.Histogram.record/2`: takes `histogram_record`'s arguments (a histogram
/// resource, a float), reads them as `histogram_record` does and answers `:ok`, without
/// touching the histogram. Registered like `histogram_record`.
#[rustler::nif]
fn noop_histogram_record_shape(h: Term, value: f64) -> NifResult<Atom> {
    crate::histogram::handle(h).map_err(|_| rustler::Error::BadArg)?;
    let _ = value;
    Ok(atoms::ok())
}

/// The floor of `Hotpath.Metrics.record/4` as the benchmark calls it: takes
/// `metrics_record_named`'s arguments (an instance atom, a binary name, a float, a tags map),
/// reads the name, the value and the binary values of the bench's two tags (`:route`,
/// `:method`) as `metrics_record_named` does, and answers `:ok`, without a registry, a name
/// lookup or a series.
#[rustler::nif]
fn noop_metrics_record_shape<'a>(
    instance: Term<'a>,
    name: Term<'a>,
    value: Term<'a>,
    tags: Term<'a>,
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

/// Benchmark baseline only (never used by the library): a digest of any size on the calling
/// *normal* scheduler, which is what a naive NIF does.
#[rustler::nif]
fn bench_normal_digest<'a>(env: Env<'a>, algorithm: Atom, data: Binary<'a>) -> NifResult<Term<'a>> {
    let algorithm = decode_algorithm(algorithm)?;
    Ok(bytes_term(env, &digest::digest(algorithm, &data)))
}

/// Benchmark baseline only (never used by the library): an argon2id hash on the calling
/// *normal* scheduler, which is what a naive NIF does.
#[rustler::nif]
fn bench_normal_password_hash(
    password: Binary,
    salt: Binary,
    m_cost: u32,
    t_cost: u32,
    p_cost: u32,
) -> NifResult<String> {
    let params = HashParams {
        m_cost,
        t_cost,
        p_cost,
        hash_len: 32,
    };
    guard(|| lift(password::hash_phc(&password, &salt, &params)))
}

/// The plain clock of the A/B row `hit/2, clock: Instant` (`benches/rate_limiter.exs`):
/// nanoseconds since this library first read `std::time::Instant`.
fn instant_now_ns() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

/// `limiter_hit` reading `std::time::Instant` instead of `hotpath_core::clock` (quanta): the
/// plain side of the clock's A/B row. Use it on a limiter of its own (its times are not on
/// the limiter's clock).
#[rustler::nif]
fn bench_limiter_hit_instant<'a>(
    env: Env<'a>,
    name: Term<'a>,
    key: Term<'a>,
    cost: Term<'a>,
) -> NifResult<Term<'a>> {
    crate::limiter::hit_published(env, name, key, cost, |_| instant_now_ns())
}

/// `limiter_hit` registered with `#[rustler::nif]`: the plain side of the entry-point A/B row
/// (`hit/2, #[rustler::nif] entry` in benches/rate_limiter.exs; see `fast_nif.rs`).
#[rustler::nif]
fn bench_limiter_hit_rustler_nif<'a>(
    env: Env<'a>,
    name: Term<'a>,
    key: Term<'a>,
    cost: Term<'a>,
) -> NifResult<Term<'a>> {
    crate::limiter::hit_published(env, name, key, cost, crate::limiter::Limiter::now_ns)
}

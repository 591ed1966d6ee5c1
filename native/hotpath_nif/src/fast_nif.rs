//! The one native trick on the entry points: `limiter_hit`, the NIF behind
//! `Hotpath.RateLimiter.hit/2`, is registered without `#[rustler::nif]`'s wrapper.
//!
//! rustler 0.39's generated wrapper collects the arguments into a `Vec<Term>` on every call
//! (a heap allocation and a free) and returns through `NifReturned`. [`fast_nif!`] registers a
//! function through the same `rustler::Nif` inventory but passes the arguments as a
//! fixed-size array; the function returns its answer already encoded (a `Term` of the call's
//! environment, so it can be encoded while the data it describes is borrowed), and errors and
//! panics go through
//! rustler's own `handle_nif_result`, so the Elixir side sees exactly what `#[rustler::nif]`
//! would give it.
//!
//! Why it stays: the A/B row of `make bench` (`hit/2, fast entry` against `hit/2,
//! #[rustler::nif] entry` in benches/native_ab.exs; the plain twin is compiled in by the
//! `bench` feature, see `bench.rs`) measured the plain entry at 1.37x-1.74x (1 process) and
//! 1.24x-1.42x (one per scheduler) on 2026-12-01, over the 15% bar. (`noop_hit_shape`, its
//! benchmark floor, is registered the same way.) The same trick on the `:telemetry`
//! handler's NIF (`metrics_record_index`) gave 1.07x/1.08x on a whole event and was removed;
//! every other NIF uses `#[rustler::nif]`.
//!
//! The cost: `rustler::codegen_runtime` is doc-hidden and may change in any rustler release.
//! It is what `#[rustler::nif]` itself expands to in 0.39 (`rustler_codegen/src/nif.rs`);
//! when upgrading rustler, compare this file with that expansion, or delete it and register
//! `limiter_hit` with `#[rustler::nif]` (its plain twin in `bench.rs` shows how).

use rustler::codegen_runtime::{handle_nif_result, ErlNifEnv, ErlNifTerm};
use rustler::{Atom, Env, NifResult, Term};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Calls `f` with the `N` arguments of a NIF call.
///
/// # Safety
///
/// `env` and `argv` must be the arguments the VM passed to a NIF registered with arity `N`:
/// the VM then guarantees `argc == N` valid terms in `argv`, valid for the call, in `env`.
#[inline(always)]
pub unsafe fn call<const N: usize>(
    env: *mut ErlNifEnv,
    argc: i32,
    argv: *const ErlNifTerm,
    f: for<'a> fn(Env<'a>, [Term<'a>; N]) -> NifResult<Term<'a>>,
) -> ErlNifTerm {
    debug_assert_eq!(argc as usize, N);
    let lifetime = ();
    // SAFETY: as in rustler's generated wrapper, the `Env` is bound to a local that outlives
    // every use below; `env` is the calling environment.
    let env = unsafe { Env::new(&lifetime, env) };
    // SAFETY: the VM passes exactly `N` (the registered arity) terms in `argv`.
    let args: [Term; N] = std::array::from_fn(|i| unsafe { Term::new(env, *argv.add(i)) });
    match catch_unwind(AssertUnwindSafe(|| f(env, args))) {
        Ok(Ok(value)) => value.as_c_arg(),
        failed => {
            // An error or a panic: rustler's own handling (the `Atom` type is never used).
            let failed: Result<NifResult<Atom>, _> = match failed {
                Ok(Err(error)) => Ok(Err(error)),
                Err(panic) => Err(panic),
                Ok(Ok(_)) => unreachable!(),
            };
            // SAFETY: `handle_nif_result(..).apply` is what rustler's wrapper returns to the VM.
            unsafe { handle_nif_result(failed, env).apply(env) }
        }
    }
}

/// Registers `$imp: fn(Env, [Term; $arity]) -> NifResult<T>` as the NIF `$name/$arity` of the
/// module given to `rustler::init!`, on a normal scheduler. Only for the entry point named
/// in the module docs.
macro_rules! fast_nif {
    ($name:literal, $arity:literal, $imp:path) => {
        rustler::codegen_runtime::inventory::submit!(rustler::Nif {
            name: concat!($name, "\0").as_ptr() as *const rustler::codegen_runtime::c_char,
            arity: $arity,
            flags: rustler::SchedulerFlags::Normal as rustler::codegen_runtime::c_uint,
            raw_func: {
                unsafe extern "C" fn nif_func(
                    env: *mut rustler::codegen_runtime::ErlNifEnv,
                    argc: rustler::codegen_runtime::c_int,
                    argv: *const rustler::codegen_runtime::ErlNifTerm,
                ) -> rustler::codegen_runtime::ErlNifTerm {
                    // SAFETY: registered with arity `$arity`, called only by the VM.
                    unsafe { $crate::fast_nif::call::<$arity>(env, argc, argv, $imp) }
                }
                nif_func
            },
        });
    };
}

pub(crate) use fast_nif;

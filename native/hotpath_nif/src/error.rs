//! Mapping of core errors and Rust panics onto Elixir's conventions.
//!
//! * [`CoreError::InvalidArgument`] raises `ArgumentError` with the core's message.
//! * Expected failures return `{:error, {reason, message}}`.
//! * A panic inside [`catch`] is returned as `Err(message)` (the compute kernels' convention).
//! * A panic inside [`guard`] raises `Hotpath.PanicError` carrying the panic message; a panic
//!   anywhere else (term decoding, encoding) is caught by rustler and raised as
//!   `ErlangError{original: :nif_panicked}`. Neither takes the VM down.

use hotpath_core::Error as CoreError;
use rustler::NifException;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};

thread_local! {
    /// Depth of [`guard`] calls on this thread: a guarded panic reaches Elixir with its message,
    /// so the hook stays quiet for it.
    static GUARD_DEPTH: Cell<u32> = const { Cell::new(0) };
}

mod atoms {
    rustler::atoms! { malformed, incompatible }
}

/// `%ArgumentError{message: ...}`, raised as an exception struct.
#[derive(NifException)]
#[module = "ArgumentError"]
pub struct ArgumentError {
    message: String,
}

/// `%Hotpath.PanicError{message: ...}`: native code panicked and was unwound.
#[derive(NifException)]
#[module = "Hotpath.PanicError"]
pub struct PanicError {
    message: String,
}

/// Raise `ArgumentError` with `message`.
pub fn argument_error(message: impl Into<String>) -> rustler::Error {
    rustler::Error::RaiseTerm(Box::new(ArgumentError {
        message: message.into(),
    }))
}

/// The rustler error for a core error (see the module docs for the mapping).
pub fn to_nif(error: CoreError) -> rustler::Error {
    match error {
        CoreError::InvalidArgument(message) => argument_error(message),
        CoreError::Malformed(message) => tagged(atoms::malformed(), message),
        CoreError::Incompatible(message) => tagged(atoms::incompatible(), message),
    }
}

fn tagged(reason: rustler::Atom, message: String) -> rustler::Error {
    rustler::Error::Term(Box::new((reason, message)))
}

/// Results of NIF bodies that call into the core.
pub type NifResult<T> = Result<T, rustler::Error>;

/// Converts a core result for returning from a NIF.
pub fn lift<T>(result: hotpath_core::Result<T>) -> NifResult<T> {
    result.map_err(to_nif)
}

/// Runs `f`, turning a panic into `Hotpath.PanicError` with the panic's message.
///
/// Each NIF that runs core code wraps it in `guard`, so a bug surfaces in Elixir with a
/// useful message instead of rustler's bare `:nif_panicked`.
pub fn guard<T>(f: impl FnOnce() -> NifResult<T>) -> NifResult<T> {
    // AssertUnwindSafe: after a panic the closure's captures are dropped or left to the
    // caller's resources; core types keep their invariants under unwinding (they change shared
    // state only through single atomic operations or under a lock released by the unwind).
    GUARD_DEPTH.with(|d| d.set(d.get() + 1));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    GUARD_DEPTH.with(|d| d.set(d.get() - 1));
    result.unwrap_or_else(|payload| {
        Err(rustler::Error::RaiseTerm(Box::new(PanicError {
            message: panic_message(payload.as_ref()),
        })))
    })
}

/// Runs `f`, returning a panic as `Err(message)` instead of raising: the job kernels of
/// `Hotpath.Compute` report a panic as `{:error, {:panic, message}}`. Quiet like [`guard`].
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    // AssertUnwindSafe: callers leave no broken invariant behind a panic: a kernel's state is
    // behind a Mutex whose poisoning they handle, counters are single atomic operations.
    GUARD_DEPTH.with(|d| d.set(d.get() + 1));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    GUARD_DEPTH.with(|d| d.set(d.get() - 1));
    result.map_err(|payload| panic_message(payload.as_ref()))
}

/// The message of a panic payload (`&str` or `String`), or a placeholder.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "native code panicked with a non-string payload".to_string()
    }
}

/// Replaces the default panic hook (a multi-line backtrace notice on the VM's stderr): a panic
/// inside [`guard`] prints nothing, because its message reaches Elixir in `Hotpath.PanicError`;
/// any other panic prints one line naming its location, since rustler reports it only as
/// `:nif_panicked`.
pub fn install_panic_hook() {
    panic::set_hook(Box::new(|info| {
        if GUARD_DEPTH.with(|d| d.get()) > 0 {
            return;
        }
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_else(|| "unknown location".to_string());
        eprintln!(
            "[hotpath_nif] panic at {location}: {}",
            panic_message(info.payload())
        );
    }));
}

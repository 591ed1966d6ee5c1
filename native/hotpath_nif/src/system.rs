//! NIFs about the library itself: the empty call (`Hotpath.loaded?/0` and the benchmark
//! floor) and build information. The benchmark and debug NIFs are in `bench.rs`.

use rustler::{Atom, NifMap};

mod atoms {
    rustler::atoms! { ok, release, debug }
}

/// Does nothing: the cost of crossing into native code and back.
#[rustler::nif]
fn noop() -> Atom {
    atoms::ok()
}

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

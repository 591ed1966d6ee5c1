//! rustler glue for Hotpath: term decoding, resources, error encoding and scheduling flags.
//!
//! One module per area; all logic lives in `hotpath_core`. NIFs register themselves through
//! `#[rustler::nif]` (`limiter_hit` through `fast_nif!`, see `fast_nif.rs`), so
//! `init!` lists none of them. Resources are `#[rustler::resource_impl]` types.

#[cfg(feature = "bench")]
mod bench;
#[cfg(feature = "bench")]
mod bench_key;
mod compute;
mod error;
mod fast_nif;
mod histogram;
mod limiter;
mod metrics;
mod password;
mod published;
mod system;
mod term;

fn load(env: rustler::Env, _info: rustler::Term) -> bool {
    error::install_panic_hook();
    term::check_words(env)
}

rustler::init!("Elixir.Hotpath.Native", load = load);

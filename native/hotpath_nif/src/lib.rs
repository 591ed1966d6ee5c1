//! rustler glue for Hotpath: term decoding, resources, error encoding and scheduling flags.
//!
//! One module per area; all logic lives in `hotpath_core`. NIFs register themselves through
//! `#[rustler::nif]`, so `init!` lists none of them.

mod compute;
mod error;
mod limiter;
mod password;
mod system;

fn load(_env: rustler::Env, _info: rustler::Term) -> bool {
    error::install_panic_hook();
    true
}

rustler::init!("Elixir.Hotpath.Native", load = load);

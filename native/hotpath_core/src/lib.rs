//! Hotpath's pure Rust core.
//!
//! Everything that can be tested without a BEAM lives here: the rate limiter, the histograms
//! and the CPU kernels. No rustler type appears in this crate; `hotpath_nif` translates terms
//! to these types and [`Error`] to Elixir errors.

#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod clock;
pub mod compute;
pub mod digest;
pub mod error;
pub mod histogram;
pub mod limiter;
pub mod metrics;
pub mod password;

pub use error::{Error, Result};

/// The version of this crate, reported by `Hotpath.native_info/0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

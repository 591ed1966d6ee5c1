//! The rate limiter: algorithms, keys and the concurrent table.
//!
//! [`Table`] is what a named `Hotpath.RateLimiter` owns. Every call takes `now` in
//! nanoseconds on the caller's monotonic axis; the NIF layer reads a monotonic clock (or takes
//! an injected time in tests), so nothing here reads a clock except the sweeper's budget.

pub mod algorithm;
pub mod key;
pub mod table;

pub use algorithm::{decide, Algorithm, Decision, Policy, Slot, NS_PER_MS};
pub use key::{ByteKind, Key, KeyRef, Probe};
pub use table::{Config, OnFull, Stats, SweepChunk, Table};

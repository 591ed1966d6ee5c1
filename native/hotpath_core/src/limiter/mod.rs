//! The rate limiter: algorithms, keys and the concurrent table.
//!
//! [`Table`] is what a named `Hotpath.RateLimiter` owns: a table of [`Slot`]s for a single
//! policy, or of cells for several policies and bans ([`multi::Cells`]). Every call takes `now` in
//! nanoseconds on the caller's monotonic axis; the NIF layer reads a monotonic clock (or takes
//! an injected time in tests), so nothing here reads a clock except the sweeper's budget.

pub mod algorithm;
mod epoch;
mod index;
pub mod key;
pub mod multi;
pub mod table;

pub use algorithm::{decide, Algorithm, Decision, Policy, Slot, NS_PER_MS};
pub use key::{ByteKind, Key, KeyRef, Probe};
pub use multi::{
    Ban, BanOp, BanState, Cell, Cells, MultiHit, Operator, Outcome, Pair, Rules, Verdict,
};
pub use table::{Config, OnFull, Op, Stats, SweepChunk, Table, Value};

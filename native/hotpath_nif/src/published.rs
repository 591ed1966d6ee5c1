//! Named native instances found by their name atom inside a NIF call.
//!
//! Hot calls (`Hotpath.RateLimiter.hit/2`, the `Hotpath.Metrics` telemetry handler) name their
//! instance by an atom rather than passing a resource term fetched from `:persistent_term`,
//! so the NIF finds it here: one table behind a `RwLock`, read under its read lock. (A
//! per-thread copy of this table was measured against it in the same run, issue #15, and did
//! not pay for itself: `hit/2` 0.93x, a whole telemetry event 1.14x; it was removed.)

use rustler::sys::ErlNifTerm;
use std::sync::{Arc, RwLock};

/// Instances of `T` by name atom.
pub struct Published<T> {
    table: RwLock<Vec<(ErlNifTerm, Arc<T>)>>,
}

impl<T> Published<T> {
    /// An empty table.
    pub const fn new() -> Self {
        Published {
            table: RwLock::new(Vec::new()),
        }
    }

    /// Publishes `value` under the atom `name`, replacing what was there.
    pub fn publish(&self, name: ErlNifTerm, value: Arc<T>) {
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        table.retain(|(k, _)| *k != name);
        table.push((name, value));
    }

    /// Removes what is published under `name` if it is `value`.
    pub fn unpublish(&self, name: ErlNifTerm, value: &T) {
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        table.retain(|(k, v)| !(*k == name && std::ptr::eq(&**v, value)));
    }

    /// Runs `f` with the instance published under `name`, if any (under the read lock: `f`
    /// must not publish or unpublish).
    #[inline]
    pub fn find<R>(&self, name: ErlNifTerm, f: impl FnOnce(&T) -> R) -> Option<R> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        table
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, instance)| f(instance))
    }
}

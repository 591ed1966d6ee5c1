//! Named native instances found by their name atom inside a NIF call.
//!
//! Hot calls (`Hotpath.Metrics.record/4`, `Hotpath.RateLimiter.hit/4`) name their instance by
//! an atom rather than passing a resource term fetched from `:persistent_term`: a resource term
//! read from the literal area costs the NIF about twice an empty call to decode (measured on
//! OTP 25). Each scheduler thread keeps a copy of the table, refreshed when the global
//! generation moves, so a lookup touches no shared cache line. A thread's copy keeps a removed
//! instance's memory alive until that thread's next lookup.

use rustler::sys::ErlNifTerm;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

type Entries<T> = Vec<(ErlNifTerm, Arc<T>)>;

/// A thread's copy of a [`Published`] table.
pub struct LocalTable<T> {
    generation: u64,
    entries: Entries<T>,
}

impl<T> LocalTable<T> {
    /// An empty copy (refreshed on first use).
    pub const fn new() -> Self {
        LocalTable {
            generation: 0,
            entries: Vec::new(),
        }
    }
}

/// Instances of `T` by name atom.
pub struct Published<T> {
    table: RwLock<Entries<T>>,
    generation: AtomicU64,
}

impl<T> Published<T> {
    /// An empty table.
    pub const fn new() -> Self {
        Published {
            table: RwLock::new(Vec::new()),
            generation: AtomicU64::new(1),
        }
    }

    /// Publishes `value` under the atom `name`, replacing what was there.
    pub fn publish(&self, name: ErlNifTerm, value: Arc<T>) {
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        table.retain(|(k, _)| *k != name);
        table.push((name, value));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Removes what is published under `name` if it is `value`.
    pub fn unpublish(&self, name: ErlNifTerm, value: &T) {
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        table.retain(|(k, v)| !(*k == name && std::ptr::eq(&**v, value)));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Runs `f` with the instance published under `name`, if any, through `copy`, a copy the
    /// caller keeps in its own thread-local state.
    #[inline]
    pub fn find<R>(
        &self,
        copy: &mut LocalTable<T>,
        name: ErlNifTerm,
        f: impl FnOnce(&T) -> R,
    ) -> Option<R> {
        let generation = self.generation.load(Ordering::Acquire);
        if copy.generation != generation {
            let table = self.table.read().unwrap_or_else(|e| e.into_inner());
            copy.entries = table.clone();
            copy.generation = generation;
        }
        copy.entries
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, instance)| f(instance))
    }
}

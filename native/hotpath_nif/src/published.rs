//! Named native instances found by their name atom inside a NIF call.
//!
//! Hot calls (`Hotpath.RateLimiter.hit/2`, the `Hotpath.Metrics` telemetry handler) name their
//! instance by an atom rather than passing a resource term fetched from `:persistent_term`,
//! so the NIF finds it here: one immutable table behind an `ArcSwap`, replaced whole by
//! (rare) publishes. A lookup writes no memory shared with other threads: `ArcSwap::load`
//! takes a thread-local slot, where a `RwLock`'s read lock wrote one counter shared by every
//! scheduler on every hit (issue #18: that line alone kept two schedulers from scaling).

use arc_swap::ArcSwapOption;
use rustler::sys::ErlNifTerm;
use std::sync::{Arc, Mutex};

type Entries<T> = Vec<(ErlNifTerm, Arc<T>)>;

/// Instances of `T` by name atom.
pub struct Published<T> {
    /// `None` until the first publish.
    table: ArcSwapOption<Entries<T>>,
    /// Serialises writers, so that two publishes never lose one another's change.
    writer: Mutex<()>,
}

impl<T> Published<T> {
    /// An empty table.
    pub const fn new() -> Self {
        Published {
            table: ArcSwapOption::const_empty(),
            writer: Mutex::new(()),
        }
    }

    /// Replaces the table by `change` applied to a copy of it.
    fn update(&self, change: impl FnOnce(&mut Entries<T>)) {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut entries = self.table.load().as_deref().cloned().unwrap_or_default();
        change(&mut entries);
        self.table.store(Some(Arc::new(entries)));
    }

    /// Publishes `value` under the atom `name`, replacing what was there.
    pub fn publish(&self, name: ErlNifTerm, value: Arc<T>) {
        self.update(|entries| {
            entries.retain(|(k, _)| *k != name);
            entries.push((name, value));
        });
    }

    /// Removes what is published under `name` if it is `value`.
    pub fn unpublish(&self, name: ErlNifTerm, value: &T) {
        self.update(|entries| entries.retain(|(k, v)| !(*k == name && std::ptr::eq(&**v, value))));
    }

    /// Runs `f` with the instance published under `name`, if any. `f` may publish or
    /// unpublish: it runs on the table as it was when the call began.
    #[inline]
    pub fn find<R>(&self, name: ErlNifTerm, f: impl FnOnce(&T) -> R) -> Option<R> {
        let table = self.table.load();
        table
            .as_deref()?
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, instance)| f(instance))
    }
}

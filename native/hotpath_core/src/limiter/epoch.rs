//! When memory a lock-free reader may still see can be freed: readers announce themselves in
//! a slot of their own thread, writers retire what they unlinked and free it once no reader
//! that could have seen it is left.
//!
//! A limiter hit reads its shard's index without taking a lock (see [`super::index`]). A
//! writer that replaces an index cannot free the old one at once: a hit that loaded the
//! pointer before the swap may still be probing it. This is epoch-based reclamation reduced
//! to what the table needs:
//!
//! * a global epoch, advanced by every retirement (rare: an index is replaced when it grows,
//!   is compacted or cleared), so readers only ever read it and its line stays shared;
//! * per thread one [`Reader`] slot on its own cache line, which a [`pin`] sets to the epoch
//!   it read (a store and a fence on the thread's own line: nothing shared is written) and
//!   its guard's drop sets back to 0;
//! * retired objects tagged with the epoch of their retirement, freed by the writer's
//!   [`Retired::reclaim`] once every slot is either 0 or newer than the tag.
//!
//! A thread that pins while its thread-locals are being destroyed has no slot; it counts
//! itself in a global counter instead, and nothing is freed while that counter is nonzero.
//!
//! Why that is enough (all accesses below are `SeqCst`): a writer swaps the pointer, *then*
//! takes its tag `r` from the epoch; a reader stores its slot, *then* loads the pointer.
//! A reclaimer that sees a slot at 0 or above `r` either precedes that reader's slot store in
//! the single total order (so the reader's later pointer load sees the swap), or sees a slot
//! the reader stored after reading an epoch above `r` (so, again, after the swap). A reader
//! that might hold the old pointer has a nonzero slot at most `r`, and blocks the free.
//! Nothing here is `unsafe`; the index's dereference relies on it, and says so.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// The global epoch: the tag of the next retirement. Starts at 1 so that 0 means "not
/// reading".
static EPOCH: AtomicU64 = AtomicU64::new(1);

/// Readers pinned without a slot (a thread whose locals are being destroyed): while any is,
/// nothing is freed.
static ORPHANS: AtomicU64 = AtomicU64::new(0);

/// Every thread's slot that has ever read a table, reused after its thread exits.
static READERS: Mutex<Vec<&'static Reader>> = Mutex::new(Vec::new());

/// One thread's announcement, alone on its cache line: 0 when the thread reads no index,
/// else the epoch it read before it started.
#[repr(align(128))]
#[derive(Default)]
struct Reader {
    epoch: AtomicU64,
    /// Whether a live thread owns the slot (under `READERS`'s lock).
    taken: AtomicBool,
}

/// Takes a free slot (or a new one) for the current thread.
fn register() -> &'static Reader {
    let mut readers = READERS.lock().unwrap_or_else(|p| p.into_inner());
    let reader = match readers.iter().find(|r| !r.taken.load(Ordering::Relaxed)) {
        Some(free) => *free,
        None => {
            // Slots are never freed (128 bytes per thread that ever read a table); an
            // exited thread's slot is reused.
            let fresh: &'static Reader = Box::leak(Box::default());
            readers.push(fresh);
            fresh
        }
    };
    reader.taken.store(true, Ordering::Relaxed);
    reader
}

/// Gives the thread's slot back when the thread exits.
struct Release(&'static Reader);

impl Drop for Release {
    fn drop(&mut self) {
        if DEPTH.with(Cell::get) > 0 {
            // Another local's destructor reads a table: the slot stays announced, and is
            // cleared (and never reused) when that guard drops.
            return;
        }
        give_back(self.0);
        let _ = SLOT.try_with(|slot| slot.set(None));
    }
}

/// Marks `reader` free for another thread.
fn give_back(reader: &'static Reader) {
    let _readers = READERS.lock().unwrap_or_else(|p| p.into_inner());
    reader.epoch.store(0, Ordering::SeqCst);
    reader.taken.store(false, Ordering::Relaxed);
}

thread_local! {
    /// The thread's slot, once it has one. `const` and without a destructor, so reading it
    /// costs no initialisation check; [`RELEASE`] (touched once) owns the slot's return.
    static SLOT: Cell<Option<&'static Reader>> = const { Cell::new(None) };
    /// How deeply the thread is pinned.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    static RELEASE: Cell<Option<Release>> = const { Cell::new(None) };
}

/// The current thread's slot, registering it on first use.
#[inline(always)]
fn slot() -> Option<&'static Reader> {
    SLOT.with(|slot| match slot.get() {
        Some(reader) => Some(reader),
        None => first_slot(slot),
    })
}

#[cold]
#[inline(never)]
fn first_slot(slot: &Cell<Option<&'static Reader>>) -> Option<&'static Reader> {
    let reader = register();
    // A thread whose locals are being destroyed cannot keep a slot: it is counted in
    // `ORPHANS` instead (see `pin`).
    if RELEASE.try_with(|r| r.set(Some(Release(reader)))).is_err() {
        give_back(reader);
        return None;
    }
    slot.set(Some(reader));
    Some(reader)
}

/// Proof that the current thread is announced as a reader: what a pinned thread loads from an
/// index stays allocated until the guard drops. Not `Send`: the announcement is the thread's.
pub struct Guard {
    _not_send: std::marker::PhantomData<*const ()>,
}

/// Announces the current thread as a reader until the guard drops. Nests: only the outermost
/// guard announces and clears.
#[inline]
pub fn pin() -> Guard {
    let depth = DEPTH.with(|d| {
        let depth = d.get();
        d.set(depth + 1);
        depth
    });
    if depth == 0 {
        match slot() {
            // `swap` rather than `store`: on x86 a locked exchange is the cheapest full
            // fence, and the store must be ordered before the loads that follow.
            Some(reader) => {
                reader
                    .epoch
                    .swap(EPOCH.load(Ordering::SeqCst), Ordering::SeqCst);
            }
            None => {
                ORPHANS.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    Guard {
        _not_send: std::marker::PhantomData,
    }
}

impl Drop for Guard {
    #[inline]
    fn drop(&mut self) {
        let depth = DEPTH.with(|d| {
            let depth = d.get() - 1;
            d.set(depth);
            depth
        });
        if depth == 0 {
            match SLOT.with(Cell::get) {
                Some(reader) => reader.epoch.store(0, Ordering::Release),
                None => {
                    ORPHANS.fetch_sub(1, Ordering::Release);
                }
            }
        }
    }
}

/// The oldest epoch a reader may still be in: objects retired before it can be freed.
fn oldest_reader() -> u64 {
    if ORPHANS.load(Ordering::SeqCst) > 0 {
        return 0;
    }
    let readers = READERS.lock().unwrap_or_else(|p| p.into_inner());
    readers
        .iter()
        .map(|r| r.epoch.load(Ordering::SeqCst))
        .filter(|&e| e != 0)
        .min()
        .unwrap_or(u64::MAX)
}

/// Objects unlinked from a table and waiting until no reader can see them.
pub struct Retired<T> {
    waiting: Mutex<Vec<(u64, T)>>,
    /// How many wait (kept under the lock; read without it to skip an empty list).
    pending: std::sync::atomic::AtomicUsize,
}

impl<T> Default for Retired<T> {
    fn default() -> Retired<T> {
        Retired {
            waiting: Mutex::new(Vec::new()),
            pending: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl<T> Retired<T> {
    /// Keeps `object`, already unlinked (no new reader can reach it), until it is safe to
    /// drop.
    pub fn retire(&self, object: T) {
        let tag = EPOCH.fetch_add(1, Ordering::SeqCst);
        let mut waiting = self.lock();
        waiting.push((tag, object));
        self.pending.store(waiting.len(), Ordering::Relaxed);
    }

    /// Drops the objects no reader can see any more and returns how many are still waiting.
    /// With nothing waiting it is one load of a counter only retirements and reclaims write;
    /// otherwise it scans every reader slot (one load per thread that ever read a table).
    #[inline]
    pub fn reclaim(&self) -> usize {
        if self.pending.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let oldest = oldest_reader();
        // Taken out under the lock, dropped outside it.
        let (freed, left): (Vec<(u64, T)>, usize) = {
            let mut waiting = self.lock();
            let (free, keep) = std::mem::take(&mut *waiting)
                .into_iter()
                .partition(|(tag, _)| *tag < oldest);
            *waiting = keep;
            self.pending.store(waiting.len(), Ordering::Relaxed);
            (free, waiting.len())
        };
        drop(freed);
        left
    }

    /// Calls `f` on every object still waiting (for memory estimates).
    pub fn sum(&self, f: impl Fn(&T) -> usize) -> usize {
        self.lock().iter().map(|(_, o)| f(o)).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, T)>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// Reclaims until at most `left` objects wait: other tests' threads pin and unpin all the
    /// time, and one of them may be pinned at an older epoch for a moment.
    fn reclaims_to(retired: &Retired<Box<u64>>, left: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while retired.reclaim() > left {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::yield_now();
        }
        true
    }

    #[test]
    fn a_pinned_reader_holds_back_what_was_retired_after_it_pinned() {
        let retired = Arc::new(Retired::<Box<u64>>::default());
        let (pinned_tx, pinned_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let _guard = pin();
            pinned_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        });
        pinned_rx.recv().unwrap();
        retired.retire(Box::new(1));
        assert_eq!(retired.reclaim(), 1, "the reader may still see it");
        release_tx.send(()).unwrap();
        reader.join().unwrap();
        assert!(reclaims_to(&retired, 0));
    }

    #[test]
    fn readers_that_pin_after_a_retirement_do_not_hold_it_back() {
        let retired = Retired::<Box<u64>>::default();
        retired.retire(Box::new(1));
        let _guard = pin();
        assert!(reclaims_to(&retired, 0));
        // Nested guards: the outer one still announces.
        {
            let _inner = pin();
        }
        retired.retire(Box::new(2));
        assert_eq!(retired.reclaim(), 1);
    }

    #[test]
    fn exited_threads_give_their_slot_back() {
        for _ in 0..3 {
            std::thread::spawn(|| drop(pin())).join().unwrap();
        }
        let before = READERS.lock().unwrap().len();
        for _ in 0..40 {
            std::thread::spawn(|| drop(pin())).join().unwrap();
        }
        // One at a time, these threads would need one slot between them; other tests' threads
        // (up to 16 at once) may take the freed ones meanwhile, never 40.
        assert!(READERS.lock().unwrap().len() <= before + 17);
    }
}

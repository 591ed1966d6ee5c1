//! A concurrent keyed table of limiter slots: shards of hash indices that hits read without a
//! lock.
//!
//! A key's hash picks its shard (middle bits) and its bucket in the shard's index (see
//! [`super::index`]). A hit on a stored key finds it without a lock and decides under the
//! lock of the key's own bucket, so every decision is atomic and the only line a hit writes
//! is the key's own. New keys, removals and rebuilds go through the index's writer lock, one
//! shard at a time. The sweeper takes the same writer locks one shard at a time and stops
//! when its time budget is spent, so neither a hit nor a sweep ever waits long; it removes a
//! slot under the slot's bucket lock, so never between a hit's read and its write.

use super::algorithm::{decide, Decision, Policy, Slot};
use super::epoch::{self, Guard, Retired};
use super::index::{self, Counts, Index, Locked, Lookup, View, Writer};
use super::key::{Key, KeyRef, Probe};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What a full table does with a request for a key it cannot store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    /// Refuse the request (fail closed).
    Deny,
    /// Admit the request as if the key were fresh, without storing it (fail open).
    Allow,
}

/// The configuration of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The policy of calls that do not bring their own.
    pub policy: Policy,
    /// The most keys stored at once.
    pub max_keys: usize,
    /// The most bytes of key data stored out of line (the bytes of keys longer than
    /// [`INLINE_BYTES`](super::key::INLINE_BYTES)); `usize::MAX` for no bound beyond
    /// `max_keys`. A new key that does not fit is treated as if the table were full.
    pub max_bytes: usize,
    /// What to do with a new key when `max_keys` are stored and none has expired.
    pub on_full: OnFull,
}

/// What a table stores per key: one [`Slot`] (a single policy), or a cell (several policies
/// and a ban record, see [`super::multi::Cell`]).
pub trait Value: Send {
    /// From this instant on the value behaves exactly like an absent key: the sweeper
    /// removes it.
    fn expires(&self) -> u64;
}

impl Value for Slot {
    #[inline(always)]
    fn expires(&self) -> u64 {
        self.expires
    }
}

/// One operation on a key, run under the key's lock: what a hit (or a ban, an unban...)
/// does to a stored value (under the value's bucket lock), or to a key not stored (under the
/// shard's writer lock). The table calls exactly one of
/// [`Op::stored`] and [`Op::fresh`] per attempt, which is what makes every operation atomic.
pub trait Op<V> {
    /// The answer.
    type Out;
    /// The answer for a stored value, updated in place. Returns the new expiry, or any lower
    /// bound of it, when the value changed (the table lowers its shard's hint with it).
    fn stored(&self, value: &mut V, now: u64) -> (Self::Out, Option<u64>);
    /// The answer for a key not stored, and the value to store (`None`: nothing to store).
    fn fresh(&self, now: u64) -> (Self::Out, Option<V>);
    /// The answer when `fresh` asked to store a value and the table is full: `wait` is
    /// `None` under [`OnFull::Allow`] and the time until a stored key may expire under
    /// [`OnFull::Deny`].
    fn full(&self, fresh: Self::Out, wait: Option<u64>) -> Self::Out;
}

/// A hit of one policy on a table of slots: the operation of [`Table::hit`].
struct SingleHit<'p> {
    policy: &'p Policy,
    cost: u64,
}

impl Op<Slot> for SingleHit<'_> {
    type Out = Decision;

    #[inline(always)]
    fn stored(&self, slot: &mut Slot, now: u64) -> (Decision, Option<u64>) {
        let (decision, stored) = decide(self.policy, Some(*slot), now, self.cost);
        match stored {
            Some(stored) => {
                *slot = stored;
                (decision, Some(stored.expires))
            }
            None => (decision, None),
        }
    }

    #[inline(always)]
    fn fresh(&self, now: u64) -> (Decision, Option<Slot>) {
        decide(self.policy, None, now, self.cost)
    }

    fn full(&self, fresh: Decision, wait: Option<u64>) -> Decision {
        match wait {
            None => fresh,
            Some(wait) => Decision::Deny {
                retry_after: wait,
                reset_after: wait,
            },
        }
    }
}

/// One shard. A hit reads its first cache line only (the index pointer and the hint); the
/// writer lock, written by every new key, sits on the second, so that two schedulers hitting
/// stored keys of one shard share the first line read-only.
#[repr(C, align(64))]
struct Shard<V> {
    /// The shard's index as [`Index::into_raw`] made it, or null while the shard has never
    /// stored a key. Replaced (by a rebuild or a clear) only under `writer`; the old one is
    /// retired, not freed (see [`super::epoch`]).
    index: AtomicPtr<()>,
    /// A lower bound of the earliest `expires` in the index: exact after a purge, lowered by
    /// every store (an atomic minimum, written only when it lowers it). Read to find expired
    /// slots and to tell a refused new key when room may free up.
    hint: AtomicU64,
    /// The writer lock, with the current index's bookkeeping.
    writer: Line<Mutex<Counts>>,
    _values: PhantomData<V>,
}

/// A value alone on its cache line.
#[repr(align(64))]
struct Line<T>(T);

/// A shard's writer: the current index, under the shard's writer lock.
type ShardWriter<'g, V> = Writer<'g, V, MutexGuard<'g, Counts>>;

impl<V> Shard<V> {
    fn new() -> Shard<V> {
        Shard {
            index: AtomicPtr::new(std::ptr::null_mut()),
            hint: AtomicU64::new(u64::MAX),
            writer: Line(Mutex::new(Counts::default())),
            _values: PhantomData,
        }
    }

    /// The current index, valid for as long as `guard` pins this thread.
    #[inline(always)]
    fn current<'g>(&self, _guard: &'g Guard) -> Option<View<'g, V>> {
        let index = self.index.load(Ordering::SeqCst);
        // SAFETY: a non-null pointer here came from `Index::into_raw` (in `Shard::write` or
        // `Table::replace`). Its index is freed only after it was unlinked from this shard
        // and every thread pinned before its retirement unpinned (`Retired::reclaim`, see
        // `super::epoch` for why that covers this load), or by the shard's drop, when no
        // reference is left. `guard` pins this thread for `'g`.
        (!index.is_null()).then(|| unsafe { Index::view_raw(index) })
    }

    /// The writer lock and the current index, if the shard has one (an index, once made, is
    /// only ever replaced). A shard that never stored a key is passed over without its lock.
    fn write_existing<'g>(&'g self, guard: &'g Guard) -> Option<ShardWriter<'g, V>> {
        self.current(guard)?;
        let counts = self.writer.0.lock().unwrap_or_else(|p| p.into_inner());
        self.current(guard).map(|view| Writer::new(view, counts))
    }

    /// The writer lock and the current index, creating the first index if there is none (its
    /// buckets are added to `buckets`).
    fn write<'g>(&'g self, guard: &'g Guard, buckets: &AtomicUsize) -> ShardWriter<'g, V> {
        let counts = self.writer.0.lock().unwrap_or_else(|p| p.into_inner());
        let view = match self.current(guard) {
            Some(view) => view,
            None => {
                let first = Index::<V>::with_buckets(index::buckets_for(1));
                buckets.fetch_add(first.buckets(), Ordering::Relaxed);
                self.index.store(first.into_raw(), Ordering::SeqCst);
                self.current(guard).expect("just stored")
            }
        };
        Writer::new(view, counts)
    }

    #[inline(always)]
    fn lower_hint(&self, expires: u64) {
        if expires < self.hint.load(Ordering::Relaxed) {
            self.hint.fetch_min(expires, Ordering::Relaxed);
        }
    }
}

impl<V> Drop for Shard<V> {
    fn drop(&mut self) {
        let index = *self.index.get_mut();
        if !index.is_null() {
            // SAFETY: the current index came from `Index::into_raw` and is owned by the
            // shard; `&mut self` means no reader is left.
            drop(unsafe { Index::<V>::from_raw(index) });
        }
    }
}

/// An index unlinked from its shard (as [`Index::into_raw`] made it), freed once no reader
/// can see it.
struct RetiredIndex<V>(*mut (), PhantomData<V>);

// SAFETY: the retired index is owned by this value alone from its unlinking on (readers only
// read it until they unpin); sending it sends its keys and values.
unsafe impl<V: Send> Send for RetiredIndex<V> {}

impl<V> RetiredIndex<V> {
    fn buckets(&self) -> usize {
        // SAFETY: the index stays allocated until this value drops.
        unsafe { Index::<V>::view_raw(self.0) }.buckets()
    }
}

impl<V> Drop for RetiredIndex<V> {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `Index::into_raw`; `Retired::reclaim` drops this
        // value only once no reader pinned before its retirement is left (and `Table`'s drop
        // only when no reader is left at all), so no view of it remains.
        drop(unsafe { Index::<V>::from_raw(self.0) });
    }
}

/// A key as a table looks it up: what to compare stored keys with, its hash and its shard.
struct Located<'t, 'k, V> {
    probe: Probe<'k>,
    hash: u64,
    shard: &'t Shard<V>,
}

impl<V> Clone for Located<'_, '_, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for Located<'_, '_, V> {}

impl<V> Located<'_, '_, V> {
    /// The key's bucket in `view`, locked (see [`View::lock`]).
    #[inline(always)]
    fn lock<'g>(&self, view: View<'g, V>) -> Lookup<'g, V> {
        view.lock(self.hash, &self.probe)
    }
}

/// An operation that could not store its new key because the table is full.
struct Full<O>(O);

/// The result of one sweep chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepChunk {
    /// The shard to continue from, or `None` when the pass is complete.
    pub next: Option<usize>,
    /// Slots removed by this chunk.
    pub removed: usize,
}

/// Counters reported by [`Table::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Keys stored.
    pub keys: usize,
    /// Estimated bytes held by the table (buckets, shards and out-of-line key bytes).
    pub memory_bytes: usize,
    /// Bytes of key data stored out of line (what `max_bytes` bounds).
    pub key_bytes: usize,
    /// Requests refused or admitted untracked because the table was full.
    pub full_events: u64,
    /// Number of shards.
    pub shards: usize,
}

/// A concurrent table of limiter values: [`Slot`]s (the default) or cells
/// ([`super::multi::Cell`]).
pub struct Table<V = Slot> {
    shards: Box<[Shard<V>]>,
    shard_mask: usize,
    hasher: ahash::RandomState,
    config: Config,
    len: AtomicUsize,
    heap_bytes: AtomicUsize,
    /// Buckets allocated over all shards' current indices (kept so that `stats` is O(1),
    /// never a walk).
    buckets: AtomicUsize,
    /// Replaced indices that a reader may still be probing.
    retired: Retired<RetiredIndex<V>>,
    full_events: AtomicU64,
    /// Bytes each stored value holds outside its entry (a cell's boxed slots).
    value_bytes: usize,
}

/// Keys per shard a table is sized for at `max_keys`: small enough that purging or sweeping
/// one shard takes a few microseconds.
const KEYS_PER_SHARD: usize = 1024;
const MIN_SHARDS: usize = 16;
/// Shards a hit on a full table purges at most before `on_full` decides.
const FULL_PURGES: usize = 4;
const MAX_SHARDS: usize = 1 << 16;
/// The lowest hash bit of the shard index (see [`Table::locate`]).
const SHARD_BITS_AT: u32 = 32;
/// A sweep rebuilds an index smaller when it has more than this many buckets and more than
/// 4 per live key.
const SHRINK_ABOVE: usize = 64;

impl Table<Slot> {
    /// A table of slots for `config`, sharded for `config.max_keys` keys.
    pub fn new(config: Config) -> Table<Slot> {
        Table::with_value_bytes(config, 0)
    }

    /// Decides a request of `cost` for `key` at `now` and charges it when admitted.
    /// `policy` overrides the table's policy for this call.
    #[inline]
    pub fn hit(&self, key: KeyRef<'_>, now: u64, cost: u64, policy: Option<&Policy>) -> Decision {
        self.hit_counted(key, now, cost, policy).0
    }

    /// [`Table::hit`], with the work it did beyond the key's own lookup: the slots and shards
    /// visited to make room in a full table (0 on the common path). The NIF layer reports it
    /// to the scheduler.
    #[inline]
    pub fn hit_counted(
        &self,
        key: KeyRef<'_>,
        now: u64,
        cost: u64,
        policy: Option<&Policy>,
    ) -> (Decision, usize) {
        let policy = policy.unwrap_or(&self.config.policy);
        self.apply(key, now, &SingleHit { policy, cost })
    }

    /// The decision [`Table::hit`] would make, without charging anything.
    pub fn peek(&self, key: KeyRef<'_>, now: u64, cost: u64, policy: Option<&Policy>) -> Decision {
        let policy = policy.unwrap_or(&self.config.policy);
        let slot = self.read(key, |slot| slot.copied());
        decide(policy, slot, now, cost).0
    }

    /// The stored slot of `key`, if any (for tests and introspection).
    pub fn slot(&self, key: KeyRef<'_>) -> Option<Slot> {
        self.read(key, |slot| slot.copied())
    }
}

impl<V: Value> Table<V> {
    /// A table for `config`, sharded for `config.max_keys` keys, whose values each hold
    /// `value_bytes` bytes outside the table (counted in [`Stats::memory_bytes`]).
    pub fn with_value_bytes(config: Config, value_bytes: usize) -> Table<V> {
        let shards = (config.max_keys / KEYS_PER_SHARD)
            .next_power_of_two()
            .clamp(MIN_SHARDS, MAX_SHARDS);
        Table {
            shards: (0..shards).map(|_| Shard::new()).collect(),
            shard_mask: shards - 1,
            hasher: ahash::RandomState::new(),
            config,
            len: AtomicUsize::new(0),
            heap_bytes: AtomicUsize::new(0),
            buckets: AtomicUsize::new(0),
            retired: Retired::default(),
            full_events: AtomicU64::new(0),
            value_bytes,
        }
    }

    /// The table's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Number of shards (the unit of sweeping).
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Keys stored.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// True when no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The probe, hash and shard of `key`. The shard index comes from the hash's middle
    /// bits: the index uses the low bits for the group and the top 7 bits as the control
    /// byte, so neither is constant within a shard.
    #[inline(always)]
    fn locate<'k>(&self, key: KeyRef<'k>) -> Located<'_, 'k, V> {
        let probe = Probe::new(key);
        let hash = probe.hash_with(&self.hasher);
        let index = (hash >> SHARD_BITS_AT) as usize & self.shard_mask;
        Located {
            probe,
            hash,
            shard: &self.shards[index],
        }
    }

    fn rehash(&self) -> impl Fn(&Key) -> u64 + '_ {
        move |k| k.hash_with(&self.hasher)
    }

    /// Runs `op` on `key` at `now`: on its stored value, or as a new key (stored if `op`
    /// asks and there is room). Returns the answer and the work done beyond the key's own
    /// lookup: the slots and shards visited to make room or to rebuild an index (0 on the
    /// common path). The NIF layer reports it to the scheduler.
    ///
    /// A stored key is found without a lock and changed under its bucket's lock; anything
    /// else (a new key, a key being moved by a rebuild) takes the writer's path.
    #[inline(always)]
    pub fn apply<O: Op<V>>(&self, key: KeyRef<'_>, now: u64, op: &O) -> (O::Out, usize) {
        let at = self.locate(key);
        let guard = epoch::pin();
        if let Some(locked) = at
            .shard
            .current(&guard)
            .and_then(|view| at.lock(view).locked())
        {
            return (Self::stored(at.shard, locked, now, op), 0);
        }
        self.apply_written(at, now, op, guard)
    }

    /// `op` on a locked stored value; lowers the shard's hint with the new expiry.
    #[inline(always)]
    fn stored<O: Op<V>>(shard: &Shard<V>, mut locked: Locked<'_, V>, now: u64, op: &O) -> O::Out {
        let (out, expires) = op.stored(locked.value(), now);
        drop(locked);
        if let Some(expires) = expires {
            shard.lower_hint(expires);
        }
        out
    }

    /// [`Table::apply`] under the shard's writer lock. Frees the indices this thread or
    /// others replaced once it is no longer pinned itself, so that a table growing from one
    /// thread gives each replaced index back at once, as a resize does.
    #[inline(never)]
    fn apply_written<O: Op<V>>(
        &self,
        at: Located<'_, '_, V>,
        now: u64,
        op: &O,
        guard: Guard,
    ) -> (O::Out, usize) {
        let mut work = 0;
        let out = match self.try_hit(at, now, op, &mut work, &guard) {
            Ok(out) => out,
            Err(Full(fresh)) => self.hit_full(at, now, op, fresh, &mut work, &guard),
        };
        drop(guard);
        self.retired.reclaim();
        (out, work)
    }

    /// Calls `f` with the stored value of `key` (`None`: not stored), under its bucket's
    /// lock.
    pub fn read<R>(&self, key: KeyRef<'_>, f: impl FnOnce(Option<&V>) -> R) -> R {
        let at = self.locate(key);
        let guard = epoch::pin();
        match at.shard.current(&guard).map(|view| at.lock(view)) {
            None | Some(Lookup::Absent) => return f(None),
            Some(Lookup::Locked(mut locked)) => return f(Some(locked.value())),
            Some(Lookup::Moved) => {}
        }
        // Moved by a rebuild meanwhile: ask the current index, under its writer lock.
        let writer = at.shard.write(&guard, &self.buckets);
        let Some(mut locked) = at.lock(writer.view()).locked() else {
            return f(None);
        };
        f(Some(locked.value()))
    }

    /// The rest of a hit for a new key when the table is full and nothing expired in the
    /// key's shard: expired slots elsewhere go first (purge a shard whose hint says it holds
    /// some, never holding two writer locks, then try again; up to [`FULL_PURGES`] shards,
    /// since the first may free a key count but not the key bytes `max_bytes` needs), then
    /// `on_full` decides.
    #[cold]
    #[inline(never)]
    fn hit_full<O: Op<V>>(
        &self,
        at: Located<'_, '_, V>,
        now: u64,
        op: &O,
        fresh: O::Out,
        work: &mut usize,
        guard: &Guard,
    ) -> O::Out {
        for _ in 0..FULL_PURGES {
            *work += self.shards.len();
            let Some(other) = self.expired_shard(now) else {
                break;
            };
            {
                let other = &self.shards[other];
                let mut writer = other.write(guard, &self.buckets);
                *work += writer.view().buckets();
                self.purge(other, &mut writer, now);
            }
            if let Ok(out) = self.try_hit(at, now, op, work, guard) {
                return out;
            }
        }
        self.full_events.fetch_add(1, Ordering::Relaxed);
        match self.config.on_full {
            OnFull::Allow => op.full(fresh, None),
            OnFull::Deny => {
                *work += self.shards.len();
                let wait = self.earliest_expiry().saturating_sub(now).max(1);
                op.full(fresh, Some(wait))
            }
        }
    }

    /// One attempt under the shard's writer lock: update a stored key, or store a new one if
    /// there is room.
    fn try_hit<O: Op<V>>(
        &self,
        at: Located<'_, '_, V>,
        now: u64,
        op: &O,
        work: &mut usize,
        guard: &Guard,
    ) -> Result<O::Out, Full<O::Out>> {
        let writer = at.shard.write(guard, &self.buckets);
        // The current index holds no moved bucket (only a replaced one does), so a key found
        // here is live and its lock is taken, after any hit holding it.
        if let Some(locked) = at.lock(writer.view()).locked() {
            return Ok(Self::stored(at.shard, locked, now, op));
        }
        self.insert_new(at, writer, now, op, work)
    }

    /// A hit for a key not stored (under the shard's writer lock): stores it when admitted.
    fn insert_new<O: Op<V>>(
        &self,
        at: Located<'_, '_, V>,
        mut writer: ShardWriter<'_, V>,
        now: u64,
        op: &O,
        work: &mut usize,
    ) -> Result<O::Out, Full<O::Out>> {
        let Located { probe, hash, shard } = at;
        let (decision, stored) = op.fresh(now);
        let Some(stored) = stored else {
            return Ok(decision);
        };
        if !self.reserve(shard, &mut writer, now, work) {
            return Err(Full(decision));
        }
        let heap = probe.heap_bytes();
        if heap > 0 && !self.reserve_bytes(shard, &mut writer, now, heap, work) {
            // The count reserved above is given back: the key is not stored.
            self.len.fetch_sub(1, Ordering::Relaxed);
            return Err(Full(decision));
        }
        shard.lower_hint(stored.expires());
        let owned = probe.into_key();
        if writer.has_room() {
            writer.insert(hash, owned, stored);
        } else {
            // Filled buckets (live keys and tombstones) reached 7/8: rebuild at the same size
            // when tombstones are most of them, else at twice the size (never smaller on a
            // hit: sweeps give memory back).
            let buckets = writer.view().buckets();
            let buckets = if writer.len() < index::capacity(buckets) / 2 {
                buckets
            } else {
                2 * buckets
            };
            *work += writer.view().buckets();
            let (new, mut counts) = writer.rebuild(buckets, self.rehash());
            Writer::new(new.view(), &mut counts).insert(hash, owned, stored);
            self.replace(shard, writer, (new, counts));
        }
        Ok(decision)
    }

    /// Publishes `new` as the shard's index in place of the one `writer` holds and retires the
    /// old one. The caller frees what waits ([`Retired::reclaim`]) once it is unpinned: while
    /// pinned, its own slot holds back what it just retired.
    fn replace(&self, shard: &Shard<V>, mut writer: ShardWriter<'_, V>, new: (Index<V>, Counts)) {
        let (new, counts) = new;
        let (before, after) = (writer.view().buckets(), new.buckets());
        let old = shard.index.swap(new.into_raw(), Ordering::SeqCst);
        writer.set_counts(counts);
        drop(writer);
        self.resized(before, after);
        self.retired.retire(RetiredIndex(old, PhantomData));
    }

    /// Records a change of one shard's bucket count.
    fn resized(&self, before: usize, after: usize) {
        if after > before {
            self.buckets.fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            self.buckets.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// Reserves `heap` bytes of out-of-line key data within `max_bytes`, purging this shard's
    /// expired slots first when they do not fit.
    fn reserve_bytes(
        &self,
        shard: &Shard<V>,
        writer: &mut ShardWriter<'_, V>,
        now: u64,
        heap: usize,
        work: &mut usize,
    ) -> bool {
        let max = self.config.max_bytes;
        self.take_or_purge(shard, writer, now, work, || {
            self.heap_bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    n.checked_add(heap).filter(|&total| total <= max)
                })
                .is_ok()
        })
    }

    /// A shard whose hint says it holds expired slots.
    fn expired_shard(&self, now: u64) -> Option<usize> {
        self.shards
            .iter()
            .position(|s| s.hint.load(Ordering::Relaxed) <= now)
    }

    /// The earliest instant any stored slot may expire (a lower bound).
    fn earliest_expiry(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.hint.load(Ordering::Relaxed))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Forgets `key`. Returns whether it was stored.
    pub fn reset(&self, key: KeyRef<'_>) -> bool {
        let at = self.locate(key);
        let guard = epoch::pin();
        let Some(mut writer) = at.shard.write_existing(&guard) else {
            return false;
        };
        let Some(locked) = at.lock(writer.view()).locked() else {
            return false;
        };
        locked.with_key(|k| self.forget(k, 1));
        writer.remove(locked);
        true
    }

    /// Removes every key.
    pub fn clear(&self) {
        let guard = epoch::pin();
        for shard in self.shards.iter() {
            let Some(mut writer) = shard.write_existing(&guard) else {
                continue;
            };
            let (mut removed, mut heap) = (0, 0);
            writer.for_each(|k, _| {
                removed += 1;
                heap += k.heap_bytes();
            });
            // Before the swap: a hit on the new index lowers it from there.
            shard.hint.store(u64::MAX, Ordering::Relaxed);
            // A hit still probing the old index may change a value there: it ran during
            // the clear, which may be ordered after it.
            let empty = Index::with_buckets(index::buckets_for(1));
            self.replace(shard, writer, (empty, Counts::default()));
            self.len.fetch_sub(removed, Ordering::Relaxed);
            self.heap_bytes.fetch_sub(heap, Ordering::Relaxed);
        }
        drop(guard);
        self.retired.reclaim();
    }

    fn forget(&self, key: &Key, count: usize) {
        self.len.fetch_sub(count, Ordering::Relaxed);
        let heap = key.heap_bytes();
        if heap > 0 {
            self.heap_bytes.fetch_sub(heap, Ordering::Relaxed);
        }
    }

    /// Reserves room for one new key, purging this shard's expired slots when the table is
    /// full. Entries never exceed `max_keys`: a reservation is taken before the insert.
    fn reserve(
        &self,
        shard: &Shard<V>,
        writer: &mut ShardWriter<'_, V>,
        now: u64,
        work: &mut usize,
    ) -> bool {
        let max = self.config.max_keys;
        self.take_or_purge(shard, writer, now, work, || {
            self.len
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < max).then_some(n + 1)
                })
                .is_ok()
        })
    }

    /// Takes a reservation with `take`; when the table is full, purges this shard's expired
    /// slots and tries once more. Expired slots are indistinguishable from absent keys, so they
    /// are reclaimed here. A shard holds about KEYS_PER_SHARD keys, so a purge costs
    /// microseconds (added to `work`); it is skipped while the hint says nothing has expired
    /// since the last purge.
    fn take_or_purge(
        &self,
        shard: &Shard<V>,
        writer: &mut ShardWriter<'_, V>,
        now: u64,
        work: &mut usize,
        take: impl Fn() -> bool,
    ) -> bool {
        if take() {
            return true;
        }
        if shard.hint.load(Ordering::Relaxed) <= now {
            *work += writer.view().buckets();
            self.purge(shard, writer, now);
            return take();
        }
        false
    }

    /// Removes the expired slots of one shard (whose writer lock the caller holds) and
    /// refreshes its hint. Removed keys leave tombstones; their buckets come back when the
    /// index is next rebuilt.
    fn purge(&self, shard: &Shard<V>, writer: &mut ShardWriter<'_, V>, now: u64) -> usize {
        // From here on hits lower the hint from "nothing stored" (`lower_hint`), and a hit
        // that changed a slot before this pass locked it is seen by the pass: the hint ends
        // as a lower bound either way.
        shard.hint.store(u64::MAX, Ordering::Relaxed);
        let (mut removed, mut heap, mut next_expiry) = (0, 0, u64::MAX);
        writer.retain(|k, v| {
            let expires = v.expires();
            if expires <= now {
                removed += 1;
                heap += k.heap_bytes();
                false
            } else {
                next_expiry = next_expiry.min(expires);
                true
            }
        });
        shard.hint.fetch_min(next_expiry, Ordering::Relaxed);
        if removed > 0 {
            self.len.fetch_sub(removed, Ordering::Relaxed);
            self.heap_bytes.fetch_sub(heap, Ordering::Relaxed);
        }
        removed
    }

    /// Sweeps expired slots from shard `from` on, until `budget` is spent or every shard is
    /// done. Each shard's writer lock is held only while it is purged. A shard left mostly
    /// empty is rebuilt smaller: freeing memory has a cost the table cannot bound (after a
    /// flood of keys expires, the allocator may hand tens of MB back to the OS inside one
    /// `free`, milliseconds of work), so it stays out of hits, and the NIF runs sweeps on a
    /// dirty scheduler.
    pub fn sweep(&self, from: usize, now: u64, budget: Duration) -> SweepChunk {
        let started = Instant::now();
        self.retired.reclaim();
        let mut removed = 0;
        for index in from..self.shards.len() {
            let shard = &self.shards[index];
            let guard = epoch::pin();
            if let Some(mut writer) = shard.write_existing(&guard) {
                removed += self.purge(shard, &mut writer, now);
                let (len, buckets) = (writer.len(), writer.view().buckets());
                if buckets > SHRINK_ABOVE && buckets > 4 * len {
                    let new = writer.rebuild(index::buckets_for(2 * len), self.rehash());
                    self.replace(shard, writer, new);
                }
            }
            drop(guard);
            self.retired.reclaim();
            if started.elapsed() >= budget {
                let next = index + 1;
                return SweepChunk {
                    next: (next < self.shards.len()).then_some(next),
                    removed,
                };
            }
        }
        SweepChunk {
            next: None,
            removed,
        }
    }

    /// Key count, estimated memory and full-table events: counters only, O(1) in the table's
    /// size (plus the indices replaced but not yet freed).
    pub fn stats(&self) -> Stats {
        let buckets =
            self.buckets.load(Ordering::Relaxed) + self.retired.sum(RetiredIndex::buckets);
        Stats {
            keys: self.len(),
            memory_bytes: std::mem::size_of::<Table<V>>()
                + self.shards.len() * std::mem::size_of::<Shard<V>>()
                + Index::<V>::bytes_for(buckets)
                + self.len() * self.value_bytes
                + self.heap_bytes.load(Ordering::Relaxed),
            key_bytes: self.heap_bytes.load(Ordering::Relaxed),
            full_events: self.full_events.load(Ordering::Relaxed),
            shards: self.shards.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::algorithm::{Algorithm, NS_PER_MS};
    use super::super::key::ByteKind;
    use super::*;
    use crate::limiter::multi::Pair;
    use std::sync::Arc;

    fn table(algorithm: Algorithm, limit: u64, max_keys: usize, on_full: OnFull) -> Table {
        Table::new(Config {
            policy: Policy::new(algorithm, limit, 1000, None).unwrap(),
            max_keys,
            max_bytes: usize::MAX,
            on_full,
        })
    }

    fn bin(s: &str) -> KeyRef<'_> {
        KeyRef::Bytes(ByteKind::Binary, s.as_bytes())
    }

    #[test]
    fn buckets_are_32_bytes() {
        // The key's two words (its spare bits hold the state) and the value: two buckets
        // to a cache line.
        assert_eq!(std::mem::size_of::<index::Bucket<Slot>>(), 32);
        // Two slots inline, with no tag; larger cells are a boxed slice.
        assert_eq!(std::mem::size_of::<index::Bucket<Pair>>(), 48);
        assert_eq!(std::mem::size_of::<index::Bucket<Box<[Slot]>>>(), 32);
    }

    #[test]
    fn hits_charge_and_peeks_do_not() {
        let t = table(Algorithm::FixedWindow, 2, 100, OnFull::Deny);
        assert!(t.peek(bin("a"), 0, 1, None).allowed());
        assert_eq!(t.len(), 0);
        assert!(t.hit(bin("a"), 0, 1, None).allowed());
        assert!(t.hit(bin("a"), 0, 1, None).allowed());
        let before = t.slot(bin("a"));
        assert!(!t.peek(bin("a"), 0, 1, None).allowed());
        assert_eq!(t.slot(bin("a")), before);
        assert!(!t.hit(bin("a"), 0, 1, None).allowed());
        assert!(t.hit(bin("b"), 0, 1, None).allowed());
        assert_eq!(t.len(), 2);
        assert!(t.reset(bin("a")));
        assert!(!t.reset(bin("a")));
        assert!(t.hit(bin("a"), 0, 1, None).allowed());
    }

    #[test]
    fn keys_of_every_kind_are_distinct() {
        let t = table(Algorithm::FixedWindow, 1, 100, OnFull::Deny);
        let long = "k".repeat(100);
        let keys = [
            KeyRef::Int(1),
            KeyRef::Atom(1),
            bin("1"),
            KeyRef::Bytes(ByteKind::Term, b"1"),
            bin(&long),
        ];
        for k in keys {
            assert!(t.hit(k, 0, 1, None).allowed());
        }
        for k in keys {
            assert!(!t.hit(k, 0, 1, None).allowed());
        }
        assert_eq!(t.len(), 5);
        assert!(t.stats().memory_bytes > 0);
    }

    #[test]
    fn a_full_table_reclaims_expired_keys_then_applies_on_full() {
        let t = table(Algorithm::FixedWindow, 1, 16, OnFull::Deny);
        for i in 0..16 {
            assert!(t.hit(KeyRef::Int(i), 0, 1, None).allowed());
        }
        assert_eq!(t.len(), 16);
        // Full and nothing expired: a new key is refused, with a wait until a slot frees.
        let mut refused = 0;
        for i in 16..32 {
            match t.hit(KeyRef::Int(i), 10 * NS_PER_MS, 1, None) {
                Decision::Deny { retry_after, .. } => {
                    refused += 1;
                    assert!(retry_after > 0);
                }
                other => panic!("expected a deny, got {other:?}"),
            }
        }
        assert_eq!(refused, 16);
        assert_eq!(t.stats().full_events, 16);
        // Known keys are still decided normally.
        assert!(!t.hit(KeyRef::Int(0), 10 * NS_PER_MS, 1, None).allowed());
        assert_eq!(t.len(), 16);
        // After the windows end, new keys take expired keys' places.
        let later = 1000 * NS_PER_MS;
        let admitted = (100..200)
            .filter(|&i| t.hit(KeyRef::Int(i), later, 1, None).allowed())
            .count();
        assert!(admitted >= 1, "expired keys were not reclaimed");
        assert!(t.len() <= 16);
    }

    /// Only sweeps give memory back: a hit that purges a full shard keeps its map's size
    /// (freeing can cost milliseconds inside the allocator), the next sweep shrinks it.
    #[test]
    fn hits_purge_without_shrinking_and_sweeps_shrink() {
        let t = table(Algorithm::FixedWindow, 1, 16 * 200, OnFull::Deny);
        for i in 0..16 * 200 {
            assert!(t.hit(KeyRef::Int(i), 0, 1, None).allowed());
        }
        let full = t.buckets.load(Ordering::Relaxed);
        let later = 5000 * NS_PER_MS;
        for i in 0..16 {
            assert!(t.hit(KeyRef::Int(100_000 + i), later, 1, None).allowed());
        }
        assert!(t.len() < 16 * 200, "the hits purged expired keys");
        assert!(
            t.buckets.load(Ordering::Relaxed) >= full,
            "and shrank nothing"
        );
        t.sweep(0, later, Duration::from_secs(1));
        assert_eq!(t.len(), 16);
        assert!(t.buckets.load(Ordering::Relaxed) < full / 4);
    }

    #[test]
    fn on_full_allow_admits_untracked() {
        let t = table(Algorithm::FixedWindow, 1, 16, OnFull::Allow);
        for i in 0..16 {
            t.hit(KeyRef::Int(i), 0, 1, None);
        }
        for _ in 0..3 {
            assert!(t.hit(KeyRef::Int(99), 0, 1, None).allowed());
        }
        assert_eq!(t.len(), 16);
    }

    #[test]
    fn sweep_removes_only_expired_keys_in_chunks() {
        let t = table(Algorithm::Gcra, 10, 100_000, OnFull::Deny);
        for i in 0..10_000 {
            // Even keys are hit once (fresh again after 100 ms), odd keys ten times (1 s).
            let cost = if i % 2 == 0 { 1 } else { 10 };
            assert!(t.hit(KeyRef::Int(i), 0, cost, None).allowed());
        }
        let now = 500 * NS_PER_MS;
        let mut next = Some(0);
        let mut removed = 0;
        let mut chunks = 0;
        while let Some(from) = next {
            let chunk = t.sweep(from, now, Duration::ZERO);
            removed += chunk.removed;
            next = chunk.next;
            chunks += 1;
        }
        assert_eq!(chunks, t.shard_count());
        assert_eq!(removed, 5_000);
        assert_eq!(t.len(), 5_000);
        for i in 0..10_000 {
            assert_eq!(t.slot(KeyRef::Int(i)).is_some(), i % 2 == 1);
        }
        let full = t.sweep(0, now, Duration::from_secs(10));
        assert_eq!(
            full,
            SweepChunk {
                next: None,
                removed: 0
            }
        );
    }

    #[test]
    fn concurrent_hits_admit_exactly_the_limit() {
        for algorithm in Algorithm::ALL {
            let t = Arc::new(table(algorithm, 1000, 1000, OnFull::Deny));
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let t = Arc::clone(&t);
                    std::thread::spawn(move || {
                        (0..500)
                            .filter(|_| t.hit(bin("hot"), 0, 1, None).allowed())
                            .count()
                    })
                })
                .collect();
            let admitted: usize = threads.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(admitted, 1000, "{algorithm:?}");
        }
    }

    /// Hits on stored keys take no lock but their bucket's, while new keys grow the same
    /// shards' indices under them, a churning thread fills them with tombstones (each
    /// compacted by a rebuild) and a sweeper runs: no hit is lost nor counted twice. Every
    /// thread hits the hot key and keys of its own, all new at first, on a table of 16
    /// shards, so every shard is rebuilt many times during the run.
    #[test]
    fn hits_racing_rebuilds_and_sweeps_admit_exactly_the_limit() {
        const THREADS: i64 = 4;
        const KEYS: i64 = 200;
        for algorithm in Algorithm::ALL {
            let limit = 100;
            let t = Arc::new(table(algorithm, limit, 100_000, OnFull::Deny));
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let background = |work: fn(&Table, i64)| {
                let (t, stop) = (Arc::clone(&t), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        work(&t, n);
                        n += 1;
                    }
                })
            };
            let sweeper = background(|t, _| {
                t.sweep(0, 0, Duration::from_secs(1));
            });
            let churn = background(|t, n| {
                let key = KeyRef::Int(1_000_000 + n);
                t.hit(key, 0, 1, None);
                t.reset(key);
            });
            let threads: Vec<_> = (0..THREADS)
                .map(|thread| {
                    let t = Arc::clone(&t);
                    std::thread::spawn(move || {
                        let (mut hot, mut own) = (0, 0);
                        for _ in 0..limit + 20 {
                            hot += t.hit(bin("hot"), 0, 1, None).allowed() as u64;
                            for k in 0..KEYS {
                                let key = KeyRef::Int(thread * 1_000 + k);
                                own += t.hit(key, 0, 1, None).allowed() as u64;
                            }
                        }
                        (hot, own)
                    })
                })
                .collect();
            let (mut hot, mut own) = (0, 0);
            for h in threads {
                let (a, b) = h.join().unwrap();
                hot += a;
                own += b;
            }
            stop.store(true, Ordering::Relaxed);
            sweeper.join().unwrap();
            churn.join().unwrap();
            assert_eq!(hot, limit, "{algorithm:?}");
            assert_eq!(own, (THREADS * KEYS) as u64 * limit, "{algorithm:?}");
            assert_eq!(t.len(), (THREADS * KEYS) as usize + 1);
            assert_eq!(t.len(), walked_keys(&t));
            for thread in 0..THREADS {
                for k in 0..KEYS {
                    assert!(!t.hit(KeyRef::Int(thread * 1_000 + k), 0, 1, None).allowed());
                }
            }
        }
    }

    /// Resets and clears racing hits leave the counters equal to a walk of the table.
    #[test]
    fn resets_and_clears_racing_hits_keep_the_counters_true() {
        let t = Arc::new(table(Algorithm::Gcra, 1_000_000, 10_000, OnFull::Deny));
        let long = |i: i64| format!("{i:030}");
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || {
                    for i in 0..5_000i64 {
                        let k = long(i % 500);
                        t.hit(bin(&k), 0, 1, None);
                        t.hit(KeyRef::Int(i % 300), 0, 1, None);
                        if i % 7 == thread {
                            t.reset(bin(&k));
                        }
                        if thread == 0 && i % 1_000 == 999 {
                            t.clear();
                        }
                    }
                })
            })
            .collect();
        for h in threads {
            h.join().unwrap();
        }
        assert_eq!(t.len(), walked_keys(&t));
        assert_eq!(t.stats().key_bytes, walked_heap(&t));
        assert_eq!(t.buckets.load(Ordering::Relaxed), walked_buckets(&t));
    }

    #[test]
    fn clear_forgets_everything() {
        let t = table(Algorithm::Gcra, 1, 100, OnFull::Deny);
        for i in 0..50 {
            t.hit(KeyRef::Int(i), 0, 1, None);
        }
        t.hit(bin(&"x".repeat(64)), 0, 1, None);
        t.clear();
        assert_eq!(t.len(), 0);
        assert_eq!(t.heap_bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn max_bytes_bounds_out_of_line_key_bytes() {
        let t = Table::new(Config {
            policy: Policy::new(Algorithm::Gcra, 1, 1000, None).unwrap(),
            max_keys: 1000,
            max_bytes: 10 * 100,
            on_full: OnFull::Deny,
        });
        let key = |i: usize| format!("{i:0100}");
        for i in 0..10 {
            assert!(t.hit(bin(&key(i)), 0, 1, None).allowed());
        }
        assert_eq!(t.stats().key_bytes, 1000);
        // The 11th long key does not fit: refused as by a full table, nothing stored.
        assert!(!t.hit(bin(&key(10)), 0, 1, None).allowed());
        assert_eq!((t.len(), t.stats().full_events), (10, 1));
        // Inline keys need no bytes and still fit.
        assert!(t.hit(KeyRef::Int(7), 0, 1, None).allowed());
        // Once the stored keys expire, their bytes are reclaimed for new ones.
        assert!(t.hit(bin(&key(10)), 2000 * NS_PER_MS, 1, None).allowed());
        assert!(t.stats().key_bytes <= 1000);
    }

    /// Calls `f` with every shard's writer (shards that never stored a key have none).
    fn walk(t: &Table, mut f: impl FnMut(&mut ShardWriter<'_, Slot>)) {
        let guard = epoch::pin();
        for shard in t.shards.iter() {
            if let Some(mut writer) = shard.write_existing(&guard) {
                f(&mut writer);
            }
        }
    }

    fn walked_buckets(t: &Table) -> usize {
        let mut buckets = 0;
        walk(t, |w| buckets += w.view().buckets());
        buckets
    }

    fn walked_heap(t: &Table) -> usize {
        let mut heap = 0;
        walk(t, |w| w.for_each(|k, _| heap += k.heap_bytes()));
        heap
    }

    fn walked_keys(t: &Table) -> usize {
        let mut keys = 0;
        walk(t, |w| keys += w.len());
        keys
    }

    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Hit(u16, usize),
        Reset(u16, usize),
        Advance(u64),
        Sweep,
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0u16..300, 0usize..64).prop_map(|(k, l)| Op::Hit(k, l)),
            2 => (0u16..300, 0usize..64).prop_map(|(k, l)| Op::Reset(k, l)),
            2 => (0u64..3000).prop_map(Op::Advance),
            1 => Just(Op::Sweep),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        /// The O(1) counters behind `stats` (keys, bucket count, key bytes) always equal a walk
        /// of the table, and key bytes never pass `max_bytes` nor keys `max_keys`.
        #[test]
        fn counters_match_the_table(
            max_keys in 1usize..200,
            max_bytes in 0usize..4000,
            ops in proptest::collection::vec(op(), 1..400),
        ) {
            let t = Table::new(Config {
                policy: Policy::new(Algorithm::FixedWindow, 2, 1000, None).unwrap(),
                max_keys,
                max_bytes,
                on_full: OnFull::Deny,
            });
            let mut now = 0;
            for op in ops {
                // Key `k` with a length from 0 to 63 bytes: inline up to 14, out of line above.
                let key = |k: u16, len: usize| {
                    let mut s = format!("{k}:");
                    s.extend(std::iter::repeat_n('x', len));
                    s
                };
                match op {
                    Op::Hit(k, len) => {
                        t.hit_counted(bin(&key(k, len)), now, 1, None);
                    }
                    Op::Reset(k, len) => {
                        t.reset(bin(&key(k, len)));
                    }
                    Op::Advance(ms) => now += ms * NS_PER_MS,
                    Op::Sweep => {
                        t.sweep(0, now, Duration::from_secs(1));
                    }
                    Op::Clear => t.clear(),
                }
                let stats = t.stats();
                prop_assert_eq!(stats.keys, walked_keys(&t));
                prop_assert_eq!(t.buckets.load(Ordering::Relaxed), walked_buckets(&t));
                prop_assert_eq!(stats.key_bytes, walked_heap(&t));
                prop_assert!(stats.key_bytes <= max_bytes);
                prop_assert!(stats.keys <= max_keys);
            }
        }
    }
}

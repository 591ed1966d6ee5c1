//! A concurrent keyed table of limiter slots: lock-free lookups, one atomic word per key.
//!
//! A key's hash picks its shard (middle bits); each shard is a `papaya` hash map, whose
//! lookups take no lock and write no shared memory. A key's state ([`Slot`], 16 bytes) lives
//! in one 128-bit atomic next to the key, and a decision is a compare-and-swap of it, so each
//! decision is atomic and the only memory a hit writes is its own key's line: two schedulers
//! hitting different keys never write the same line, and a hot key costs one contended line,
//! never a lock holder that the OS descheduled. (The table before issue #18 was sharded
//! `hashbrown` maps behind mutexes; every hit then wrote its shard's lock line too, and two
//! schedulers scaled 0.6-1.1x; see `benches/RESULTS.md`.)
//!
//! Removing a key (reset, expiry, clear) first swaps its state to [`DEAD`], whoever does
//! it: that swap is the one place a removal is counted, it fails if a hit changed the state
//! in between, and a hit that finds a dead state drops the entry from the map itself and
//! looks again. So a sweep can never remove a slot between a hit's read and its write.

use super::algorithm::{decide, Decision, Policy, Slot};
use super::key::{Key, KeyRef, PassThrough, Probe};
use portable_atomic::AtomicU128;
use seize::{Collector, LocalGuard};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
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

/// A key's state in one atomic word: a [`Slot`] packed as `expires | x | y`, or [`DEAD`].
struct Cell(AtomicU128);

/// The state of a key being removed: no slot packs to it (`expires` would be 2^64 - 1 ns,
/// 584 years on the limiter's clock).
const DEAD: u128 = u128::MAX;

#[inline]
fn pack(slot: Slot) -> u128 {
    (slot.expires as u128) << 64 | (slot.x as u128) << 32 | slot.y as u128
}

#[inline]
fn unpack(word: u128) -> Slot {
    Slot {
        expires: (word >> 64) as u64,
        x: (word >> 32) as u32,
        y: word as u32,
    }
}

impl Cell {
    fn new(slot: Slot) -> Cell {
        Cell(AtomicU128::new(pack(slot)))
    }

    /// The stored slot, or `None` once the key is being removed.
    #[inline]
    fn slot(&self) -> Option<Slot> {
        let word = self.0.load(Ordering::Acquire);
        (word != DEAD).then(|| unpack(word))
    }

    /// Marks the key removed if `remove` says so of its current slot; true when this call
    /// marked it (exactly one caller does, so the removal is counted once).
    fn kill_if(&self, remove: impl Fn(Slot) -> bool) -> bool {
        let mut word = self.0.load(Ordering::Acquire);
        loop {
            if word == DEAD || !remove(unpack(word)) {
                return false;
            }
            match self
                .0
                .compare_exchange_weak(word, DEAD, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(seen) => word = seen,
            }
        }
    }
}

type Map = papaya::HashMap<Key, Cell, PassThrough>;

/// One shard, on its own cache line so that writes to one shard's fields (its expiry hint)
/// do not move another's.
#[repr(align(64))]
struct Shard {
    map: Map,
    /// A lower bound of the earliest `expires` in `map`: exact after a purge, lowered by
    /// every store. Read to find expired slots and to tell a refused new key when room may
    /// free up.
    hint: AtomicU64,
}

impl Shard {
    fn lower_hint(&self, expires: u64) {
        self.hint.fetch_min(expires, Ordering::Relaxed);
    }
}

/// A hit that could not store its new key because the table is full.
struct Full(Decision);

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
    /// Estimated bytes held by the table (entries, map slots, shards and out-of-line key
    /// bytes).
    pub memory_bytes: usize,
    /// Bytes of key data stored out of line (what `max_bytes` bounds).
    pub key_bytes: usize,
    /// Requests refused or admitted untracked because the table was full.
    pub full_events: u64,
    /// Number of shards.
    pub shards: usize,
}

/// A concurrent table of limiter slots.
pub struct Table {
    shards: Box<[Shard]>,
    shard_mask: usize,
    /// One memory reclaimer shared by every shard's map, so one guard serves a whole call.
    collector: Arc<Collector>,
    config: Config,
    len: AtomicUsize,
    heap_bytes: AtomicUsize,
    full_events: AtomicU64,
}

/// Keys per shard a table is sized for at `max_keys`: few enough that purging one shard when
/// the table is full takes tens of microseconds, many enough that the per-shard overhead (a
/// map and its per-CPU length counter) stays small beside the keys.
const KEYS_PER_SHARD: usize = 4096;
const MIN_SHARDS: usize = 16;
const MAX_SHARDS: usize = 1 << 14;
/// The lowest hash bit of the shard index (see [`Table::locate`]).
const SHARD_BITS_AT: u32 = 32;

/// Bytes a map holds per stored entry: the entry (key and cell) in its own allocation, with
/// the allocator's rounding, and the map's pointer and metadata byte per slot at a load of
/// one half on average.
const ENTRY_BYTES: usize = 64 + 2 * 9;

impl Table {
    /// A table for `config`, sharded for `config.max_keys` keys.
    pub fn new(config: Config) -> Table {
        let shards = (config.max_keys / KEYS_PER_SHARD)
            .next_power_of_two()
            .clamp(MIN_SHARDS, MAX_SHARDS);
        let collector = Arc::new(Collector::new());
        Table {
            shards: (0..shards)
                .map(|_| Shard {
                    map: papaya::HashMap::builder()
                        .hasher(PassThrough)
                        .shared_collector(Arc::clone(&collector))
                        .build(),
                    hint: AtomicU64::new(u64::MAX),
                })
                .collect(),
            shard_mask: shards - 1,
            collector,
            config,
            len: AtomicUsize::new(0),
            heap_bytes: AtomicUsize::new(0),
            full_events: AtomicU64::new(0),
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

    fn guard(&self) -> LocalGuard<'_> {
        self.collector.enter()
    }

    /// The probe and shard of `key`. The shard index comes from the hash's middle bits: the
    /// map uses the low bits for the slot and the top bits as its metadata, so neither is
    /// constant within a shard.
    #[inline(always)]
    fn locate<'k>(&self, key: KeyRef<'k>) -> (Probe<'k>, &Shard) {
        let probe = Probe::new(key);
        let index = (probe.hash64() >> SHARD_BITS_AT) as usize & self.shard_mask;
        (probe, &self.shards[index])
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
        let (probe, shard) = self.locate(key);
        let guard = self.guard();
        let mut work = 0;
        match self.try_hit(probe, shard, &guard, now, cost, policy, &mut work) {
            Ok(decision) => (decision, work),
            Err(Full(fresh)) => {
                let decision =
                    self.hit_full(probe, shard, &guard, now, cost, policy, fresh, &mut work);
                (decision, work)
            }
        }
    }

    /// The rest of a hit for a new key when the table is full and nothing expired in the
    /// key's shard: expired slots elsewhere go first (purge the shard whose hint says it
    /// holds some, then try once more), then `on_full` decides.
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn hit_full(
        &self,
        probe: Probe<'_>,
        shard: &Shard,
        guard: &LocalGuard<'_>,
        now: u64,
        cost: u64,
        policy: &Policy,
        fresh: Decision,
        work: &mut usize,
    ) -> Decision {
        *work += self.shards.len();
        if let Some(other) = self.expired_shard(now) {
            *work += self.purge(&self.shards[other], guard, now).1;
            if let Ok(decision) = self.try_hit(probe, shard, guard, now, cost, policy, work) {
                return decision;
            }
        }
        self.full_events.fetch_add(1, Ordering::Relaxed);
        match self.config.on_full {
            OnFull::Allow => fresh,
            OnFull::Deny => {
                *work += self.shards.len();
                let wait = self.earliest_expiry().saturating_sub(now).max(1);
                Decision::Deny {
                    retry_after: wait,
                    reset_after: wait,
                }
            }
        }
    }

    /// Decides on a stored key by compare-and-swap, stores a new one if there is room, and
    /// looks again when it lost a race (another hit stored the key first, or a removal
    /// marked it dead).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn try_hit(
        &self,
        probe: Probe<'_>,
        shard: &Shard,
        guard: &LocalGuard<'_>,
        now: u64,
        cost: u64,
        policy: &Policy,
        work: &mut usize,
    ) -> Result<Decision, Full> {
        loop {
            let Some(cell) = shard.map.get(&probe, guard) else {
                match self.insert_new(probe, shard, guard, now, cost, policy, work)? {
                    Some(decision) => return Ok(decision),
                    None => continue,
                }
            };
            let mut word = cell.0.load(Ordering::Acquire);
            while word != DEAD {
                let (decision, stored) = decide(policy, Some(unpack(word)), now, cost);
                let Some(stored) = stored else {
                    return Ok(decision);
                };
                match cell.0.compare_exchange_weak(
                    word,
                    pack(stored),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        shard.lower_hint(stored.expires);
                        return Ok(decision);
                    }
                    Err(seen) => word = seen,
                }
            }
            // Removed (and counted) by someone else, maybe not yet out of the map.
            shard
                .map
                .remove_if(&probe, |_, v| std::ptr::eq(v, cell), guard)
                .ok();
        }
    }

    /// A hit for a key not found: stores it when admitted. `None`: another hit stored the
    /// key meanwhile (decide again on its state).
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn insert_new(
        &self,
        probe: Probe<'_>,
        shard: &Shard,
        guard: &LocalGuard<'_>,
        now: u64,
        cost: u64,
        policy: &Policy,
        work: &mut usize,
    ) -> Result<Option<Decision>, Full> {
        let (decision, stored) = decide(policy, None, now, cost);
        let Some(stored) = stored else {
            return Ok(Some(decision));
        };
        if !self.reserve(shard, guard, now, work) {
            return Err(Full(decision));
        }
        let heap = probe.heap_bytes();
        if heap > 0 && !self.reserve_bytes(shard, guard, now, heap, work) {
            // The count reserved above is given back: the key is not stored.
            self.len.fetch_sub(1, Ordering::Relaxed);
            return Err(Full(decision));
        }
        match shard
            .map
            .try_insert(probe.into_key(), Cell::new(stored), guard)
        {
            Ok(_) => {
                shard.lower_hint(stored.expires);
                Ok(Some(decision))
            }
            Err(_) => {
                self.len.fetch_sub(1, Ordering::Relaxed);
                if heap > 0 {
                    self.heap_bytes.fetch_sub(heap, Ordering::Relaxed);
                }
                Ok(None)
            }
        }
    }

    /// Reserves `heap` bytes of out-of-line key data within `max_bytes`, purging this shard's
    /// expired slots first when they do not fit.
    fn reserve_bytes(
        &self,
        shard: &Shard,
        guard: &LocalGuard<'_>,
        now: u64,
        heap: usize,
        work: &mut usize,
    ) -> bool {
        let max = self.config.max_bytes;
        self.take_or_purge(shard, guard, now, work, || {
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

    /// The stored slot of `key` as a live one, if any.
    fn stored(&self, key: KeyRef<'_>) -> Option<Slot> {
        let (probe, shard) = self.locate(key);
        let guard = self.guard();
        shard.map.get(&probe, &guard).and_then(Cell::slot)
    }

    /// The decision [`Table::hit`] would make, without charging anything.
    pub fn peek(&self, key: KeyRef<'_>, now: u64, cost: u64, policy: Option<&Policy>) -> Decision {
        let policy = policy.unwrap_or(&self.config.policy);
        decide(policy, self.stored(key), now, cost).0
    }

    /// The stored slot of `key`, if any (for tests and introspection).
    pub fn slot(&self, key: KeyRef<'_>) -> Option<Slot> {
        self.stored(key)
    }

    /// Forgets `key`. Returns whether it was stored.
    pub fn reset(&self, key: KeyRef<'_>) -> bool {
        let (probe, shard) = self.locate(key);
        let guard = self.guard();
        let Some(cell) = shard.map.get(&probe, &guard) else {
            return false;
        };
        let killed = cell.kill_if(|_| true);
        if killed {
            self.forget(probe.heap_bytes(), 1);
        }
        shard
            .map
            .remove_if(&probe, |_, v| std::ptr::eq(v, cell), &guard)
            .ok();
        killed
    }

    /// Removes every key.
    pub fn clear(&self) {
        let guard = self.guard();
        for shard in self.shards.iter() {
            let (mut removed, mut heap) = (0, 0);
            shard.map.retain(
                |k, cell| {
                    if cell.kill_if(|_| true) {
                        removed += 1;
                        heap += k.heap_bytes();
                    }
                    false
                },
                &guard,
            );
            shard.hint.store(u64::MAX, Ordering::Relaxed);
            self.forget(heap, removed);
        }
    }

    fn forget(&self, heap: usize, count: usize) {
        self.len.fetch_sub(count, Ordering::Relaxed);
        if heap > 0 {
            self.heap_bytes.fetch_sub(heap, Ordering::Relaxed);
        }
    }

    /// Reserves room for one new key, purging this shard's expired slots when the table is
    /// full. Entries never exceed `max_keys`: a reservation is taken before the insert.
    fn reserve(&self, shard: &Shard, guard: &LocalGuard<'_>, now: u64, work: &mut usize) -> bool {
        let max = self.config.max_keys;
        self.take_or_purge(shard, guard, now, work, || {
            self.len
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < max).then_some(n + 1)
                })
                .is_ok()
        })
    }

    /// Takes a reservation with `take`; when the table is full, purges this shard's expired
    /// slots and tries once more. Expired slots are indistinguishable from absent keys, so they
    /// are reclaimed here. A shard holds about KEYS_PER_SHARD keys, so a purge costs tens of
    /// microseconds (added to `work`); it is skipped while the hint says nothing has expired
    /// since the last purge.
    fn take_or_purge(
        &self,
        shard: &Shard,
        guard: &LocalGuard<'_>,
        now: u64,
        work: &mut usize,
        take: impl Fn() -> bool,
    ) -> bool {
        if take() {
            return true;
        }
        if shard.hint.load(Ordering::Relaxed) <= now {
            *work += self.purge(shard, guard, now).1;
            return take();
        }
        false
    }

    /// Removes the expired slots of one shard and refreshes its hint: (removed, visited).
    fn purge(&self, shard: &Shard, guard: &LocalGuard<'_>, now: u64) -> (usize, usize) {
        let (mut removed, mut visited, mut heap) = (0, 0, 0);
        // Hits racing with the purge lower the hint themselves after storing, so the hint is
        // set to its new bound before the walk, and every store during it lowers it again.
        shard.hint.store(u64::MAX, Ordering::Relaxed);
        let next_expiry = AtomicU64::new(u64::MAX);
        shard.map.retain(
            |k, cell| {
                visited += 1;
                if cell.kill_if(|slot| slot.expires <= now) {
                    removed += 1;
                    heap += k.heap_bytes();
                    return false;
                }
                match cell.slot() {
                    Some(slot) => {
                        next_expiry.fetch_min(slot.expires, Ordering::Relaxed);
                        true
                    }
                    None => false,
                }
            },
            guard,
        );
        shard.lower_hint(next_expiry.into_inner());
        self.forget(heap, removed);
        (removed, visited)
    }

    /// Sweeps expired slots from shard `from` on, until `budget` is spent or every shard is
    /// done.
    pub fn sweep(&self, from: usize, now: u64, budget: Duration) -> SweepChunk {
        let started = Instant::now();
        let guard = self.guard();
        let mut removed = 0;
        for index in from..self.shards.len() {
            removed += self.purge(&self.shards[index], &guard, now).0;
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

    /// Key count, estimated memory and full-table events: counters only, O(1) whatever the
    /// table's size.
    pub fn stats(&self) -> Stats {
        let keys = self.len();
        let heap = self.heap_bytes.load(Ordering::Relaxed);
        Stats {
            keys,
            memory_bytes: std::mem::size_of::<Table>()
                + self.shards.len() * std::mem::size_of::<Shard>()
                + keys * ENTRY_BYTES
                + heap,
            key_bytes: heap,
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
    fn a_key_and_its_state_fit_a_cache_line() {
        assert_eq!(std::mem::size_of::<Cell>(), 16);
        assert!(std::mem::size_of::<(Key, Cell)>() <= 64);
        let slot = Slot {
            expires: u64::MAX - 1,
            x: u32::MAX,
            y: u32::MAX,
        };
        assert_eq!(unpack(pack(slot)), slot);
        assert_ne!(pack(slot), DEAD);
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

    /// Sweeps, resets of other keys and full-table purges racing with hits on keys whose
    /// old state has expired: every admitted hit is in the final state, none counted twice.
    #[test]
    fn removals_racing_hits_lose_no_admitted_hit() {
        for round in 0..20u64 {
            let t = Arc::new(table(
                Algorithm::FixedWindow,
                1_000_000,
                10_000,
                OnFull::Deny,
            ));
            // Old state, expired at `now`: candidates for every kind of removal.
            for k in 0..64 {
                t.hit(KeyRef::Int(k), 0, 1, None);
                t.hit(KeyRef::Int(1000 + k), 0, 1, None);
            }
            let now = 5000 * NS_PER_MS + round;
            let hitters: Vec<_> = (0..4)
                .map(|i| {
                    let t = Arc::clone(&t);
                    std::thread::spawn(move || {
                        let mut admitted = [0u32; 64];
                        for n in 0..2000 {
                            let k = (n * 7 + i * 13) % 64;
                            if t.hit(KeyRef::Int(k as i64), now, 1, None).allowed() {
                                admitted[k] += 1;
                            }
                        }
                        admitted
                    })
                })
                .collect();
            let remover = {
                let t = Arc::clone(&t);
                std::thread::spawn(move || {
                    for k in 0..64 {
                        t.sweep(0, now, Duration::from_secs(1));
                        t.reset(KeyRef::Int(1000 + k));
                    }
                })
            };
            let mut admitted = [0u32; 64];
            for h in hitters {
                for (total, n) in admitted.iter_mut().zip(h.join().unwrap()) {
                    *total += n;
                }
            }
            remover.join().unwrap();
            assert_eq!(admitted.iter().sum::<u32>(), 8000);
            for (k, &n) in admitted.iter().enumerate() {
                let slot = t.slot(KeyRef::Int(k as i64)).expect("a hit key is stored");
                assert_eq!(slot.x, n, "key {k}, round {round}");
            }
            assert_eq!(
                t.len(),
                64 + (0..64)
                    .filter(|k| t.slot(KeyRef::Int(1000 + k)).is_some())
                    .count()
            );
            assert_eq!(t.len(), walked_keys(&t));
        }
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

    fn walked_keys(t: &Table) -> usize {
        t.shards.iter().map(|s| s.map.pin().len()).sum()
    }

    fn walked_heap(t: &Table) -> usize {
        t.shards
            .iter()
            .map(|s| {
                s.map
                    .pin()
                    .iter()
                    .map(|(k, _)| k.heap_bytes())
                    .sum::<usize>()
            })
            .sum()
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
        /// The O(1) counters behind `stats` (keys, key bytes) always equal a walk
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
                prop_assert_eq!(stats.key_bytes, walked_heap(&t));
                prop_assert!(stats.key_bytes <= max_bytes);
                prop_assert!(stats.keys <= max_keys);
            }
        }
    }
}

//! The A/B row of the limiter's packed key (issue #15): [`Key`] packs a long key's box address
//! into its words (16 bytes; `key.rs` proves its two raw-pointer blocks), its plain twin
//! [`PlainKey`] holds the box in an enum (24 bytes, safe). Both are stored as a shard stores
//! them, in a `hashbrown` table of `(key, Slot)` entries, and looked up by a [`Probe`]. Compiled
//! in only with the `bench` feature.

use hashbrown::HashTable;
use hotpath_core::limiter::key::plain::PlainKey;
use hotpath_core::limiter::{ByteKind, Key, KeyRef, Probe, Slot};
use std::time::Instant;

/// Bytes per key of the table (buckets and control bytes) and of the boxed bytes of long keys
/// (their length rounded up to the allocator's 16-byte granule, plus its 8-byte header).
fn bytes_per_key<K>(table: &HashTable<(K, Slot)>, heap: usize, n: usize) -> f64 {
    let buckets = table.capacity().max(1) * 8 / 7;
    let buckets = buckets.next_power_of_two();
    (buckets * (std::mem::size_of::<(K, Slot)>() + 1) + heap) as f64 / n as f64
}

fn boxed(len: usize) -> usize {
    (len + 8).div_ceil(16) * 16
}

/// `{packed_bytes_per_key, plain_bytes_per_key, packed_ns_per_lookup, plain_ns_per_lookup}` for
/// `n` keys `"user:<i>"` (11 bytes for i < 10^6: inline), or with `long`, 32-byte keys (out of
/// line in both). Lookups: every key once per pass, best of 5 passes each, alternated.
#[rustler::nif(schedule = "DirtyCpu")]
fn bench_key_layout(n: u64, long: bool) -> (f64, f64, f64, f64) {
    let n = n.clamp(1, 10_000_000) as usize;
    let names: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            if long {
                format!("session:{i:024}").into_bytes()
            } else {
                format!("user:{i}").into_bytes()
            }
        })
        .collect();
    let key = |i: usize| KeyRef::Bytes(ByteKind::Binary, &names[i]);
    let state = ahash::RandomState::new();
    let slot = Slot::default();

    let mut packed: HashTable<(Key, Slot)> = HashTable::new();
    let mut plain: HashTable<(PlainKey, Slot)> = HashTable::new();
    let mut heap = (0, 0);
    for i in 0..n {
        let probe = Probe::new(key(i));
        let owned = probe.into_key();
        heap.0 += owned.heap_bytes().min(1) * boxed(owned.heap_bytes());
        packed.insert_unique(probe.hash_with(&state), (owned, slot), |(k, _)| {
            k.hash_with(&state)
        });
        let owned = PlainKey::from_ref(key(i));
        if let PlainKey::Heap(_, bytes) = &owned {
            heap.1 += boxed(bytes.len());
        }
        plain.insert_unique(owned.hash_with(&state), (owned, slot), |(k, _)| {
            k.hash_with(&state)
        });
    }

    let mut best = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        let started = Instant::now();
        for i in 0..n {
            let probe = Probe::new(key(i));
            let found = packed.find(probe.hash_with(&state), |(k, _)| probe.matches(k));
            std::hint::black_box(found);
        }
        best.0 = best.0.min(started.elapsed().as_nanos() as f64 / n as f64);
        let started = Instant::now();
        for i in 0..n {
            let probe = Probe::new(key(i));
            let found = plain.find(probe.hash_with(&state), |(stored, _)| {
                stored.matches(&probe)
            });
            std::hint::black_box(found);
        }
        best.1 = best.1.min(started.elapsed().as_nanos() as f64 / n as f64);
    }
    (
        bytes_per_key(&packed, heap.0, n),
        bytes_per_key(&plain, heap.1, n),
        best.0,
        best.1,
    )
}

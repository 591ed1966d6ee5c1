//! How the limiter table scales from 1 thread to 2, without the BEAM (issue #18):
//!
//! ```sh
//! cargo run --release --example table_scaling -p hotpath_core
//! ```
//!
//! Every case runs with 1 thread and with 2 (aggregate ns per hit), back to back inside each
//! round; the medians of the rounds' own ratios are printed. `spin` is arithmetic only, the
//! core check. The table cases hit 10k binary keys already stored (one `:gcra` policy):
//!
//! * `all keys`: every thread walks all keys from another offset, so almost every hit's
//!   entry (and its shard's lock) was last written by the other thread;
//! * `halves`: each thread walks its own half of the keys: the entries are not shared, the
//!   shard locks are (10 keys per shard);
//! * `own tables`: each thread its own table (nothing shared: the upper bound);
//! * `hot key`: every hit on one key.
//!
//! Before each 2-thread measurement a line handoff check runs: two threads pass one cache
//! line back and forth and the ns per one-way handoff is kept with the round. On a VM whose
//! vCPUs move between the host's cores it moves between ~30 and ~430 ns from one second to
//! the next, and every shared case pays it; the last column splits the rounds by it.

use hotpath_core::limiter::{Algorithm, ByteKind, Config, KeyRef, OnFull, Policy, Table};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Instant;

const KEYS: usize = 10_000;
const HITS: usize = 2_000_000;
const ROUNDS: usize = 9;
const HANDOFFS: u64 = 20_000;
/// A round whose handoff took at most this many ns counts as near.
const NEAR_NS: f64 = 100.0;

#[repr(align(128))]
struct Line(AtomicU64);

/// ns per one-way handoff of one cache line between two threads.
fn handoff_ns() -> f64 {
    let line = Arc::new(Line(AtomicU64::new(0)));
    let pass = |line: &Line, mine: u64| {
        for i in 0..HANDOFFS {
            while line.0.load(Ordering::Acquire) != 2 * i + mine {
                std::hint::spin_loop();
            }
            line.0.store(2 * i + mine + 1, Ordering::Release);
        }
    };
    let other = line.clone();
    let start = Instant::now();
    let t = std::thread::spawn(move || pass(&other, 1));
    pass(&line, 0);
    t.join().unwrap();
    start.elapsed().as_nanos() as f64 / (2 * HANDOFFS) as f64
}

fn table() -> Table {
    let policy = Policy::new(Algorithm::Gcra, 1_000_000_000, 1_000, None).unwrap();
    Table::new(Config {
        policy,
        max_keys: 1_000_000,
        max_bytes: usize::MAX,
        on_full: OnFull::Deny,
    })
}

#[derive(Clone, Copy)]
enum Case {
    Spin,
    AllKeys,
    Halves,
    OwnTables,
    HotKey,
}

/// Aggregate ns per hit of `threads` threads running `case`.
fn measure(
    case: Case,
    threads: usize,
    shared: &Arc<Table>,
    own: &[Arc<Table>],
    keys: &Arc<Vec<String>>,
) -> f64 {
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (barrier, keys) = (barrier.clone(), keys.clone());
            let table = match case {
                Case::OwnTables => own[t].clone(),
                _ => shared.clone(),
            };
            std::thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                let mut allowed = 0usize;
                for i in 0..HITS {
                    let k = match case {
                        Case::Spin => {
                            allowed += black_box(i).wrapping_mul(0x9E37_79B9) >> 60;
                            continue;
                        }
                        Case::AllKeys | Case::OwnTables => (i + t * 7_919) % KEYS,
                        Case::Halves => t * (KEYS / 2) + i % (KEYS / 2),
                        Case::HotKey => KEYS,
                    };
                    let key = if k == KEYS { "hot" } else { keys[k].as_str() };
                    let key = KeyRef::Bytes(ByteKind::Binary, key.as_bytes());
                    allowed += table.hit(black_box(key), 1_000, 1, None).allowed() as usize;
                }
                black_box(allowed);
                start.elapsed().as_nanos() as f64
            })
        })
        .collect();
    barrier.wait();
    let slowest = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .fold(0.0, f64::max);
    slowest / (HITS * threads) as f64
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

fn main() {
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|i| format!("user:{i}")).collect());
    let shared = Arc::new(table());
    let own: Vec<Arc<Table>> = (0..2).map(|_| Arc::new(table())).collect();
    for t in std::iter::once(&shared).chain(&own) {
        for k in keys.iter().map(String::as_str).chain(["hot"]) {
            t.hit(KeyRef::Bytes(ByteKind::Binary, k.as_bytes()), 0, 1, None);
        }
    }
    let cases = [
        ("spin", Case::Spin),
        ("all keys", Case::AllKeys),
        ("halves", Case::Halves),
        ("own tables", Case::OwnTables),
        ("hot key", Case::HotKey),
    ];
    type Row = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>);
    let mut rows: Vec<Row> = vec![Default::default(); cases.len()];
    for _ in 0..ROUNDS {
        for (row, &(_, case)) in rows.iter_mut().zip(&cases) {
            let one = measure(case, 1, &shared, &own, &keys);
            row.3.push(handoff_ns());
            let two = measure(case, 2, &shared, &own, &keys);
            row.0.push(one);
            row.1.push(two);
            row.2.push(one / two);
        }
    }
    let spin = median(rows[0].2.clone());
    println!(
        "| case | 1 thread ns/hit | 2 threads ns/hit | scaling | vs spin scaling \
         | handoff ns | scaling, rounds of a handoff <= {NEAR_NS} ns / above |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for ((name, _), (one, two, scaling, handoffs)) in cases.iter().zip(rows) {
        let split = |near: bool| {
            let part: Vec<f64> = scaling
                .iter()
                .zip(&handoffs)
                .filter(|(_, &h)| (h <= NEAR_NS) == near)
                .map(|(&s, _)| s)
                .collect();
            match part.len() {
                0 => "-".to_string(),
                n => format!("{:.2}x ({n})", median(part)),
            }
        };
        let (near, far) = (split(true), split(false));
        let s = median(scaling);
        println!(
            "| {name} | {:.1} | {:.1} | {s:.2}x | {:.2}x | {:.0} | {near} / {far} |",
            median(one),
            median(two),
            s / spin,
            median(handoffs),
        );
    }
}

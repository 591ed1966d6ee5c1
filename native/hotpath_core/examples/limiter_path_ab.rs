//! Instruction counts of the limiter's hit paths, for callgrind (timings on a shared machine
//! are noisy; instruction counts are not):
//!
//! ```sh
//! cargo build --release --example limiter_path_ab -p hotpath_core
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/limiter.cg \
//!     target/release/examples/limiter_path_ab
//! callgrind_annotate --inclusive=yes /tmp/limiter.cg | grep ab_
//! ```
//!
//! Each `ab_*` function makes [`CALLS`] hits over 10k binary keys already stored (what the
//! `make bench` rows do after the key decode): divide its inclusive count by [`CALLS`].
//!
//! * `ab_single`: one `:gcra` policy, a table of plain slots (`Table::hit`);
//! * `ab_two`: `:gcra` and `:fixed_window` in one decision, a table of cells (`MultiHit`);
//! * `ab_keys`: the loop and the key pick alone.

use hotpath_core::limiter::{
    Algorithm, ByteKind, Cells, Config, KeyRef, MultiHit, OnFull, Policy, Rules, Table,
};
use std::hint::black_box;

/// Calls per variant.
const CALLS: usize = 100_000;
const KEYS: usize = 10_000;
const MS: u64 = 1_000_000;

fn config(policy: Policy) -> Config {
    Config {
        policy,
        max_keys: 1_000_000,
        max_bytes: usize::MAX,
        on_full: OnFull::Deny,
    }
}

fn key(keys: &[String], i: usize) -> KeyRef<'_> {
    KeyRef::Bytes(ByteKind::Binary, keys[i % KEYS].as_bytes())
}

#[inline(never)]
fn ab_single(table: &Table, keys: &[String], now: u64) -> usize {
    (0..CALLS)
        .filter(|&i| table.hit(black_box(key(keys, i)), now, 1, None).allowed())
        .count()
}

#[inline(never)]
fn ab_two(table: &Cells, rules: &Rules, keys: &[String], now: u64) -> usize {
    let op = MultiHit {
        rules,
        policies: None,
        cost: 1,
    };
    (0..CALLS)
        .filter(|&i| table.hit(black_box(key(keys, i)), now, &op).0.allowed())
        .count()
}

#[inline(never)]
fn ab_keys(keys: &[String]) -> usize {
    (0..CALLS)
        .filter(|&i| matches!(black_box(key(keys, i)), KeyRef::Bytes(_, b) if !b.is_empty()))
        .count()
}

fn main() {
    let keys: Vec<String> = (1..=KEYS).map(|i| format!("user:{i}")).collect();
    let gcra = Policy::new(Algorithm::Gcra, 1_000_000_000, 1_000, None).unwrap();
    let daily = Policy::new(Algorithm::FixedWindow, 1_000_000_000, 86_400_000, None).unwrap();
    let single = Table::new(config(gcra));
    let rules = Rules::new(vec![gcra, daily], None).unwrap();
    let two = Cells::new(config(gcra), &rules);
    let now = 1_000 * MS;
    // Store every key first, so that the counted calls update stored keys.
    for i in 0..KEYS {
        single.hit(key(&keys, i), now, 1, None);
        two.hit(
            key(&keys, i),
            now,
            &MultiHit {
                rules: &rules,
                policies: None,
                cost: 1,
            },
        );
    }
    let counts = (
        ab_single(&single, &keys, now + 1),
        ab_two(&two, &rules, &keys, now + 1),
        ab_keys(&keys),
    );
    assert_eq!(counts, (CALLS, CALLS, CALLS));
    // `ROUNDS=n`: also time the variants, alternated, and print the median ns per hit.
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    if rounds > 0 {
        let time = |f: &dyn Fn() -> usize| {
            let started = std::time::Instant::now();
            black_box(f());
            started.elapsed().as_nanos() as f64 / CALLS as f64
        };
        let (mut single_ns, mut two_ns) = (vec![], vec![]);
        for round in 0..rounds {
            let now = now + 2 + round as u64;
            single_ns.push(time(&|| ab_single(&single, &keys, now)));
            two_ns.push(time(&|| ab_two(&two, &rules, &keys, now)));
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (s, t) = (median(&mut single_ns), median(&mut two_ns));
        println!("single {s:.1} ns, two {t:.1} ns, ratio {:.2}x", t / s);
    }
}

//! Quick cost check of `Table::hit` without the BEAM: `cargo run --release --example hit_cost`.
use hotpath_core::limiter::{Algorithm, ByteKind, Config, KeyRef, OnFull, Policy, Table};
use std::time::Instant;

fn main() {
    let policy = Policy::new(Algorithm::Gcra, 1_000_000_000, 1000, None).unwrap();
    let table = Table::new(Config {
        policy,
        max_keys: std::env::args()
            .nth(1)
            .map_or(1_000_000, |s| s.parse().unwrap()),
        max_bytes: usize::MAX,
        on_full: OnFull::Deny,
    });
    let keys: Vec<String> = (0..10_000).map(|i| format!("user:{i}")).collect();
    let n: u64 = std::env::var("N").map_or(5_000_000, |s| s.parse().unwrap());
    let base = hotpath_core::clock::now_ns();
    let start = Instant::now();
    for i in 0..n {
        let k = &keys[(i % 10_000) as usize];
        let now = hotpath_core::clock::now_ns() - base;
        std::hint::black_box(table.hit(
            KeyRef::Bytes(ByteKind::Binary, k.as_bytes()),
            now,
            1,
            None,
        ));
    }
    println!(
        "hit with clock: {:.1} ns",
        start.elapsed().as_nanos() as f64 / n as f64
    );
    let start = Instant::now();
    for i in 0..n {
        let k = &keys[(i % 10_000) as usize];
        std::hint::black_box(table.hit(KeyRef::Bytes(ByteKind::Binary, k.as_bytes()), i, 1, None));
    }
    println!(
        "hit without clock: {:.1} ns",
        start.elapsed().as_nanos() as f64 / n as f64
    );
}

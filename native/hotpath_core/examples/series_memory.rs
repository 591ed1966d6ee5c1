//! Native memory per metric series, as the OS sees it: `benches/metrics_memory.exs` runs this
//! beside its BEAM child VMs, whose RSS also moves with the VM's own allocators.
//!
//!     cargo run --release -p hotpath_core --example series_memory -- distribution 8 4000
//!
//! `threads` threads (one per scheduler of the VM it stands for) record 5 latencies into each
//! of `series` series of one metric (a distribution with 10 buckets, or a summary with its
//! default 60 s window), every thread walking the series from its own offset: the series
//! path of `Hotpath.Metrics` after the series is resolved. Prints the registry's own
//! accounting and the process's RSS growth, both per series. The threads first record into
//! another registry, so their allocator arenas and stacks exist before the measurement.

use hotpath_core::metrics::{push_label, spec, Kind, Registry};
use std::sync::{Arc, Barrier};

fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn registry(kind: Kind) -> Registry {
    let mut s = spec("bench_mem_duration", kind, &["id"]);
    s.max_series = 1_000_000;
    if kind == Kind::Distribution {
        s.histogram.buckets = vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];
    }
    Registry::new(vec![s]).expect("valid spec")
}

fn record_all(r: &Registry, thread: usize, series: usize) {
    let metric = r.metric(0).expect("one metric");
    let mut key = Vec::new();
    for i in 0..series {
        key.clear();
        push_label(
            &mut key,
            ((i + thread * 37) % series).to_string().as_bytes(),
        );
        let s = metric.resolve(&key).expect("a series");
        for v in [1.5, 3.2, 7.7, 12.5, 39.0] {
            s.record(v, 0).expect("finite");
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kind = match args.first().map(String::as_str) {
        Some("summary") => Kind::Summary,
        _ => Kind::Distribution,
    };
    let threads: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let series: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(4000);
    let warm = Arc::new(registry(kind));
    let measured = Arc::new(registry(kind));
    let barrier = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (warm, measured, barrier) = (warm.clone(), measured.clone(), barrier.clone());
            std::thread::spawn(move || {
                record_all(&warm, t, 100);
                barrier.wait();
                barrier.wait();
                record_all(&measured, t, series);
                barrier.wait();
            })
        })
        .collect();
    barrier.wait();
    let before = rss();
    barrier.wait();
    barrier.wait();
    let after = rss();
    for w in workers {
        w.join().expect("worker");
    }
    let metric = measured.metric(0).expect("one metric");
    assert_eq!(metric.series_count(), series);
    println!(
        "RESULT bytes_per_series={} rss_bytes_per_series={}",
        measured.memory() / series,
        after.saturating_sub(before) / series
    );
}

//! Instruction counts of the metrics record path's native tricks, for callgrind (timings on a
//! shared machine are noisy; instruction counts are not):
//!
//! ```sh
//! cargo build --release --example record_path_ab -p hotpath_core
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/record.cg \
//!     target/release/examples/record_path_ab
//! callgrind_annotate --inclusive=yes /tmp/record.cg | grep ab_
//! ```
//!
//! Each `ab_*` function runs one variant of what `record_group` (`hotpath_nif`) does after it
//! has read the tag values out of the map, [`CALLS`] times over 16 tag sets, recording into a
//! distribution with 11 buckets: divide its inclusive count by [`CALLS`]. The term decoding
//! the NIF does on every path is left out, so the differences are the whole difference.
//!
//! * `ab_memo`: the library's path, a per-thread memo hit (`hotpath_core::metrics::memo`);
//! * `ab_plain`: no memo, the series resolved as a memo miss does (UTF-8 check, label key,
//!   the metric's map, an `Arc` clone), then recorded;
//! * `ab_empty`: the loop and the value alone.

use hotpath_core::histogram::Options;
use hotpath_core::metrics::memo::{CallKey, Memo};
use hotpath_core::metrics::{push_label, Kind, Metric, MetricSpec, Registry, Series};
use std::hint::black_box;
use std::sync::Arc;

/// Calls per variant.
const CALLS: usize = 100_000;

fn registry() -> Registry {
    Registry::new(vec![MetricSpec {
        name: "bench_router_dispatch_duration".into(),
        help: String::new(),
        kind: Kind::Distribution,
        labels: vec!["route".into(), "method".into()],
        max_series: 10_000,
        histogram: Options {
            buckets: vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
            ..Options::default()
        },
        quantiles: vec![],
    }])
    .expect("a valid spec")
}

fn tag_sets() -> Vec<(Vec<u8>, Vec<u8>)> {
    let routes = [
        "/",
        "/users",
        "/users/:id",
        "/posts",
        "/posts/:id",
        "/login",
        "/api/items",
        "/metrics",
    ];
    routes
        .iter()
        .flat_map(|r| ["GET", "POST"].map(|m| (r.as_bytes().to_vec(), m.as_bytes().to_vec())))
        .collect()
}

fn value(i: usize) -> f64 {
    0.1 + (i & 1023) as f64 / 1024.0
}

/// One memoized record (`record_group` on a hit).
#[inline(always)]
fn record_memo(memo: &mut Memo, metric: &Metric, uid: u64, route: &[u8], method: &[u8], v: f64) {
    let mut key = CallKey::new();
    let memoized = key.push_binary(route) && key.push_binary(method);
    assert!(memoized);
    let generation = 0;
    let hit = memo.with_hit(uid, 0, generation, &key, |series| {
        for s in series {
            s.record(v, 0).expect("recorded");
        }
    });
    if let Err(probe) = hit {
        let series = resolve(metric, route, method);
        for s in &series {
            s.record(v, 0).expect("recorded");
        }
        memo.insert(probe, uid, 0, generation, &key, series);
    }
}

/// The series the slow way, as `resolve_group` builds it (for a group of one metric).
#[inline(always)]
fn resolve(metric: &Metric, route: &[u8], method: &[u8]) -> Vec<Arc<Series>> {
    let group = [metric];
    let mut buf = Vec::new();
    let mut ends = Vec::with_capacity(group.len());
    for _ in group {
        for value in [route, method] {
            assert!(std::str::from_utf8(value).is_ok());
            push_label(&mut buf, value);
        }
        ends.push(buf.len());
    }
    let mut series = Vec::with_capacity(group.len());
    let mut start = 0;
    for (m, &end) in group.iter().zip(&ends) {
        series.push(m.resolve(&buf[start..end]).expect("resolved"));
        start = end;
    }
    series
}

/// One record without the memo.
#[inline(always)]
fn record_plain(metric: &Metric, route: &[u8], method: &[u8], v: f64) {
    for s in &resolve(metric, route, method) {
        s.record(v, 0).expect("recorded");
    }
}

#[inline(never)]
fn ab_memo(memo: &mut Memo, metric: &Metric, tags: &[(Vec<u8>, Vec<u8>)]) {
    for i in 0..CALLS {
        let (route, method) = &tags[i % tags.len()];
        record_memo(
            memo,
            metric,
            1,
            black_box(route),
            black_box(method),
            value(i),
        );
    }
}

#[inline(never)]
fn ab_plain(metric: &Metric, tags: &[(Vec<u8>, Vec<u8>)]) {
    for i in 0..CALLS {
        let (route, method) = &tags[i % tags.len()];
        record_plain(metric, black_box(route), black_box(method), value(i));
    }
}

#[inline(never)]
fn ab_empty(tags: &[(Vec<u8>, Vec<u8>)]) {
    for i in 0..CALLS {
        let (route, method) = &tags[i % tags.len()];
        black_box((route, method, value(i)));
    }
}

fn main() {
    let registry = registry();
    let metric = registry.metric(0).expect("one metric");
    let tags = tag_sets();
    let mut memo = Memo::new();
    // Every series exists, has seen every value (its buckets are allocated lazily) and has its
    // memo entry before the measured calls.
    for (route, method) in &tags {
        for i in 0..1024 {
            record_plain(metric, route, method, value(i));
        }
        record_memo(&mut memo, metric, 1, route, method, 1.0);
    }
    ab_empty(&tags);
    ab_memo(&mut memo, metric, &tags);
    ab_plain(metric, &tags);
    println!(
        "{} records per variant into {} series",
        CALLS,
        registry.series_count()
    );
}

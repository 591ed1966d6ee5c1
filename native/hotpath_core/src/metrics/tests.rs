use super::prometheus::format_float;
use super::*;

fn key(values: &[&str]) -> Vec<u8> {
    let mut k = Vec::new();
    for v in values {
        push_label(&mut k, v.as_bytes());
    }
    k
}

fn registry() -> Registry {
    Registry::new(vec![
        spec("http_requests_total", Kind::Counter, &["route", "method"]),
        spec("http_bytes_total", Kind::Sum, &["route"]),
        spec("vm_memory", Kind::LastValue, &[]),
        spec("query_time", Kind::Summary, &["repo"]),
        spec("http_duration", Kind::Distribution, &["route"]),
    ])
    .unwrap()
}

#[test]
fn records_by_series() {
    let r = registry();
    let c = r.metric(0).unwrap();
    c.record(&key(&["/a", "GET"]), 0.0, 0).unwrap();
    c.record(&key(&["/a", "GET"]), 0.0, 0).unwrap();
    c.record(&key(&["/b", "GET"]), 0.0, 0).unwrap();
    let series = c.series();
    assert_eq!(series.len(), 2);
    assert_eq!(series[0].labels(), &["/a".to_string(), "GET".to_string()]);
    assert_eq!(series[0].read(0), SeriesRead::Counter(2));
    let s = r.metric(1).unwrap();
    for _ in 0..10 {
        s.record(&key(&["/a"]), 0.1, 0).unwrap();
    }
    assert_eq!(s.series()[0].read(0), SeriesRead::Sum(1.0));
    let g = r.metric(2).unwrap();
    g.record(&[], 5.0, 0).unwrap();
    g.record(&[], 7.0, 0).unwrap();
    assert_eq!(g.series()[0].read(0), SeriesRead::LastValue(Some(7.0)));
    assert!(r.metric(5).is_none());
    assert!(
        c.record(&key(&["/a"]), 1.0, 0).is_err(),
        "wrong label count"
    );
}

#[test]
fn cardinality_cap_sends_new_series_to_overflow() {
    let mut s = spec("c_total", Kind::Counter, &["id"]);
    s.max_series = 3;
    let r = Registry::new(vec![s]).unwrap();
    let m = r.metric(0).unwrap();
    for i in 0..10 {
        m.record(&key(&[&i.to_string()]), 0.0, 0).unwrap();
    }
    m.record(&key(&["1"]), 0.0, 0).unwrap();
    let series = m.series();
    assert_eq!(series.len(), 4);
    assert_eq!(series[3].labels(), &[OVERFLOW_LABEL.to_string()]);
    assert_eq!(series[3].read(0), SeriesRead::Counter(7));
    assert_eq!(series[1].read(0), SeriesRead::Counter(2));
    assert_eq!(m.series_count(), 3);
}

#[test]
fn tags_with_the_overflow_labels_record_into_the_overflow_series() {
    let mut s = spec("c_total", Kind::Counter, &["a", "b"]);
    s.max_series = 2;
    let r = Registry::new(vec![s]).unwrap();
    let m = r.metric(0).unwrap();
    let series_of = |labels: &[&str]| labels.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    m.record(&key(&[OVERFLOW_LABEL, OVERFLOW_LABEL]), 0.0, 0)
        .unwrap();
    m.record(&key(&["x", "y"]), 0.0, 0).unwrap();
    // One label at the overflow value is an ordinary series (the overflow series has both).
    m.record(&key(&[OVERFLOW_LABEL, "y"]), 0.0, 0).unwrap();
    m.record(&key(&["x", "z"]), 0.0, 0).unwrap();
    let series = m.series();
    let labels: Vec<_> = series.iter().map(|s| s.labels().to_vec()).collect();
    assert_eq!(
        labels,
        vec![
            series_of(&[OVERFLOW_LABEL, "y"]),
            series_of(&["x", "y"]),
            series_of(&[OVERFLOW_LABEL, OVERFLOW_LABEL]),
        ]
    );
    assert_eq!(series[2].read(0), SeriesRead::Counter(2));
    assert_eq!(m.series_count(), 2);
}

#[test]
fn prune_removes_idle_series() {
    let r = registry();
    let m = r.metric(0).unwrap();
    m.record(&key(&["/a", "GET"]), 0.0, 0).unwrap();
    m.record(&key(&["/b", "GET"]), 0.0, 0).unwrap();
    assert_eq!(r.prune(), 0, "both recorded since creation");
    m.record(&key(&["/a", "GET"]), 0.0, 0).unwrap();
    assert_eq!(r.prune(), 1);
    assert_eq!(m.series().len(), 1);
    assert_eq!(r.series_count(), 1);
}

#[test]
fn invalid_specs_are_refused() {
    let bad = [
        vec![spec("9bad", Kind::Counter, &[])],
        vec![spec("ok_total", Kind::Counter, &["bad-label"])],
        vec![spec("ok_total", Kind::Counter, &["__reserved"])],
        vec![spec("h", Kind::Distribution, &["le"])],
        vec![spec("s", Kind::Summary, &["quantile"])],
        vec![spec("x", Kind::Counter, &["a", "a"])],
        vec![spec("x", Kind::Sum, &[]), spec("x", Kind::LastValue, &[])],
        vec![
            spec("x", Kind::Summary, &[]),
            spec("x_count", Kind::LastValue, &[]),
        ],
        vec![spec(prometheus::DROPPED_NAME, Kind::Counter, &[])],
        vec![spec(prometheus::CLUSTER_UP_NAME, Kind::LastValue, &[])],
    ];
    for specs in bad {
        assert!(Registry::new(specs).err().unwrap().is_argument_error());
    }
    let mut s = spec("x", Kind::Counter, &[]);
    s.max_series = 0;
    assert!(Registry::new(vec![s]).is_err());
}

#[test]
fn canonical_numbers() {
    for (v, text) in [
        (1.0, "1.0"),
        (0.005, "0.005"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1e6, "1000000.0"),
        (1e21, "1e+21"),
        (2.5e-7, "2.5e-07"),
        (-3.25, "-3.25"),
        (0.0, "0.0"),
        (f64::NAN, "NaN"),
        (f64::NEG_INFINITY, "-Inf"),
    ] {
        assert_eq!(format_float(v), text, "{v}");
    }
}

#[test]
fn exposition_text() {
    let r = registry();
    r.metric(0)
        .unwrap()
        .record(&key(&["/a\"b\\c\nd", "GET"]), 0.0, 0)
        .unwrap();
    let d = r.metric(4).unwrap();
    for v in [0.005, 0.005, 0.05, 1.0, 100.0] {
        d.record(&key(&["/x"]), v, 0).unwrap();
    }
    r.metric(3)
        .unwrap()
        .record(&key(&["main"]), 2.0, 0)
        .unwrap();
    let text = r.render_prometheus(0);
    assert!(text.ends_with('\n'));
    assert!(text.contains("# TYPE http_requests_total counter\n"));
    assert!(text.contains(r#"http_requests_total{route="/a\"b\\c\nd",method="GET"} 1"#));
    assert!(text.contains(
        "http_duration_bucket{route=\"/x\",le=\"0.005\"} 2\n\
         http_duration_bucket{route=\"/x\",le=\"0.01\"} 2\n\
         http_duration_bucket{route=\"/x\",le=\"0.1\"} 3\n\
         http_duration_bucket{route=\"/x\",le=\"1.0\"} 4\n\
         http_duration_bucket{route=\"/x\",le=\"10.0\"} 4\n\
         http_duration_bucket{route=\"/x\",le=\"+Inf\"} 5\n\
         http_duration_sum{route=\"/x\"} 101.06\n\
         http_duration_count{route=\"/x\"} 5\n"
    ));
    assert!(text.contains("query_time{repo=\"main\",quantile=\"0.99\"} 2.0\n"));
    assert!(text.contains("# TYPE vm_memory gauge\n"));
    assert!(
        !text.contains("\nvm_memory "),
        "an unset gauge has no sample"
    );
    assert!(text.contains("hotpath_metrics_dropped_total{metric=\"http_requests_total\"} 0\n"));
}

#[test]
fn openmetrics_text() {
    use super::prometheus::{finish, Format};
    let r = Registry::new(vec![
        spec("http_requests_total", Kind::Counter, &["route"]),
        spec("http_bytes_total", Kind::Sum, &[]),
        spec("query_time", Kind::Summary, &[]),
        // A counter and a distribution of one event: the counter's family name without
        // `_total` would be the distribution's.
        spec("http_duration_total", Kind::Counter, &[]),
        spec("http_duration", Kind::Distribution, &[]),
    ])
    .unwrap();
    r.metric(0).unwrap().record(&key(&["/a"]), 0.0, 0).unwrap();
    r.metric(1).unwrap().record(&key(&[]), -2.5, 0).unwrap();
    r.metric(3).unwrap().record(&key(&[]), 0.0, 0).unwrap();
    r.metric(4).unwrap().record(&key(&[]), 0.5, 0).unwrap();
    let mut text = r.render(0, Format::OpenMetrics);
    finish(&mut text, Format::OpenMetrics);
    assert!(text.contains("# TYPE http_requests counter\nhttp_requests_total{route=\"/a\"} 1\n"));
    assert!(text.contains("# TYPE http_bytes_total unknown\nhttp_bytes_total -2.5\n"));
    assert!(text.contains("# TYPE http_duration_total unknown\nhttp_duration_total 1\n"));
    assert!(text.contains("# TYPE http_duration histogram\n"));
    assert!(text.contains("# TYPE hotpath_metrics_dropped counter\n"));
    assert!(text.contains("hotpath_metrics_dropped_total{metric=\"http_requests_total\"} 0\n"));
    assert!(text.ends_with("\n# EOF\n"));
    // The Prometheus text of the same registry is unchanged: full names, counters, no EOF.
    let plain = r.render_prometheus(0);
    assert!(plain.contains("# TYPE http_requests_total counter\n"));
    assert!(plain.contains("# TYPE http_bytes_total counter\n"));
    assert!(!plain.contains("# EOF"));
}

#[test]
fn concurrent_series_creation_is_exact() {
    let r = std::sync::Arc::new(registry());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let r = r.clone();
            std::thread::spawn(move || {
                for i in 0..2000 {
                    let k = key(&[&(i % 50).to_string()]);
                    r.metric(4).unwrap().record(&k, (i + t) as f64, 0).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let m = r.metric(4).unwrap();
    assert_eq!(m.series().len(), 50);
    let total: u64 = m
        .series()
        .iter()
        .map(|s| match s.read(0) {
            SeriesRead::Histogram(h, _) => h.count(),
            _ => 0,
        })
        .sum();
    assert_eq!(total, 8000);
}

#[test]
fn pinned_series_survive_pruning() {
    let r = registry();
    let m = r.metric(0).unwrap();
    let series = m.resolve(&key(&["/a", "GET"])).unwrap();
    series.pin();
    r.prune();
    assert_eq!(r.prune(), 0);
    series.record(0.0, 0).unwrap();
    assert_eq!(m.series()[0].read(0), SeriesRead::Counter(1));
    series.unpin();
    r.prune();
    assert_eq!(r.prune(), 1);
}

/// Native bytes per series of a 10-bucket distribution and a summary (window of 6 slots, all
/// of them used) recorded from 16 threads, the issue-18 workload's shape: the series keep one
/// owned shard and the shared one per set of cells, whatever the number of threads.
#[test]
fn a_series_costs_the_same_whatever_the_number_of_threads() {
    let mut dist = spec("d", Kind::Distribution, &["id"]);
    dist.histogram.buckets = vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];
    let r = Arc::new(Registry::new(vec![dist, spec("s", Kind::Summary, &["id"])]).unwrap());
    let series = 100;
    let values = [1.5, 3.2, 7.7, 12.5, 39.0];
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let r = r.clone();
            std::thread::spawn(move || {
                for i in 0..series {
                    let k = key(&[&((i + t * 37) % series).to_string()]);
                    for (j, &v) in values.iter().enumerate() {
                        r.metric(0).unwrap().record(&k, v, 0).unwrap();
                        // Every window slot of the summary (10 s each) sees values.
                        let now = ((t + i + j) % 6) as u64 * 10_000;
                        r.metric(1).unwrap().record(&k, v, now).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for (m, bound) in [(0, 1536), (1, 4096)] {
        let metric = r.metric(m).unwrap();
        assert_eq!(metric.series_count(), series);
        for s in metric.series() {
            let SeriesRead::Histogram(c, _) = s.read(50_000) else {
                panic!()
            };
            assert_eq!(c.count(), 16 * values.len() as u64);
        }
        let per_series = metric.memory() / series;
        eprintln!("{}: {per_series} B per series", metric.spec().name);
        assert!(per_series <= bound, "{per_series} B per series");
    }
}

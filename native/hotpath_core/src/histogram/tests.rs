use super::*;
use proptest::prelude::*;

fn default_hist() -> Histogram {
    Histogram::new(&Options::default()).unwrap()
}

fn windowed(span_ms: u64, slots: u32) -> Histogram {
    Histogram::new(&Options {
        window: Some(WindowOptions::new(span_ms, slots).unwrap()),
        ..Options::default()
    })
    .unwrap()
}

fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len() as u64;
    let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
    sorted[(rank - 1) as usize]
}

#[test]
fn concurrent_records_give_exact_totals() {
    let h = Arc::new(
        Histogram::new(&Options {
            buckets: vec![10.0, 100.0],
            ..Options::default()
        })
        .unwrap(),
    );
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                for i in 0..10_000u64 {
                    h.record(((i % 200) + t) as f64, 0).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = h.snapshot();
    assert_eq!(s.count(), 80_000);
    assert_eq!(s.classic_counts().iter().sum::<u64>(), 80_000);
    let expected: f64 = (0..8u64)
        .map(|t| (0..10_000u64).map(|i| ((i % 200) + t) as f64).sum::<f64>())
        .sum();
    assert_eq!(s.sum(), expected);
    assert_eq!(s.min(), Some(0.0));
    assert_eq!(s.max(), Some(206.0));
}

#[test]
fn classic_buckets_are_counted_exactly_and_inclusively() {
    let h = Histogram::new(&Options {
        buckets: vec![0.1, 1.0, 10.0],
        ..Options::default()
    })
    .unwrap();
    for v in [0.1, 0.1, 0.10000000000000002, 1.0, 10.0, 10.5, -3.0] {
        h.record(v, 0).unwrap();
    }
    assert_eq!(h.snapshot().classic_counts(), &[3, 2, 1, 1]);
}

#[test]
fn record_n_and_bad_counts() {
    let h = default_hist();
    h.record_n(2.5, 4, 0).unwrap();
    assert!(h.record_n(1.0, 0, 0).unwrap_err().is_argument_error());
    assert!(h
        .record_n(1.0, MAX_COUNT + 1, 0)
        .unwrap_err()
        .is_argument_error());
    assert!(h.record(f64::NAN, 0).unwrap_err().is_argument_error());
    let s = h.snapshot();
    assert_eq!((s.count(), s.sum()), (4, 10.0));
}

#[test]
fn window_slides_with_injected_time() {
    let h = windowed(60_000, 6);
    h.record(1.0, 0).unwrap();
    h.record(2.0, 9_999).unwrap();
    h.record(3.0, 10_000).unwrap();
    assert_eq!(h.window_snapshot(10_000).unwrap().count(), 3);
    // At 60 s the slot of epoch 0 has left the window.
    let at_60 = h.window_snapshot(60_000).unwrap();
    assert_eq!((at_60.count(), at_60.sum()), (1, 3.0));
    // Writing at 60 s reuses (clears) the slot of epoch 0.
    h.record(10.0, 60_000).unwrap();
    let at_60 = h.window_snapshot(60_000).unwrap();
    assert_eq!((at_60.count(), at_60.sum()), (2, 13.0));
    assert_eq!(h.window_snapshot(200_000).unwrap().count(), 0);
    // A stale time does not disturb a newer slot.
    h.record(99.0, 1).unwrap();
    assert_eq!(h.window_snapshot(60_000).unwrap().count(), 2);
    // The cumulative view keeps everything.
    assert_eq!(h.snapshot().count(), 5);
    assert!(default_hist().window_snapshot(0).is_none());
}

#[test]
fn window_options_are_validated() {
    assert!(WindowOptions::new(60_000, 0).is_err());
    assert!(WindowOptions::new(60_001, 6).is_err());
    assert!(WindowOptions::new(0, 1).is_err());
    assert_eq!(WindowOptions::new(60_000, 6).unwrap().slot_ms, 10_000);
}

#[test]
fn reset_zeroes_everything() {
    let h = windowed(1_000, 2);
    h.record(5.0, 0).unwrap();
    h.reset();
    assert_eq!(h.snapshot(), Snapshot::new(h.layout().clone()));
    assert_eq!(h.window_snapshot(0).unwrap().count(), 0);
    h.record(7.0, 0).unwrap();
    assert_eq!(h.snapshot().max(), Some(7.0));
}

/// `n` values one bucket apart in the default layout (2 % relative error): `n / 64` blocks.
fn spread(n: usize) -> Vec<f64> {
    (0..n).map(|i| 1.0e-6 * 1.02f64.powi(i as i32)).collect()
}

#[test]
fn a_reused_window_slot_starts_empty() {
    let h = windowed(2_000, 2);
    let values = spread(2_000);
    for &v in &values {
        h.record(v, 0).unwrap();
    }
    assert_eq!(h.window_snapshot(0).unwrap().count(), 2_000);

    // Epoch 2 reuses slot 0: its ~30 blocks of epoch 0 read as zero from now on.
    h.record(3.0, 2_000).unwrap();
    let w = h.window_snapshot(2_000).unwrap();
    assert_eq!(
        (w.count(), w.min(), w.max(), w.sum()),
        (1, Some(3.0), Some(3.0), 3.0)
    );
    assert_eq!(h.snapshot().count(), 2_001);

    // Blocks reached again are zeroed before they count.
    for &v in &values[..100] {
        h.record(v, 2_500).unwrap();
    }
    let w = h.window_snapshot(2_500).unwrap();
    let mut fresh = Snapshot::new(h.layout().clone());
    for &v in values[..100].iter().chain([3.0].iter()) {
        fresh.record(v).unwrap();
    }
    assert_eq!(w.count(), 101);
    assert_eq!(
        w.quantiles(&[0.1, 0.5, 0.99]).unwrap(),
        fresh.quantiles(&[0.1, 0.5, 0.99]).unwrap()
    );
}

#[test]
fn shared_shard_writers_across_window_generations_give_exact_totals() {
    // One owned shard: all threads but one write the shared shard, and in every new
    // generation they race to zero its stale blocks.
    let h = Arc::new(
        Histogram::new(&Options {
            window: Some(WindowOptions::new(2_000, 2).unwrap()),
            shards: Some(1),
            ..Options::default()
        })
        .unwrap(),
    );
    let values = Arc::new(spread(640));
    for now in [0u64, 2_000, 4_000, 6_000] {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (h, values) = (h.clone(), values.clone());
                std::thread::spawn(move || {
                    for &v in values.iter() {
                        h.record(v, now).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let w = h.window_snapshot(now).unwrap();
        assert_eq!(w.count(), 8 * 640, "at {now} ms");
        let mut expected = Snapshot::new(h.layout().clone());
        for _ in 0..8 {
            for &v in values.iter() {
                expected.record(v).unwrap();
            }
        }
        assert_eq!(
            w.quantiles(&[0.01, 0.5, 0.999]).unwrap(),
            expected.quantiles(&[0.01, 0.5, 0.999]).unwrap()
        );
    }
    assert_eq!(h.snapshot().count(), 4 * 8 * 640);
}

#[test]
fn memory_is_bounded_and_follows_use() {
    let h = Histogram::new(&Options {
        shards: Some(4),
        ..Options::default()
    })
    .unwrap();
    let empty = h.memory();
    for i in 0..100_000 {
        h.record(1e-9 * 1.0001f64.powi(i), 0).unwrap();
        h.record(-(i as f64), 0).unwrap();
    }
    let used = h.memory();
    assert!(used.bytes > empty.bytes);
    assert!(used.bytes <= used.max_bytes);
    assert_eq!(used.max_bytes, empty.max_bytes);
    assert!(empty.bytes < 1024, "{empty:?}");
}

#[test]
fn merge_refuses_other_layouts() {
    let a = default_hist();
    let b = Histogram::new(&Options {
        relative_error: 0.05,
        ..Options::default()
    })
    .unwrap();
    let err = a.merge_snapshot(&b.snapshot()).unwrap_err();
    assert!(matches!(err, Error::Incompatible(_)), "{err}");
}

#[test]
fn merge_into_concurrent_histogram() {
    let a = default_hist();
    let b = default_hist();
    a.record(1.0, 0).unwrap();
    b.record(-2.0, 0).unwrap();
    b.record(0.0, 0).unwrap();
    a.merge_snapshot(&b.snapshot()).unwrap();
    let s = a.snapshot();
    assert_eq!(
        (s.count(), s.sum(), s.min(), s.max()),
        (3, -1.0, Some(-2.0), Some(1.0))
    );
}

#[test]
fn options_are_validated() {
    for bad in [
        Options {
            shards: Some(0),
            ..Options::default()
        },
        Options {
            shards: Some(65),
            ..Options::default()
        },
        Options {
            relative_error: 2.0,
            ..Options::default()
        },
    ] {
        assert!(Histogram::new(&bad).unwrap_err().is_argument_error());
    }
}

#[test]
fn codec_rejects_defects() {
    let h = default_hist();
    h.record(3.0, 0).unwrap();
    let bytes = h.snapshot().to_bytes();
    assert_eq!(Snapshot::from_bytes(&bytes).unwrap(), h.snapshot());
    for cut in 0..bytes.len() {
        assert!(matches!(
            Snapshot::from_bytes(&bytes[..cut]),
            Err(Error::Malformed(_))
        ));
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(Snapshot::from_bytes(&trailing).is_err());
    let mut version = bytes.clone();
    version[3] = 9;
    assert!(Snapshot::from_bytes(&version)
        .unwrap_err()
        .to_string()
        .contains("version 9"));
    assert!(Snapshot::from_bytes(b"garbage").is_err());
}

// ---- properties --------------------------------------------------------------------------

/// Values spread over many orders of magnitude, both signs, some zeros.
fn wide_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => (-9.0f64..12.0).prop_map(|e| 10f64.powf(e)),
        2 => (-9.0f64..12.0).prop_map(|e| -(10f64.powf(e))),
        1 => Just(0.0),
    ]
}

/// Values whose every partial sum is exactly representable (multiples of 1/64, small).
fn exact_value() -> impl Strategy<Value = f64> {
    (-64_000i64..64_000).prop_map(|i| i as f64 / 64.0)
}

fn snapshot_of(layout: &Arc<Layout>, values: &[f64]) -> Snapshot {
    let mut s = Snapshot::new(layout.clone());
    for &v in values {
        s.record(v).unwrap();
    }
    s
}

fn classic_layout() -> Arc<Layout> {
    Arc::new(Layout::new(0.01, 1e-9, 1e12, &[-1.0, 0.0, 1.0, 10.0, 100.0]).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn quantiles_are_within_the_relative_error(
        values in prop::collection::vec(wide_value(), 1..400),
        qs in prop::collection::vec(0.0f64..=1.0, 1..8),
        relative_error in prop_oneof![Just(0.01), Just(0.001), Just(0.05)],
    ) {
        let layout = Arc::new(Layout::new(relative_error, 1e-9, 1e12, &[]).unwrap());
        let s = snapshot_of(&layout, &values);
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let alpha = layout.relative_error();
        prop_assert!(alpha <= relative_error);
        for q in qs {
            let exact = exact_quantile(&sorted, q);
            let estimate = s.quantile(q).unwrap().unwrap();
            let tolerance = alpha * exact.abs() * (1.0 + 1e-12) + 1e-300;
            prop_assert!((estimate - exact).abs() <= tolerance,
                "q={q} exact={exact} estimate={estimate}");
        }
    }

    #[test]
    fn concurrent_histogram_snapshot_equals_plain_recording(
        values in prop::collection::vec(exact_value(), 0..300),
    ) {
        let h = Histogram::new(&Options { buckets: vec![-1.0, 0.0, 1.0, 10.0, 100.0], ..Options::default() }).unwrap();
        for &v in &values {
            h.record(v, 0).unwrap();
        }
        prop_assert_eq!(h.snapshot(), snapshot_of(&classic_layout(), &values));
    }

    #[test]
    fn merge_is_associative_commutative_and_equals_one_recording(
        a in prop::collection::vec(exact_value(), 0..100),
        b in prop::collection::vec(exact_value(), 0..100),
        c in prop::collection::vec(exact_value(), 0..100),
    ) {
        let layout = classic_layout();
        let (sa, sb, sc) = (snapshot_of(&layout, &a), snapshot_of(&layout, &b), snapshot_of(&layout, &c));
        let mut ab = sa.clone();
        ab.merge(&sb).unwrap();
        let mut ba = sb.clone();
        ba.merge(&sa).unwrap();
        prop_assert_eq!(&ab, &ba);
        let mut ab_c = ab.clone();
        ab_c.merge(&sc).unwrap();
        let mut bc = sb.clone();
        bc.merge(&sc).unwrap();
        let mut a_bc = sa.clone();
        a_bc.merge(&bc).unwrap();
        prop_assert_eq!(&ab_c, &a_bc);
        let all: Vec<f64> = a.iter().chain(&b).chain(&c).copied().collect();
        prop_assert_eq!(&ab_c, &snapshot_of(&layout, &all));
    }

    #[test]
    fn merged_quantiles_match_wide_values(
        a in prop::collection::vec(wide_value(), 0..100),
        b in prop::collection::vec(wide_value(), 0..100),
    ) {
        // With arbitrary floats the sums may differ in the last bits; everything else is equal.
        let layout = Arc::new(Layout::default_layout());
        let mut merged = snapshot_of(&layout, &a);
        merged.merge(&snapshot_of(&layout, &b)).unwrap();
        let all: Vec<f64> = a.iter().chain(&b).copied().collect();
        let one = snapshot_of(&layout, &all);
        prop_assert_eq!(merged.count(), one.count());
        prop_assert_eq!((merged.min(), merged.max()), (one.min(), one.max()));
        for q in [0.0, 0.25, 0.5, 0.9, 0.99, 1.0] {
            prop_assert_eq!(merged.quantile(q).unwrap(), one.quantile(q).unwrap());
        }
        let scale = all.iter().map(|v| v.abs()).fold(0.0, f64::max);
        prop_assert!((merged.sum() - one.sum()).abs() <= scale * 1e-15);
    }

    #[test]
    fn bytes_roundtrip(
        values in prop::collection::vec(wide_value(), 0..300),
        counts in prop::collection::vec(1u64..1_000_000, 0..5),
        classic in any::<bool>(),
    ) {
        let layout = if classic { classic_layout() } else { Arc::new(Layout::default_layout()) };
        let mut s = snapshot_of(&layout, &values);
        for (i, n) in counts.into_iter().enumerate() {
            s.record_n(i as f64 * 1.5, n).unwrap();
        }
        let bytes = s.to_bytes();
        prop_assert_eq!(Snapshot::from_bytes(&bytes).unwrap(), s);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Snapshot::from_bytes(&bytes);
        let mut prefixed = b"HPH\x01".to_vec();
        prefixed.extend_from_slice(&bytes);
        let _ = Snapshot::from_bytes(&prefixed);
    }

    #[test]
    fn mutated_encodings_never_panic(
        values in prop::collection::vec(wide_value(), 0..50),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let s = snapshot_of(&classic_layout(), &values);
        let mut bytes = s.to_bytes();
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Ok(decoded) = Snapshot::from_bytes(&bytes) {
            // Whatever decodes is a usable histogram.
            let _ = decoded.quantile(0.5).unwrap();
            let _ = decoded.to_bytes();
        }
    }
}

// ---- issue 14: saturating sums, estimates near the range ends, hostile encodings ------------

#[test]
fn an_overflowing_sum_saturates_and_reads_stay_finite() {
    let h = default_hist();
    h.record(1.0e308, 0).unwrap();
    h.record(1.0e308, 0).unwrap();
    let s = h.snapshot();
    assert_eq!(s.count(), 2);
    assert_eq!(s.sum(), f64::MAX);
    assert!(s.mean().unwrap().is_finite());
    assert_eq!(s.max(), Some(1.0e308));
    let parts = s.sum_parts();
    assert!(parts.hi.is_finite() && parts.lo.is_finite());
    // Saturating arithmetic: what is added after the overflow counts from f64::MAX.
    h.record(-1.0e308, 0).unwrap();
    assert_eq!(h.snapshot().sum(), f64::MAX - 1.0e308);
    // Both directions, through record_n and merges of shards/snapshots: never NaN.
    let h = default_hist();
    h.record_n(1.0e308, 1_000, 0).unwrap();
    h.record_n(-1.0e308, 3_000, 0).unwrap();
    let s = h.snapshot();
    assert!(s.sum().is_finite() && s.mean().unwrap().is_finite());
    let mut a = snapshot_of(&Arc::new(Layout::default_layout()), &[1.0e308, 1.0e308]);
    let b = snapshot_of(&Arc::new(Layout::default_layout()), &[-1.0e308, -1.0e308]);
    a.merge(&b).unwrap();
    assert!(a.sum().is_finite());
    // A merge target never receives a poison.
    let target = default_hist();
    target.merge_snapshot(&s).unwrap();
    target.merge_snapshot(&a).unwrap();
    assert!(target.snapshot().sum().is_finite());
    // And the encoding of a saturated sum round-trips.
    let bytes = s.to_bytes();
    assert_eq!(Snapshot::from_bytes(&bytes).unwrap(), s);
}

#[test]
fn a_non_finite_sum_in_an_encoding_is_malformed() {
    let s = snapshot_of(&Arc::new(Layout::default_layout()), &[1.0, 2.0]);
    let bytes = s.to_bytes();
    // Default layout, no bounds: the sum's hi part follows the three count varints.
    let hi_at = bytes
        .windows(8)
        .position(|w| w == 3.0f64.to_le_bytes())
        .unwrap();
    for bad in [f64::INFINITY, f64::NEG_INFINITY] {
        for at in [hi_at, hi_at + 8] {
            let mut b = bytes.clone();
            b[at..at + 8].copy_from_slice(&bad.to_le_bytes());
            let err = Snapshot::from_bytes(&b).unwrap_err();
            assert!(matches!(err, Error::Malformed(_)), "{err}");
        }
    }
}

#[test]
fn estimates_near_the_ceiling_and_the_floor_stay_within_the_bound() {
    // Issue 14 item 2: 2·l·u/(l+u) overflowed above ~1e154 and underflowed below ~1e-154.
    let high = Arc::new(Layout::new(0.01, 1e-9, 1.0e300, &[]).unwrap());
    let s = snapshot_of(&high, &[1.0e154, 2.0e154, 3.0e154]);
    let median = s.quantile(0.5).unwrap().unwrap();
    assert!(
        (median - 2.0e154).abs() <= 2.0e154 * high.relative_error(),
        "{median}"
    );
    let low = Arc::new(Layout::new(0.01, 1.0e-300, 1.0, &[]).unwrap());
    let s = snapshot_of(&low, &[1.0e-170, 2.0e-170, 3.0e-170]);
    let median = s.quantile(0.5).unwrap().unwrap();
    assert!(
        (median - 2.0e-170).abs() <= 2.0e-170 * low.relative_error(),
        "{median}"
    );
    // Every bucket of the extreme layouts.
    for re in [0.5, 0.01, alpha(MAX_SUB_BITS)] {
        for (floor, ceiling) in [(MIN_FLOOR, 1e-290), (1e290, MAX_CEILING)] {
            let l = Layout::new(re, floor, ceiling, &[]).unwrap();
            for idx in 0..l.len() {
                let (lo, hi) = l.bucket_bounds(idx);
                let e = l.estimate(idx);
                assert!(e.is_finite() && e > 0.0, "{idx} {e}");
                let in_range_lo = lo.max(MIN_FLOOR);
                let tol = l.relative_error() * (1.0 + 1e-9);
                assert!((e - hi).abs() <= hi * tol, "{re} {idx} {lo} {hi} {e}");
                if lo >= MIN_FLOOR {
                    assert!(
                        (e - in_range_lo).abs() <= in_range_lo * tol,
                        "{re} {idx} {e}"
                    );
                }
            }
        }
    }
}

/// A crafted encoding of the largest layout `from_raw` accepts: 12 sub-bucket bits, 2^20
/// buckets per sign, `bounds` classic bounds and `per_side` entries per sign, one per 64-counter
/// block (the most counter memory per input byte a naive decode could be made to allocate).
fn crafted_max_layout(per_side: usize, bounds: usize) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let shift = 52 - MAX_SUB_BITS;
    let key_min = (MIN_FLOOR.to_bits() - 1) >> shift;
    let mut b = b"HPH\x01".to_vec();
    b.push(MAX_SUB_BITS as u8);
    varint(&mut b, key_min);
    varint(&mut b, MAX_BUCKETS - 1);
    varint(&mut b, bounds as u64);
    for i in 0..bounds {
        b.extend_from_slice(&(i as f64).to_le_bytes());
    }
    varint(&mut b, 0);
    varint(&mut b, 0);
    varint(&mut b, 0);
    let total = 2 * per_side as u64;
    for v in [total as f64, 0.0, 1.0, 1.0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for _ in 0..2 {
        varint(&mut b, per_side as u64);
        for i in 0..per_side {
            varint(&mut b, if i == 0 { 0 } else { 63 });
            varint(&mut b, 1);
        }
    }
    if bounds > 0 {
        for i in 0..=bounds {
            varint(&mut b, if i == 0 { total } else { 0 });
        }
    }
    b
}

/// The memory a decoded histogram may take: the sparse entries it holds (16 bytes per entry,
/// an entry costs at least 2 input bytes), the classic counts (8 bytes per bound, a bound costs
/// 8 input bytes) and the empty shard table.
fn decoded_memory_bound(input_len: usize) -> usize {
    8 * input_len + 64 * 1024
}

#[test]
fn a_crafted_maximum_layout_decodes_in_memory_proportional_to_the_input() {
    let bytes = crafted_max_layout(13_500, MAX_BOUNDS);
    assert!(bytes.len() < 64 * 1024, "{}", bytes.len());
    let s = Snapshot::from_bytes(&bytes).unwrap();
    assert_eq!(s.entries(), 27_000);
    assert!(s.entries() <= bytes.len() / 2);
    let h = Histogram::from_snapshot(s.clone(), default_shards());
    let memory = h.memory().bytes;
    assert!(
        memory <= decoded_memory_bound(bytes.len()),
        "{memory} bytes for {} input bytes",
        bytes.len()
    );
    // Before: a counter block of 512 bytes per entry, 13.7 MiB.
    assert!(memory < 1024 * 1024, "{memory}");
    // It reads as what was encoded, records and merges like any other histogram.
    assert_eq!(h.snapshot(), s);
    h.record(1.0, 0).unwrap();
    assert_eq!(h.snapshot().count(), 27_001);
    h.reset();
    assert_eq!(h.snapshot().count(), 0);
}

fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let valid = (prop::collection::vec(wide_value(), 0..200), any::<bool>()).prop_map(
        |(values, classic)| {
            let layout = if classic {
                classic_layout()
            } else {
                Arc::new(Layout::default_layout())
            };
            snapshot_of(&layout, &values).to_bytes()
        },
    );
    let crafted = (0usize..3000, 0usize..=MAX_BOUNDS).prop_map(|(n, b)| crafted_max_layout(n, b));
    let base = prop_oneof![
        3 => valid,
        2 => crafted,
        1 => prop::collection::vec(any::<u8>(), 0..2048),
        1 => prop::collection::vec(any::<u8>(), 0..512).prop_map(|b| {
            let mut v = b"HPH\x01".to_vec();
            v.extend(b);
            v
        }),
    ];
    (
        base,
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(mut bytes, flips, cut, truncate)| {
            if !bytes.is_empty() {
                for (at, byte) in flips {
                    let i = at.index(bytes.len());
                    bytes[i] ^= byte;
                }
                if truncate {
                    bytes.truncate(cut.index(bytes.len() + 1));
                }
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Issue 14 item 2: over the whole allowed range (floor >= MIN_FLOOR, ceiling <=
    /// MAX_CEILING, every sub-bucket resolution) quantiles stay within the relative error.
    #[test]
    fn quantiles_are_within_the_relative_error_over_the_whole_range(
        floor_exp in -307.6f64..299.0,
        decades in 0.5f64..40.0,
        relative_error in prop_oneof![Just(0.5), Just(0.2), Just(0.05), Just(0.01), Just(0.001), Just(0.0002)],
        unit in prop::collection::vec((0.0f64..=1.0, any::<bool>()), 1..200),
        qs in prop::collection::vec(0.0f64..=1.0, 1..8),
        at_ends in any::<bool>(),
    ) {
        let floor = 10f64.powf(floor_exp).max(MIN_FLOOR);
        let ceiling = (floor * 10f64.powf(decades)).min(MAX_CEILING);
        prop_assume!(ceiling > floor);
        let Ok(layout) = Layout::new(relative_error, floor, ceiling, &[]) else {
            // Too many buckets for this resolution: refused, as documented.
            return Ok(());
        };
        let layout = Arc::new(layout);
        let (lf, lc) = (floor.ln(), ceiling.ln());
        let mut values: Vec<f64> = unit
            .iter()
            .map(|&(u, neg)| {
                let m = (lf + u * (lc - lf)).exp().clamp(floor, ceiling);
                if neg { -m } else { m }
            })
            .collect();
        if at_ends {
            values.extend([floor, ceiling, -floor, -ceiling]);
        }
        let s = snapshot_of(&layout, &values);
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let alpha = layout.relative_error();
        for (q, estimate) in qs.iter().zip(s.quantiles(&qs).unwrap()) {
            let exact = exact_quantile(&sorted, *q);
            let estimate = estimate.unwrap();
            prop_assert!(estimate.is_finite());
            let tolerance = alpha * exact.abs() * (1.0 + 1e-9);
            prop_assert!((estimate - exact).abs() <= tolerance,
                "q={q} exact={exact:e} estimate={estimate:e} floor={floor:e} ceiling={ceiling:e} alpha={alpha}");
            prop_assert_eq!(Some(estimate), s.quantile(*q).unwrap());
        }
    }

    /// Hostile snapshot binaries (random, truncated, bit-flipped, crafted maximum layouts) are
    /// refused or decoded within a bound of work and memory proportional to their size.
    #[test]
    fn hostile_encodings_are_refused_or_bounded(bytes in hostile_bytes()) {
        match Snapshot::from_bytes(&bytes) {
            Err(e) => prop_assert!(matches!(e, Error::Malformed(_)), "{e}"),
            Ok(s) => {
                // Work: every entry and bound costs input bytes.
                prop_assert!(s.entries() <= bytes.len() / 2);
                prop_assert!(s.layout().bounds().len() <= bytes.len() / 8);
                prop_assert!(s.heap_bytes() <= 8 * bytes.len() + 256);
                let parts = s.sum_parts();
                prop_assert!(parts.hi.is_finite() && parts.lo.is_finite());
                let h = Histogram::from_snapshot(s.clone(), 16);
                prop_assert!(h.memory().bytes <= decoded_memory_bound(bytes.len()),
                    "{} bytes from {}", h.memory().bytes, bytes.len());
                let read = h.snapshot();
                prop_assert!(read.sum().is_finite());
                prop_assert!(read.mean().is_none_or(f64::is_finite));
                for v in read.quantiles(&[0.0, 0.5, 0.99, 1.0]).unwrap().into_iter().flatten() {
                    prop_assert!(v.is_finite());
                }
                prop_assert_eq!(Snapshot::from_bytes(&read.to_bytes()).unwrap(), read);
            }
        }
    }

    /// Sums of values anywhere in the float range stay finite whatever the order.
    #[test]
    fn sums_never_leave_the_float_range(
        values in prop::collection::vec(prop_oneof![
            Just(f64::MAX), Just(-f64::MAX), Just(1.0e308), Just(-1.0e308), any::<f64>().prop_filter("finite", |v| v.is_finite())
        ], 1..50),
        counts in prop::collection::vec(1u64..=MAX_COUNT, 1..50),
    ) {
        let h = default_hist();
        let mut plain = Snapshot::new(Arc::new(Layout::default_layout()));
        for (v, n) in values.iter().zip(counts.iter().cycle()) {
            h.record_n(*v, *n, 0).unwrap();
            h.record(*v, 0).unwrap();
            plain.record_n(*v, *n).unwrap();
        }
        let s = h.snapshot();
        let parts = s.sum_parts();
        prop_assert!(parts.hi.is_finite() && parts.lo.is_finite());
        prop_assert!(s.sum().is_finite() && s.mean().unwrap().is_finite());
        prop_assert!(plain.sum().is_finite() && plain.mean().unwrap().is_finite());
        plain.merge(&s).unwrap();
        prop_assert!(plain.sum().is_finite());
    }
}

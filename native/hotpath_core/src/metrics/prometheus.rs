//! Prometheus text exposition format 0.0.4.
//!
//! Every family: `# HELP` (escaped), `# TYPE`, then its samples in one group. Histograms emit
//! cumulative `_bucket` samples in increasing `le` order ending with `le="+Inf"` equal to
//! `_count` (both from the same bucket counts), then `_sum` and `_count`. Summaries emit
//! `{quantile="q"}` samples, then `_sum` and `_count`. Label values escape `\`, `"` and newline.
//! Numbers use the canonical form (Go's `%g` shortest, plus `.0` for integral `le`/quantile
//! values): `1.0`, `0.005`, `1e-05`, `1e+06`, `+Inf`, `NaN`.

use super::{Kind, Metric, Registry, SeriesRead};
use crate::histogram::Snapshot;
use std::fmt::Write;

/// The counter of dropped events Hotpath appends.
pub const DROPPED_NAME: &str = "hotpath_metrics_dropped_total";
/// The gauge a cluster view appends: 1 for each node merged, 0 for each that did not answer.
pub const CLUSTER_UP_NAME: &str = "hotpath_metrics_cluster_up";

/// The canonical text of a float.
///
/// ```
/// use hotpath_core::metrics::prometheus::format_float;
/// assert_eq!(format_float(1.0), "1.0");
/// assert_eq!(format_float(0.005), "0.005");
/// assert_eq!(format_float(1e-5), "1e-05");
/// assert_eq!(format_float(1e21), "1e+21");
/// assert_eq!(format_float(123456.0), "123456.0");
/// assert_eq!(format_float(f64::INFINITY), "+Inf");
/// ```
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // Shortest round-trip digits and the decimal exponent, from Rust's `{:e}`.
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    if !(-4..21).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        let plain = format!("{v}");
        if plain.contains('.') {
            plain
        } else {
            plain + ".0"
        }
    }
}

fn escape_help(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_label(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// `{a="x",b="y"` plus `extra` (already formatted `name="value"`), closing `}`; nothing when
/// there are no labels at all.
fn labels(out: &mut String, names: &[String], values: &[String], extra: Option<(&str, &str)>) {
    if names.is_empty() && extra.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (n, v) in names.iter().zip(values) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(n);
        out.push_str("=\"");
        escape_label(out, v);
        out.push('"');
    }
    if let Some((n, v)) = extra {
        if !first {
            out.push(',');
        }
        out.push_str(n);
        out.push_str("=\"");
        out.push_str(v);
        out.push('"');
    }
    out.push('}');
}

fn sample(out: &mut String, name: &str, suffix: &str, label_text: &str, value: &str) {
    out.push_str(name);
    out.push_str(suffix);
    out.push_str(label_text);
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

fn render_metric(out: &mut String, metric: &Metric, now_ms: u64) {
    let spec = metric.spec();
    let type_name = match spec.kind {
        Kind::Counter | Kind::Sum => "counter",
        Kind::LastValue => "gauge",
        Kind::Summary => "summary",
        Kind::Distribution => "histogram",
    };
    out.push_str("# HELP ");
    out.push_str(&spec.name);
    out.push(' ');
    escape_help(out, &spec.help);
    out.push('\n');
    let _ = writeln!(out, "# TYPE {} {type_name}", spec.name);
    let mut label_text = String::new();
    for series in metric.series() {
        label_text.clear();
        labels(&mut label_text, &spec.labels, series.labels(), None);
        match series.read(now_ms) {
            SeriesRead::Counter(n) => sample(out, &spec.name, "", &label_text, &n.to_string()),
            SeriesRead::Sum(s) => sample(out, &spec.name, "", &label_text, &format_float(s)),
            SeriesRead::LastValue(Some(v)) => {
                sample(out, &spec.name, "", &label_text, &format_float(v))
            }
            SeriesRead::LastValue(None) => {}
            SeriesRead::Histogram(cumulative, window) => {
                let count;
                if spec.kind == Kind::Summary {
                    let view: &Snapshot = window.as_deref().unwrap_or(&cumulative);
                    for &q in &spec.quantiles {
                        let mut with_q = String::new();
                        labels(
                            &mut with_q,
                            &spec.labels,
                            series.labels(),
                            Some(("quantile", &format_float(q))),
                        );
                        let v = view.quantile(q).ok().flatten().unwrap_or(f64::NAN);
                        sample(out, &spec.name, "", &with_q, &format_float(v));
                    }
                    count = cumulative.count();
                } else {
                    let bounds = &spec.histogram.buckets;
                    let counts = cumulative.classic_counts();
                    let mut cumulated = 0u64;
                    let mut bucket = |le: &str, n: u64| {
                        let mut with_le = String::new();
                        labels(
                            &mut with_le,
                            &spec.labels,
                            series.labels(),
                            Some(("le", le)),
                        );
                        sample(out, &spec.name, "_bucket", &with_le, &n.to_string());
                    };
                    for (i, b) in bounds.iter().enumerate() {
                        cumulated += counts.get(i).copied().unwrap_or(0);
                        bucket(&format_float(*b), cumulated);
                    }
                    // `+Inf` and `_count` are the same number, from the same counters.
                    count = match counts.get(bounds.len()) {
                        Some(last) => cumulated + last,
                        None => cumulative.count(),
                    };
                    bucket("+Inf", count);
                }
                sample(
                    out,
                    &spec.name,
                    "_sum",
                    &label_text,
                    &format_float(cumulative.sum()),
                );
                sample(out, &spec.name, "_count", &label_text, &count.to_string());
            }
        }
    }
}

impl Registry {
    /// The whole registry in the text format 0.0.4, ending with Hotpath's dropped-events
    /// counter. `now_ms` positions summary windows.
    pub fn render_prometheus(&self, now_ms: u64) -> String {
        let mut out = String::with_capacity(4096);
        for metric in self.metrics() {
            render_metric(&mut out, metric, now_ms);
        }
        let _ = writeln!(
            out,
            "# HELP {DROPPED_NAME} Events Hotpath.Metrics could not record (missing or invalid measurement or tags), per metric.\n# TYPE {DROPPED_NAME} counter"
        );
        for metric in self.metrics() {
            let mut label_text = String::new();
            labels(
                &mut label_text,
                &["metric".to_string()],
                &[metric.spec().name.clone()],
                None,
            );
            sample(
                &mut out,
                DROPPED_NAME,
                "",
                &label_text,
                &metric.dropped().to_string(),
            );
        }
        out
    }
}

/// The [`CLUSTER_UP_NAME`] family: one sample per node, `1` if its series were merged into the
/// view, `0` if it did not answer. Appended after a merged registry's own text.
pub fn render_cluster_up(out: &mut String, nodes: &[(String, bool)]) {
    let _ = writeln!(
        out,
        "# HELP {CLUSTER_UP_NAME} Whether each node's series are in this cluster view (1) or the node did not answer (0).\n# TYPE {CLUSTER_UP_NAME} gauge"
    );
    let names = ["node".to_string()];
    for (node, up) in nodes {
        let mut label_text = String::new();
        labels(&mut label_text, &names, std::slice::from_ref(node), None);
        sample(
            out,
            CLUSTER_UP_NAME,
            "",
            &label_text,
            if *up { "1" } else { "0" },
        );
    }
}

//! The Prometheus text exposition format 0.0.4 and OpenMetrics 1.0 text.
//!
//! OpenMetrics differs in seven places: a counter family's name has no `_total` (its samples
//! do); a family that OpenMetrics cannot type as a counter is typed `unknown` under its full
//! name, with the same samples (a `sum`, whose value may go negative where an OpenMetrics
//! counter may not, and a counter whose name without `_total` is another family's, as when a
//! counter and a distribution share an event name); `# HELP` also escapes `"`; the text ends
//! with `# EOF`; counters, summaries and histograms have a `_created` sample (the series'
//! creation, Unix seconds; not in cluster views, whose series are made at each scrape);
//! exemplars follow a counter's `_total` sample and each histogram bucket that has one
//! (` # {trace_id="..."} value timestamp`); and its content type.
//!
//! Every family: `# HELP` (escaped), `# TYPE`, then its samples in one group. Histograms emit
//! cumulative `_bucket` samples in increasing `le` order ending with `le="+Inf"` equal to
//! `_count` (both from the same bucket counts), then `_sum` and `_count`. Summaries emit
//! `{quantile="q"}` samples, then `_sum` and `_count`. Label values escape `\`, `"` and newline.
//! Numbers use the canonical form (Go's `%g` shortest, plus `.0` for integral `le`/quantile
//! values): `1.0`, `0.005`, `1e-05`, `1e+06`, `+Inf`, `NaN`.

use super::exemplar::Exemplar;
use super::{Kind, Metric, Registry, Series, SeriesRead};
use crate::histogram::Snapshot;
use std::collections::HashSet;
use std::fmt::Write;

/// The counter of dropped events Hotpath appends.
pub const DROPPED_NAME: &str = "hotpath_metrics_dropped_total";
/// The gauge a cluster view appends: 1 for each node merged, 0 for each that did not answer.
pub const CLUSTER_UP_NAME: &str = "hotpath_metrics_cluster_up";
/// HELP of [`DROPPED_NAME`].
pub const DROPPED_HELP: &str =
    "Events Hotpath.Metrics could not record (missing or invalid measurement or tags), per metric.";
/// HELP of [`CLUSTER_UP_NAME`].
pub const CLUSTER_UP_HELP: &str =
    "Whether each node's series are in this cluster view (1) or the node did not answer (0).";

/// Which text format to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

/// The family name, suffix of its samples and type of a counter-like family named `name`: in
/// OpenMetrics a counter family is the name without `_total` and its samples carry it, unless
/// `taken` (the names other families use) has that name; in the Prometheus format both are
/// the metric's name.
fn counter_names<'n>(
    name: &'n str,
    format: Format,
    taken: &HashSet<String>,
) -> (&'n str, &'static str, &'static str) {
    match (format, name.strip_suffix("_total")) {
        (Format::Prometheus, _) => (name, "", "counter"),
        (Format::OpenMetrics, Some(family)) if !taken.contains(family) => {
            (family, "_total", "counter")
        }
        (Format::OpenMetrics, _) => (name, "", "unknown"),
    }
}

/// The names the families of `metrics` other than counters use in OpenMetrics: their own and
/// those of their samples.
fn names_taken<'m>(metrics: impl Iterator<Item = &'m Metric>) -> HashSet<String> {
    let mut taken = HashSet::new();
    for metric in metrics {
        let spec = metric.spec();
        let suffixes: &[&str] = match spec.kind {
            Kind::Counter | Kind::Sum => continue,
            Kind::LastValue => &[""],
            Kind::Summary => &["", "_sum", "_count", "_created"],
            Kind::Distribution => &["", "_bucket", "_sum", "_count", "_created"],
        };
        for suffix in suffixes {
            taken.insert(format!("{}{suffix}", spec.name));
        }
    }
    taken.insert(CLUSTER_UP_NAME.to_string());
    taken
}

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

fn escape_help(out: &mut String, text: &str, format: Format) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if format == Format::OpenMetrics => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// `# HELP` and `# TYPE` of a family.
fn family_header(out: &mut String, family: &str, help: &str, type_name: &str, format: Format) {
    out.push_str("# HELP ");
    out.push_str(family);
    out.push(' ');
    escape_help(out, help, format);
    out.push('\n');
    let _ = writeln!(out, "# TYPE {family} {type_name}");
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
    sample_with(out, name, suffix, label_text, value, None);
}

/// Unix milliseconds as OpenMetrics seconds (`1700000000.123`).
fn seconds(unix_ms: u64) -> String {
    format!("{}.{:03}", unix_ms / 1000, unix_ms % 1000)
}

/// A sample line, with an OpenMetrics exemplar when `exemplar` is some.
fn sample_with(
    out: &mut String,
    name: &str,
    suffix: &str,
    label_text: &str,
    value: &str,
    exemplar: Option<&Exemplar>,
) {
    out.push_str(name);
    out.push_str(suffix);
    out.push_str(label_text);
    out.push(' ');
    out.push_str(value);
    if let Some(e) = exemplar {
        out.push_str(" # {");
        for (i, (n, v)) in e.labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(n);
            out.push_str("=\"");
            escape_label(out, v);
            out.push('"');
        }
        let _ = write!(
            out,
            "}} {} {}",
            format_float(e.value),
            seconds(e.timestamp_ms)
        );
    }
    out.push('\n');
}

/// What OpenMetrics adds to a series: its `_created` sample (when `created`) and exemplars.
struct Extras<'s> {
    format: Format,
    created: bool,
    series: &'s Series,
}

impl Extras<'_> {
    fn open_metrics(&self) -> bool {
        self.format == Format::OpenMetrics
    }

    fn created(&self, out: &mut String, name: &str, label_text: &str) {
        if self.open_metrics() && self.created {
            sample(
                out,
                name,
                "_created",
                label_text,
                &seconds(self.series.created_ms()),
            );
        }
    }
}

fn render_metric(
    out: &mut String,
    metric: &Metric,
    now_ms: u64,
    format: Format,
    created: bool,
    taken: &HashSet<String>,
) {
    let spec = metric.spec();
    let (family, counter_suffix, type_name) = match spec.kind {
        Kind::Counter => counter_names(&spec.name, format, taken),
        // A sum may go down: OpenMetrics has no counter for it.
        Kind::Sum if format == Format::OpenMetrics => (spec.name.as_str(), "", "unknown"),
        Kind::Sum => (spec.name.as_str(), "", "counter"),
        Kind::LastValue => (spec.name.as_str(), "", "gauge"),
        Kind::Summary => (spec.name.as_str(), "", "summary"),
        Kind::Distribution => (spec.name.as_str(), "", "histogram"),
    };
    family_header(out, family, &spec.help, type_name, format);
    let mut label_text = String::new();
    for series in metric.series() {
        label_text.clear();
        labels(&mut label_text, &spec.labels, series.labels(), None);
        let extras = Extras {
            format,
            created,
            series: &series,
        };
        let exemplars = if extras.open_metrics() {
            series.exemplars()
        } else {
            Vec::new()
        };
        let exemplar = |i: usize| exemplars.get(i).and_then(Option::as_ref);
        match series.read(now_ms) {
            SeriesRead::Counter(n) if type_name == "counter" => {
                sample_with(
                    out,
                    family,
                    counter_suffix,
                    &label_text,
                    &n.to_string(),
                    exemplar(0),
                );
                extras.created(out, family, &label_text);
            }
            SeriesRead::Counter(n) => {
                sample(out, family, counter_suffix, &label_text, &n.to_string())
            }
            SeriesRead::Sum(s) => {
                sample(out, family, counter_suffix, &label_text, &format_float(s))
            }
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
                    let mut bucket = |le: &str, n: u64, i: usize| {
                        let mut with_le = String::new();
                        labels(
                            &mut with_le,
                            &spec.labels,
                            series.labels(),
                            Some(("le", le)),
                        );
                        sample_with(
                            out,
                            &spec.name,
                            "_bucket",
                            &with_le,
                            &n.to_string(),
                            exemplar(i),
                        );
                    };
                    for (i, b) in bounds.iter().enumerate() {
                        cumulated += counts.get(i).copied().unwrap_or(0);
                        bucket(&format_float(*b), cumulated, i);
                    }
                    // `+Inf` and `_count` are the same number, from the same counters.
                    count = match counts.get(bounds.len()) {
                        Some(last) => cumulated + last,
                        None => cumulative.count(),
                    };
                    bucket("+Inf", count, bounds.len());
                }
                sample(
                    out,
                    &spec.name,
                    "_sum",
                    &label_text,
                    &format_float(cumulative.sum()),
                );
                sample(out, &spec.name, "_count", &label_text, &count.to_string());
                extras.created(out, &spec.name, &label_text);
            }
        }
    }
}

impl Registry {
    /// The whole registry in the text format 0.0.4, ending with Hotpath's dropped-events
    /// counter. `now_ms` positions summary windows.
    pub fn render_prometheus(&self, now_ms: u64) -> String {
        self.render(now_ms, Format::Prometheus)
    }

    /// The whole registry in `format`, ending with Hotpath's dropped-events counter, without
    /// the closing [`finish`] (a cluster view appends its own family first).
    pub fn render(&self, now_ms: u64, format: Format) -> String {
        self.render_view(now_ms, format, true)
    }

    /// [`Registry::render`], with OpenMetrics' `_created` samples only when `created` (a
    /// cluster view's series are made at each scrape: their creation says nothing).
    pub fn render_view(&self, now_ms: u64, format: Format, created: bool) -> String {
        let mut out = String::with_capacity(4096);
        let taken = match format {
            Format::OpenMetrics => names_taken(self.metrics().iter()),
            Format::Prometheus => HashSet::new(),
        };
        for metric in self.metrics() {
            render_metric(&mut out, metric, now_ms, format, created, &taken);
        }
        let (family, suffix, type_name) = counter_names(DROPPED_NAME, format, &taken);
        family_header(&mut out, family, DROPPED_HELP, type_name, format);
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
                family,
                suffix,
                &label_text,
                &metric.dropped().to_string(),
            );
        }
        out
    }
}

/// Ends a text in `format`: OpenMetrics' `# EOF`, nothing for the Prometheus format.
pub fn finish(out: &mut String, format: Format) {
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
}

/// The [`CLUSTER_UP_NAME`] family: one sample per node, `1` if its series were merged into the
/// view, `0` if it did not answer. Appended after a merged registry's own text.
pub fn render_cluster_up(out: &mut String, nodes: &[(String, bool)], format: Format) {
    family_header(out, CLUSTER_UP_NAME, CLUSTER_UP_HELP, "gauge", format);
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

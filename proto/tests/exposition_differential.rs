//! Differential test: every sample of real exposition (Debian's `prometheus-node-exporter` and
//! Prometheus 2.42's own `/metrics`, captured in `testdata/` with `Accept: text/plain;version=0.0.4`)
//! must come out of surge's parser exactly as out of the `prometheus-parse` crate: name, label set,
//! value (NaN and ±Inf included) and timestamp.
//!
//! `prometheus-parse` folds histogram buckets and summary quantiles into one sample per series; they are
//! flattened back into `_bucket{le=..}` / `{quantile=..}` samples before comparing, and `le`/`quantile`
//! are compared as numbers since it keeps them as `f64`.
//!
//! Where `prometheus-parse` is itself wrong, the series is excluded by name in `KNOWN_WRONG`. It splits
//! label sets on `,` and `=` without honouring quotes and never unescapes, so a label value holding
//! `,`, `=`, `}` or a backslash would differ; the current captures hold none, so the list is empty.

// Test helpers outside #[test] fns: a panic here is a failed test, which is what we want.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use surge_proto::exposition::{Entry, Format, Parser};

/// One flattened sample: name, sorted labels, value bits (all NaNs alike), timestamp.
type Flat = (String, BTreeMap<String, String>, u64, Option<i64>);

/// Metric names where prometheus-parse is known to be wrong (see the module comment).
const KNOWN_WRONG: &[&str] = &[];

fn value_bits(v: f64) -> u64 {
    if v.is_nan() {
        f64::NAN.to_bits()
    } else {
        v.to_bits()
    }
}

fn normalise(labels: &mut BTreeMap<String, String>) {
    for key in ["le", "quantile"] {
        if let Some(v) = labels.get_mut(key) {
            let f: f64 = match v.as_str() {
                "+Inf" => f64::INFINITY,
                other => other.parse().unwrap(),
            };
            *v = format!("{f:?}");
        }
    }
}

fn ours(body: &str) -> Vec<Flat> {
    let mut out = Vec::new();
    for entry in Parser::new(body.as_bytes(), Format::Text) {
        if let Entry::Sample(s) = entry.unwrap() {
            let mut labels: BTreeMap<String, String> = s
                .labels()
                .map(|(n, v)| (n.to_string(), v.into_owned()))
                .collect();
            normalise(&mut labels);
            out.push((
                s.name.to_string(),
                labels,
                value_bits(s.value),
                s.timestamp_ms,
            ));
        }
    }
    out
}

fn theirs(body: &str) -> Vec<Flat> {
    use prometheus_parse::{Scrape, Value};
    // prometheus-parse stamps lines without a timestamp with "now"; a probe line learns that instant.
    let probed = format!("{body}\n{PROBE} 1\n");
    let scrape = Scrape::parse(probed.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let now = scrape
        .samples
        .iter()
        .find(|s| s.metric == PROBE)
        .unwrap()
        .timestamp;
    let mut out = Vec::new();
    for s in scrape.samples.into_iter().filter(|s| s.metric != PROBE) {
        let labels: BTreeMap<String, String> = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let ts = (s.timestamp != now).then(|| s.timestamp.timestamp_millis());
        let mut push = |name: String, mut labels: BTreeMap<String, String>, v: f64| {
            normalise(&mut labels);
            out.push((name, labels, value_bits(v), ts));
        };
        match s.value {
            Value::Histogram(buckets) => {
                for b in buckets {
                    let mut l = labels.clone();
                    l.insert("le".into(), format!("{:?}", b.less_than));
                    push(format!("{}_bucket", s.metric), l, b.count);
                }
            }
            Value::Summary(quantiles) => {
                for q in quantiles {
                    let mut l = labels.clone();
                    l.insert("quantile".into(), format!("{:?}", q.quantile));
                    push(s.metric.clone(), l, q.count);
                }
            }
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => push(s.metric, labels, v),
        }
    }
    out
}

const PROBE: &str = "surge_probe_now";

fn compare(file: &str) {
    let path = format!("{}/testdata/{file}", env!("CARGO_MANIFEST_DIR"));
    let body = std::fs::read_to_string(path).unwrap();
    let keep = |f: &Flat| !KNOWN_WRONG.contains(&f.0.as_str());
    let mut a: Vec<Flat> = ours(&body).into_iter().filter(keep).collect();
    let mut b: Vec<Flat> = theirs(&body).into_iter().filter(keep).collect();
    assert!(a.len() > 300, "{file}: only {} samples", a.len());
    a.sort();
    b.sort();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "{file}: first difference");
    }
    assert_eq!(a.len(), b.len(), "{file}: sample counts differ");
}

#[test]
fn node_exporter_matches_prometheus_parse() {
    compare("node_exporter.prom");
}

#[test]
fn prometheus_matches_prometheus_parse() {
    compare("prometheus.prom");
}

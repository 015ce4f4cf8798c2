//! The CloudWatch embedded metric format (EMF): points → JSON log events. Pure: no AWS types, no I/O.
//!
//! One document holds the points of one timestamp, one storage resolution and one dimension set:
//!
//! ```json
//! {"_aws":{"Timestamp":1700000000000,"CloudWatchMetrics":[{"Namespace":"surge",
//!   "Dimensions":[["pod","namespace"]],"Metrics":[{"Name":"up","StorageResolution":1}]}]},
//!  "pod":"web-1","namespace":"shop","up":1}
//! ```
//!
//! Points of one metric in one document form a value array (`"m":[1,2]`, CloudWatch aggregates them); a
//! histogram is `{"Values":[bounds…],"Counts":[counts…]}`. A document is split, never dropped, before it
//! would cross a limit: 100 metrics per directive, 100 values per metric, and the event size
//! (`max_event_bytes`, estimated from above). The 30-dimensions limit is kept by the layout (at most 30
//! dimension labels). A metric whose name equals a dimension name or `_aws` cannot be written as a
//! member and is dropped (`name_collision`).

use std::collections::HashMap;

use crate::points::{Dimensions, FastMap, Point, PointValue};

/// Metric definitions per directive.
pub const MAX_METRICS_PER_DOCUMENT: usize = 100;
/// Values per metric array.
pub const MAX_VALUES_PER_METRIC: usize = 100;
/// The event size used when none is configured: 256 KiB, the limit the EMF specification names (the
/// PutLogEvents API itself allows 1 MiB minus 26 bytes).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 256 * 1024;
/// A float written by [`push_f64`] is at most this long (`-2.2250738585072014e-308`).
const MAX_FLOAT_CHARS: usize = 24;

/// One EMF document, ready to be a log line or a log event.
#[derive(Debug, Clone, PartialEq)]
pub struct EmfEvent {
    pub timestamp_ms: i64,
    pub json: String,
    /// Input samples the document stands for.
    pub samples: usize,
}

/// Documents of a set of points, and points refused.
#[derive(Debug, Default)]
pub struct Documents {
    /// In timestamp order.
    pub events: Vec<EmfEvent>,
    pub dropped: Vec<(&'static str, usize)>,
}

/// Writes documents in `namespace`, each at most `max_event_bytes` long.
///
/// Speed (the agent encodes every sample): integers are written with `itoa` rather than `std::fmt`
/// (floats keep `{:?}`, see [`push_f64`]), a dimension set's JSON is rendered once when the set is interned
/// ([`Dimensions`]), a draft finds its metrics through a map rather than a scan, and a single value
/// is held without an allocation of its own.
#[derive(Debug, Clone)]
pub struct EmfEncoder {
    /// The namespace as a JSON string, quotes included.
    namespace_json: String,
    /// What every document's size estimate starts from: the fixed text and the namespace.
    base_bytes: usize,
    max_event_bytes: usize,
}

/// The drafts of one (timestamp, resolution, dimension set), in the order they were opened.
type DraftGroup<'p> = Vec<Draft<'p>>;

/// A document being filled.
struct Draft<'p> {
    timestamp_ms: i64,
    resolution: u8,
    dims: &'p Dimensions,
    /// Metric name → its values (or one distribution), in first-seen order; names are distinct.
    metrics: Vec<(&'p str, Member<'p>)>,
    /// Metric name → its index in `metrics`.
    index: FastMap<&'p str, usize>,
    bytes: usize,
    samples: usize,
}

enum Member<'p> {
    /// The first value, and any further ones (no allocation for the usual single value).
    Values(f64, Vec<f64>),
    Distribution(&'p [f64], &'p [f64]),
}

impl EmfEncoder {
    pub fn new(namespace: impl Into<String>, max_event_bytes: usize) -> Self {
        let namespace = namespace.into();
        let mut namespace_json = String::with_capacity(namespace.len() + 2);
        push_json_str(&mut namespace_json, &namespace);
        EmfEncoder {
            // `{"_aws":{"Timestamp":…,"CloudWatchMetrics":[{"Namespace":"…","Dimensions":[[…]],"Metrics":[]}]}}`
            base_bytes: 100 + escaped_len(&namespace),
            namespace_json,
            max_event_bytes: max_event_bytes.max(1024),
        }
    }

    /// The documents of `points`.
    pub fn encode(&self, points: &[Point]) -> Documents {
        let mut out = Documents::default();
        let mut collisions = 0;
        // Open drafts per (timestamp, resolution, dimension set): usually one each. Points of one
        // key mostly arrive together, so the last group used is tried before the map.
        let mut groups: Vec<((i64, u8, u32), DraftGroup<'_>)> = Vec::new();
        let mut by_key: HashMap<(i64, u8, u32), usize> = HashMap::new();
        let mut last: Option<((i64, u8, u32), usize)> = None;
        for p in points {
            if p.name.as_ref() == "_aws" || p.dims.pairs().iter().any(|(k, _)| **k == *p.name) {
                collisions += p.samples;
                continue;
            }
            let key = (p.timestamp_ms, p.resolution, p.dims.id());
            let group = match last {
                Some((k, g)) if k == key => g,
                _ => {
                    let g = *by_key.entry(key).or_insert_with(|| {
                        groups.push((key, Vec::new()));
                        groups.len() - 1
                    });
                    last = Some((key, g));
                    g
                }
            };
            if let Some((_, drafts)) = groups.get_mut(group) {
                self.place(drafts, p);
            }
        }
        if collisions > 0 {
            out.dropped.push(("name_collision", collisions));
        }
        // Stable: groups of one timestamp keep the order they were opened in.
        groups.sort_by_key(|(k, _)| k.0);
        out.events
            .reserve(groups.iter().map(|(_, d)| d.len()).sum());
        for (_, drafts) in &groups {
            for draft in drafts {
                out.events.push(self.render(draft));
            }
        }
        out
    }

    /// Puts `p` into the first draft with room for it, or a new one.
    fn place<'p>(&self, drafts: &mut Vec<Draft<'p>>, p: &'p Point) {
        match &p.value {
            PointValue::Single(v) => {
                let grow_new = metric_bytes(&p.name) + MAX_FLOAT_CHARS;
                for d in drafts.iter_mut() {
                    if d.try_add_value(&p.name, *v, p.samples, grow_new, self.max_event_bytes) {
                        return;
                    }
                }
                let mut d = self.draft(p);
                if !d.try_add_value(&p.name, *v, p.samples, grow_new, usize::MAX) {
                    return;
                }
                drafts.push(d);
            }
            PointValue::Distribution { values, counts } => {
                // More than 100 buckets: one distribution per 100, each in its own document.
                let pieces = values
                    .chunks(MAX_VALUES_PER_METRIC)
                    .zip(counts.chunks(MAX_VALUES_PER_METRIC));
                let mut samples = p.samples;
                for (vs, cs) in pieces {
                    let placed = drafts.iter_mut().any(|d| {
                        d.try_add_distribution(&p.name, vs, cs, samples, self.max_event_bytes)
                    });
                    if !placed {
                        let mut d = self.draft(p);
                        d.try_add_distribution(&p.name, vs, cs, samples, usize::MAX);
                        drafts.push(d);
                    }
                    samples = 0;
                }
            }
        }
    }

    fn draft<'p>(&self, p: &'p Point) -> Draft<'p> {
        Draft {
            timestamp_ms: p.timestamp_ms,
            resolution: p.resolution,
            dims: &p.dims,
            metrics: Vec::new(),
            index: FastMap::default(),
            bytes: self.base_bytes + p.dims.emf_bytes(),
            samples: 0,
        }
    }

    fn render(&self, d: &Draft<'_>) -> EmfEvent {
        let mut s = String::with_capacity(d.bytes);
        s.push_str("{\"_aws\":{\"Timestamp\":");
        s.push_str(itoa::Buffer::new().format(d.timestamp_ms));
        s.push_str(",\"CloudWatchMetrics\":[{\"Namespace\":");
        s.push_str(&self.namespace_json);
        s.push_str(",\"Dimensions\":[[");
        s.push_str(d.dims.emf_names_json());
        s.push_str("]],\"Metrics\":[");
        let mut resolution = itoa::Buffer::new();
        let resolution = resolution.format(d.resolution);
        for (i, (name, _)) in d.metrics.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str("{\"Name\":");
            push_json_str(&mut s, name);
            s.push_str(",\"StorageResolution\":");
            s.push_str(resolution);
            s.push('}');
        }
        s.push_str("]}]}");
        s.push_str(d.dims.emf_members_json());
        for (name, member) in &d.metrics {
            s.push(',');
            push_json_str(&mut s, name);
            s.push(':');
            match member {
                Member::Values(v, more) if more.is_empty() => push_f64(&mut s, *v),
                Member::Values(v, more) => {
                    s.push('[');
                    push_f64(&mut s, *v);
                    for v in more {
                        s.push(',');
                        push_f64(&mut s, *v);
                    }
                    s.push(']');
                }
                Member::Distribution(vs, cs) => {
                    s.push_str("{\"Values\":");
                    push_array(&mut s, vs);
                    s.push_str(",\"Counts\":");
                    push_array(&mut s, cs);
                    s.push('}');
                }
            }
        }
        s.push('}');
        EmfEvent {
            timestamp_ms: d.timestamp_ms,
            json: s,
            samples: d.samples,
        }
    }
}

impl<'p> Draft<'p> {
    /// Adds one value of `name` if this draft has room for it within `max_bytes`; `grow_new` is what
    /// the metric adds when it is new here.
    fn try_add_value(
        &mut self,
        name: &'p str,
        v: f64,
        samples: usize,
        grow_new: usize,
        max_bytes: usize,
    ) -> bool {
        match self.index.get(name) {
            Some(&i) => {
                let Some((_, Member::Values(_, more))) = self.metrics.get_mut(i) else {
                    return false;
                };
                let grow = MAX_FLOAT_CHARS + 3;
                if 1 + more.len() >= MAX_VALUES_PER_METRIC || self.bytes + grow > max_bytes {
                    return false;
                }
                more.push(v);
                self.bytes += grow;
            }
            None => {
                if self.metrics.len() >= MAX_METRICS_PER_DOCUMENT
                    || self.bytes + grow_new > max_bytes
                {
                    return false;
                }
                self.index.insert(name, self.metrics.len());
                self.metrics.push((name, Member::Values(v, Vec::new())));
                self.bytes += grow_new;
            }
        }
        self.samples += samples;
        true
    }

    fn try_add_distribution(
        &mut self,
        name: &'p str,
        values: &'p [f64],
        counts: &'p [f64],
        samples: usize,
        max_bytes: usize,
    ) -> bool {
        let grow = metric_bytes(name) + 30 + (values.len() + counts.len()) * (MAX_FLOAT_CHARS + 1);
        if self.metrics.len() >= MAX_METRICS_PER_DOCUMENT
            || self.index.contains_key(name)
            || self.bytes + grow > max_bytes
        {
            return false;
        }
        self.index.insert(name, self.metrics.len());
        self.metrics
            .push((name, Member::Distribution(values, counts)));
        self.bytes += grow;
        self.samples += samples;
        true
    }
}

/// Bytes a metric adds besides its values: its directive entry and its member name.
fn metric_bytes(name: &str) -> usize {
    2 * escaped_len(name) + 40
}

/// What a dimension set adds to a document's size estimate (its names in the directive, its
/// members).
pub(crate) fn dimensions_bytes(pairs: &[(String, String)]) -> usize {
    pairs
        .iter()
        .map(|(k, v)| 2 * escaped_len(k) + escaped_len(v) + 10)
        .sum()
}

/// A dimension set's names as the body of a JSON list: `"pod","namespace"`.
pub(crate) fn dimension_names_json(pairs: &[(String, String)]) -> String {
    let mut s = String::new();
    for (i, (k, _)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        push_json_str(&mut s, k);
    }
    s
}

/// A dimension set as JSON members following others: `,"pod":"web-1","namespace":"shop"`.
pub(crate) fn dimension_members_json(pairs: &[(String, String)]) -> String {
    let mut s = String::new();
    for (k, v) in pairs {
        s.push(',');
        push_json_str(&mut s, k);
        s.push(':');
        push_json_str(&mut s, v);
    }
    s
}

fn push_array(s: &mut String, vs: &[f64]) {
    s.push('[');
    for (i, v) in vs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        push_f64(s, *v);
    }
    s.push(']');
}

/// Finite floats only (points are finite by construction). Integral values below 10^15 are written
/// as integers (with `itoa`); others as Rust's `{:?}` writes them (valid JSON: `0.25`, `1e-7`,
/// `1e16`). `ryu` would be faster but breaks ties differently (`-897510727059812.2` where `{:?}` writes
/// `…812.3`), and the output is kept byte-identical.
fn push_f64(s: &mut String, v: f64) {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        s.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        use std::fmt::Write as _;
        let _ = write!(s, "{v:?}");
    }
}

/// The length of `v` as a JSON string, quotes included.
fn escaped_len(v: &str) -> usize {
    if !needs_escape(v) {
        return 2 + v.len();
    }
    2 + v
        .chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum::<usize>()
}

fn needs_escape(v: &str) -> bool {
    v.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)
}

/// Appends `v` as a JSON string.
pub fn push_json_str(s: &mut String, v: &str) {
    s.push('"');
    if !needs_escape(v) {
        s.push_str(v);
    } else {
        for c in v.chars() {
            match c {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                '\n' => s.push_str("\\n"),
                '\r' => s.push_str("\\r"),
                '\t' => s.push_str("\\t"),
                c if (c as u32) < 0x20 => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    let b = c as u8;
                    s.push_str("\\u00");
                    s.push(char::from(HEX[usize::from(b >> 4)]));
                    s.push(char::from(HEX[usize::from(b & 0xf)]));
                }
                c => s.push(c),
            }
        }
    }
    s.push('"');
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};

    use super::*;

    fn dims(id: u32, pairs: &[(&str, &str)]) -> Arc<Dimensions> {
        Arc::new(Dimensions::new(
            id,
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ))
    }

    fn point(name: &str, d: &Arc<Dimensions>, ts: i64, v: f64) -> Point {
        Point {
            name: Arc::from(name),
            dims: d.clone(),
            timestamp_ms: ts,
            resolution: 1,
            value: PointValue::Single(v),
            samples: 1,
        }
    }

    fn parse(e: &EmfEvent) -> Value {
        serde_json::from_str(&e.json).unwrap()
    }

    #[test]
    fn one_document_per_timestamp_and_dimension_set() {
        let a = dims(0, &[("pod", "a\"b"), ("namespace", "n")]);
        let b = dims(1, &[]);
        let points = vec![
            point("up", &a, 1000, 1.0),
            point("load", &a, 1000, 0.25),
            point("up", &b, 1000, 1.0),
            point("up", &a, 2000, 0.0),
            point("load", &a, 1000, 0.5),
        ];
        let docs = EmfEncoder::new("surge", DEFAULT_MAX_EVENT_BYTES).encode(&points);
        assert!(docs.dropped.is_empty());
        let got: Vec<Value> = docs.events.iter().map(parse).collect();
        assert_eq!(
            got[0],
            json!({"_aws": {"Timestamp": 1000, "CloudWatchMetrics": [{"Namespace": "surge",
                "Dimensions": [["pod", "namespace"]],
                "Metrics": [{"Name": "up", "StorageResolution": 1}, {"Name": "load", "StorageResolution": 1}]}]},
              "pod": "a\"b", "namespace": "n", "up": 1, "load": [0.25, 0.5]})
        );
        assert_eq!(
            got[1],
            json!({"_aws": {"Timestamp": 1000, "CloudWatchMetrics": [{"Namespace": "surge",
                "Dimensions": [[]], "Metrics": [{"Name": "up", "StorageResolution": 1}]}]}, "up": 1})
        );
        assert_eq!(got[2]["_aws"]["Timestamp"], 2000);
        assert_eq!(docs.events.iter().map(|e| e.samples).sum::<usize>(), 5);
    }

    #[test]
    fn documents_split_at_100_metrics_and_100_values_and_nothing_is_lost() {
        let d = dims(0, &[("pod", "p")]);
        let mut points = Vec::new();
        for i in 0..250 {
            points.push(point(&format!("m{i}"), &d, 5, i as f64));
        }
        for i in 0..230 {
            points.push(point("many", &d, 5, i as f64));
        }
        let docs = EmfEncoder::new("ns", DEFAULT_MAX_EVENT_BYTES).encode(&points);
        let mut seen_metrics = 0;
        let mut many = Vec::new();
        for e in &docs.events {
            let v = parse(e);
            let metrics = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap();
            assert!(metrics.len() <= MAX_METRICS_PER_DOCUMENT);
            for m in metrics {
                let name = m["Name"].as_str().unwrap();
                match &v[name] {
                    Value::Array(vs) => {
                        assert!(vs.len() <= MAX_VALUES_PER_METRIC);
                        if name == "many" {
                            many.extend(vs.iter().map(|x| x.as_f64().unwrap()));
                        } else {
                            seen_metrics += vs.len();
                        }
                    }
                    x => {
                        if name == "many" {
                            many.push(x.as_f64().unwrap());
                        } else {
                            seen_metrics += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(seen_metrics, 250);
        many.sort_by(f64::total_cmp);
        assert_eq!(many, (0..230).map(|i| i as f64).collect::<Vec<_>>());
        assert_eq!(docs.events.iter().map(|e| e.samples).sum::<usize>(), 480);
    }

    #[test]
    fn documents_split_before_the_event_size_limit() {
        let d = dims(0, &[]);
        let points: Vec<Point> = (0..90)
            .map(|i| point(&format!("{}{i}", "n".repeat(200)), &d, 5, 1.0 / 3.0))
            .collect();
        let docs = EmfEncoder::new("ns", 8 * 1024).encode(&points);
        assert!(docs.events.len() > 1);
        for e in &docs.events {
            assert!(e.json.len() <= 8 * 1024, "{}", e.json.len());
            parse(e);
        }
        assert_eq!(docs.events.iter().map(|e| e.samples).sum::<usize>(), 90);
    }

    #[test]
    fn histograms_are_values_and_counts_and_collisions_are_dropped() {
        let d = dims(0, &[("pod", "p")]);
        let h = Point {
            value: PointValue::Distribution {
                values: vec![0.1, 0.5],
                counts: vec![2.0, 3.0],
            },
            samples: 3,
            ..point("latency", &d, 5, 0.0)
        };
        let docs =
            EmfEncoder::new("ns", DEFAULT_MAX_EVENT_BYTES).encode(&[h, point("pod", &d, 5, 1.0)]);
        assert_eq!(docs.dropped, vec![("name_collision", 1)]);
        let v = parse(&docs.events[0]);
        assert_eq!(
            v["latency"],
            json!({"Values": [0.1, 0.5], "Counts": [2, 3]})
        );
        assert_eq!(docs.events[0].samples, 3);
    }
}

//! Differential tests: the encoders as they were before they were made fast (`emf.rs` and `pmd.rs` at
//! 17976ea, copied here verbatim but for the accessors of `Dimensions`) against the current ones, on
//! random points. The EMF documents must be byte-identical; the PutMetricData calls must carry the
//! same data in the same order.

#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;

use proptest::prelude::*;
use surge_cloudwatch::emf::EmfEncoder;
use surge_cloudwatch::points::{Dimensions, Point, PointValue};

mod reference {
    pub mod emf {
        use std::collections::HashMap;
        use std::fmt::Write as _;

        use surge_cloudwatch::points::{Dimensions, Point, PointValue};

        /// Metric definitions per directive.
        const MAX_METRICS_PER_DOCUMENT: usize = 100;
        /// Values per metric array.
        const MAX_VALUES_PER_METRIC: usize = 100;
        /// The event size used when none is configured: 256 KiB, the limit the EMF specification names (the
        /// PutLogEvents API itself allows 1 MiB minus 26 bytes).
        const DEFAULT_MAX_EVENT_BYTES: usize = 256 * 1024;
        /// A float written by `{:?}` is at most this long (`-2.2250738585072014e-308`).
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
        #[derive(Debug, Clone)]
        pub struct EmfEncoder {
            namespace: String,
            max_event_bytes: usize,
        }

        /// A document being filled.
        struct Draft<'p> {
            timestamp_ms: i64,
            resolution: u8,
            dims: &'p Dimensions,
            /// Metric name → its values (or one distribution), in first-seen order.
            metrics: Vec<(&'p str, Member<'p>)>,
            bytes: usize,
            samples: usize,
        }

        enum Member<'p> {
            Values(Vec<f64>),
            Distribution(&'p [f64], &'p [f64]),
        }

        impl EmfEncoder {
            pub fn new(namespace: impl Into<String>, max_event_bytes: usize) -> Self {
                EmfEncoder {
                    namespace: namespace.into(),
                    max_event_bytes: max_event_bytes.max(1024),
                }
            }

            /// The documents of `points`.
            pub fn encode(&self, points: &[Point]) -> Documents {
                let mut out = Documents::default();
                let mut collisions = 0;
                // Open drafts per (timestamp, resolution, dimension set): usually one each.
                let mut open: HashMap<(i64, u8, u32), Vec<Draft<'_>>> = HashMap::new();
                let mut order: Vec<(i64, u8, u32)> = Vec::new();
                for p in points {
                    if p.name.as_ref() == "_aws"
                        || p.dims.pairs().iter().any(|(k, _)| **k == *p.name)
                    {
                        collisions += p.samples;
                        continue;
                    }
                    let key = (p.timestamp_ms, p.resolution, p.dims.id());
                    let drafts = open.entry(key).or_insert_with(|| {
                        order.push(key);
                        Vec::new()
                    });
                    self.place(drafts, p);
                }
                if collisions > 0 {
                    out.dropped.push(("name_collision", collisions));
                }
                order.sort_by_key(|k| k.0);
                for key in order {
                    for draft in open.remove(&key).unwrap_or_default() {
                        out.events.push(self.render(&draft));
                    }
                }
                out
            }

            /// Puts `p` into the first draft with room for it, or a new one.
            fn place<'p>(&self, drafts: &mut Vec<Draft<'p>>, p: &'p Point) {
                match &p.value {
                    PointValue::Single(v) => {
                        for d in drafts.iter_mut() {
                            if d.try_add_value(&p.name, *v, p.samples, self.max_event_bytes) {
                                return;
                            }
                        }
                        let mut d = self.draft(p);
                        if !d.try_add_value(&p.name, *v, p.samples, usize::MAX) {
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
                                d.try_add_distribution(
                                    &p.name,
                                    vs,
                                    cs,
                                    samples,
                                    self.max_event_bytes,
                                )
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
                // `{"_aws":{"Timestamp":…,"CloudWatchMetrics":[{"Namespace":"…","Dimensions":[[…]],"Metrics":[]}]}}`
                let mut bytes = 100 + escaped_len(&self.namespace);
                for (k, v) in p.dims.pairs() {
                    bytes += 2 * escaped_len(k) + escaped_len(v) + 10;
                }
                Draft {
                    timestamp_ms: p.timestamp_ms,
                    resolution: p.resolution,
                    dims: &p.dims,
                    metrics: Vec::new(),
                    bytes,
                    samples: 0,
                }
            }

            fn render(&self, d: &Draft<'_>) -> EmfEvent {
                let mut s = String::with_capacity(d.bytes);
                s.push_str("{\"_aws\":{\"Timestamp\":");
                let _ = write!(s, "{}", d.timestamp_ms);
                s.push_str(",\"CloudWatchMetrics\":[{\"Namespace\":");
                push_json_str(&mut s, &self.namespace);
                s.push_str(",\"Dimensions\":[[");
                for (i, (k, _)) in d.dims.pairs().iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    push_json_str(&mut s, k);
                }
                s.push_str("]],\"Metrics\":[");
                for (i, (name, _)) in d.metrics.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    s.push_str("{\"Name\":");
                    push_json_str(&mut s, name);
                    let _ = write!(s, ",\"StorageResolution\":{}}}", d.resolution);
                }
                s.push_str("]}]}");
                for (k, v) in d.dims.pairs() {
                    s.push(',');
                    push_json_str(&mut s, k);
                    s.push(':');
                    push_json_str(&mut s, v);
                }
                for (name, member) in &d.metrics {
                    s.push(',');
                    push_json_str(&mut s, name);
                    s.push(':');
                    match member {
                        Member::Values(vs) if vs.len() == 1 => push_f64(&mut s, vs[0]),
                        Member::Values(vs) => push_array(&mut s, vs),
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
            /// Adds one value of `name` if this draft has room for it within `max_bytes`.
            fn try_add_value(
                &mut self,
                name: &'p str,
                v: f64,
                samples: usize,
                max_bytes: usize,
            ) -> bool {
                let pos = self.metrics.iter().position(|(n, _)| *n == name);
                match pos {
                    Some(i) => {
                        let Some((_, Member::Values(vs))) = self.metrics.get_mut(i) else {
                            return false;
                        };
                        let grow = MAX_FLOAT_CHARS + 3;
                        if vs.len() >= MAX_VALUES_PER_METRIC || self.bytes + grow > max_bytes {
                            return false;
                        }
                        vs.push(v);
                        self.bytes += grow;
                    }
                    None => {
                        let grow = metric_bytes(name) + MAX_FLOAT_CHARS;
                        if self.metrics.len() >= MAX_METRICS_PER_DOCUMENT
                            || self.bytes + grow > max_bytes
                        {
                            return false;
                        }
                        self.metrics.push((name, Member::Values(vec![v])));
                        self.bytes += grow;
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
                let grow =
                    metric_bytes(name) + 30 + (values.len() + counts.len()) * (MAX_FLOAT_CHARS + 1);
                if self.metrics.len() >= MAX_METRICS_PER_DOCUMENT
                    || self.metrics.iter().any(|(n, _)| *n == name)
                    || self.bytes + grow > max_bytes
                {
                    return false;
                }
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

        /// Finite floats only (points are finite by construction); `{:?}` is valid JSON for them (`1.0`,
        /// `1e-7`).
        fn push_f64(s: &mut String, v: f64) {
            if v.fract() == 0.0 && v.abs() < 1e15 {
                let _ = write!(s, "{}", v as i64);
            } else {
                let _ = write!(s, "{v:?}");
            }
        }

        /// The length of `v` as a JSON string, quotes included.
        fn escaped_len(v: &str) -> usize {
            2 + v
                .chars()
                .map(|c| match c {
                    '"' | '\\' | '\n' | '\r' | '\t' => 2,
                    c if (c as u32) < 0x20 => 6,
                    c => c.len_utf8(),
                })
                .sum::<usize>()
        }

        /// Appends `v` as a JSON string.
        fn push_json_str(s: &mut String, v: &str) {
            s.push('"');
            if !v.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
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
                            let _ = write!(s, "\\u{:04x}", c as u32);
                        }
                        c => s.push(c),
                    }
                }
            }
            s.push('"');
        }
    }

    pub mod pmd {
        use std::collections::HashMap;
        use std::sync::Arc;

        use surge_cloudwatch::pmd::{
            MAX_AGE_MS, MAX_AHEAD_MS, MAX_CALL_BYTES, MAX_DATA_PER_CALL, MAX_VALUES_PER_DATUM,
        };
        use surge_cloudwatch::points::{Point, PointValue};
        use surge_sender::{Cut, Encoded};

        /// One datum before it becomes the SDK's type (so cutting is testable without it).
        #[derive(Debug, Clone, PartialEq)]
        pub struct Datum {
            pub name: Arc<str>,
            pub dims: Vec<(String, String)>,
            pub timestamp_ms: i64,
            pub resolution: u8,
            pub values: Vec<f64>,
            pub counts: Vec<f64>,
            pub samples: usize,
        }

        impl Datum {
            /// An upper bound of the datum's encoded size (CBOR or query; field names included).
            fn bytes(&self) -> usize {
                96 + self.name.len()
                    + self
                        .dims
                        .iter()
                        .map(|(k, v)| k.len() + v.len() + 24)
                        .sum::<usize>()
                    + self.values.len() * 20
            }
        }

        /// Groups points into data and cuts them into calls; `now_ms` bounds the accepted timestamps.
        pub fn cut_calls(points: &[Point], now_ms: i64) -> Encoded<Vec<Datum>> {
            let mut out = Encoded::default();
            let mut out_of_range = 0;
            // (name, dims, timestamp, resolution) → open datum index.
            let mut open: HashMap<(&str, u32, i64, u8), usize> = HashMap::new();
            let mut data: Vec<Datum> = Vec::new();
            for p in points {
                if p.timestamp_ms < now_ms - MAX_AGE_MS || p.timestamp_ms > now_ms + MAX_AHEAD_MS {
                    out_of_range += p.samples;
                    continue;
                }
                let key = (p.name.as_ref(), p.dims.id(), p.timestamp_ms, p.resolution);
                let pairs: Vec<(f64, f64)> = match &p.value {
                    PointValue::Single(v) => vec![(*v, 1.0)],
                    PointValue::Distribution { values, counts } => {
                        values.iter().copied().zip(counts.iter().copied()).collect()
                    }
                };
                let mut samples = p.samples;
                for (v, c) in pairs {
                    let idx = match open.get(&key) {
                        Some(&i) => i,
                        None => new_datum(&mut data, &mut open, key, p),
                    };
                    let idx = match data.get_mut(idx) {
                        Some(d)
                            if d.values.contains(&v) || d.values.len() < MAX_VALUES_PER_DATUM =>
                        {
                            idx
                        }
                        _ => new_datum(&mut data, &mut open, key, p),
                    };
                    if let Some(d) = data.get_mut(idx) {
                        match d.values.iter().position(|x| *x == v) {
                            Some(i) => d.counts[i] += c,
                            None => {
                                d.values.push(v);
                                d.counts.push(c);
                            }
                        }
                        d.samples += samples;
                        samples = 0;
                    }
                }
            }
            let mut current: Option<(Cut<Vec<Datum>>, usize)> = None;
            for d in data {
                let size = d.bytes();
                if let Some((cut, bytes)) = &current
                    && (cut.request.len() >= MAX_DATA_PER_CALL || bytes + size > MAX_CALL_BYTES)
                {
                    out.requests.extend(current.take().map(|c| c.0));
                }
                let (cut, bytes) = current.get_or_insert_with(|| {
                    (
                        Cut {
                            request: Vec::new(),
                            samples: 0,
                            highest_timestamp_ms: None,
                        },
                        200,
                    )
                });
                cut.samples += d.samples;
                cut.highest_timestamp_ms = cut.highest_timestamp_ms.max(Some(d.timestamp_ms));
                *bytes += size;
                cut.request.push(d);
            }
            out.requests.extend(current.map(|c| c.0));
            if out_of_range > 0 {
                out.dropped.push(("timestamp_out_of_range", out_of_range));
            }
            out
        }

        fn new_datum<'p>(
            data: &mut Vec<Datum>,
            open: &mut HashMap<(&'p str, u32, i64, u8), usize>,
            key: (&'p str, u32, i64, u8),
            p: &Point,
        ) -> usize {
            data.push(Datum {
                name: p.name.clone(),
                dims: p.dims.pairs().to_vec(),
                timestamp_ms: p.timestamp_ms,
                resolution: p.resolution,
                values: Vec::new(),
                counts: Vec::new(),
                samples: 0,
            });
            let idx = data.len() - 1;
            open.insert(key, idx);
            idx
        }
    }
}

const NOW: i64 = 1_800_000_000_000;

/// Names, including ones that need escaping and ones that collide with a dimension or `_aws`.
const NAMES: &[&str] = &[
    "up",
    "http_requests_total",
    "latency_seconds",
    "q\"uote",
    "back\\slash",
    "ctl\u{1}x",
    "pod",
    "_aws",
    "ünïcode_metric",
    "a_rather_long_metric_name_that_takes_room_in_every_document_it_is_written_to",
];

fn dimension_sets() -> Vec<Arc<Dimensions>> {
    let sets: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("pod", "web-1"), ("namespace", "shop")],
        vec![("pod", "web-2"), ("namespace", "shop")],
        vec![("pod", "we\"ird\n"), ("namespace", "ns\\")],
        vec![("namespace", "only")],
    ];
    sets.into_iter()
        .enumerate()
        .map(|(i, pairs)| {
            Arc::new(Dimensions::new(
                i as u32,
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            ))
        })
        .collect()
}

/// Finite values of every shape the formatters treat differently.
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        (-1000i64..1000).prop_map(|v| v as f64),
        -1e6..1e6f64,
        (-300i32..300, -9.99..9.99f64).prop_map(|(e, m)| m * 10f64.powi(e)),
        (-6i32..-3, 1.0..9.99f64).prop_map(|(e, m)| m * 10f64.powi(e)),
        (14i32..18, 1.0..9.99f64).prop_map(|(e, m)| (m * 10f64.powi(e)).round()),
        Just(0.1),
        Just(-0.0),
        Just(1e-5),
        Just(1e-4),
        Just(1e15),
        Just(1e16),
        Just(f64::MIN_POSITIVE),
        Just(2.348_542_582_773_833_2e108),
    ]
}

fn point_value() -> impl Strategy<Value = PointValue> {
    prop_oneof![
        4 => value().prop_map(PointValue::Single),
        1 => (0usize..210).prop_flat_map(|n| {
            (
                prop::collection::vec(value(), n),
                prop::collection::vec(1u32..50, n),
            )
                .prop_map(|(values, counts)| PointValue::Distribution {
                    values,
                    counts: counts.into_iter().map(f64::from).collect(),
                })
        }),
    ]
}

/// (name, dimension set, timestamp offset in s, resolution, value, samples).
type RawPoint = (usize, usize, i64, bool, PointValue, usize);

fn raw_points() -> impl Strategy<Value = Vec<RawPoint>> {
    prop::collection::vec(
        (
            0..NAMES.len(),
            0usize..5,
            prop_oneof![0i64..3, Just(-15 * 24 * 3600), Just(3 * 3600)],
            any::<bool>(),
            point_value(),
            1usize..4,
        ),
        0..200,
    )
}

fn points(raw: &[RawPoint], sets: &[Arc<Dimensions>], names: &[Arc<str>]) -> Vec<Point> {
    raw.iter()
        .map(|(n, d, ts, high, value, samples)| Point {
            name: names[*n].clone(),
            dims: sets[*d].clone(),
            timestamp_ms: NOW + ts * 1000,
            resolution: if *high { 1 } else { 60 },
            value: value.clone(),
            samples: *samples,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn emf_documents_are_byte_identical_to_the_reference(
        raw in raw_points(),
        max_event_bytes in prop_oneof![Just(1024usize), Just(4096), Just(256 * 1024)],
    ) {
        let sets = dimension_sets();
        let names: Vec<Arc<str>> = NAMES.iter().map(|n| Arc::from(*n)).collect();
        let points = points(&raw, &sets, &names);
        let want = reference::emf::EmfEncoder::new("surge\"ns", max_event_bytes).encode(&points);
        let got = EmfEncoder::new("surge\"ns", max_event_bytes).encode(&points);
        prop_assert_eq!(&got.dropped, &want.dropped);
        prop_assert_eq!(got.events.len(), want.events.len());
        for (g, w) in got.events.iter().zip(&want.events) {
            prop_assert_eq!(&g.json, &w.json);
            prop_assert_eq!(g.timestamp_ms, w.timestamp_ms);
            prop_assert_eq!(g.samples, w.samples);
        }
    }

    #[test]
    fn put_metric_data_calls_equal_the_reference(raw in raw_points()) {
        let sets = dimension_sets();
        let names: Vec<Arc<str>> = NAMES.iter().map(|n| Arc::from(*n)).collect();
        let points = points(&raw, &sets, &names);
        let want = reference::pmd::cut_calls(&points, NOW);
        let got = surge_cloudwatch::pmd::cut_calls(&points, NOW);
        prop_assert_eq!(&got.dropped, &want.dropped);
        prop_assert_eq!(got.requests.len(), want.requests.len());
        for (g, w) in got.requests.iter().zip(&want.requests) {
            prop_assert_eq!(g.samples, w.samples);
            prop_assert_eq!(g.highest_timestamp_ms, w.highest_timestamp_ms);
            prop_assert_eq!(g.request.len(), w.request.len());
            for (gd, wd) in g.request.iter().zip(&w.request) {
                prop_assert_eq!(&gd.name, &wd.name);
                prop_assert_eq!(gd.dims.pairs(), &wd.dims[..]);
                prop_assert_eq!(gd.timestamp_ms, wd.timestamp_ms);
                prop_assert_eq!(gd.resolution, wd.resolution);
                prop_assert_eq!(&gd.values[..], &wd.values[..]);
                prop_assert_eq!(&gd.counts[..], &wd.counts[..]);
                prop_assert_eq!(gd.samples, wd.samples);
            }
        }
    }
}

/// The float formats the fast path writes, one per branch, pinned (the reference is `{:?}`).
#[test]
fn floats_are_written_as_before_at_every_boundary() {
    let d = Arc::new(Dimensions::new(0, vec![]));
    for v in [
        0.5,
        -0.5,
        1e-4,
        1.5e-5,
        9.99e-5,
        1e-5,
        9e-6,
        1e14 + 0.5,
        1e15,
        1.5e15,
        1e16,
        1.7e308,
        5e-324,
    ] {
        let p = Point {
            name: Arc::from("m"),
            dims: d.clone(),
            timestamp_ms: NOW,
            resolution: 1,
            value: PointValue::Single(v),
            samples: 1,
        };
        let got = EmfEncoder::new("ns", 4096).encode(std::slice::from_ref(&p));
        let want = reference::emf::EmfEncoder::new("ns", 4096).encode(&[p]);
        assert_eq!(got.events[0].json, want.events[0].json, "{v:?}");
    }
}

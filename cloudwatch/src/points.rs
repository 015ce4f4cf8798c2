//! From shipped batches to CloudWatch points: the part EMF and PutMetricData share. Pure: no AWS types,
//! no I/O, no clock (callers pass `now`).
//!
//! Per sample, one hash lookup finds the series' [`SeriesInfo`] (decoded, classified and sanitised
//! once per series) and its counter state. Then:
//!
//! - **Kind.** The batch carries no metric TYPE, so a series is a *counter* when its name ends in
//!   `_total`, `_count`, `_sum` or `_bucket` (Prometheus' own naming rules for counters, histograms and
//!   summaries) or matches the configured `counter_pattern`; everything else is a *gauge* and is sent as
//!   is. A `_bucket` series with an `le` label is a histogram bucket.
//! - **Counters become deltas.** The first point of a series only sets the baseline (consumed, not
//!   sent); a value below the previous one is a reset, and its delta is the value itself (the counter
//!   restarted from zero); a staleness marker forgets the baseline, so the next point is a first point
//!   again; a point not newer than the baseline is dropped (`out_of_order`).
//! - **Histograms** (the `_bucket` series of one histogram at one timestamp) become one point whose
//!   values are the bucket upper bounds and whose counts are the per-bucket deltas (cumulative deltas
//!   differenced; the `+Inf` bucket reports at the largest finite bound). `_sum` and `_count` stay
//!   counters of their own.
//! - **Refusals.** What CloudWatch would refuse is dropped with a counted reason: NaN/±Inf values
//!   (`non_finite`), values beyond ±2^360 (`value_out_of_range`), names over 255 bytes
//!   (`name_too_long`), dimension values over 1024 bytes (`dimension_value_too_long`). Control
//!   characters in dimension values are replaced by `_` (sanitised, not dropped).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use parking_lot::Mutex;
use regex::Regex;
use surge_model::{Tier, is_stale_nan};
use surge_sender::{Chunk, SeriesMeta};

/// CloudWatch's longest metric or dimension name.
pub const MAX_NAME_BYTES: usize = 255;
/// CloudWatch's longest dimension value.
pub const MAX_DIMENSION_VALUE_BYTES: usize = 1024;
/// CloudWatch's dimensions per metric.
pub const MAX_DIMENSIONS: usize = 30;
/// CloudWatch refuses values of larger magnitude (2^360).
pub const MAX_VALUE_MAGNITUDE: f64 = 2.348_542_582_773_833_2e108;

/// The series state is cleared when it tracks more series than this, so churn cannot grow it forever;
/// the cost is one more baseline point per live counter.
const MAX_TRACKED_SERIES: usize = 1 << 20;

/// How series become CloudWatch metrics.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Label names turned into dimensions, in this order (at most 30); a series without one of them
    /// simply has fewer dimensions.
    pub dimensions: Vec<String>,
    /// Series whose metric name matches are counters too (beside the suffix rule).
    pub counter_pattern: Option<Regex>,
}

/// The metric resolution of a tier: critical series are high resolution.
pub fn storage_resolution(tier: Tier) -> u8 {
    match tier {
        Tier::Critical => 1,
        Tier::Standard => 60,
    }
}

/// One CloudWatch value (or distribution) of one metric with one set of dimensions at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub name: Arc<str>,
    /// Interned: points with equal dimensions share one allocation (and `dims_id`).
    pub dims: Arc<Dimensions>,
    pub timestamp_ms: i64,
    /// 1 (high resolution) or 60.
    pub resolution: u8,
    pub value: PointValue,
    /// Input samples this point stands for (a histogram point stands for its buckets).
    pub samples: usize,
}

/// A point's value.
#[derive(Debug, Clone, PartialEq)]
pub enum PointValue {
    Single(f64),
    /// Values with the number of times each occurred (a histogram's bucket bounds and counts).
    Distribution {
        values: Vec<f64>,
        counts: Vec<f64>,
    },
}

/// A dimension set: `(name, value)` pairs in the layout's order, and an id equal for equal sets.
///
/// Interned once per distinct set, so its EMF text is rendered here, once, rather than per document.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Dimensions {
    id: u32,
    pairs: Vec<(String, String)>,
    /// `"pod","namespace"`: the names as the body of an EMF `Dimensions` list.
    emf_names_json: String,
    /// `,"pod":"web-1","namespace":"shop"`: the pairs as EMF document members.
    emf_members_json: String,
    /// What the set adds to an EMF document's size estimate.
    emf_bytes: usize,
}

impl Dimensions {
    pub fn new(id: u32, pairs: Vec<(String, String)>) -> Self {
        Dimensions {
            id,
            emf_names_json: crate::emf::dimension_names_json(&pairs),
            emf_members_json: crate::emf::dimension_members_json(&pairs),
            emf_bytes: crate::emf::dimensions_bytes(&pairs),
            pairs,
        }
    }

    /// Equal for equal sets (within one [`Preparer`]).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// `(name, value)` pairs in the layout's order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    pub(crate) fn emf_names_json(&self) -> &str {
        &self.emf_names_json
    }

    pub(crate) fn emf_members_json(&self) -> &str {
        &self.emf_members_json
    }

    pub(crate) fn emf_bytes(&self) -> usize {
        self.emf_bytes
    }
}

/// A hash map with a fast, unkeyed hash (the FxHash multiply-rotate), for maps that live within one
/// chunk's encoding and hold at most a bounded number of entries (so a crafted collision costs at
/// most that bound), or are keyed by a hash already.
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FoldHasher>>;

/// See [`FastMap`].
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FoldHasher(u64);

impl FoldHasher {
    const K: u64 = 0xf135_7aea_2e62_a9c5;

    fn add(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_i64(&mut self, i: i64) {
        self.add(i as u64);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        // The multiply leaves the entropy in the high bits; hashbrown indexes with the low ones.
        self.0.rotate_left(26)
    }
}

/// The points of a chunk and the samples refused, by reason.
#[derive(Debug, Default)]
pub struct Prepared {
    pub points: Vec<Point>,
    pub dropped: Vec<(&'static str, usize)>,
}

impl Prepared {
    fn drop_one(&mut self, reason: &'static str) {
        match self.dropped.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.dropped.push((reason, 1)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Gauge,
    Counter,
    Bucket { le: f64 },
}

/// What a series is, worked out once.
#[derive(Debug)]
struct SeriesInfo {
    /// `None` when the series is unusable (the reason is in `refusal`).
    name: Arc<str>,
    dims: Arc<Dimensions>,
    kind: Kind,
    /// Identifies a bucket's histogram: the series' labels without `le`.
    histogram: u64,
    refusal: Option<&'static str>,
}

struct SeriesState {
    info: Arc<SeriesInfo>,
    /// The counter's baseline: (timestamp, value).
    last: Option<(i64, f64)>,
}

/// Turns chunks into points, keeping each counter's baseline between chunks.
pub struct Preparer {
    layout: Layout,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Keyed by the series' hash (xxh3 of its labels), so the map's own hash need only spread it.
    series: FastMap<u64, SeriesState>,
    dims: HashMap<Vec<(String, String)>, Arc<Dimensions>>,
}

impl Preparer {
    pub fn new(layout: Layout) -> Self {
        Preparer {
            layout,
            state: Mutex::new(State::default()),
        }
    }

    /// The points of `chunk`, in input order (histograms where their first bucket was).
    pub fn prepare(&self, chunk: &Chunk) -> Prepared {
        let resolution = storage_resolution(chunk.tier);
        let mut out = Prepared {
            points: Vec::with_capacity(chunk.sample_count()),
            dropped: Vec::new(),
        };
        let mut state = self.state.lock();
        if state.series.len() > MAX_TRACKED_SERIES {
            state.series.clear();
            state.dims.clear();
        }
        // Open histograms of this chunk: (histogram, timestamp) → index into out.points and the
        // cumulative (le, delta) pairs gathered so far.
        let mut histograms: HashMap<(u64, i64), OpenHistogram> = HashMap::new();
        for batch in &chunk.batches {
            for s in &batch.series {
                let key = s.series.hash();
                let state = &mut *state;
                let entry = match state.series.entry(key) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => v.insert(SeriesState {
                        info: Arc::new(describe(&self.layout, &s.series, &mut state.dims)),
                        last: None,
                    }),
                };
                let info = entry.info.clone();
                for sample in &s.samples {
                    let v = sample.value;
                    if is_stale_nan(v) {
                        // The series ended: its next point starts a new baseline. Not a drop.
                        entry.last = None;
                        continue;
                    }
                    if let Some(reason) = info.refusal {
                        out.drop_one(reason);
                        continue;
                    }
                    if !v.is_finite() {
                        out.drop_one("non_finite");
                        continue;
                    }
                    let ts = sample.timestamp_ms;
                    let value = match info.kind {
                        Kind::Gauge => v,
                        Kind::Counter | Kind::Bucket { .. } => {
                            let previous = entry.last.replace((ts, v));
                            match previous {
                                None => continue,
                                Some((last_ts, _)) if ts <= last_ts => {
                                    entry.last = previous;
                                    out.drop_one("out_of_order");
                                    continue;
                                }
                                Some((_, last)) if v < last => v,
                                Some((_, last)) => v - last,
                            }
                        }
                    };
                    if value.abs() > MAX_VALUE_MAGNITUDE {
                        out.drop_one("value_out_of_range");
                        continue;
                    }
                    if let Kind::Bucket { le } = info.kind {
                        let (idx, buckets) =
                            histograms.entry((info.histogram, ts)).or_insert_with(|| {
                                out.points.push(Point {
                                    name: info.name.clone(),
                                    dims: info.dims.clone(),
                                    timestamp_ms: ts,
                                    resolution,
                                    value: PointValue::Distribution {
                                        values: Vec::new(),
                                        counts: Vec::new(),
                                    },
                                    samples: 0,
                                });
                                (out.points.len() - 1, Vec::new())
                            });
                        buckets.push((le, value));
                        if let Some(p) = out.points.get_mut(*idx) {
                            p.samples += 1;
                        }
                        continue;
                    }
                    out.points.push(Point {
                        name: info.name.clone(),
                        dims: info.dims.clone(),
                        timestamp_ms: ts,
                        resolution,
                        value: PointValue::Single(value),
                        samples: 1,
                    });
                }
            }
        }
        for (_, (idx, buckets)) in histograms {
            if let Some(p) = out.points.get_mut(idx) {
                p.value = distribution(buckets);
            }
        }
        out
    }
}

/// A histogram being gathered: its point's index and the cumulative (le, delta) pairs so far.
type OpenHistogram = (usize, Vec<(f64, f64)>);

/// Cumulative bucket deltas (`le`, delta) → per-bucket (bound, count), zero counts left out.
fn distribution(mut buckets: Vec<(f64, f64)>) -> PointValue {
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let largest_finite = buckets
        .iter()
        .rev()
        .find(|(le, _)| le.is_finite())
        .map_or(0.0, |b| b.0);
    let mut values = Vec::with_capacity(buckets.len());
    let mut counts = Vec::with_capacity(buckets.len());
    let mut below = 0.0;
    for (le, cumulative) in buckets {
        let count = (cumulative - below).max(0.0);
        below = cumulative.max(below);
        if count > 0.0 {
            let value = if le.is_finite() { le } else { largest_finite };
            // The +Inf bucket lands on the largest finite bound: one value, counted once.
            match values.last() {
                Some(last) if *last == value => {
                    if let Some(c) = counts.last_mut() {
                        *c += count;
                    }
                }
                _ => {
                    values.push(value);
                    counts.push(count);
                }
            }
        }
    }
    PointValue::Distribution { values, counts }
}

/// Works out a new series' name, dimensions and kind.
fn describe(
    layout: &Layout,
    series: &SeriesMeta,
    interned: &mut HashMap<Vec<(String, String)>, Arc<Dimensions>>,
) -> SeriesInfo {
    let labels = series.labels();
    let full_name = labels.metric_name().unwrap_or_default();
    let le = labels.get("le").and_then(parse_le);
    let kind = match le {
        Some(le) if full_name.ends_with("_bucket") => Kind::Bucket { le },
        _ if is_counter_name(full_name, layout.counter_pattern.as_ref()) => Kind::Counter,
        _ => Kind::Gauge,
    };
    let name = match kind {
        Kind::Bucket { .. } => full_name.strip_suffix("_bucket").unwrap_or(full_name),
        _ => full_name,
    };
    let mut refusal = None;
    if name.is_empty() {
        refusal = Some("no_name");
    } else if name.len() > MAX_NAME_BYTES {
        refusal = Some("name_too_long");
    }
    let mut pairs = Vec::new();
    for dim in layout.dimensions.iter().take(MAX_DIMENSIONS) {
        let Some(value) = labels.get(dim) else {
            continue;
        };
        if value.len() > MAX_DIMENSION_VALUE_BYTES {
            refusal.get_or_insert("dimension_value_too_long");
            continue;
        }
        pairs.push((dim.clone(), sanitise_value(value)));
    }
    let next_id = interned.len() as u32;
    let dims = interned
        .entry(pairs)
        .or_insert_with_key(|pairs| Arc::new(Dimensions::new(next_id, pairs.clone())))
        .clone();
    let histogram = match kind {
        Kind::Bucket { .. } => {
            let mut without_le = labels.to_builder();
            without_le.del("le");
            without_le.build().hash64()
        }
        _ => 0,
    };
    SeriesInfo {
        name: Arc::from(name),
        dims,
        kind,
        histogram,
        refusal,
    }
}

/// Prometheus' counter suffixes, or the configured pattern.
pub fn is_counter_name(name: &str, pattern: Option<&Regex>) -> bool {
    ["_total", "_count", "_sum", "_bucket"]
        .iter()
        .any(|s| name.ends_with(s))
        || pattern.is_some_and(|p| p.is_match(name))
}

fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        _ => s.parse().ok().filter(|v: &f64| !v.is_nan()),
    }
}

/// Replaces ASCII control characters (which CloudWatch refuses) by `_`.
fn sanitise_value(value: &str) -> String {
    if value.chars().any(|c| c.is_control()) {
        value
            .chars()
            .map(|c| if c.is_control() { '_' } else { c })
            .collect()
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use surge_model::{Labels, Sample, stale_nan};
    use surge_sender::{Batch, SeriesSamples};

    use super::*;

    fn series(pairs: &[(&str, &str)]) -> SeriesMeta {
        SeriesMeta::new(Labels::from_pairs(pairs.iter().copied()))
    }

    fn chunk(tier: Tier, rows: Vec<(SeriesMeta, i64, f64)>) -> Chunk {
        Chunk {
            tier,
            batches: vec![Arc::new(Batch {
                tier,
                series: rows
                    .into_iter()
                    .map(|(s, ts, v)| SeriesSamples {
                        series: s,
                        samples: smallvec::smallvec![Sample {
                            timestamp_ms: ts,
                            value: v
                        }],
                    })
                    .collect(),
                scrape_end_ms: 0,
            })],
        }
    }

    fn layout() -> Layout {
        Layout {
            dimensions: vec!["pod".into(), "namespace".into()],
            counter_pattern: Some(Regex::new("^requests$").unwrap()),
        }
    }

    fn singles(p: &Prepared) -> Vec<(String, i64, f64)> {
        p.points
            .iter()
            .map(|p| match p.value {
                PointValue::Single(v) => (p.name.to_string(), p.timestamp_ms, v),
                PointValue::Distribution { .. } => (p.name.to_string(), p.timestamp_ms, f64::NAN),
            })
            .collect()
    }

    #[test]
    fn counters_become_deltas_across_first_points_resets_and_staleness() {
        let prep = Preparer::new(layout());
        let c = series(&[("__name__", "http_requests_total"), ("pod", "a")]);
        let g = series(&[("__name__", "temperature"), ("pod", "a")]);
        let by_pattern = series(&[("__name__", "requests")]);
        let steps: Vec<(i64, f64, f64, f64)> = vec![
            // ts, counter, gauge, pattern counter
            (1000, 10.0, 5.0, 1.0),
            (2000, 15.0, 6.0, 3.0),
            (3000, 4.0, 7.0, 3.0), // reset: delta is the value itself
            (4000, stale_nan(), 8.0, 4.0),
            (5000, 100.0, 9.0, 4.0), // first point after staleness: a baseline again
            (6000, 101.5, 9.5, 5.0),
        ];
        let mut got = Vec::new();
        for (ts, cv, gv, pv) in steps {
            let p = prep.prepare(&chunk(
                Tier::Critical,
                vec![
                    (c.clone(), ts, cv),
                    (g.clone(), ts, gv),
                    (by_pattern.clone(), ts, pv),
                ],
            ));
            assert!(p.dropped.is_empty(), "{:?}", p.dropped);
            got.extend(singles(&p));
        }
        let counter: Vec<_> = got
            .iter()
            .filter(|g| g.0 == "http_requests_total")
            .collect();
        assert_eq!(
            counter.iter().map(|g| (g.1, g.2)).collect::<Vec<_>>(),
            vec![(2000, 5.0), (3000, 4.0), (6000, 1.5)]
        );
        let gauge: Vec<_> = got
            .iter()
            .filter(|g| g.0 == "temperature")
            .map(|g| g.2)
            .collect();
        assert_eq!(gauge, vec![5.0, 6.0, 7.0, 8.0, 9.0, 9.5]);
        let pattern: Vec<_> = got
            .iter()
            .filter(|g| g.0 == "requests")
            .map(|g| g.2)
            .collect();
        assert_eq!(pattern, vec![2.0, 0.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn histograms_become_distributions_of_bucket_deltas() {
        let prep = Preparer::new(layout());
        let bucket = |le: &str| {
            series(&[
                ("__name__", "latency_seconds_bucket"),
                ("le", le),
                ("pod", "a"),
            ])
        };
        let rows = |ts: i64, counts: [f64; 4]| {
            ["0.1", "0.5", "1", "+Inf"]
                .iter()
                .zip(counts)
                .map(|(le, v)| (bucket(le), ts, v))
                .collect::<Vec<_>>()
        };
        let first = prep.prepare(&chunk(Tier::Standard, rows(1000, [1.0, 2.0, 3.0, 4.0])));
        assert!(first.points.is_empty(), "the first scrape is the baseline");
        let p = prep.prepare(&chunk(Tier::Standard, rows(2000, [3.0, 7.0, 8.0, 10.0])));
        // Cumulative deltas 2, 5, 5, 6 → per bucket 2 (≤0.1), 3 (≤0.5), 0 (≤1), 1 (+Inf → 1).
        assert_eq!(p.points.len(), 1);
        assert_eq!(p.points[0].name.as_ref(), "latency_seconds");
        assert_eq!(p.points[0].samples, 4);
        assert_eq!(p.points[0].resolution, 60);
        assert_eq!(
            p.points[0].value,
            PointValue::Distribution {
                values: vec![0.1, 0.5, 1.0],
                counts: vec![2.0, 3.0, 1.0]
            }
        );
    }

    #[test]
    fn what_cloudwatch_refuses_is_dropped_with_a_reason_and_control_characters_are_replaced() {
        let prep = Preparer::new(layout());
        let long_name = "x".repeat(256);
        let long_value = "v".repeat(1025);
        let p = prep.prepare(&chunk(
            Tier::Critical,
            vec![
                (series(&[("__name__", "g")]), 1, f64::NAN),
                (series(&[("__name__", "h")]), 1, f64::INFINITY),
                (series(&[("__name__", long_name.as_str())]), 1, 1.0),
                (
                    series(&[("__name__", "i"), ("pod", long_value.as_str())]),
                    1,
                    1.0,
                ),
                (series(&[("__name__", "j")]), 1, 1e200),
                (series(&[("__name__", "k"), ("pod", "a\u{7}b")]), 1, 2.0),
            ],
        ));
        let mut dropped = p.dropped.clone();
        dropped.sort();
        assert_eq!(
            dropped,
            vec![
                ("dimension_value_too_long", 1),
                ("name_too_long", 1),
                ("non_finite", 2),
                ("value_out_of_range", 1),
            ]
        );
        assert_eq!(p.points.len(), 1);
        assert_eq!(p.points[0].dims.pairs(), vec![("pod".into(), "a_b".into())]);
    }

    #[test]
    fn equal_dimension_sets_share_an_id_and_follow_the_layout_order() {
        let prep = Preparer::new(layout());
        let p = prep.prepare(&chunk(
            Tier::Critical,
            vec![
                (
                    series(&[
                        ("__name__", "a"),
                        ("namespace", "n"),
                        ("pod", "p"),
                        ("x", "1"),
                    ]),
                    1,
                    1.0,
                ),
                (
                    series(&[("__name__", "b"), ("pod", "p"), ("namespace", "n")]),
                    1,
                    1.0,
                ),
                (series(&[("__name__", "c"), ("pod", "q")]), 1, 1.0),
            ],
        ));
        assert_eq!(p.points[0].dims.id(), p.points[1].dims.id());
        assert_ne!(p.points[0].dims.id(), p.points[2].dims.id());
        assert_eq!(
            p.points[0].dims.pairs(),
            vec![("pod".into(), "p".into()), ("namespace".into(), "n".into())]
        );
        assert_eq!(p.points[0].resolution, 1);
    }
}

//! Batches of scraped samples → OTLP `ExportMetricsServiceRequest`s.
//!
//! A [`Batch`] carries series and samples but no `# TYPE`: the kind of each series is recognised from
//! its name and labels, within the batch it arrived in (one scrape of one target, so a histogram's
//! series travel together):
//!
//! | series in one batch | OTLP |
//! |---|---|
//! | `X_bucket{le=…}` with `X_count` (and usually `X_sum`) of the same other labels | `Histogram X`, cumulative |
//! | `X{quantile=…}` with `X_count` and `X_sum` of the same other labels | `Summary X` |
//! | a name ending in `_total` | `Sum`, monotonic, cumulative |
//! | anything else | `Gauge` |
//!
//! A group that looks like a histogram but is not one (an `le` that is not a number, cumulative counts
//! that fall, no `_count`) is shipped series by series instead, by the last two rules: data is never
//! lost to the heuristic, only typed less precisely. A counter that does not end in `_total` (legal in
//! the Prometheus text format) becomes a Gauge; the OpenMetrics format always has the suffix.
//!
//! Start times: a cumulative point (Sum, Histogram, Summary) carries the time its count started. The
//! agent does not know when a target's process started, so the start is the first sample of the series
//! this output saw, and after a reset (the value, or a histogram's count, went down) the millisecond
//! after the sample before the reset, the earliest the restarted counter can have begun. The state is
//! one small entry per cumulative series, cleared when a series goes stale and bounded in total.
//!
//! Staleness markers (Prometheus's stale NaN) become points with the `NoRecordedValue` flag and no value.
//!
//! Resource: labels named in [`ResourceLabels`] (Kubernetes' `namespace`, `pod`, `node`, `container`,
//! and `job` / `instance`) are moved from the point's attributes to the resource, under the semantic
//! conventions' names (`k8s.namespace.name`, `service.name`, …); one `ResourceMetrics` per distinct set.
//! Metric names are kept as scraped (a `_total` stays), so a round trip through an OTLP receiver that
//! writes Prometheus series reads the same names.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, DataPointFlags, Gauge, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, metric,
    number_data_point, summary_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use parking_lot::Mutex;
use surge_model::{Labels, METRIC_NAME, Sample, is_stale_nan};
use surge_sender::Batch;

/// The instrumentation scope every point is reported under.
pub const SCOPE_NAME: &str = "surge";

/// Per-series state maps are cleared when they grow past this many entries, so series churn cannot
/// grow them forever; the cost is that cumulative series get a new start time once.
const STATE_MAX: usize = 1 << 20;

const NO_RECORDED_VALUE: u32 = DataPointFlags::NoRecordedValueMask as u32;
const CUMULATIVE: i32 = AggregationTemporality::Cumulative as i32;

/// Which labels become resource attributes, and under which names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceLabels(pub Vec<(String, String)>);

impl Default for ResourceLabels {
    /// Kubernetes' labels as the agent's pod discovery sets them, under the OpenTelemetry semantic
    /// conventions' names; `job` and `instance` as the collector's Prometheus receiver maps them.
    fn default() -> Self {
        ResourceLabels(
            [
                ("namespace", "k8s.namespace.name"),
                ("pod", "k8s.pod.name"),
                ("node", "k8s.node.name"),
                ("container", "k8s.container.name"),
                ("job", "service.name"),
                ("instance", "service.instance.id"),
            ]
            .into_iter()
            .map(|(l, a)| (l.to_owned(), a.to_owned()))
            .collect(),
        )
    }
}

/// One request, with the number of scraped samples it carries (a histogram point carries several).
#[derive(Debug, Clone)]
pub struct EncodedRequest {
    pub message: ExportMetricsServiceRequest,
    pub samples: usize,
    /// The newest sample timestamp in the request (ms).
    pub highest_timestamp_ms: Option<i64>,
}

/// What [`Encoder::encode`] made of some batches.
#[derive(Debug, Default)]
pub struct Encoded {
    /// In the order they must be sent.
    pub requests: Vec<EncodedRequest>,
    /// Samples OTLP cannot carry, by reason (only `negative_timestamp`: OTLP times are unsigned).
    pub dropped: Vec<(&'static str, usize)>,
}

/// Turns batches into requests; holds the start times of cumulative series. Shared by the lanes of an
/// output (interior mutability).
#[derive(Debug)]
pub struct Encoder {
    resource_labels: ResourceLabels,
    max_points_per_request: usize,
    scope: InstrumentationScope,
    /// What each series is: decoded once per series.
    shapes: Mutex<ShapeCache>,
    /// Start time and last count of each cumulative series (by the hash of its point's identity).
    starts: Mutex<HashMap<u64, StartState>>,
}

/// The kind a series' name and labels suggest, before its batch is seen as a whole.
#[derive(Debug, Clone, PartialEq)]
enum Role {
    /// `X_bucket` with a numeric `le`: a histogram bucket of `X`.
    Bucket {
        le: f64,
    },
    /// `X` with a numeric `quantile`: a summary quantile of `X`.
    Quantile {
        q: f64,
    },
    /// `X_count`.
    Count,
    /// `X_sum`.
    Sum,
    /// Ends in `_total`.
    Counter,
    Other,
}

/// One series, decoded once: its name, its role, its resource, its attributes.
#[derive(Debug)]
struct Shape {
    name: Arc<str>,
    /// The name of the family it would belong to (`X` of `X_bucket`, `X_count`, `X_sum`, `X{quantile}`).
    family: Arc<str>,
    role: Role,
    resource: Arc<ResourceKey>,
    /// Point attributes: every label but the name and the resource's.
    attributes: Vec<KeyValue>,
    /// Hash of (resource, attributes without `le` / `quantile`): the group of a histogram's or a
    /// summary's series.
    group: u64,
}

/// Each series' shape by the hash of its label block, and the resources and names shapes share.
///
/// Resources and names are interned so that [`RequestsBuilder`] can file a point under its resource
/// and metric by pointer rather than by hashing strings per point. When the cache is cleared (at
/// [`STATE_MAX`] shapes) while a request is being built, the request may get a second
/// `ResourceMetrics` or `Metric` equal to an earlier one: still valid OTLP, which receivers merge.
#[derive(Debug, Default)]
struct ShapeCache {
    shapes: HashMap<u64, Arc<Shape>>,
    resources: HashSet<Arc<ResourceKey>>,
    names: HashSet<Arc<str>>,
}

impl ShapeCache {
    fn resource(&mut self, key: ResourceKey) -> Arc<ResourceKey> {
        if let Some(r) = self.resources.get(&key) {
            return r.clone();
        }
        let r = Arc::new(key);
        self.resources.insert(r.clone());
        r
    }

    fn name(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.names.get(name) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(name);
        self.names.insert(n.clone());
        n
    }
}

/// A resource's attributes, in [`ResourceLabels`] order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ResourceKey(Vec<(String, String)>);

#[derive(Debug, Clone, Copy)]
struct StartState {
    start_ms: i64,
    last_ms: i64,
    last_value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Gauge,
    Sum,
    Histogram,
    Summary,
}

impl Encoder {
    /// An encoder cutting requests at `max_points_per_request` scraped samples (at least 1).
    pub fn new(resource_labels: ResourceLabels, max_points_per_request: usize) -> Self {
        Encoder {
            resource_labels,
            max_points_per_request: max_points_per_request.max(1),
            scope: InstrumentationScope {
                name: SCOPE_NAME.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                ..Default::default()
            },
            shapes: Mutex::new(ShapeCache::default()),
            starts: Mutex::new(HashMap::new()),
        }
    }

    /// Encodes `batches` (in arrival order) into requests of at most `max_points_per_request` samples.
    pub fn encode<'a>(&self, batches: impl IntoIterator<Item = &'a Batch>) -> Encoded {
        let mut out = RequestsBuilder::new(self.max_points_per_request, self.scope.clone());
        let mut negative = 0usize;
        for batch in batches {
            negative += self.encode_batch(batch, &mut out);
        }
        let mut encoded = Encoded {
            requests: out.finish(),
            dropped: Vec::new(),
        };
        if negative > 0 {
            encoded.dropped.push(("negative_timestamp", negative));
        }
        encoded
    }

    /// One batch: histograms and summaries first found as groups, then every point appended.
    /// Returns how many samples were dropped for a negative timestamp.
    fn encode_batch(&self, batch: &Batch, out: &mut RequestsBuilder) -> usize {
        let shapes = self.shapes(batch);
        let groups = Groups::find(batch, &shapes);
        let mut negative = 0;
        let mut starts = self.starts.lock();
        if starts.len() > STATE_MAX {
            starts.clear();
        }
        // Series that belong to a valid group are emitted with it, at the position of its first member.
        for (i, series) in batch.series.iter().enumerate() {
            let shape = &shapes[i];
            if let Some(g) = groups.member_of[i] {
                if groups.first_member[g] == i {
                    negative += groups.emit(g, batch, &shapes, &mut starts, out);
                }
                continue;
            }
            let kind = match shape.role {
                Role::Counter => Kind::Sum,
                _ => Kind::Gauge,
            };
            let key = series.series.hash();
            for s in &series.samples {
                let Some(time) = unix_nanos(s.timestamp_ms) else {
                    negative += 1;
                    continue;
                };
                let mut point = NumberDataPoint {
                    attributes: shape.attributes.clone(),
                    time_unix_nano: time,
                    ..Default::default()
                };
                if is_stale_nan(s.value) {
                    point.flags = NO_RECORDED_VALUE;
                } else {
                    point.value = Some(number_data_point::Value::AsDouble(s.value));
                }
                if kind == Kind::Sum {
                    point.start_time_unix_nano = start_time(&mut starts, key, s);
                }
                out.push(
                    &shape.resource,
                    &shape.name,
                    DataPoint::Number(kind, point),
                    1,
                    s.timestamp_ms,
                );
            }
        }
        negative
    }

    /// The shape of each series of `batch`, decoded on first sight.
    fn shapes(&self, batch: &Batch) -> Vec<Arc<Shape>> {
        let mut cache = self.shapes.lock();
        let cache = &mut *cache;
        batch
            .series
            .iter()
            .map(|s| {
                let hash = s.series.hash();
                if let Some(shape) = cache.shapes.get(&hash) {
                    return shape.clone();
                }
                if cache.shapes.len() > STATE_MAX {
                    *cache = ShapeCache::default();
                }
                let shape = Arc::new(Shape::of(&s.series.labels(), &self.resource_labels, cache));
                cache.shapes.insert(hash, shape.clone());
                shape
            })
            .collect()
    }
}

impl Shape {
    fn of(labels: &Labels, resource_labels: &ResourceLabels, cache: &mut ShapeCache) -> Shape {
        let name = cache.name(labels.metric_name().unwrap_or(""));
        let resource = ResourceKey(
            resource_labels
                .0
                .iter()
                .filter_map(|(label, attr)| Some((attr.clone(), labels.get(label)?.to_owned())))
                .collect(),
        );
        let is_resource = |n: &str| resource_labels.0.iter().any(|(l, _)| l == n);
        let number = |n: &str| labels.get(n).and_then(parse_float);
        let (role, family) =
            if let (Some(base), Some(le)) = (name.strip_suffix("_bucket"), number("le")) {
                (Role::Bucket { le }, base)
            } else if let Some(q) = number("quantile") {
                (Role::Quantile { q }, &*name)
            } else if let Some(base) = name.strip_suffix("_count") {
                (Role::Count, base)
            } else if let Some(base) = name.strip_suffix("_sum") {
                (Role::Sum, base)
            } else if name.ends_with("_total") {
                (Role::Counter, &*name)
            } else {
                (Role::Other, &*name)
            };
        let family = cache.name(family);
        let grouping_label = match role {
            Role::Bucket { .. } => "le",
            Role::Quantile { .. } => "quantile",
            _ => "",
        };
        let mut hasher = std::hash::DefaultHasher::new();
        resource.hash(&mut hasher);
        let mut attributes = Vec::with_capacity(labels.len());
        for l in labels.iter() {
            if &*l.name == METRIC_NAME || is_resource(&l.name) {
                continue;
            }
            if &*l.name != grouping_label {
                (&*l.name, &*l.value).hash(&mut hasher);
            }
            attributes.push(string_attribute(&l.name, &l.value));
        }
        Shape {
            name,
            family,
            role,
            resource: cache.resource(resource),
            attributes,
            group: hasher.finish(),
        }
    }

    /// Attributes without the label that tells a group's members apart.
    fn group_attributes(&self) -> Vec<KeyValue> {
        let skip = match self.role {
            Role::Bucket { .. } => "le",
            Role::Quantile { .. } => "quantile",
            _ => return self.attributes.clone(),
        };
        self.attributes
            .iter()
            .filter(|kv| kv.key != skip)
            .cloned()
            .collect()
    }
}

/// A float label value as Prometheus writes one (`0.5`, `+Inf`, `1e-3`).
fn parse_float(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => v.parse::<f64>().ok().filter(|f| !f.is_nan()),
    }
}

fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// Milliseconds since the epoch as OTLP's nanoseconds; `None` before 1970 (OTLP times are unsigned).
fn unix_nanos(ms: i64) -> Option<u64> {
    u64::try_from(ms)
        .ok()
        .map(|ms| ms.saturating_mul(1_000_000))
}

/// The start time of a cumulative point with value `s` (a count), updating the series' state; a
/// staleness marker ends the series' state (a series that comes back starts afresh).
fn start_time(starts: &mut HashMap<u64, StartState>, key: u64, s: &Sample) -> u64 {
    let start_ms = if is_stale_nan(s.value) {
        starts.remove(&key).map_or(s.timestamp_ms, |st| st.start_ms)
    } else {
        let st = starts.entry(key).or_insert(StartState {
            start_ms: s.timestamp_ms,
            last_ms: s.timestamp_ms,
            last_value: s.value,
        });
        if s.timestamp_ms > st.last_ms {
            if s.value < st.last_value {
                // A reset: the counter restarted after the previous sample.
                st.start_ms = st.last_ms + 1;
            }
            st.last_ms = s.timestamp_ms;
            st.last_value = s.value;
        }
        st.start_ms
    };
    unix_nanos(start_ms.min(s.timestamp_ms)).unwrap_or(0)
}

/// The histograms and summaries of one batch.
struct Groups {
    /// For each series of the batch, the valid group it belongs to.
    member_of: Vec<Option<usize>>,
    /// Each group's first series (where its points are emitted, keeping the batch's order).
    first_member: Vec<usize>,
    groups: Vec<Group>,
}

struct Group {
    kind: Kind,
    /// Indices of the member series in the batch.
    members: Vec<usize>,
}

impl Groups {
    /// Finds each family with buckets (or quantiles) and its `_count` / `_sum` of the same labels, and
    /// keeps those that make valid points.
    fn find(batch: &Batch, shapes: &[Arc<Shape>]) -> Groups {
        let mut member_of = vec![None; shapes.len()];
        let mut first_member = Vec::new();
        let mut groups = Vec::new();
        // (family, group hash) → the group's members; only when the batch has a bucket or a quantile.
        let mut candidates: HashMap<(&str, u64), (Kind, Vec<usize>)> = HashMap::new();
        for (i, shape) in shapes.iter().enumerate() {
            let kind = match shape.role {
                Role::Bucket { .. } => Kind::Histogram,
                Role::Quantile { .. } => Kind::Summary,
                _ => continue,
            };
            let entry = candidates
                .entry((&shape.family, shape.group))
                .or_insert((kind, Vec::new()));
            if entry.0 == kind {
                entry.1.push(i);
            }
        }
        if candidates.is_empty() {
            return Groups {
                member_of,
                first_member,
                groups,
            };
        }
        for (i, shape) in shapes.iter().enumerate() {
            if matches!(shape.role, Role::Count | Role::Sum)
                && let Some((_, members)) = candidates.get_mut(&(&*shape.family, shape.group))
            {
                members.push(i);
            }
        }
        let mut valid: Vec<(Kind, Vec<usize>)> = candidates
            .into_values()
            .filter(|(kind, members)| Group::valid(*kind, members, batch, shapes))
            .collect();
        // Deterministic order: by first member.
        valid.sort_by_key(|(_, m)| m.iter().copied().min().unwrap_or(0));
        for (kind, members) in valid {
            let g = groups.len();
            for &i in &members {
                member_of[i] = Some(g);
            }
            first_member.push(members.iter().copied().min().unwrap_or(0));
            groups.push(Group { kind, members });
        }
        Groups {
            member_of,
            first_member,
            groups,
        }
    }

    /// Emits group `g`'s points, one per timestamp of its `_count`. Returns the samples dropped for a
    /// negative timestamp.
    fn emit(
        &self,
        g: usize,
        batch: &Batch,
        shapes: &[Arc<Shape>],
        starts: &mut HashMap<u64, StartState>,
        out: &mut RequestsBuilder,
    ) -> usize {
        let group = &self.groups[g];
        let count_i = group
            .members
            .iter()
            .copied()
            .find(|&i| shapes[i].role == Role::Count);
        let Some(count_i) = count_i else { return 0 };
        let first = &shapes[self.first_member[g]];
        let attributes = first.group_attributes();
        // The group's identity for start times: the family and the group hash.
        let key = {
            let mut h = std::hash::DefaultHasher::new();
            (&*first.family, first.group).hash(&mut h);
            h.finish()
        };
        let mut negative = 0;
        for count in &batch.series[count_i].samples {
            let at = |i: usize| {
                batch.series[i]
                    .samples
                    .iter()
                    .find(|s| s.timestamp_ms == count.timestamp_ms)
            };
            let samples_here = group.members.iter().filter(|&&i| at(i).is_some()).count();
            let Some(time) = unix_nanos(count.timestamp_ms) else {
                negative += samples_here;
                continue;
            };
            let stale = group
                .members
                .iter()
                .any(|&i| at(i).is_some_and(|s| is_stale_nan(s.value)));
            let start = start_time(starts, key, count);
            let sum = group
                .members
                .iter()
                .find(|&&i| shapes[i].role == Role::Sum)
                .and_then(|&i| at(i))
                .map(|s| s.value);
            let mut parts: Vec<(f64, f64)> = group
                .members
                .iter()
                .filter_map(|&i| match shapes[i].role {
                    Role::Bucket { le } | Role::Quantile { q: le } => Some((le, at(i)?.value)),
                    _ => None,
                })
                .collect();
            parts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let point = GroupPoint {
                attributes: attributes.clone(),
                start,
                time,
                stale,
                count: count.value,
                sum,
                parts: &parts,
            };
            out.push(
                &first.resource,
                &first.family,
                point.data_point(group.kind),
                samples_here,
                count.timestamp_ms,
            );
        }
        negative
    }
}

/// What a histogram's and a summary's point have in common, before it becomes either.
struct GroupPoint<'a> {
    attributes: Vec<KeyValue>,
    start: u64,
    time: u64,
    /// A member is a staleness marker: the whole point is flagged and carries no values.
    stale: bool,
    count: f64,
    sum: Option<f64>,
    /// (bound or quantile, cumulative count or value), sorted.
    parts: &'a [(f64, f64)],
}

impl GroupPoint<'_> {
    /// The point of a `kind` group (Histogram or Summary).
    fn data_point(self, kind: Kind) -> DataPoint {
        let flags = if self.stale { NO_RECORDED_VALUE } else { 0 };
        match kind {
            Kind::Histogram => {
                let mut p = HistogramDataPoint {
                    attributes: self.attributes,
                    start_time_unix_nano: self.start,
                    time_unix_nano: self.time,
                    flags,
                    ..Default::default()
                };
                if !self.stale {
                    fill_buckets(&mut p, self.count, self.parts);
                    p.sum = self.sum;
                }
                DataPoint::Histogram(p)
            }
            _ => {
                let mut p = SummaryDataPoint {
                    attributes: self.attributes,
                    start_time_unix_nano: self.start,
                    time_unix_nano: self.time,
                    flags,
                    ..Default::default()
                };
                if !self.stale {
                    p.count = as_count(self.count).unwrap_or(0);
                    p.sum = self.sum.unwrap_or(0.0);
                    p.quantile_values = self
                        .parts
                        .iter()
                        .map(|&(quantile, value)| summary_data_point::ValueAtQuantile {
                            quantile,
                            value,
                        })
                        .collect();
                }
                DataPoint::Summary(p)
            }
        }
    }
}

/// A point of any kind, as [`RequestsBuilder::push`] files it under its metric.
enum DataPoint {
    /// A Gauge's or a Sum's point.
    Number(Kind, NumberDataPoint),
    Histogram(HistogramDataPoint),
    Summary(SummaryDataPoint),
}

impl DataPoint {
    fn kind(&self) -> Kind {
        match self {
            DataPoint::Number(kind, _) => *kind,
            DataPoint::Histogram(_) => Kind::Histogram,
            DataPoint::Summary(_) => Kind::Summary,
        }
    }
}

impl Group {
    /// Whether the members make valid points at every timestamp of the `_count`: a histogram needs
    /// whole, non-negative cumulative bucket counts that never fall and end at or below the count, with
    /// distinct bounds; a summary needs its `_sum` too and quantiles in [0, 1]. Staleness markers are
    /// always valid (the whole point is flagged).
    fn valid(kind: Kind, members: &[usize], batch: &Batch, shapes: &[Arc<Shape>]) -> bool {
        let role = |i: &usize| &shapes[*i].role;
        let Some(count_i) = members.iter().find(|i| *role(i) == Role::Count) else {
            return false;
        };
        let has_sum = members.iter().any(|i| *role(i) == Role::Sum);
        if kind == Kind::Summary && !has_sum {
            return false;
        }
        for count in &batch.series[*count_i].samples {
            if is_stale_nan(count.value) {
                continue;
            }
            let Some(total) = as_count(count.value) else {
                return false;
            };
            let mut parts: Vec<(f64, f64)> = Vec::new();
            for i in members {
                let value = batch.series[*i]
                    .samples
                    .iter()
                    .find(|s| s.timestamp_ms == count.timestamp_ms)
                    .map(|s| s.value);
                match (role(i), value) {
                    (Role::Bucket { le } | Role::Quantile { q: le }, Some(v)) => {
                        parts.push((*le, v))
                    }
                    (_, Some(v)) if is_stale_nan(v) => {}
                    _ => {}
                }
            }
            if parts.is_empty() || parts.iter().any(|p| is_stale_nan(p.1)) {
                continue;
            }
            parts.sort_by(|a, b| a.0.total_cmp(&b.0));
            if parts.windows(2).any(|w| w[0].0 == w[1].0) {
                return false;
            }
            let ok = match kind {
                Kind::Histogram => {
                    let mut last = 0u64;
                    parts.iter().all(|&(_, v)| match as_count(v) {
                        Some(c) if c >= last && c <= total => {
                            last = c;
                            true
                        }
                        _ => false,
                    })
                }
                _ => parts.iter().all(|&(q, _)| (0.0..=1.0).contains(&q)),
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

/// A float count as an integer: whole, non-negative, finite.
fn as_count(v: f64) -> Option<u64> {
    (v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < u64::MAX as f64).then_some(v as u64)
}

/// Cumulative `(le, count)` buckets (sorted, validated) → OTLP's bounds and per-bucket counts. The
/// `+Inf` bucket is OTLP's overflow bucket, whose count is what the total has beyond the last finite
/// bound, so the bucket counts always add up to `count`.
fn fill_buckets(p: &mut HistogramDataPoint, count: f64, cumulative: &[(f64, f64)]) {
    let total = as_count(count).unwrap_or(0);
    p.count = total;
    let mut below = 0u64;
    for &(le, v) in cumulative {
        if le == f64::INFINITY {
            break;
        }
        let c = as_count(v).unwrap_or(below);
        p.explicit_bounds.push(le);
        p.bucket_counts.push(c.saturating_sub(below));
        below = c;
    }
    p.bucket_counts.push(total.saturating_sub(below));
}

/// Requests being assembled: resources → metrics → points, cut at the point budget.
struct RequestsBuilder {
    max_samples: usize,
    scope: InstrumentationScope,
    done: Vec<EncodedRequest>,
    current: ExportMetricsServiceRequest,
    samples: usize,
    highest: Option<i64>,
    /// Interned resource (by address; the `Arc` keeps the address taken) → index in the request.
    resources: HashMap<usize, (Arc<ResourceKey>, usize)>,
    /// The address of each resource of the request, by index.
    addresses: Vec<usize>,
    /// (resource index, interned name by address, kind) → index in that resource's one scope's
    /// metrics (and the `Arc` keeping the address taken).
    metrics: HashMap<MetricKey, (Arc<str>, usize)>,
    /// The metric the last point went to: points of one metric mostly come together.
    last: Option<(MetricKey, usize)>,
}

/// (resource index, address of the interned name, kind).
type MetricKey = (usize, usize, Kind);

impl RequestsBuilder {
    fn new(max_samples: usize, scope: InstrumentationScope) -> Self {
        RequestsBuilder {
            max_samples,
            scope,
            done: Vec::new(),
            current: ExportMetricsServiceRequest::default(),
            samples: 0,
            highest: None,
            resources: HashMap::new(),
            addresses: Vec::new(),
            metrics: HashMap::new(),
            last: None,
        }
    }

    /// The metric `name` of `kind` under `resource`, created empty when new; cuts the current request
    /// first when the point would not fit.
    fn metric(
        &mut self,
        resource: &Arc<ResourceKey>,
        name: &Arc<str>,
        kind: Kind,
        samples: usize,
        ts: i64,
    ) -> &mut metric::Data {
        if self.samples > 0 && self.samples + samples > self.max_samples {
            self.cut();
        }
        self.samples += samples;
        self.highest = Some(self.highest.map_or(ts, |h| h.max(ts)));
        let address = Arc::as_ptr(resource) as usize;
        let last_resource = self.last.map(|((r, _, _), _)| r);
        let r = match last_resource {
            // One batch is one target: its points mostly share a resource.
            Some(r) if self.addresses.get(r) == Some(&address) => r,
            _ => match self.resources.get(&address) {
                Some(&(_, r)) => r,
                None => {
                    let r = self.current.resource_metrics.len();
                    self.current.resource_metrics.push(ResourceMetrics {
                        resource: Some(Resource {
                            attributes: resource
                                .0
                                .iter()
                                .map(|(k, v)| string_attribute(k, v))
                                .collect(),
                            ..Default::default()
                        }),
                        scope_metrics: vec![ScopeMetrics {
                            scope: Some(self.scope.clone()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    });
                    self.resources.insert(address, (resource.clone(), r));
                    self.addresses.push(address);
                    r
                }
            },
        };
        let key: MetricKey = (r, Arc::as_ptr(name) as *const u8 as usize, kind);
        let m = match self.last {
            Some((k, m)) if k == key => m,
            _ => match self.metrics.get(&key) {
                Some(&(_, m)) => m,
                None => {
                    let scope = &mut self.current.resource_metrics[r].scope_metrics[0];
                    let m = scope.metrics.len();
                    let data = match kind {
                        Kind::Gauge => metric::Data::Gauge(Gauge::default()),
                        Kind::Sum => metric::Data::Sum(Sum {
                            aggregation_temporality: CUMULATIVE,
                            is_monotonic: true,
                            ..Default::default()
                        }),
                        Kind::Histogram => metric::Data::Histogram(Histogram {
                            aggregation_temporality: CUMULATIVE,
                            ..Default::default()
                        }),
                        Kind::Summary => metric::Data::Summary(Summary::default()),
                    };
                    scope.metrics.push(Metric {
                        name: name.to_string(),
                        data: Some(data),
                        ..Default::default()
                    });
                    self.metrics.insert(key, (name.clone(), m));
                    m
                }
            },
        };
        self.last = Some((key, m));
        let scope = &mut self.current.resource_metrics[r].scope_metrics[0];
        // Every metric is created with its data just above.
        scope.metrics[m]
            .data
            .get_or_insert(metric::Data::Gauge(Gauge::default()))
    }

    /// Files `p` under its metric (`name` of `p`'s kind under `resource`).
    fn push(
        &mut self,
        resource: &Arc<ResourceKey>,
        name: &Arc<str>,
        p: DataPoint,
        samples: usize,
        ts: i64,
    ) {
        match (self.metric(resource, name, p.kind(), samples, ts), p) {
            (metric::Data::Gauge(g), DataPoint::Number(_, p)) => g.data_points.push(p),
            (metric::Data::Sum(s), DataPoint::Number(_, p)) => s.data_points.push(p),
            (metric::Data::Histogram(h), DataPoint::Histogram(p)) => h.data_points.push(p),
            (metric::Data::Summary(s), DataPoint::Summary(p)) => s.data_points.push(p),
            // `metric` creates the data of the point's kind.
            _ => {}
        }
    }

    /// Closes the current request.
    fn cut(&mut self) {
        if self.samples == 0 {
            return;
        }
        self.done.push(EncodedRequest {
            message: std::mem::take(&mut self.current),
            samples: std::mem::take(&mut self.samples),
            highest_timestamp_ms: self.highest.take(),
        });
        self.resources.clear();
        self.addresses.clear();
        self.metrics.clear();
        self.last = None;
    }

    fn finish(mut self) -> Vec<EncodedRequest> {
        self.cut();
        self.done
    }
}

#[cfg(test)]
mod tests {
    //! What the Python receiver cannot show: how requests are cut and what is dropped. The points
    //! themselves are checked against the real receiver in `tests/receiver.rs`.

    use surge_model::Tier;
    use surge_sender::{Samples, SeriesMeta, SeriesSamples};

    use super::*;

    /// A series of one sample: name, labels, timestamp, value.
    type Row<'a> = (&'a str, &'a [(&'a str, &'a str)], i64, f64);

    fn batch(series: &[Row]) -> Batch {
        Batch {
            tier: Tier::Standard,
            series: series
                .iter()
                .map(|(name, labels, ts, v)| {
                    let mut pairs = vec![(METRIC_NAME, *name)];
                    pairs.extend_from_slice(labels);
                    SeriesSamples {
                        series: SeriesMeta::new(Labels::from_pairs(pairs)),
                        samples: Samples::from_slice(&[Sample {
                            timestamp_ms: *ts,
                            value: *v,
                        }]),
                    }
                })
                .collect(),
            scrape_end_ms: 0,
        }
    }

    #[test]
    fn requests_are_cut_at_the_sample_budget_and_a_histogram_is_never_split() {
        let b = batch(&[
            ("a", &[], 1000, 1.0),
            ("h_bucket", &[("le", "1")], 1000, 1.0),
            ("h_bucket", &[("le", "+Inf")], 1000, 2.0),
            ("h_sum", &[], 1000, 3.0),
            ("h_count", &[], 1000, 2.0),
            ("b", &[], 1000, 1.0),
        ]);
        let e = Encoder::new(ResourceLabels::default(), 3).encode([&b]);
        // `a` alone (the histogram's 4 samples do not fit beside it), the histogram alone (over the
        // budget on its own, never split), then `b`.
        let samples: Vec<usize> = e.requests.iter().map(|r| r.samples).collect();
        assert_eq!(samples, [1, 4, 1]);
        assert!(e.dropped.is_empty());
        let names: Vec<Vec<String>> = e
            .requests
            .iter()
            .map(|r| {
                r.message.resource_metrics[0].scope_metrics[0]
                    .metrics
                    .iter()
                    .map(|m| m.name.clone())
                    .collect()
            })
            .collect();
        assert_eq!(names, [vec!["a"], vec!["h"], vec!["b"]]);
        assert_eq!(e.requests[1].highest_timestamp_ms, Some(1000));
    }

    #[test]
    fn samples_before_1970_are_dropped_and_counted() {
        let b = batch(&[("a", &[], -5, 1.0), ("b", &[], 5, 1.0)]);
        let e = Encoder::new(ResourceLabels::default(), 100).encode([&b]);
        assert_eq!(e.dropped, [("negative_timestamp", 1)]);
        assert_eq!(e.requests.len(), 1);
        assert_eq!(e.requests[0].samples, 1);
    }

    #[test]
    fn float_label_values_parse_as_prometheus_writes_them() {
        assert_eq!(parse_float("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_float("1e-3"), Some(0.001));
        assert_eq!(parse_float("NaN"), None);
        assert_eq!(parse_float("abc"), None);
    }
}

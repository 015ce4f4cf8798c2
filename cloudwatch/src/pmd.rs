//! CloudWatch `PutMetricData`: points → metric data, cut into calls within the API's limits.
//!
//! Limits kept (REFERENCE §6): at most 1,000 metric data per call and 1 MB of request (estimated from
//! above, before compression), at most 150 distinct values per datum, at most 30 dimensions (the
//! layout's bound), timestamps within [now − 14 days, now + 2 hours] (others dropped and counted,
//! `timestamp_out_of_range`), no NaN/Inf (dropped in [`points`](crate::points), `non_finite`).
//!
//! Points of one metric, dimension set, timestamp and resolution become one datum with `Values` and
//! `Counts` (equal values counted once), which is what makes a call carry many samples: the request
//! count per second is the sample rate over the samples a call can hold (see the crate's figures).
//!
//! The SDK gzips a request body of 10 KiB or more (PutMetricData is marked `@requestCompression`);
//! smaller bodies gain little and are sent plain.

use std::sync::Arc;

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use surge_sender::{Attempt, Chunk, Cut, Deliver, Encoded, SendFuture};

use crate::aws::classify;
use crate::points::{Dimensions, FastMap, Point, PointValue, Preparer};

/// Metric data per call.
pub const MAX_DATA_PER_CALL: usize = 1_000;
/// Request bytes per call.
pub const MAX_CALL_BYTES: usize = 1_000_000;
/// Distinct values per datum.
pub const MAX_VALUES_PER_DATUM: usize = 150;
/// The oldest timestamp CloudWatch takes, relative to now.
pub const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000;
/// The furthest ahead CloudWatch takes a timestamp.
pub const MAX_AHEAD_MS: i64 = 2 * 3600 * 1000;

/// One datum before it becomes the SDK's type (so cutting is testable without it).
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub name: Arc<str>,
    /// Shared with the points (interned by the [`Preparer`]): a datum copies no strings.
    pub dims: Arc<Dimensions>,
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
                .pairs()
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
    // (name, dims, timestamp, resolution) → open datum index. Bounded by the chunk's points.
    let mut open: FastMap<(&str, u32, i64, u8), usize> = FastMap::default();
    let mut data: Vec<Datum> = Vec::with_capacity(points.len());
    for p in points {
        if p.timestamp_ms < now_ms - MAX_AGE_MS || p.timestamp_ms > now_ms + MAX_AHEAD_MS {
            out_of_range += p.samples;
            continue;
        }
        let key = (p.name.as_ref(), p.dims.id(), p.timestamp_ms, p.resolution);
        let single;
        let (values, counts): (&[f64], &[f64]) = match &p.value {
            PointValue::Single(v) => {
                single = [*v, 1.0];
                (&single[..1], &single[1..])
            }
            PointValue::Distribution { values, counts } => (values, counts),
        };
        let mut samples = p.samples;
        for (&v, &c) in values.iter().zip(counts) {
            let idx = match open.get(&key) {
                Some(&i) => i,
                None => new_datum(&mut data, &mut open, key, p),
            };
            let idx = match data.get_mut(idx) {
                Some(d) if d.values.contains(&v) || d.values.len() < MAX_VALUES_PER_DATUM => idx,
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
    open: &mut FastMap<(&'p str, u32, i64, u8), usize>,
    key: (&'p str, u32, i64, u8),
    p: &Point,
) -> usize {
    data.push(Datum {
        name: p.name.clone(),
        dims: p.dims.clone(),
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

/// The SDK's datum for `d`.
fn to_sdk(d: &Datum) -> MetricDatum {
    let builder = MetricDatum::builder()
        .metric_name(d.name.as_ref())
        .timestamp(DateTime::from_millis(d.timestamp_ms))
        .storage_resolution(i32::from(d.resolution))
        .set_dimensions(Some(
            d.dims
                .pairs()
                .iter()
                .map(|(k, v)| Dimension::builder().name(k).value(v).build())
                .collect(),
        ));
    if d.values.len() == 1 && d.counts.first() == Some(&1.0) {
        builder.value(d.values[0]).build()
    } else {
        builder
            .set_values(Some(d.values.clone()))
            .set_counts(Some(d.counts.clone()))
            .build()
    }
}

/// `PutMetricData` to one namespace.
pub struct PutMetricData {
    preparer: Preparer,
    client: Client,
    namespace: String,
    clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

impl PutMetricData {
    /// `clock` returns now in ms since the epoch.
    pub fn new(
        preparer: Preparer,
        client: Client,
        namespace: String,
        clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    ) -> Self {
        PutMetricData {
            preparer,
            client,
            namespace,
            clock,
        }
    }
}

/// A call's data, in the SDK's type, with its estimated size.
pub struct Call {
    data: Vec<MetricDatum>,
    bytes: usize,
}

impl Deliver for PutMetricData {
    const KIND: &'static str = "PutMetricData";

    type Request = Call;

    fn encode(&self, chunk: &Chunk) -> Encoded<Call> {
        let prepared = self.preparer.prepare(chunk);
        let cut = cut_calls(&prepared.points, (self.clock)());
        let mut dropped = prepared.dropped;
        dropped.extend(cut.dropped);
        Encoded {
            requests: cut
                .requests
                .into_iter()
                .map(|c| Cut {
                    request: Call {
                        bytes: c.request.iter().map(Datum::bytes).sum(),
                        data: c.request.iter().map(to_sdk).collect(),
                    },
                    samples: c.samples,
                    highest_timestamp_ms: c.highest_timestamp_ms,
                })
                .collect(),
            dropped,
        }
    }

    fn send<'a>(&'a self, call: &'a Call) -> SendFuture<'a> {
        Box::pin(async move {
            let result = self
                .client
                .put_metric_data()
                .namespace(&self.namespace)
                .set_metric_data(Some(call.data.clone()))
                .send()
                .await;
            match result {
                Ok(_) => Attempt::Delivered { bytes: call.bytes },
                Err(e) => classify(&e),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn point(name: &str, dims: &Arc<Dimensions>, ts: i64, v: f64) -> Point {
        Point {
            name: Arc::from(name),
            dims: dims.clone(),
            timestamp_ms: ts,
            resolution: 1,
            value: PointValue::Single(v),
            samples: 1,
        }
    }

    fn dims(id: u32, pod: &str) -> Arc<Dimensions> {
        Arc::new(Dimensions::new(id, vec![("pod".into(), pod.into())]))
    }

    #[test]
    fn calls_hold_at_most_1000_data_and_150_values_and_lose_nothing() {
        let mut points = Vec::new();
        for i in 0..2500 {
            points.push(point(
                &format!("m{}", i % 1200),
                &dims(i / 1200, "p"),
                NOW,
                i as f64,
            ));
        }
        // 400 distinct values of one metric: split over 3 data.
        for i in 0..400 {
            points.push(point("wide", &dims(9, "w"), NOW, i as f64));
        }
        // Repeated values are counted, not repeated.
        for _ in 0..10 {
            points.push(point("same", &dims(9, "w"), NOW, 7.0));
        }
        let out = cut_calls(&points, NOW);
        assert!(out.dropped.is_empty());
        let mut samples = 0;
        let mut wide = Vec::new();
        for cut in &out.requests {
            assert!(cut.request.len() <= MAX_DATA_PER_CALL);
            assert!(cut.request.iter().map(Datum::bytes).sum::<usize>() <= MAX_CALL_BYTES);
            for d in &cut.request {
                assert!(d.values.len() <= MAX_VALUES_PER_DATUM);
                if d.name.as_ref() == "wide" {
                    wide.extend(d.values.iter().copied());
                }
                if d.name.as_ref() == "same" {
                    assert_eq!(
                        (d.values.clone(), d.counts.clone()),
                        (vec![7.0], vec![10.0])
                    );
                }
            }
            samples += cut.samples;
        }
        assert_eq!(samples, 2910);
        wide.sort_by(f64::total_cmp);
        assert_eq!(wide, (0..400).map(f64::from).collect::<Vec<_>>());
        let data: usize = out.requests.iter().map(|c| c.request.len()).sum();
        // 2500 points over 1200 names × 3 dimension sets = 2500 data; wide 3; same 1.
        assert_eq!(data, 2504);
        assert_eq!(out.requests.len(), 3);
    }

    #[test]
    fn timestamps_outside_the_accepted_window_are_dropped_and_counted() {
        let d = dims(0, "p");
        let out = cut_calls(
            &[
                point("a", &d, NOW - MAX_AGE_MS - 1, 1.0),
                point("a", &d, NOW + MAX_AHEAD_MS + 1, 1.0),
                point("a", &d, NOW + MAX_AHEAD_MS, 1.0),
            ],
            NOW,
        );
        assert_eq!(out.dropped, vec![("timestamp_out_of_range", 2)]);
        assert_eq!(out.requests[0].samples, 1);
    }
}

//! EMF encoding throughput: a chunk of one scrape of many pods (samples → points → documents), in
//! steady state (counters have their baseline). Floor: 2 M samples/s per core.
//!
//! Configuration: 2,000 series per chunk over 20 pods (dimensions `namespace`, `pod`), 100 metric names
//! per pod, half counters (`_total`) and half gauges, one sample each, critical tier.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use surge_cloudwatch::emf::{DEFAULT_MAX_EVENT_BYTES, EmfEncoder};
use surge_cloudwatch::pmd::cut_calls;
use surge_cloudwatch::points::{Layout, Preparer};
use surge_model::{Labels, Sample, Tier};
use surge_sender::{Batch, Chunk, SeriesMeta, SeriesSamples};

const PODS: usize = 20;
const NAMES: usize = 100;

fn series() -> Vec<SeriesMeta> {
    let mut out = Vec::new();
    for pod in 0..PODS {
        for n in 0..NAMES {
            let name = if n % 2 == 0 {
                format!("app_requests_{n}_total")
            } else {
                format!("app_gauge_{n}")
            };
            out.push(SeriesMeta::new(Labels::from_pairs([
                ("__name__", name),
                ("namespace", "shop".to_owned()),
                ("pod", format!("web-{pod}")),
                ("instance", format!("10.0.0.{pod}:8080")),
                ("job", "web".to_owned()),
            ])));
        }
    }
    out
}

fn chunk(series: &[SeriesMeta], ts: i64) -> Chunk {
    Chunk {
        tier: Tier::Critical,
        batches: vec![Arc::new(Batch {
            tier: Tier::Critical,
            series: series
                .iter()
                .enumerate()
                .map(|(i, s)| SeriesSamples {
                    series: s.clone(),
                    samples: smallvec::smallvec![Sample {
                        timestamp_ms: ts,
                        value: (ts / 1000) as f64 * 3.0 + i as f64 * 0.5,
                    }],
                })
                .collect(),
            scrape_end_ms: ts,
        })],
    }
}

fn bench(c: &mut Criterion) {
    let series = series();
    let preparer = Preparer::new(Layout {
        dimensions: vec!["namespace".into(), "pod".into()],
        counter_pattern: None,
    });
    let encoder = EmfEncoder::new("surge", DEFAULT_MAX_EVENT_BYTES);
    let ts = std::cell::Cell::new(1_800_000_000_000i64);
    // Baselines for the counters, so the loop measures the steady state.
    preparer.prepare(&chunk(&series, ts.get()));
    let mut g = c.benchmark_group("emf");
    g.throughput(Throughput::Elements(series.len() as u64));
    g.bench_function("prepare_and_encode_2000_samples", |b| {
        b.iter_batched(
            || {
                ts.set(ts.get() + 1000);
                chunk(&series, ts.get())
            },
            |chunk| {
                let points = preparer.prepare(&chunk);
                encoder.encode(&points.points)
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.bench_function("prepare_and_cut_put_metric_data_2000_samples", |b| {
        b.iter_batched(
            || {
                ts.set(ts.get() + 1000);
                chunk(&series, ts.get())
            },
            |chunk| {
                let points = preparer.prepare(&chunk);
                cut_calls(&points.points, ts.get())
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! OTLP encoding throughput, in scraped samples per second: one scrape's batch (a typical service:
//! gauges, `_total` counters and classic histograms, with Kubernetes labels) → recognised kinds,
//! resource, start times → `ExportMetricsServiceRequest`s → protobuf bytes (what the HTTP transport
//! sends; gRPC encodes the same message). The encoder is warm, as in steady state: each series' shape is
//! cached after its first scrape.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use surge_model::{Labels, Sample, Tier};
use surge_otlp::{Encoder, ResourceLabels};
use surge_sender::{Batch, Samples, SeriesMeta, SeriesSamples};

/// One scrape of one pod: `families` families, each of 10 label combinations: 40% gauges, 40%
/// counters, 20% histograms with 10 buckets (+Inf included) and `_sum` / `_count`.
fn scrape(families: usize, ts: i64) -> Batch {
    let pod = [
        ("job", "checkout"),
        ("instance", "10.1.2.3:8080"),
        ("namespace", "shop"),
        ("pod", "checkout-6f7d8c9b5-x2k4q"),
        ("node", "ip-10-1-2-3.ec2.internal"),
        ("container", "checkout"),
    ];
    let mut series = Vec::new();
    let mut push = |name: String, extra: Vec<(&str, String)>, value: f64| {
        let mut pairs: Vec<(String, String)> = vec![("__name__".into(), name)];
        pairs.extend(pod.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        pairs.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v)));
        series.push(SeriesSamples {
            series: SeriesMeta::new(Labels::from_pairs(pairs)),
            samples: Samples::from_slice(&[Sample {
                timestamp_ms: ts,
                value,
            }]),
        });
    };
    let bounds = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
    ];
    for f in 0..families {
        for v in 0..10 {
            let route = || ("route", format!("/api/v{v}"));
            match f % 5 {
                0 | 1 => push(
                    format!("app_gauge_{f}"),
                    vec![route()],
                    (f * v) as f64 + 0.5,
                ),
                2 | 3 => push(
                    format!("app_requests_{f}_total"),
                    vec![route()],
                    (1000 + f * v) as f64,
                ),
                _ => {
                    for (i, le) in bounds.iter().enumerate() {
                        push(
                            format!("app_latency_{f}_seconds_bucket"),
                            vec![route(), ("le", (*le).to_owned())],
                            (10 * (i + 1)) as f64,
                        );
                    }
                    push(format!("app_latency_{f}_seconds_sum"), vec![route()], 12.5);
                    push(
                        format!("app_latency_{f}_seconds_count"),
                        vec![route()],
                        100.0,
                    );
                }
            }
        }
    }
    Batch {
        tier: Tier::Standard,
        series,
        scrape_end_ms: ts,
    }
}

fn bench(c: &mut Criterion) {
    let batch = scrape(100, 1_700_000_000_000);
    let samples = batch.sample_count() as u64;
    let encoder = Encoder::new(ResourceLabels::default(), 2000);
    let _ = encoder.encode([&batch]);
    let mut g = c.benchmark_group("otlp_encode");
    g.throughput(Throughput::Elements(samples));
    g.bench_function(format!("scrape_{samples}_samples_to_protobuf"), |b| {
        b.iter(|| {
            let encoded = encoder.encode([black_box(&batch)]);
            let bytes: usize = encoded
                .requests
                .iter()
                .map(|r| r.message.encode_to_vec().len())
                .sum();
            black_box(bytes)
        })
    });
    g.bench_function(format!("scrape_{samples}_samples_to_messages"), |b| {
        b.iter(|| black_box(encoder.encode([black_box(&batch)])))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Remote-write ingest throughput through the aggregator's router (in-process `oneshot`, no socket):
//! bodies of 2,000 samples (the agent's batch: 2,000 series × 1 sample) and of 500 series × 1 sample,
//! plus the same without HTTP (`AggregatorState::ingest_body`).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::body::Body;
use axum::http::Request;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use surge_aggregator::{
    AggregatorState, CacheOptions, IngestOptions, QueryOptions, Sender, now_ms, router,
};
use surge_model::{Labels, Sample};
use surge_proto::remote_write::{compress, encode_label_block, encode_series};
use tower::ServiceExt;

/// Pre-encoded label blocks of `n` series shaped like an app's metrics.
fn label_blocks(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let l = Labels::from_pairs([
                ("__name__", format!("http_requests_total_{}", i % 50)),
                ("job", "api".to_string()),
                ("namespace", "prod".to_string()),
                ("pod", format!("api-7d9f8-{:05}", i / 50)),
                ("code", "200".to_string()),
            ]);
            encode_label_block(&l)
        })
        .collect()
}

/// One compressed body: one sample per series at `t`.
fn body(blocks: &[Vec<u8>], t: i64, enc: &mut snap::raw::Encoder) -> Vec<u8> {
    let mut raw = Vec::with_capacity(blocks.len() * 120);
    for (i, b) in blocks.iter().enumerate() {
        encode_series(
            &mut raw,
            b,
            &[Sample {
                timestamp_ms: t,
                value: (t / 1000 + i as i64) as f64,
            }],
        );
    }
    compress(&raw, enc)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for n in [2000usize, 500] {
        let st = AggregatorState::standalone(
            CacheOptions::default(),
            QueryOptions::default(),
            IngestOptions::default(),
        );
        let app = router(st.clone());
        let blocks = label_blocks(n);
        // Each iteration writes a newer timestamp (1 ms apart), so every sample is appended.
        let clock = Arc::new(AtomicI64::new(now_ms() - 240_000));
        let mut enc = snap::raw::Encoder::new();
        let mut g = c.benchmark_group("aggregator_ingest");
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("router_{n}_series_x1"), |b| {
            b.iter_batched(
                || {
                    let t = clock.fetch_add(1, Ordering::Relaxed);
                    Request::post("/api/v1/write")
                        .header("content-encoding", "snappy")
                        .header("content-type", "application/x-protobuf")
                        .header("user-agent", "surge-agent/0.1")
                        .body(Body::from(body(&blocks, t, &mut enc)))
                        .unwrap()
                },
                |req| {
                    let resp = rt.block_on(app.clone().oneshot(req)).unwrap();
                    assert_eq!(resp.status(), 204);
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function(format!("direct_{n}_series_x1"), |b| {
            b.iter_batched(
                || body(&blocks, clock.fetch_add(1, Ordering::Relaxed), &mut enc),
                |body| {
                    let s = st.ingest_body(&body, Sender::SurgeAgent, now_ms()).unwrap();
                    assert_eq!(s.accepted, n as u64);
                },
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

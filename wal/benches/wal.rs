//! The durable queue's hot paths: appending records, reading them back (replay), and `submit` while the
//! destination is healthy (the critical tier's latency). Run: `cargo bench -p surge-wal`.
//!
//! Besides criterion's timings it prints, once, the disk bytes per sample and the p50/p99 of single
//! `submit` calls (criterion reports means, and the bound is on the p99).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use surge_model::{Labels, Sample, Tier};
use surge_sender::{
    Batch, Output, RemoteWriteSender, SenderMetrics, SenderOptions, SeriesMeta, SeriesSamples,
};
use surge_wal::{
    DurableOptions, DurableOutput, FsyncPolicy, Log, LogReader, ReadOutcome, WalMetrics,
};

/// One scrape of a typical target: 1000 series with realistic label sets, one sample each.
fn batch(series: &[SeriesMeta], ts: i64) -> Batch {
    Batch {
        tier: Tier::Critical,
        series: series
            .iter()
            .enumerate()
            .map(|(i, s)| SeriesSamples {
                series: s.clone(),
                samples: smallvec::smallvec![Sample {
                    timestamp_ms: ts,
                    value: (ts + i as i64) as f64 * 1.5,
                }],
            })
            .collect(),
        scrape_end_ms: ts,
    }
}

fn series(n: usize) -> Vec<SeriesMeta> {
    (0..n)
        .map(|i| {
            SeriesMeta::new(Labels::from_pairs([
                ("__name__", "http_requests_total"),
                ("instance", "10.1.2.3:8080"),
                ("job", "api"),
                ("method", if i % 2 == 0 { "GET" } else { "POST" }),
                ("route", format!("/v1/items/{}", i / 2).as_str()),
            ]))
        })
        .collect()
}

fn encode_all(series: &[SeriesMeta], batches: usize) -> (Vec<u8>, Vec<(u64, u32)>) {
    let mut frames = Vec::new();
    let mut recs = Vec::new();
    for seq in 0..batches as u64 {
        let n = surge_wal::record::encode(seq, &batch(series, seq as i64 * 1000), &mut frames);
        recs.push((seq, n as u32));
    }
    (frames, recs)
}

fn append_and_replay(c: &mut Criterion) {
    let s = series(1000);
    let (frames, recs) = encode_all(&s, 50);
    let samples = 50 * 1000;
    println!(
        "disk bytes per sample: {:.1} (1000 series x 5 labels, one sample each; record framing included)",
        frames.len() as f64 / samples as f64
    );
    let mut g = c.benchmark_group("wal");
    g.throughput(Throughput::Elements(samples as u64));
    g.bench_function("encode_50k_samples", |b| {
        b.iter(|| encode_all(&s, 50));
    });
    g.bench_function("append_50k_samples_fsync_never", |b| {
        b.iter_with_setup(
            || tempfile::tempdir().unwrap(),
            |dir| {
                let (mut log, _) = Log::open(dir.path(), 16 << 20, FsyncPolicy::Never).unwrap();
                log.append(&frames, &recs).unwrap();
                dir
            },
        );
    });
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _) = Log::open(dir.path(), 1 << 20, FsyncPolicy::Never).unwrap();
        log.append(&frames, &recs).unwrap();
    }
    g.bench_function("replay_50k_samples", |b| {
        b.iter(|| {
            let (log, _) = Log::open(dir.path(), 1 << 20, FsyncPolicy::Never).unwrap();
            let mut r = LogReader::new(log.index());
            let mut n = 0;
            for seq in 0..50 {
                if let ReadOutcome::Batch(b) = r.read(seq, 50) {
                    n += b.sample_count();
                }
            }
            assert_eq!(n, samples);
        });
    });
    g.finish();
}

fn submit_latency(c: &mut Criterion) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = series(1000);
    let (out, plain): (Arc<DurableOutput>, RemoteWriteSender) = rt.block_on(async {
        // A receiver that answers 204 to everything: the healthy destination.
        let app = axum::Router::new().route(
            "/write",
            axum::routing::post(|| async { axum::http::StatusCode::NO_CONTENT }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/write", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let mut registry = prometheus_client::registry::Registry::default();
        let sm = SenderMetrics::new(&mut registry);
        let wm = WalMetrics::new(&mut registry);
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let sender = RemoteWriteSender::try_start(
            SenderOptions::new("bench", url.clone()),
            client.clone(),
            &sm,
        )
        .unwrap();
        // The baseline: the same sender without the durable queue, to the same receiver.
        let plain =
            RemoteWriteSender::try_start(SenderOptions::new("plain", url), client, &sm).unwrap();
        let opts = DurableOptions {
            fsync: FsyncPolicy::Batch(Duration::from_secs(1)),
            ..DurableOptions::new(dir.path())
        };
        (
            DurableOutput::start(opts, sender, 100_000, &wm).unwrap().0,
            plain,
        )
    });
    // p50/p99 of single submits of a 1000-series critical batch, one per millisecond (a busy agent),
    // through the durable queue and, interleaved in the same run, through the plain sender: what the
    // queue adds to the critical tier's path is the difference.
    let mut lat = Vec::with_capacity(2000);
    let mut base = Vec::with_capacity(2000);
    for ts in 0..2000 {
        let b = Arc::new(batch(&s, ts));
        let t = Instant::now();
        out.submit(b.clone());
        lat.push(t.elapsed());
        std::thread::sleep(Duration::from_micros(500));
        let t = Instant::now();
        plain.submit(b);
        base.push(t.elapsed());
        std::thread::sleep(Duration::from_micros(500));
    }
    for v in [&mut lat, &mut base] {
        v.sort();
    }
    let pct = |v: &[Duration], q: usize| v[v.len() * q / 100];
    println!(
        "submit of 1000 samples, healthy destination: durable p50 {:?}, p99 {:?}, max {:?}; plain sender \
         (same run, interleaved) p50 {:?}, p99 {:?}, max {:?}; durable / plain p50 ×{:.2}, p99 ×{:.2}",
        pct(&lat, 50),
        pct(&lat, 99),
        lat[lat.len() - 1],
        pct(&base, 50),
        pct(&base, 99),
        base[base.len() - 1],
        pct(&lat, 50).as_secs_f64() / pct(&base, 50).as_secs_f64().max(1e-9),
        pct(&lat, 99).as_secs_f64() / pct(&base, 99).as_secs_f64().max(1e-9),
    );
    let mut g = c.benchmark_group("durable");
    g.throughput(Throughput::Elements(1000));
    let mut ts = 10_000;
    g.bench_function("submit_1000_samples_healthy", |b| {
        b.iter(|| {
            ts += 1;
            out.submit(Arc::new(batch(&s, ts)));
        });
    });
    g.finish();
    rt.block_on(async {
        out.shutdown(Duration::from_secs(5)).await;
        plain.shutdown(Duration::from_secs(5)).await;
    });
}

criterion_group!(benches, append_and_replay, submit_latency);
criterion_main!(benches);

//! Instant query `sum(rate(x[30s]))` over 10,000 series holding 5 min of 1 s samples each. Before the
//! criterion run, a plain loop prints p50/p99/max of 1,000 evaluations with one and with two scan threads
//! (`SeriesCache::set_scan_threads`; criterion reports the mean, with the default of one).

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use surge_model::{Labels, Sample};
use surge_promql::{EvalOptions, Value, eval_instant, parse};
use surge_store::cache::AppendBounds;
use surge_store::{CacheOptions, SeriesCache};

const SERIES: usize = 10_000;

fn build(now: i64) -> SeriesCache {
    let cache = SeriesCache::new(CacheOptions::default());
    for k in 0..SERIES {
        let l = Labels::from_pairs([
            ("__name__", "x".to_string()),
            ("job", format!("job{}", k % 10)),
            ("pod", format!("pod-{k:05}")),
        ]);
        let s = cache.get_or_create(&l, now).unwrap();
        let mut v = 0.0;
        for i in 0..300i64 {
            v += ((i as usize * 31 + k * 17) % 13) as f64;
            s.append(
                std::iter::once(Sample {
                    timestamp_ms: now - 299_000 + i * 1000,
                    value: v,
                }),
                AppendBounds {
                    min_ms: 0,
                    max_ms: i64::MAX,
                    now_ms: now,
                },
                cache.retention_ms(),
            );
        }
    }
    cache
}

fn percentiles(cache: &SeriesCache, q: &str, now: i64, threads: usize) {
    cache.set_scan_threads(threads);
    let e = parse(q).unwrap();
    let opts = EvalOptions::default();
    let mut d: Vec<Duration> = (0..1000)
        .map(|_| {
            let t = Instant::now();
            let v = eval_instant(cache, &e, now, &opts).unwrap();
            assert!(matches!(v, Value::Vector(ref v) if !v.is_empty()));
            t.elapsed()
        })
        .collect();
    d.sort();
    println!(
        "{q} over {SERIES} series, {threads} scan thread(s): p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        d[500], d[900], d[990], d[999]
    );
}

fn main() {
    let now = 1_700_000_300_000;
    let cache = build(now);
    for threads in [1, 2] {
        for q in ["sum(rate(x[30s]))", "sum by (job) (rate(x[1m]))", "sum(x)"] {
            percentiles(&cache, q, now, threads);
        }
    }
    cache.set_scan_threads(1);
    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("aggregator_query");
    g.throughput(Throughput::Elements(SERIES as u64));
    for q in ["sum(rate(x[30s]))", "sum by (job) (rate(x[1m]))"] {
        let e = parse(q).unwrap();
        let opts = EvalOptions::default();
        g.bench_function(q, |b| {
            b.iter(|| eval_instant(&cache, &e, now, &opts).unwrap())
        });
    }
    g.finish();
    c.final_summary();
}

//! Policies re-evaluated per second on one core: 10,000 HPA policies, each reading its own series through
//! a PromQL query over the cache, the engine, and the decision record (what one ingest-triggered
//! evaluation costs in the aggregator).

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prometheus_client::registry::Registry;
use surge_aggregator::{
    AggregatorState, CacheOptions, IngestOptions, QueryOptions, Sender, now_ms,
};
use surge_autoscaler::{Autoscaler, VirtualWorkloads, build_policies};
use surge_model::{Labels, Sample};
use surge_proto::remote_write::{compress, encode_label_block, encode_series};

const POLICIES: usize = 10_000;

fn setup() -> (Arc<AggregatorState>, Arc<Autoscaler>) {
    let mut yaml = String::from("policies:\n");
    for i in 0..POLICIES {
        yaml.push_str(&format!(
            "  - name: p{i}\n    hpa: |\n      apiVersion: autoscaling/v2\n      kind: HorizontalPodAutoscaler\n      metadata: {{name: w{i}, namespace: bench}}\n      spec:\n        scaleTargetRef: {{kind: Deployment, name: w{i}}}\n        minReplicas: 1\n        maxReplicas: 100\n        metrics:\n          - type: External\n            external:\n              metric: {{name: load}}\n              target: {{type: AverageValue, averageValue: \"10\"}}\n    metrics:\n      load: sum(rate(requests_total{{workload=\"w{i}\"}}[30s]))\n"
        ));
    }
    let cfg = surge_config::load_str(&yaml, "bench.yaml", &surge_config::MapEnv::default())
        .expect("config");
    let policies = build_policies(&cfg).expect("policies");
    let state = AggregatorState::standalone(
        CacheOptions::default(),
        QueryOptions::default(),
        IngestOptions::default(),
    );
    // 60 s of 1 s samples per workload's counter.
    let now = now_ms();
    let mut enc = snap::raw::Encoder::new();
    for chunk in (0..POLICIES).collect::<Vec<_>>().chunks(1000) {
        let mut raw = Vec::new();
        for &i in chunk {
            let w = format!("w{i}");
            let l = Labels::from_pairs([("__name__", "requests_total"), ("workload", w.as_str())]);
            let samples: Vec<Sample> = (0..60)
                .map(|k| Sample {
                    timestamp_ms: now - (60 - k) * 1000,
                    value: (k * 25) as f64,
                })
                .collect();
            encode_series(&mut raw, &encode_label_block(&l), &samples);
        }
        state
            .ingest_body(&compress(&raw, &mut enc), Sender::Other, now)
            .expect("ingest");
    }
    let a = Autoscaler::new(
        state.cache().clone(),
        state.autoscaling_eval_options(),
        policies,
        Arc::new(VirtualWorkloads::default()),
        &mut Registry::default(),
    );
    (state, a)
}

fn bench(c: &mut Criterion) {
    let (_state, a) = setup();
    let mut g = c.benchmark_group("autoscaler");
    g.throughput(Throughput::Elements(POLICIES as u64));
    g.sample_size(10);
    g.bench_function("evaluate_10000_policies", |b| {
        b.iter(|| a.evaluate_all(now_ms()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! The engine's hot path: one HPA evaluation over 1,000 pods (per-pod custom metric, and CPU utilization
//! with requests), as the aggregator runs it on every ingest that touches the policy.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use surge_engine::{
    ControllerConfig, HpaInput, HpaSpec, HpaState, MetricSample, MetricSource, MetricSpec,
    MetricTarget, PodInfo, PodMetric, evaluate_hpa,
};

const NOW: i64 = 1_800_000_000_000;

fn pods(n: usize) -> Vec<PodInfo> {
    (0..n)
        .map(|i| {
            let mut p = PodInfo::running(&format!("web-{i:04}"), 500);
            p.start_ms = Some(NOW - 3_600_000);
            p.ready_transition_ms = NOW - 3_000_000;
            p
        })
        .collect()
}

fn per_pod(n: usize, value: impl Fn(usize) -> f64) -> MetricSample {
    MetricSample::PerPod(
        (0..n)
            .map(|i| {
                (
                    format!("web-{i:04}"),
                    PodMetric {
                        value: value(i),
                        timestamp_ms: NOW - 1000,
                        window_ms: 30_000,
                    },
                )
            })
            .collect::<BTreeMap<_, _>>(),
    )
}

fn bench(c: &mut Criterion) {
    let n = 1000;
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(1));
    let spec = HpaSpec {
        min_replicas: 1,
        max_replicas: 5000,
        metrics: vec![MetricSpec {
            source: MetricSource::Pods {
                metric: "http_requests_per_second".into(),
            },
            target: MetricTarget::AverageValue(10_000),
        }],
        behavior: None,
        controller: ControllerConfig::default(),
    };
    let input = HpaInput {
        current_replicas: n as i32,
        status_replicas: n as i32,
        pods: pods(n),
        metrics: vec![per_pod(n, |i| 12.0 + (i % 7) as f64)],
    };
    g.bench_function("hpa_pods_metric_1000_pods", |b| {
        let mut state = HpaState::default();
        b.iter(|| black_box(evaluate_hpa(&spec, &mut state, black_box(&input), NOW)))
    });

    let cpu_spec = HpaSpec {
        metrics: vec![MetricSpec {
            source: MetricSource::Resource { name: "cpu".into() },
            target: MetricTarget::Utilization(60),
        }],
        ..spec.clone()
    };
    let cpu_input = HpaInput {
        metrics: vec![per_pod(n, |i| 0.3 + (i % 5) as f64 * 0.05)],
        ..input.clone()
    };
    g.bench_function("hpa_cpu_utilization_1000_pods", |b| {
        let mut state = HpaState::default();
        b.iter(|| {
            black_box(evaluate_hpa(
                &cpu_spec,
                &mut state,
                black_box(&cpu_input),
                NOW,
            ))
        })
    });

    let ext_spec = HpaSpec {
        metrics: vec![MetricSpec {
            source: MetricSource::External {
                metric: "queue".into(),
            },
            target: MetricTarget::AverageValue(50_000),
        }],
        ..spec.clone()
    };
    let ext_input = HpaInput {
        metrics: vec![MetricSample::External(vec![61_000.0])],
        ..input.clone()
    };
    g.bench_function("hpa_external_1000_pods", |b| {
        let mut state = HpaState::default();
        b.iter(|| {
            black_box(evaluate_hpa(
                &ext_spec,
                &mut state,
                black_box(&ext_input),
                NOW,
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! The engine's hot path: one HPA evaluation over 1,000 pods (per-pod custom metric, and CPU utilization
//! with requests), as the aggregator runs it on every ingest that touches the policy.
//!
//! Each iteration advances the clock by the HPA sync period (15 s), as successive evaluations of one
//! workload do: the caller-owned state then holds a steady window of recommendations (at a fixed clock it
//! would grow by one entry per iteration and the benchmark would measure scanning it).

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use surge_engine::{
    ControllerConfig, HpaInput, HpaSpec, HpaState, MetricSample, MetricSource, MetricSpec,
    MetricTarget, PodInfo, PodMetric, evaluate_hpa,
};

const NOW: i64 = 1_800_000_000_000;
const SYNC_PERIOD_MS: i64 = 15_000;

/// Pods `web-0000`.. (in name order, as the API server lists them).
fn sorted_name(i: usize) -> String {
    format!("web-{i:04}")
}

/// Pods `web-7d9f8c6b5-0`.. in index order: not in name order (`-10` sorts before `-2`), as the
/// aggregator's virtual workloads name them.
fn unsorted_name(i: usize) -> String {
    format!("web-7d9f8c6b5-{i}")
}

fn pods(n: usize, name: fn(usize) -> String) -> Vec<PodInfo> {
    (0..n)
        .map(|i| {
            let mut p = PodInfo::running(&name(i), 500);
            p.start_ms = Some(NOW - 3_600_000);
            p.ready_transition_ms = NOW - 3_000_000;
            p
        })
        .collect()
}

fn per_pod(n: usize, name: fn(usize) -> String, value: impl Fn(usize) -> f64) -> MetricSample {
    MetricSample::PerPod(
        (0..n)
            .map(|i| {
                (
                    name(i),
                    PodMetric {
                        milli: surge_engine::quantity::sample_milli(value(i)).unwrap_or(0),
                        timestamp_ms: NOW - 1000,
                        window_ms: 30_000,
                    },
                )
            })
            .collect::<BTreeMap<_, _>>(),
    )
}

/// Evaluates repeatedly, one sync period apart.
fn run(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
    spec: &HpaSpec,
    input: &HpaInput,
) {
    c.bench_function(id, |b| {
        let mut state = HpaState::default();
        let mut now = NOW;
        b.iter(|| {
            now += SYNC_PERIOD_MS;
            black_box(evaluate_hpa(spec, &mut state, black_box(input), now))
        })
    });
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
    let cpu_spec = HpaSpec {
        metrics: vec![MetricSpec {
            source: MetricSource::Resource { name: "cpu".into() },
            target: MetricTarget::Utilization(60),
        }],
        ..spec.clone()
    };
    let ext_spec = HpaSpec {
        metrics: vec![MetricSpec {
            source: MetricSource::External {
                metric: "queue".into(),
            },
            target: MetricTarget::AverageValue(50_000),
        }],
        ..spec.clone()
    };
    let pods_value = |i: usize| 12.0 + (i % 7) as f64;
    let cpu_value = |i: usize| 0.3 + (i % 5) as f64 * 0.05;

    for (suffix, name) in [
        ("", sorted_name as fn(usize) -> String),
        ("_unsorted", unsorted_name),
    ] {
        let input = HpaInput {
            current_replicas: n as i32,
            status_replicas: n as i32,
            pods: pods(n, name),
            metrics: vec![per_pod(n, name, pods_value)],
        };
        run(
            &mut g,
            &format!("hpa_pods_metric_1000_pods{suffix}"),
            &spec,
            &input,
        );
        let cpu_input = HpaInput {
            metrics: vec![per_pod(n, name, cpu_value)],
            ..input.clone()
        };
        run(
            &mut g,
            &format!("hpa_cpu_utilization_1000_pods{suffix}"),
            &cpu_spec,
            &cpu_input,
        );
        if suffix.is_empty() {
            let ext_input = HpaInput {
                metrics: vec![MetricSample::External(vec![61_000_000])],
                ..input.clone()
            };
            run(&mut g, "hpa_external_1000_pods", &ext_spec, &ext_input);
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

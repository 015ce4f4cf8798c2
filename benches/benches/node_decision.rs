//! Pod decision → node decision: one HPA policy whose every evaluation scales a workload 10 → 20
//! replicas, with and without node decisions (NodePools + the embedded catalog, a cluster of 100 Ready
//! nodes, 2 in-flight claims and 50 Pending pods). The difference between the two is what capacity
//! before Pending adds to a decision: `nodes::plan_ahead` over the cluster, the claims' names, the
//! actuator hand-off (a no-op here). Floor: ≤ 10 ms.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prometheus_client::registry::Registry;
use surge_aggregator::{
    AggregatorState, CacheOptions, IngestOptions, QueryOptions, Sender, now_ms,
};
use surge_autoscaler::{
    Action, Actuator, Autoscaler, NodeDecisions, NodeView, Observed, ScaleTarget, build_policies,
};
use surge_engine::PodInfo;
use surge_model::{Labels, Sample};
use surge_nodes::{CapacityType, ExistingNode, Pod, Resources};
use surge_proto::remote_write::{compress, encode_label_block, encode_series};

const POOLS: &str = r#"apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: general}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      requirements:
        - {key: kubernetes.io/arch, operator: In, values: [amd64]}
        - {key: karpenter.sh/capacity-type, operator: In, values: [spot, on-demand]}
"#;

/// A cluster that stays at 10 replicas, so every evaluation decides 10 → 20 again.
struct Cluster {
    view: NodeView,
}

impl Actuator for Cluster {
    fn observe(&self, _: &ScaleTarget, _: &[&str]) -> Option<Observed> {
        Some(Observed {
            spec_replicas: 10,
            status_replicas: 10,
            pods: (0..10)
                .map(|i| PodInfo::running(&format!("web-{i}"), 0))
                .collect(),
        })
    }
    fn apply(&self, _: Action<'_>) -> String {
        String::new()
    }
    fn observe_nodes(&self) -> Option<NodeView> {
        Some(self.view.clone())
    }
    fn pod_template(&self, _: &ScaleTarget) -> Option<Pod> {
        Some(Pod::new("shop/web", 1000, 2 << 30))
    }
}

fn node(i: usize, requested: Resources) -> ExistingNode {
    ExistingNode {
        name: format!("n{i}"),
        pool: Some("general".into()),
        instance_type: "m5.xlarge".into(),
        capacity_type: CapacityType::OnDemand,
        zone: "us-east-1a".into(),
        labels: Default::default(),
        taints: Vec::new(),
        requested,
        allocatable: None,
    }
}

fn setup(nodes: bool) -> Arc<Autoscaler> {
    let yaml = "policies:\n  - name: web\n    hpa: |\n      apiVersion: autoscaling/v2\n      kind: HorizontalPodAutoscaler\n      metadata: {name: web, namespace: shop}\n      spec:\n        scaleTargetRef: {kind: Deployment, name: web}\n        minReplicas: 1\n        maxReplicas: 100\n        metrics:\n          - type: External\n            external:\n              metric: {name: load}\n              target: {type: AverageValue, averageValue: \"10\"}\n    metrics:\n      load: sum(load)\n";
    let cfg = surge_config::load_str(yaml, "bench.yaml", &surge_config::MapEnv::default())
        .expect("config");
    let policies = build_policies(&cfg).expect("policies");
    let state = AggregatorState::standalone(
        CacheOptions::default(),
        QueryOptions::default(),
        IngestOptions::default(),
    );
    let now = now_ms();
    let mut raw = Vec::new();
    let l = Labels::from_pairs([("__name__", "load")]);
    encode_series(
        &mut raw,
        &encode_label_block(&l),
        &[Sample {
            timestamp_ms: now,
            value: 200.0,
        }],
    );
    state
        .ingest_body(
            &compress(&raw, &mut snap::raw::Encoder::new()),
            Sender::Other,
            now,
        )
        .expect("ingest");
    // 100 Ready nodes, most nearly full; 2 claims in flight; 50 Pending pods of mixed shapes.
    let view = NodeView {
        existing: (0..100)
            .map(|i| node(i, Resources::new(3000 + (i as u64 % 8) * 100, 12 << 30, 3)))
            .collect(),
        in_flight: (100..102).map(|i| node(i, Resources::ZERO)).collect(),
        pending: (0..50)
            .map(|i| {
                Pod::new(
                    &format!("shop/batch-{i}"),
                    500 + (i % 4) * 500,
                    (1 + i % 3) << 30,
                )
            })
            .collect(),
        ..NodeView::default()
    };
    let a = Autoscaler::new(
        state.cache().clone(),
        state.autoscaling_eval_options(),
        policies,
        Arc::new(Cluster { view }),
        &mut Registry::default(),
    );
    if nodes {
        a.set_node_decisions(NodeDecisions {
            pools: surge_nodes::NodePool::all_from_yaml(POOLS, "pools.yaml").expect("pools"),
            catalog: surge_nodes::Catalog::embedded(),
            daemonsets: Vec::new(),
            interval_ms: 5000,
            headroom: None,
        });
    }
    // Keep `state` (and its cache) alive with the autoscaler.
    std::mem::forget(state);
    a
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("node_decision");
    g.throughput(Throughput::Elements(1));
    for (name, nodes) in [
        ("pod_decision_only", false),
        ("pod_and_node_decision", true),
    ] {
        let a = setup(nodes);
        a.evaluate_all(now_ms());
        let d = a.decisions(Some("web"), 1).pop().expect("a decision");
        assert!(d.decision.scale, "{:?}", d.decision);
        if nodes {
            let n = d.nodes.as_ref().expect("a node decision");
            eprintln!(
                "node decision: {} claims, {} µs after the pod decision",
                n.create.len(),
                n.decided_in_us
            );
        }
        g.bench_function(name, |b| b.iter(|| a.evaluate_all(now_ms())));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

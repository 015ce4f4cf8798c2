//! Pod templates as placement reads them, capacity planned from a scale-up decision, and headroom
//! (CapacityBuffer) sizing.
//!
//! Ported tables (kubernetes-sigs/karpenter at 2266468104f36373ed002241afaee2d3bbc26078):
//! - `pkg/controllers/capacitybuffer/helpers_test.go`: `calculateLimitReplicas` (11 cases),
//!   `totalPodRequests` / `resources.RequestsForSpec` (9), `calculatePercentageReplicas` (8); the
//!   `SetCondition` cases (status conditions) are not ported: surge writes no buffer status.
//! - `pkg/controllers/capacitybuffer/suite_test.go`, "Replica calculation" `DescribeTable` (9 entries),
//!   with the PodTemplate or Deployment resolved by the test (no API server: the table checks the
//!   arithmetic, `cpuPod()` being a 1-CPU pod).

// Test helpers may unwrap: a panic there is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use surge_nodes::{
    BufferLimits, BufferSource, CapacityBuffer, CapacityType, Catalog, ExistingNode, GIB, Headroom,
    MIB, NodePool, Pod, ProvisionInput, Resources, ScaleUp, limit_replicas, percentage_replicas,
    plan, plan_ahead,
};

/// A Pod object whose spec is `spec` (indented under `spec:`).
fn pod_yaml(spec: &str) -> Pod {
    let text =
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: ns}}\nspec:\n{spec}");
    Pod::from_k8s_yaml(&text, "pod.yaml").unwrap()
}

fn container(cpu: &str) -> String {
    format!("  - {{name: c, resources: {{requests: {{cpu: \"{cpu}\"}}}}}}\n")
}

fn sidecar(cpu: &str) -> String {
    format!("  - {{name: s, restartPolicy: Always, resources: {{requests: {{cpu: \"{cpu}\"}}}}}}\n")
}

fn spec(init: &[String], containers: &[String]) -> String {
    let mut s = String::new();
    if !init.is_empty() {
        s.push_str("  initContainers:\n");
        for c in init {
            s.push_str(&format!("  {c}"));
        }
    }
    s.push_str("  containers:\n");
    for c in containers {
        s.push_str(&format!("  {c}"));
    }
    s
}

#[test]
fn requests_for_spec_as_karpenter_computes_them() {
    // helpers_test.go "totalPodRequests": (init containers, containers, expected CPU millis).
    let table: Vec<(&str, Vec<String>, Vec<String>, u64)> = vec![
        (
            "should take max of init containers vs regular containers",
            vec![container("4"), container("2")],
            vec![container("1")],
            4000,
        ),
        (
            "should sum sidecar init containers with regular containers",
            vec![sidecar("500m")],
            vec![container("1")],
            1500,
        ),
        (
            "should sum multiple sidecar init containers with regular containers",
            vec![sidecar("500m"), sidecar("200m")],
            vec![container("1")],
            1700,
        ),
        (
            "should use max of regular init container + preceding sidecars vs running total",
            vec![sidecar("500m"), container("4")],
            vec![container("1")],
            4500,
        ),
        (
            "should handle sidecar after regular init container",
            vec![container("4"), sidecar("500m")],
            vec![container("1")],
            4000,
        ),
        (
            "should not treat init containers without restartPolicy as sidecars",
            vec![container("2")],
            vec![container("1")],
            2000,
        ),
        // calculateLimitReplicas' request cases, the request half.
        (
            "should use init container max if larger than sum of containers",
            vec![container("4")],
            vec![container("1")],
            4000,
        ),
        (
            "should use container sum if larger than init containers",
            vec![container("500m")],
            vec![container("2")],
            2000,
        ),
    ];
    let mut passed = 0;
    for (name, init, containers, want) in &table {
        let pod = pod_yaml(&spec(init, containers));
        assert_eq!(pod.cpu_millis, *want, "{name}");
        passed += 1;
    }
    // "should sum requests from all containers" and "should handle mixed resources across containers".
    let pod = pod_yaml(
        "  containers:\n  - {name: a, resources: {requests: {cpu: \"1\", memory: 512Mi}}}\n  - {name: b, resources: {requests: {cpu: 500m, memory: 256Mi}}}\n",
    );
    assert_eq!((pod.cpu_millis, pod.memory_bytes), (1500, 768 * MIB));
    let pod = pod_yaml(
        "  containers:\n  - {name: a, resources: {requests: {cpu: \"1\"}}}\n  - {name: b, resources: {requests: {memory: 1Gi}}}\n",
    );
    assert_eq!((pod.cpu_millis, pod.memory_bytes), (1000, GIB));
    // "should return empty list for pod with no requests".
    let pod = pod_yaml("  containers:\n  - {name: app}\n");
    assert_eq!((pod.cpu_millis, pod.memory_bytes), (0, 0));
    assert_eq!(passed + 3, 11);
}

#[test]
fn a_deployment_template_carries_selectors_affinity_and_tolerations() {
    let text = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 3
  template:
    spec:
      nodeSelector: {kubernetes.io/arch: arm64}
      tolerations: [{key: dedicated, operator: Equal, value: web, effect: NoSchedule}]
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
              - matchExpressions: [{key: karpenter.sh/capacity-type, operator: In, values: [spot]}]
      containers:
        - name: app
          resources: {requests: {cpu: 250m, memory: 512Mi}}
      overhead: {cpu: 50m}
"#;
    let pod = Pod::from_k8s_yaml(text, "web.yaml").unwrap();
    assert_eq!(pod.name, "shop/web");
    assert_eq!((pod.cpu_millis, pod.memory_bytes), (300, 512 * MIB));
    assert_eq!(pod.node_selector["kubernetes.io/arch"], "arm64");
    assert_eq!(pod.tolerations.len(), 1);
    assert_eq!(pod.required_node_affinity.len(), 1);
    assert_eq!(pod.required_node_affinity[0][0].values, ["spot"]);
    // A bad quantity is reported at its field.
    let bad = text.replace("cpu: 250m", "cpu: lots");
    let err = Pod::from_k8s_yaml(&bad, "web.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("web.yaml:")
            && err.contains("spec.template.spec.containers[0].resources.requests.cpu"),
        "{err}"
    );
    let err = Pod::from_k8s_yaml("kind: Service\nmetadata: {name: x}\n", "s.yaml").unwrap_err();
    assert!(err.to_string().contains("kind"), "{err}");
}

fn general() -> NodePool {
    NodePool::from_yaml(
        "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata: {name: general}\nspec:\n  template:\n    spec:\n      requirements:\n        - {key: karpenter.k8s.aws/instance-category, operator: In, values: [c, m, r]}\n",
        "general",
    )
    .unwrap()
}

fn input<'a>(catalog: &'a Catalog, pools: &'a [NodePool], pods: &'a [Pod]) -> ProvisionInput<'a> {
    ProvisionInput {
        catalog,
        pools,
        pods,
        existing: &[],
        in_flight: &[],
        daemonsets: &[],
        unavailable: &[],
    }
}

#[test]
fn a_scale_up_gets_its_nodes_at_decision_time_from_the_template() {
    let catalog = Catalog::embedded();
    let pools = [general()];
    let mut template = Pod::new("", 1000, 2 * GIB);
    template
        .node_selector
        .insert("kubernetes.io/arch".into(), "arm64".into());
    // 4 → 12 replicas with 4 pods running: 8 pods to come, none Pending yet.
    let up = ScaleUp {
        workload: "shop/web",
        template: &template,
        existing_pods: 4,
        desired: 12,
    };
    let ahead = plan_ahead(&input(&catalog, &pools, &[]), &[up]);
    let placed: Vec<&String> = ahead.nodes.iter().flat_map(|n| n.pods.iter()).collect();
    assert_eq!(placed.len(), 8);
    assert!(placed.iter().all(|p| p.starts_with("shop/web-ahead-")));
    assert!(ahead.unschedulable.is_empty());
    for n in &ahead.nodes {
        let t = catalog.get(&n.instance_type).unwrap();
        assert_eq!(
            t.arch, "arm64",
            "{} honours the template's selector",
            n.instance_type
        );
    }
    // The same pods planned when they go Pending get the same nodes: planning ahead costs nothing extra.
    let pending = up.pods();
    let later = plan(&input(&catalog, &pools, &pending));
    assert!((later.cost_per_hour() - ahead.cost_per_hour()).abs() < 1e-9);

    // With room on an existing node, the scale-up asks for fewer nodes (existing capacity first).
    let existing = [ExistingNode {
        name: "n1".into(),
        pool: Some("general".into()),
        instance_type: "m7g.2xlarge".into(),
        capacity_type: CapacityType::OnDemand,
        zone: "us-east-1a".into(),
        labels: BTreeMap::new(),
        taints: vec![],
        requested: Resources::new(0, 0, 0),
        allocatable: None,
    }];
    let with_room = plan_ahead(
        &ProvisionInput {
            existing: &existing,
            ..input(&catalog, &pools, &[])
        },
        &[up],
    );
    let bound: usize = with_room.bound.iter().map(|b| b.pods.len()).sum();
    assert!(
        bound >= 6,
        "an m7g.2xlarge holds six or seven 1-CPU pods: {bound}"
    );
    assert!(with_room.cost_per_hour() < ahead.cost_per_hour());
    // A decision that does not add pods asks for nothing.
    let none = ScaleUp { desired: 4, ..up };
    assert!(none.pods().is_empty());
    assert!(
        plan_ahead(&input(&catalog, &pools, &[]), &[none])
            .nodes
            .is_empty()
    );
}

fn cpu_pod() -> Pod {
    Pod::new("", 1000, 0)
}

#[test]
fn calculate_limit_replicas_table() {
    // helpers_test.go "calculateLimitReplicas": (name, limits, pod, expected); None = "matched false".
    let lim = |cpu: Option<u64>, mem: Option<u64>| BufferLimits {
        cpu_millis: cpu,
        memory_bytes: mem,
    };
    let table: Vec<(&str, BufferLimits, Pod, Option<u32>)> = vec![
        (
            "should calculate replicas based on CPU limits",
            lim(Some(4000), None),
            Pod::new("", 1000, 0),
            Some(4),
        ),
        (
            "should calculate replicas based on memory limits",
            lim(None, Some(2 * GIB)),
            Pod::new("", 0, 512 * MIB),
            Some(4),
        ),
        (
            "should take the minimum across multiple resources",
            lim(Some(8000), Some(4 * GIB)),
            Pod::new("", 1000, GIB),
            Some(4),
        ),
        (
            "should sum requests across multiple containers",
            lim(Some(3000), None),
            pod_yaml(&spec(&[], &[container("500m"), container("500m")])),
            Some(3),
        ),
        (
            "should use init container max if larger than sum of containers",
            lim(Some(8000), None),
            pod_yaml(&spec(&[container("4")], &[container("1")])),
            Some(2),
        ),
        (
            "should use container sum if larger than init containers",
            lim(Some(6000), None),
            pod_yaml(&spec(&[container("500m")], &[container("2")])),
            Some(3),
        ),
        (
            "should return false when pod has no resource requests",
            lim(Some(4000), None),
            pod_yaml("  containers:\n  - {name: app}\n"),
            None,
        ),
        (
            "should return false when no limit resources match pod requests",
            lim(None, Some(4 * GIB)),
            Pod::new("", 1000, 0),
            None,
        ),
        (
            "should floor divide (no rounding up)",
            lim(Some(10_000), None),
            Pod::new("", 3000, 0),
            Some(3),
        ),
        (
            "should handle millicore-level precision",
            lim(Some(1000), None),
            Pod::new("", 250, 0),
            Some(4),
        ),
        (
            "should return 0 when limit is smaller than a single pod request",
            lim(Some(1000), None),
            Pod::new("", 2000, 0),
            Some(0),
        ),
    ];
    assert_eq!(table.len(), 11);
    for (name, limits, pod, want) in &table {
        assert_eq!(limit_replicas(limits, pod), *want, "{name}");
    }
}

#[test]
fn calculate_percentage_replicas_table() {
    // helpers_test.go "calculatePercentageReplicas": (scalable replicas, percentage, expected).
    let table = [
        ("should calculate percentage and ceil", 10, 20, 2),
        ("should ceil fractional results", 3, 10, 1),
        (
            "should return at least 1 when percentage > 0 and replicas > 0",
            1,
            1,
            1,
        ),
        ("should return 0 when scalable has 0 replicas", 0, 50, 0),
        ("should return 0 when percentage is 0", 10, 0, 0),
        ("should handle 100 percent", 5, 100, 5),
        ("should handle large percentages (>100)", 5, 200, 10),
        ("should handle large replica counts", 1000, 10, 100),
    ];
    for (name, replicas, pct, want) in table {
        assert_eq!(percentage_replicas(replicas, pct), want, "{name}");
    }
}

fn buffer(source: &str, spec: &str) -> CapacityBuffer {
    let text = format!(
        "apiVersion: autoscaling.x-k8s.io/v1beta1\nkind: CapacityBuffer\nmetadata: {{name: cb, namespace: default}}\nspec:\n{source}{spec}"
    );
    CapacityBuffer::from_yaml(&text, "cb.yaml").unwrap()
}

#[test]
fn buffer_replicas_from_replicas_percentage_and_limits() {
    // suite_test.go "Replica calculation": (entry, source, spec, template pod, scalable replicas, expected).
    let pt = "  podTemplateRef: {name: pt}\n";
    let deploy = "  scalableRef: {apiGroup: apps, kind: Deployment, name: d}\n";
    let plain = Pod::new("", 0, 0);
    let table: Vec<(&str, &str, &str, Pod, u32, u32)> = vec![
        (
            "fixed replicas only",
            pt,
            "  replicas: 7\n",
            plain.clone(),
            0,
            7,
        ),
        (
            "replicas capped by binding limit",
            pt,
            "  replicas: 10\n  limits: {cpu: \"3\"}\n",
            cpu_pod(),
            0,
            3,
        ),
        (
            "non-binding limit does not reduce (podTemplateRef)",
            pt,
            "  replicas: 3\n  limits: {cpu: \"10\"}\n",
            cpu_pod(),
            0,
            3,
        ),
        (
            "limits only",
            pt,
            "  limits: {cpu: \"5\"}\n",
            cpu_pod(),
            0,
            5,
        ),
        (
            "percentage only",
            deploy,
            "  percentage: 20\n",
            plain.clone(),
            10,
            2,
        ),
        (
            "replicas > percentage",
            deploy,
            "  replicas: 5\n  percentage: 20\n",
            plain.clone(),
            10,
            5,
        ),
        (
            "percentage > replicas",
            deploy,
            "  replicas: 5\n  percentage: 80\n",
            plain.clone(),
            10,
            8,
        ),
        (
            "max of replicas and percentage capped by limit",
            deploy,
            "  replicas: 5\n  percentage: 80\n  limits: {cpu: \"4\"}\n",
            cpu_pod(),
            10,
            4,
        ),
        (
            "percentage rounds up to a minimum of 1",
            deploy,
            "  percentage: 10\n",
            plain.clone(),
            1,
            1,
        ),
    ];
    assert_eq!(table.len(), 9);
    for (name, source, spec, pod, scalable, want) in &table {
        assert_eq!(buffer(source, spec).chunks(pod, *scalable), *want, "{name}");
    }
}

#[test]
fn buffers_surge_cannot_honour_are_refused_at_the_field() {
    let head = "apiVersion: autoscaling.x-k8s.io/v1beta1\nkind: CapacityBuffer\nmetadata: {name: cb}\nspec:\n";
    for (spec, field) in [
        (
            "  podTemplateRef: {name: pt}\n  limits: {nvidia.com/gpu: \"1\"}\n",
            "spec.limits.nvidia.com/gpu",
        ),
        (
            "  podTemplateRef: {name: pt}\n  provisioningStrategy: buffer.x-k8s.io/other\n",
            "spec.provisioningStrategy",
        ),
        ("  replicas: 2\n", "spec"),
        (
            "  podTemplateRef: {name: pt}\n  percentage: 10\n",
            "spec.percentage",
        ),
        (
            "  podTemplateRef: {name: pt}\n  replicas: -1\n",
            "spec.replicas",
        ),
    ] {
        let err = CapacityBuffer::from_yaml(&format!("{head}{spec}"), "cb.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(field) && err.contains("cb.yaml:"),
            "{spec}: {err}"
        );
    }
    let b = buffer("  scalableRef: {kind: Deployment, name: web}\n", "");
    assert_eq!(
        b.source,
        BufferSource::Scalable(surge_nodes::ScalableRef {
            api_group: String::new(),
            kind: "Deployment".into(),
            name: "web".into()
        })
    );
    assert_eq!(b.namespace, "default");
}

#[test]
fn headroom_is_a_pause_deployment_priced_by_the_nodes_it_keeps() {
    let catalog = Catalog::embedded();
    let pools = [general()];
    let mut chunk = Pod::new("", 2000, 4 * GIB);
    chunk
        .node_selector
        .insert("karpenter.sh/capacity-type".into(), "on-demand".into());
    let b = buffer("  podTemplateRef: {name: pt}\n", "  replicas: 6\n");
    let h = Headroom::from_buffer(&b, &chunk, 0);
    assert_eq!(h.replicas, 6);
    assert_eq!(h.pods().len(), 6);
    // Its price is what a plan of six 2-CPU/4-GiB on-demand pods costs: positive, and no more than six
    // nodes of the cheapest type that holds one each.
    let cost = h.cost_per_hour(&input(&catalog, &pools, &[]));
    let one = Headroom {
        replicas: 1,
        ..h.clone()
    }
    .cost_per_hour(&input(&catalog, &pools, &[]));
    assert!(cost > 0.0 && cost <= 6.0 * one + 1e-9, "{cost} vs {one}");
    let yaml = h.manifests();
    for want in [
        "kind: PriorityClass",
        "value: -10",
        "kind: Deployment",
        "replicas: 6",
        "priorityClassName: surge-headroom",
        "karpenter.sh/capacity-type: \"on-demand\"",
        "cpu: 2000m",
    ] {
        assert!(yaml.contains(want), "{want} missing from\n{yaml}");
    }
    // Both documents are YAML a client can apply.
    for doc in yaml.split("---\n") {
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(doc).unwrap();
        assert!(v.get("kind").is_some());
    }
    // Sized from recent decisions: the largest recent scale-up.
    let recent = Headroom::from_recent_scale_ups("web", "shop", &chunk, &[2, 9, 4]);
    assert_eq!(recent.replicas, 9);
}

#[test]
fn a_node_scenario_replays_launches_waits_and_consolidation() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/web-burst.yaml"
    ))
    .unwrap();
    assert!(surge_nodes::NodeScenario::is_node_scenario(&text));
    let scenario = surge_nodes::NodeScenario::from_yaml(&text, "web-burst.yaml").unwrap();
    let catalog = Catalog::embedded();
    let steps = surge_nodes::replay(&scenario, &catalog);
    assert_eq!(steps.len(), 6);
    // The burst launches nodes; its pods wait only for the boot when planned at the decision, and
    // for Pending + batch window + boot otherwise.
    let burst = &steps[1];
    assert_eq!(burst.new_pods, 36);
    assert!(!burst.launches.is_empty());
    assert_eq!(burst.wait_ahead_max, 45);
    assert_eq!(burst.wait_pending_max, 57);
    assert!(burst.wait_ahead_mean < burst.wait_pending_mean);
    // Batch pods land on amd64 types only.
    for l in &steps[2].launches {
        assert_eq!(
            catalog.get(&l.instance_type).unwrap().arch,
            "amd64",
            "{l:?}"
        );
    }
    assert!(steps[2].cost_per_hour > steps[1].cost_per_hour);
    // After the fall, consolidation removes (or shrinks) capacity and the bill drops.
    let removed: usize = steps[3..].iter().map(|s| s.deletions.len()).sum();
    assert!(removed > 0);
    assert!(steps[5].cost_per_hour < steps[2].cost_per_hour);
    assert!(steps.iter().all(|s| s.unschedulable == 0));
    // A bad scenario is refused at its field.
    let bad = text.replace("cpu: 500m", "cpu: fast");
    let err = surge_nodes::NodeScenario::from_yaml(&bad, "s.yaml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("workloads[0].cpu"), "{err}");
}

//! KEDA through `surge simulate`'s scenario format: a ScaledObject edited mid-scenario, status inputs from
//! the manifest, cpu triggers fed by pod usage, labelled pods for `kubernetes-workload`, and a scaler that
//! fails to build versus a failed read.

// Test helpers may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use surge_engine::hpa::ConditionStatus;
use surge_engine::scenario::{self, Step};

fn replay(yaml: &str) -> Vec<Step> {
    let s = scenario::parse(yaml).unwrap_or_else(|e| panic!("scenario rejected:\n{e}"));
    scenario::simulate(&s)
}

fn at(steps: &[Step], t: f64) -> &Step {
    steps.iter().find(|s| s.time_s == t).unwrap()
}

/// A ScaledObject manifest block (indented for `scaledObject: |` at the given depth).
fn so(indent: usize, annotations: &str, spec: &str) -> String {
    let pad = " ".repeat(indent);
    let mut text = String::from(
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: worker\n  namespace: jobs\n",
    );
    if !annotations.is_empty() {
        text.push_str("  annotations:\n");
        for l in annotations.lines() {
            text.push_str(&format!("    {l}\n"));
        }
    }
    text.push_str("spec:\n  scaleTargetRef: {name: worker}\n");
    for l in spec.lines() {
        text.push_str(&format!("  {l}\n"));
    }
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

const QUEUE: &str = "minReplicaCount: 1
maxReplicaCount: 10
pollingInterval: 15
advanced:
  horizontalPodAutoscalerConfig:
    behavior:
      scaleDown: {stabilizationWindowSeconds: 0}
triggers:
- type: prometheus
  name: q
  metadata: {query: 'sum(queue)', threshold: '10'}";

#[test]
fn annotations_added_and_removed_during_the_scenario() {
    let yaml = format!(
        "policy:\n  scaledObject: |\n{}initial: {{replicas: 2}}\ntimeline:\n- at: 0s\n  metrics: {{q: 50}}\n- at: 1m\n  scaledObject: |\n{}- at: 2m\n  scaledObject: |\n{}- at: 3m\n  scaledObject: |\n{}  metrics: {{q: 10}}\nend: 4m\n",
        so(4, "", QUEUE),
        so(4, "autoscaling.keda.sh/paused-replicas: \"3\"", QUEUE),
        so(4, "", QUEUE),
        so(4, "autoscaling.keda.sh/paused-scale-in: \"true\"", QUEUE),
    );
    let steps = replay(&yaml);
    // 50 / 10 per replica → 5.
    assert_eq!(at(&steps, 30.0).replicas, 5);
    // paused-replicas: 3 freezes the target at 3, the HPA out of the way.
    let paused = at(&steps, 60.0);
    assert_eq!(paused.replicas, 3);
    let k = paused.decision.keda.as_ref().unwrap();
    assert_eq!(
        k.frozen_by.as_deref(),
        Some("autoscaling.keda.sh/paused-replicas")
    );
    assert_eq!(at(&steps, 105.0).replicas, 3);
    // Removed: the HPA takes over again at once; Paused turns False with KEDA's unpause reason.
    let resumed = at(&steps, 120.0);
    assert_eq!(resumed.replicas, 5);
    let paused_condition = resumed
        .decision
        .keda
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.kind == "Paused")
        .cloned()
        .unwrap();
    assert_eq!(
        (paused_condition.status, paused_condition.reason.as_str()),
        (ConditionStatus::False, "ScaledObjectUnpaused")
    );
    // paused-scale-in with a smaller load: the HPA may not scale down.
    let held = at(&steps, 210.0);
    assert_eq!(held.replicas, 5);
    assert_eq!(
        held.decision.keda.as_ref().unwrap().frozen_by.as_deref(),
        Some("autoscaling.keda.sh/paused-scale-in")
    );
}

#[test]
fn cpu_trigger_fed_by_pod_usage() {
    let spec = "minReplicaCount: 1
maxReplicaCount: 10
triggers:
- type: cpu
  metricType: Utilization
  metadata: {value: '50'}";
    let yaml = format!(
        "policy:\n  scaledObject: |\n{}initial: {{replicas: 2, pod_template: {{requests: {{cpu: 500m}}}}}}\ntimeline:\n- at: 0s\n  metrics: {{cpu: 500m}}\nend: 15s\n",
        so(4, "", spec)
    );
    let steps = replay(&yaml);
    // 100% of the request against a 50% target: twice the pods.
    assert_eq!(at(&steps, 0.0).replicas, 4);
    assert_eq!(
        at(&steps, 0.0).decision.metrics[0].current_utilization,
        Some(100)
    );
}

#[test]
fn kubernetes_workload_counts_labelled_pods() {
    let spec = "minReplicaCount: 0
maxReplicaCount: 10
triggers:
- type: kubernetes-workload
  name: builders
  metadata: {podSelector: 'app=builder,tier in (ci)', value: '2'}";
    let yaml = format!(
        "policy:\n  scaledObject: |\n{}initial:\n  replicas: 1\n  labelled_pods:\n  - {{labels: {{app: builder, tier: ci}}, count: 6}}\n  - {{labels: {{app: builder, tier: ci}}, count: 4, phase: Succeeded}}\n  - {{labels: {{app: web}}, count: 9}}\ntimeline:\n- at: 30s\n  labelled_pods:\n  - {{labels: {{app: builder, tier: ci}}, count: 10}}\nend: 45s\n",
        so(4, "", spec)
    );
    let steps = replay(&yaml);
    // 6 running matching pods / 2 per replica (the 4 Succeeded and the 9 others do not count).
    assert_eq!(at(&steps, 0.0).replicas, 3);
    assert_eq!(at(&steps, 30.0).replicas, 5);
}

#[test]
fn a_scaler_that_fails_to_build_is_not_a_failed_read() {
    let spec = "minReplicaCount: 1
maxReplicaCount: 10
pollingInterval: 15
fallback: {failureThreshold: 1, replicas: 6}
triggers:
- type: prometheus
  name: q
  metadata: {query: 'sum(queue)', threshold: '10'}";
    let run = |value: &str| {
        replay(&format!(
            "policy:\n  scaledObject: |\n{}initial: {{replicas: 2}}\ntimeline:\n- at: 0s\n  metrics: {{q: {value}}}\nend: 30s\n",
            so(4, "", spec)
        ))
    };
    // A failed read: counted, and past failureThreshold the fallback serves 6 replicas.
    let failed = run("error");
    assert_eq!(at(&failed, 0.0).replicas, 2);
    let fell_back = at(&failed, 15.0);
    // The HPA's scale-up limit (no behavior: max(2 × current, 4)) takes two steps to 6.
    assert_eq!(fell_back.replicas, 4);
    assert_eq!(at(&failed, 30.0).replicas, 6);
    let k = fell_back.decision.keda.as_ref().unwrap();
    assert_eq!(k.fallback_triggers, vec!["q".to_owned()]);
    assert_eq!(k.fallback_replicas, Some(6));
    // A scaler that cannot be built: nothing is read, nothing counted, no fallback; Ready False.
    let unbuilt = run("'build-error: bad credentials'");
    let last = at(&unbuilt, 30.0);
    assert_eq!(last.replicas, 2);
    let k = last.decision.keda.as_ref().unwrap();
    assert!(k.health.is_empty() && k.fallback_triggers.is_empty());
    let ready = k.conditions.iter().find(|c| c.kind == "Ready").unwrap();
    assert_eq!(
        (ready.status, ready.reason.as_str()),
        (ConditionStatus::False, "ScaledObjectCheckFailed")
    );
}

#[test]
fn last_active_time_and_health_come_from_the_manifest() {
    let spec = "minReplicaCount: 0
maxReplicaCount: 10
pollingInterval: 30
cooldownPeriod: 300
triggers:
- type: prometheus
  name: q
  metadata: {query: 'sum(queue)', threshold: '10'}";
    let manifest = format!(
        "{}status:\n  lastActiveTime: '2026-01-05T08:55:50Z'\n  health:\n    q: {{numberOfFailures: 2, status: Failing}}\n",
        so(0, "", spec)
    );
    let manifest: String = manifest.lines().map(|l| format!("    {l}\n")).collect();
    let yaml = format!(
        "policy:\n  scaledObject: |\n{manifest}start: 2026-01-05T09:00:00Z\ninitial: {{replicas: 2}}\ntimeline:\n- at: 0s\n  metrics: {{q: 0}}\nend: 90s\n"
    );
    let steps = replay(&yaml);
    // Last active 4m10s before the start: cooling down until 50s, scaled to zero at the next poll (60s).
    assert_eq!(
        at(&steps, 30.0).decision.keda.as_ref().unwrap().executor,
        "CoolingDown"
    );
    assert_eq!(at(&steps, 60.0).replicas, 0);
    assert_eq!(
        at(&steps, 60.0).decision.keda.as_ref().unwrap().executor,
        "ScaleToZero"
    );
}

/// `policy.cluster`: the Deployment as `kubectl get -o yaml` shows it (only the fields read here).
fn cluster(indent: usize, cpu_request: &str) -> String {
    let text = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: worker, namespace: jobs}}\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n        resources: {{requests: {{cpu: '{cpu_request}'}}}}\n---\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {{name: web, namespace: jobs}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}\n"
    );
    let pad = " ".repeat(indent);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

const CPU: &str = "minReplicaCount: 1
maxReplicaCount: 10
triggers:
- type: cpu
  metricType: Utilization
  metadata: {value: '50'}";

#[test]
fn the_cluster_the_webhook_reads_is_a_scenario_input() {
    let file = |request: &str, change: &str| {
        format!(
            "policy:\n  scaledObject: |\n{}  cluster: |\n{}initial: {{replicas: 2, pod_template: {{requests: {{cpu: 500m}}}}}}\ntimeline:\n- at: 0s\n  metrics: {{cpu: 500m}}\n{change}end: 15s\n",
            so(4, "", CPU),
            cluster(4, request)
        )
    };
    // The Deployment has its cpu request, and the other HPA targets another workload: admitted.
    let steps = replay(&file("500m", ""));
    assert_eq!(at(&steps, 0.0).replicas, 4);
    // Without the request the webhook refuses the ScaledObject, at its field.
    let e = scenario::parse(&file("0", "")).unwrap_err().to_string();
    assert!(
        e.contains("spec.triggers[0]: the scaledobject has a cpu trigger but the container app doesn't have the cpu request defined"),
        "{e}"
    );
    // A change in the timeline is admitted against the same cluster: retargeted at `web`, which the
    // other HPA manages.
    let retarget = so(4, "", CPU).replace(
        "scaleTargetRef: {name: worker}",
        "scaleTargetRef: {name: web}",
    );
    let change = format!("- at: 5s\n  scaledObject: |\n{retarget}");
    let e = scenario::parse(&file("500m", &change))
        .unwrap_err()
        .to_string();
    assert!(e.contains("is already managed by the hpa 'web'"), "{e}");
}

#[test]
fn a_cluster_without_a_scaled_object_is_refused() {
    let yaml = format!(
        "policy:\n  hpa: |\n    apiVersion: autoscaling/v2\n    kind: HorizontalPodAutoscaler\n    metadata: {{name: w}}\n    spec:\n      scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: w}}\n      maxReplicas: 3\n      metrics: [{{type: External, external: {{metric: {{name: q}}, target: {{type: Value, value: '1'}}}}}}]\n  cluster: |\n{}initial: {{replicas: 1}}\nend: 0s\n",
        cluster(4, "1")
    );
    let e = scenario::parse(&yaml).unwrap_err().to_string();
    assert!(
        e.contains("policy.cluster: read only with a scaledObject"),
        "{e}"
    );
}
